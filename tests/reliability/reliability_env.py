"""The environment of the reliability and security tests: both emulators seeded as the demo seeds them (about
90% of the members in Anaplan, one GL posting on a cost center and one invoice of a supplier that exist
nowhere), a small dataset, an audit store, tiny retry and poll policies, small chunks (several per file);
and the checks every fault test ends with:

* :func:`assert_accounted`: per flow, in the audit store and in the run result, extracted = loaded +
  rejected (each with a reason) + skipped; the reconciliation balances;
* :func:`assert_end_state`: Anaplan holds exactly what Infor holds (GL cells, invoices, payments, members),
  nothing doubled and nothing lost, apart from the two records Anaplan must reject.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from ml_connector.anaplan import PollPolicy
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import AuditStore, OutagePolicy
from ml_connector.commands.demo import UNKNOWN_COST_CENTER, UNKNOWN_SUPPLIER, DemoEnvironment, start_demo
from ml_connector.infor import ClientOptions
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import Record
from ml_connector.spec import SyncConnection, load_connection, parse_connection
from ml_connector.sync.credentials import Credentials, load_credentials
from ml_connector.sync.locks import InProcessLock, ModelLock
from ml_connector.sync.options import Tuning
from ml_connector.sync.pipeline import run_sync
from ml_connector.sync.progress import Progress
from ml_connector.sync.result import RunResult

POSTINGS = 144  # the dataset's minimum: 2 years x 8 months x 9 cells
FAST_RETRY = RetryPolicy(max_attempts=10, initial_wait=0.001, max_wait=0.005, max_retry_after=0.01, total_budget=30)
TUNING = Tuning(
    infor_client=ClientOptions(rate_limit=0, retry=FAST_RETRY, concurrency=4),
    anaplan_retry=FAST_RETRY,
    anaplan_rate_limit=0,
    poll=PollPolicy(initial=0.002, multiplier=1.5, maximum=0.01, timeout=30),
    chunk_size=1_000,  # several chunks per file
    spill_threshold=50,
    dedupe_batch=37,
)
AUDIT_POLICY = OutagePolicy(batch_size=200, max_buffer=2_000, max_outage=30.0, initial_backoff=0.005, max_backoff=0.02)
TRANSACTIONAL = ("gl_postings", "supplier_invoices", "payments")
LISTS = ("GL Accounts", "Cost Centers", "Suppliers")


@dataclasses.dataclass
class Env:
    demo: DemoEnvironment
    connection: SyncConnection
    credentials: Credentials
    store: AuditStore
    lock: InProcessLock
    tmp: Path

    # ---------------------------------------------------------------- the emulators
    @property
    def anaplan(self) -> Any:  # ml_connector.sandbox.server.AnaplanHandle
        return self.demo.sandbox.anaplan

    @property
    def emulator(self) -> Any:  # ml_connector.sandbox.anaplan.AnaplanEmulator
        return self.anaplan.emulator

    @property
    def model(self) -> Any:
        return self.anaplan.seeded.model

    @property
    def anaplan_faults(self) -> Any:
        return self.anaplan.injector

    @property
    def infor(self) -> Any:  # ml_connector.sandbox.infor.state.InforState
        return self.demo.sandbox.infor.state

    @property
    def infor_faults(self) -> Any:
        return self.infor.faults

    # ---------------------------------------------------------------- runs
    def connection_with(self, name: str | None = None, **spec: Any) -> SyncConnection:
        """The connection (renamed ``name``) with parts of ``spec`` replaced (camelCase wire form, merged one
        level deep)."""
        document = self.connection.model_dump(mode="json", by_alias=True, exclude_none=True)
        if name is not None:
            document["metadata"]["name"] = name
        for key, value in spec.items():
            if isinstance(value, dict) and isinstance(document["spec"].get(key), dict):
                document["spec"][key] = {**document["spec"][key], **value}
            else:
                document["spec"][key] = value
        document.pop("status", None)
        return parse_connection(document)

    async def run(
        self, connection: SyncConnection | None = None, *, lock: ModelLock | None = None, **options: Any
    ) -> RunResult:
        options.setdefault("progress", Progress())
        options.setdefault("credentials", self.credentials)
        options.setdefault("tuning", TUNING)
        return await run_sync(connection or self.connection, audit=self.store, lock=lock or self.lock, **options)


def tuning(**changes: Any) -> Tuning:
    return dataclasses.replace(TUNING, **changes)


async def make_env(
    tmp_path: Path, *, postings: int = POSTINGS, broken: bool = True, store: AuditStore | None = None
) -> AsyncIterator[Env]:
    audit = tmp_path / "audit.sqlite3"
    async with start_demo(tmp_path / "demo", postings=postings, audit_path=audit, broken=broken) as demo:
        connection = load_connection(demo.files.connection_file)
        credentials = load_credentials(connection, demo.files.secrets_dir)
        audit_store = store if store is not None else SqliteAuditStore(audit, policy=AUDIT_POLICY)
        async with audit_store:
            yield Env(demo, connection, credentials, audit_store, InProcessLock("tests"), tmp_path)


# --------------------------------------------------------------------------------------------- client-side hooks


class Hooked(httpx.AsyncBaseTransport):
    """A real HTTP transport that calls ``hook(request, n)`` before the n-th request (1-based) matching
    ``match``; tests use it to change the emulators' state at an exact point (e.g. expire every token just
    before the second chunk upload) and to rewrite responses (``rewrite``)."""

    def __init__(
        self,
        match: Callable[[httpx.Request], bool],
        hook: Callable[[httpx.Request, int], None] | None = None,
        rewrite: Callable[[httpx.Request, bytes], bytes | None] | None = None,
    ) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.match = match
        self.hook = hook
        self.rewrite = rewrite
        self.seen = 0
        self.rewritten = 0
        self.statuses: Counter[int] = Counter()  # every answer's status, matched or not

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        matched = self.match(request)
        if matched:
            self.seen += 1
            if self.hook is not None:
                self.hook(request, self.seen)
        response = await self._inner.handle_async_request(request)
        self.statuses[response.status_code] += 1
        if not matched or self.rewrite is None:
            return response
        body = await response.aread()
        await response.aclose()
        changed = self.rewrite(request, body)
        if changed is None:
            changed = body
        else:
            self.rewritten += 1
        dropped = ("content-length", "content-encoding")
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in dropped]
        return httpx.Response(response.status_code, headers=headers, content=changed, extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


def path_matches(fragment: str, method: str | None = None) -> Callable[[httpx.Request], bool]:
    def match(request: httpx.Request) -> bool:
        return fragment in request.url.path and (method is None or request.method == method)

    return match


# --------------------------------------------------------------------------------------------- source and target


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
    sums: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for p in postings:
        cell = sums[(p.account, p.cost_center, p.period)]  # type: ignore[attr-defined]
        cell[0] += p.amount  # type: ignore[attr-defined]
        cell[1] += 1
    return {k: (v[0].quantize(Decimal("0.01")), v[1]) for k, v in sums.items()}


def current_postings(env: Env) -> list[Record]:
    """The postings as the emulated Infor serves them now (base data + changes), as canonical records."""
    from ml_connector.sandbox.dataset import posting_record

    data = env.infor.data
    return [posting_record(p) for seg in env.infor.dataset.segments for p in data.gl_segment(seg)]


def current_ap(env: Env) -> tuple[list[Record], list[Record]]:
    """(invoices, payments) as Infor serves them now."""
    from ml_connector.sandbox.dataset import Invoice as SourceInvoice
    from ml_connector.sandbox.dataset import invoice_record, payment_record

    invoices: list[Record] = []
    payments: list[Record] = []
    data = env.infor.data
    for seg in env.infor.dataset.segments:
        for item in data.ap_segment(seg):
            if isinstance(item, SourceInvoice):
                invoices.append(invoice_record(item))
            else:
                payments.append(payment_record(item))
    return invoices, payments


def list_codes(model: Any, name: str) -> set[str]:
    return {m.code or m.name for m in model.list_by_key(name).members.values()}


def list_items(model: Any, name: str) -> dict[str, tuple[Any, ...]]:
    return {m.code: tuple(m.props) for m in model.list_by_key(name).members.values()}


def expected_gl(env: Env) -> dict[tuple[str, str, str], tuple[Decimal, int]]:
    """What ``GL Actuals`` must hold: every source cell except the one on the cost center that exists nowhere."""
    return {k: v for k, v in aggregate(current_postings(env)).items() if k[1] != UNKNOWN_COST_CENTER}


def snapshot(env: Env) -> tuple[object, ...]:
    return (
        {name: list_codes(env.model, name) for name in LISTS},
        gl_cells(env.model),
        list_items(env.model, "Supplier Invoices"),
        list_items(env.model, "Payments"),
    )


def assert_end_state(env: Env, flows: Iterable[str] = TRANSACTIONAL) -> None:
    """Anaplan matches Infor for ``flows``: GL cells, one invoice and one payment item per source record
    (nothing doubled, nothing lost), every member; only the records on members that exist nowhere are missing."""
    dataset = env.infor.dataset
    flows = set(flows)
    invoices, payments = current_ap(env)
    if "gl_postings" in flows:
        assert gl_cells(env.model) == expected_gl(env)
    if "supplier_invoices" in flows:
        wanted = {r.natural_key for r in invoices if r.supplier_id != UNKNOWN_SUPPLIER}  # type: ignore[attr-defined]
        assert set(list_items(env.model, "Supplier Invoices")) == wanted
        assert list_codes(env.model, "Suppliers") >= {s.id for s in dataset.suppliers}
    if "payments" in flows:
        assert set(list_items(env.model, "Payments")) == {r.natural_key for r in payments}
    assert list_codes(env.model, "GL Accounts") >= {a.code for a in dataset.accounts}
    assert list_codes(env.model, "Cost Centers") >= {c.code for c in dataset.cost_centers}
    assert UNKNOWN_COST_CENTER not in list_codes(env.model, "Cost Centers")
    assert UNKNOWN_SUPPLIER not in list_codes(env.model, "Suppliers")


async def assert_accounted(env: Env, result: RunResult, *, flows: Iterable[str] = TRANSACTIONAL) -> None:
    """The audit accounting of ``result``'s run balances per flow, every rejection has a reason, the run result
    agrees with the audit store, and the reconciliation balances."""
    counts = await env.store.counts(result.run_id)
    for flow in flows:
        assert flow in counts, f"flow {flow} has no audit events in run {result.run_id}"
    for flow, c in counts.items():
        assert c.imbalance() is None, f"{flow}: {c.imbalance()}"
        assert c.extracted + c.replayed == c.loaded + c.rejected + c.skipped, (flow, c)
        r = result.flow(flow)
        assert r is not None, flow
        assert (r.loaded, r.rejected) == (c.loaded, c.rejected), (flow, r, c)
        assert r.extracted + r.replayed == r.loaded + r.rejected + r.skipped, (flow, r)
    async for event in env.store.failed(result.run_id):
        assert event.reason, f"rejected without a reason: {event}"
    if result.reconciliation is not None:
        assert result.reconciliation.balanced, result.reconciliation.problems


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)
