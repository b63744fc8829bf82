"""Fixtures of the pipeline tests: the demo environment (both emulators, seeded ~90%, two broken records)
on a small dataset, an audit store, fast retry and poll policies; helpers to read the emulators' state."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ml_connector.anaplan import PollPolicy
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import OutagePolicy
from ml_connector.commands.demo import DemoEnvironment, start_demo
from ml_connector.infor import ClientOptions
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import Record
from ml_connector.spec import SyncConnection, load_connection, parse_connection
from ml_connector.sync.credentials import Credentials, load_credentials
from ml_connector.sync.locks import InProcessLock
from ml_connector.sync.options import Tuning
from ml_connector.sync.pipeline import run_sync
from ml_connector.sync.progress import Progress
from ml_connector.sync.result import RunResult

POSTINGS = 600
FAST_RETRY = RetryPolicy(max_attempts=8, initial_wait=0.002, max_wait=0.01, max_retry_after=0.05, total_budget=20)
TUNING = Tuning(
    infor_client=ClientOptions(rate_limit=0, retry=FAST_RETRY, concurrency=4),
    anaplan_retry=FAST_RETRY,
    anaplan_rate_limit=0,
    poll=PollPolicy(initial=0.005, multiplier=1.5, maximum=0.02, timeout=30),
    chunk_size=8_000,  # several chunks per file
    spill_threshold=100,  # row -> record maps and seen keys spill to disk
    dedupe_batch=97,
)


@dataclasses.dataclass
class Env:
    demo: DemoEnvironment
    connection: SyncConnection
    credentials: Credentials
    store: SqliteAuditStore
    lock: InProcessLock

    @property
    def model(self) -> Any:
        return self.demo.sandbox.anaplan.seeded.model

    @property
    def infor(self) -> Any:
        return self.demo.sandbox.infor.state

    def connection_with(self, **spec: Any) -> SyncConnection:
        """The connection with parts of ``spec`` replaced (camelCase wire form, merged one level deep)."""
        document = self.connection.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key, value in spec.items():
            if isinstance(value, dict) and isinstance(document["spec"].get(key), dict):
                document["spec"][key] = {**document["spec"][key], **value}
            else:
                document["spec"][key] = value
        document.pop("status", None)
        return parse_connection(document)

    async def run(self, connection: SyncConnection | None = None, **options: Any) -> RunResult:
        options.setdefault("progress", Progress())
        options.setdefault("credentials", self.credentials)
        options.setdefault("tuning", TUNING)
        return await run_sync(connection or self.connection, audit=self.store, lock=self.lock, **options)


async def make_env(tmp_path: Path, *, broken: bool) -> AsyncIterator[Env]:
    audit = tmp_path / "audit.sqlite3"
    async with start_demo(tmp_path / "demo", postings=POSTINGS, audit_path=audit, broken=broken) as demo:
        connection = load_connection(demo.files.connection_file)
        credentials = load_credentials(connection, demo.files.secrets_dir)
        store = SqliteAuditStore(audit, policy=OutagePolicy(batch_size=500, max_buffer=5000))
        async with store:
            yield Env(demo, connection, credentials, store, InProcessLock("tests"))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """The demo setup: ~90% of the members in Anaplan, two broken source records."""
    async for value in make_env(tmp_path, broken=True):
        yield value


@pytest.fixture
async def clean_env(tmp_path: Path) -> AsyncIterator[Env]:
    """The demo setup without the broken records."""
    async for value in make_env(tmp_path, broken=False):
        yield value


# --------------------------------------------------------------------------------------------- emulator state


def list_codes(model: Any, name: str) -> set[str]:
    return {m.code or m.name for m in model.list_by_key(name).members.values()}


def gl_cells(model: Any) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    """The ``GL Actuals`` module: (account, cost center, YYYY-MM) -> (Amount, Postings)."""
    module = model.module_by_key("GL Actuals")
    accounts, centers, time = module.dimensions
    periods = {member.id: alias for alias, member in time.aliases.items() if len(alias) == 7 and alias[4] == "-"}
    amount, postings = module.line_item("Amount"), module.line_item("Postings")
    out = {}
    for key, value in module.cells[amount.id].items():
        a, c, t = key
        code = (accounts.members[a].code, centers.members[c].code, periods[t])
        out[code] = (Decimal(str(value)).quantize(Decimal("0.01")), int(module.cells[postings.id].get(key, 0)))
    return out


def aggregate(postings: Iterable[Record]) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    """What ``GL Actuals`` should hold for these postings."""
    sums: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for p in postings:
        cell = sums[(p.account, p.cost_center, p.period)]  # type: ignore[attr-defined]
        cell[0] += p.amount  # type: ignore[attr-defined]
        cell[1] += 1
    return {k: (v[0].quantize(Decimal("0.01")), v[1]) for k, v in sums.items()}


def current_postings(env: Env) -> list[Record]:
    """The postings as the emulated Infor serves them now (base data + late changes), as canonical records."""
    from ml_connector.sandbox.dataset import posting_record

    data = env.infor.data
    return [posting_record(p) for seg in env.infor.dataset.segments for p in data.gl_segment(seg)]


def list_items(model: Any, name: str) -> dict[str, tuple[Any, ...]]:
    """A numbered list's members by code, with their property values."""
    return {m.code: tuple(m.props) for m in model.list_by_key(name).members.values()}


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)
