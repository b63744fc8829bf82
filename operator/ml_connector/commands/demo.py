"""``ml-connector demo``: the whole job end to end against the built-in emulators, in one command.

Starts the Infor and Anaplan emulators in-process over the deterministic "Northwind Industrial" dataset,
seeds the Anaplan model ``FP&A Actuals`` with about 90% of the accounts, cost centers and suppliers (so
alignment visibly adds the rest) and with approved budget cells, writes a SyncConnection and a secrets
directory into a temporary directory, injects two deliberately broken source records, then runs alignment +
a full load of every flow + a write-back through the same pipeline as ``ml-connector sync`` and the
Kubernetes Job, prints the report and exits 0.

:func:`start_demo` (the environment) is reused by the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from ml_connector.commands._shared import quiet_libraries, run

#: GL postings per --scale of the demo (a few thousand: well under a minute).
POSTINGS_PER_SCALE = 4_000
DEMO_SEED = 7
BUDGET_YEAR = 2026
UNKNOWN_COST_CENTER = "CC1999"
UNKNOWN_SUPPLIER = "S99999"


@dataclass
class DemoEnvironment:
    """A running sandbox seeded for the demo, and the files pointing at it."""

    sandbox: Any  # ml_connector.sandbox.server.Sandbox
    files: Any  # ml_connector.sync.demo.DemoFiles
    target: Any  # ml_connector.sync.demo.DemoTarget
    injected: list[str] = field(default_factory=list)
    example_key: str | None = None


def _every_tenth_missing(items: list[Any]) -> list[Any]:
    """About 90% of ``items``: every tenth one is left out (deterministic)."""
    return [item for i, item in enumerate(items) if i % 10 != 3]


def anaplan_seed(dataset: Any, *, budget_division: str) -> dict[str, Any]:
    """Members for ~90% of the dataset's accounts, cost centers and suppliers; approved budget cells of
    ``budget_division`` for the cells whose members are seeded (a few left unapproved: not exported)."""
    from ml_connector.sync.align import display_names

    def named(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        names = display_names({code: name for code, name, _ in rows})  # as the pipeline names members it adds
        return _every_tenth_missing([(code, names[code], extra) for code, _, extra in rows])

    accounts = named([(a.code, a.name, a.type) for a in dataset.accounts])
    cost_centers = named([(c.code, c.name, c.plant) for c in dataset.cost_centers])
    suppliers = named([(s.id, s.name, s.currency) for s in dataset.suppliers])
    known_accounts = {a[0] for a in accounts}
    known_ccs = {c[0] for c in cost_centers}
    # planners changed every 11th figure since Infor's budget was set (so a write-back both adds and updates)
    budget = [
        {
            "account": c.account,
            "cost_center": c.cost_center,
            "period": f"{c.year}-{c.month:02d}",
            "version": "Budget",
            "amount": (c.amount + (50_000 if i % 11 == 5 else 0)) / 100,
            "approved": (i % 9) != 4,
        }
        for i, c in enumerate(dataset.budget_cells(BUDGET_YEAR, budget_division))
        if c.account in known_accounts and c.cost_center in known_ccs
    ]
    return {"accounts": accounts, "cost_centers": cost_centers, "suppliers": suppliers, "budget": budget}


def inject_broken_records(state: Any) -> tuple[list[str], str | None]:
    """Two source records Anaplan must reject: a GL posting on a cost center that exists nowhere, and a supplier
    invoice of a supplier that exists nowhere. Written straight into the emulator's late-change overlay (its
    mutation API refuses unknown members, as Infor would; real data gets there through other doors)."""
    data = state.data
    dataset = state.dataset
    seg = dataset.segment("P10", 2025)
    n = next(j for j in range(7, seg.journals + 1) if not (dataset.is_invoice(seg, j) or dataset.is_payment(seg, j)))
    posting = data.posting(seg, n, 1)
    broken = posting._replace(cost_center=UNKNOWN_COST_CENTER, changed=data.next_stamp())
    data.posting_overrides[(broken.division, broken.year, broken.journal, broken.line)] = broken
    data.changed_postings.add((broken.division, broken.year, broken.journal, broken.line))
    invoice_n = next(j for j in range(2, seg.journals + 1) if dataset.is_invoice(seg, j))
    invoice = data.invoice(seg, invoice_n)
    wrong = invoice._replace(supplier=UNKNOWN_SUPPLIER, changed=data.next_stamp())
    data.invoice_overrides[(wrong.division, wrong.year, wrong.journal)] = wrong
    data.changed_invoices.add((wrong.division, wrong.year, wrong.journal))
    data.version += 1
    return (
        [
            f"GL posting {broken.division}/{broken.year}/journal {broken.journal} line {broken.line} booked on cost"
            f" center {UNKNOWN_COST_CENTER}, which exists neither in Infor nor in Anaplan",
            f"supplier invoice {wrong.number} ({wrong.division}) of supplier {UNKNOWN_SUPPLIER}, which exists neither"
            " in Infor nor in Anaplan",
        ],
        wrong.number,
    )


@contextlib.asynccontextmanager
async def start_demo(
    directory: Path,
    *,
    scale: int = 1,
    postings: int | None = None,
    product_line: str = "M3",
    audit_path: Path | None = None,
    name: str | None = None,
    broken: bool = True,
    budget_division: str = "P10",
    infor_token_lifetime: float | None = None,
) -> AsyncIterator[DemoEnvironment]:
    """The emulators, seeded, with ``connection.yaml`` and ``secrets/`` written into ``directory``.

    ``postings`` (GL postings of the dataset) overrides ``scale``; ``broken`` injects the two broken records.
    """
    from ml_connector.sandbox.dataset import Dataset, DatasetConfig
    from ml_connector.sandbox.server import start_sandbox
    from ml_connector.sync.demo import DemoTarget, write_demo_files

    postings = max(postings or POSTINGS_PER_SCALE * scale, 2 * 8 * 9)
    dataset = Dataset(DatasetConfig(seed=DEMO_SEED, gl_postings=postings))
    seed = anaplan_seed(dataset, budget_division=budget_division)
    sandbox = await start_sandbox(
        scale=0, seed=DEMO_SEED, anaplan_data=seed, infor_postings=postings, infor_token_lifetime=infor_token_lifetime
    )
    try:
        assert sandbox.infor is not None
        injected, key = inject_broken_records(sandbox.infor.state) if broken else ([], None)
        product = "SyteLine" if product_line.lower() == "syteline" else "M3"
        anaplan = sandbox.anaplan
        target = DemoTarget(
            product_line=product,  # type: ignore[arg-type]
            ionapi_file=sandbox.infor.ionapi(product),  # type: ignore[arg-type]
            tenant=sandbox.infor.tenant_id(product),  # type: ignore[arg-type]
            company=dataset.company,
            sites=tuple(p.code for p in dataset.plants),
            anaplan_url=anaplan.url,
            anaplan_user=anaplan.user,
            anaplan_password=anaplan.password,
            workspace=anaplan.seeded.model.workspace.name,
            model=anaplan.seeded.model.name,
            budget_division=budget_division,
        )
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
        files = write_demo_files(
            directory, target, name=name or f"demo-{stamp}", audit_path=audit_path or directory / "audit.sqlite3"
        )
        yield DemoEnvironment(sandbox, files, target, injected, key)
    finally:
        await sandbox.close()


def default_audit_path() -> Path:
    return Path(tempfile.gettempdir()) / "ml-connector-demo" / "audit.sqlite3"


@click.command("demo")
@click.option(
    "--scale",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help=f"Dataset size: {POSTINGS_PER_SCALE:,} GL postings per unit.",
)
@click.option(
    "--product-line",
    type=click.Choice(["M3", "SyteLine"], case_sensitive=False),
    default="M3",
    show_default=True,
    help="The emulated Infor product line to read from.",
)
@click.option(
    "--audit",
    "audit_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Audit database file (default: <temp dir>/ml-connector-demo/audit.sqlite3, kept between demos).",
)
@click.option("--keep", is_flag=True, help="Keep the emulators running (Ctrl-C stops them) and the files afterwards.")
def command(scale: int, product_line: str, audit_path: Path | None, keep: bool) -> None:
    """Run the whole job against the built-in emulators and print the reconciliation report."""
    from ml_connector.anaplan import PollPolicy
    from ml_connector.audit import create_store
    from ml_connector.spec import load_connection
    from ml_connector.sync.credentials import load_credentials
    from ml_connector.sync.demo import demo_report
    from ml_connector.sync.locks import InProcessLock
    from ml_connector.sync.options import Tuning
    from ml_connector.sync.pipeline import run_sync
    from ml_connector.sync.progress import Progress

    audit = (audit_path or default_audit_path()).resolve()
    audit.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="ml-connector-demo-"))
    progress = Progress.for_terminal()
    quiet_libraries()

    async def main() -> None:
        async with start_demo(directory, scale=scale, product_line=product_line, audit_path=audit) as env:
            files = env.files
            connection = load_connection(files.connection_file)
            credentials = load_credentials(connection, files.secrets_dir)
            lock = InProcessLock("ml-connector demo")
            # the emulated tasks finish in milliseconds: poll them often (real Anaplan: the 1 s default)
            tuning = Tuning(poll=PollPolicy(initial=0.02, multiplier=1.5, maximum=0.5))
            spec = connection.spec
            headline = (
                f"ml-connector demo: Infor {env.target.product_line} (emulated, tenant {env.target.tenant}) -> Anaplan"
                f" {spec.anaplan.workspace!r}/{spec.anaplan.model!r} (emulated)\n"
                f"Dataset: Northwind Industrial, {env.sandbox.infor.state.dataset.gl_count:,} GL postings, 3 plants;"
                f" connection manifest {files.connection_file.name}"
            )
            async with create_store(files.audit_path) as store:
                load = await run_sync(
                    connection, credentials=credentials, audit=store, lock=lock, progress=progress, tuning=tuning
                )
                writeback = await run_sync(
                    connection,
                    direction="WriteBack",
                    credentials=credentials,
                    audit=store,
                    lock=lock,
                    progress=progress,
                    tuning=tuning,
                )
            click.echo(
                demo_report(
                    load,
                    writeback,
                    files,
                    headline=headline,
                    injected=env.injected,
                    example_key=env.example_key,
                    kept=keep,
                )
            )
            if keep:
                click.echo(f"Emulators still running: Anaplan {env.target.anaplan_url}, Infor {env.sandbox.infor.url}")
                click.echo(
                    f"Try: ML_CONNECTOR_SECRETS_DIR={files.secrets_dir} ml-connector sync -f "
                    f"{files.connection_file} --audit {files.audit_path}\nStop with Ctrl-C."
                )
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.Event().wait()

    try:
        run(main)
    finally:
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
