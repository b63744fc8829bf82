"""The audit store contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from conftest import Backend
from ml_connector.audit import create_store
from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.audit.sqlbase import SCHEMA_VERSION, SqlAuditStore
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import (
    AuditError,
    AuditSchemaError,
    EventStatus,
    FlowCounts,
    RecordEvent,
    RunInfo,
    RunStatus,
)
from ml_connector.net.redact import SECRETS
from ml_connector.records import SupplierInvoice, content_hash

T0 = dt.datetime(2024, 3, 1, 8, 0, tzinfo=dt.UTC)


def invoice(n: int, amount: str = "100.00", **changes: object) -> SupplierInvoice:
    base = SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id=f"S{n % 7:04d}",
        invoice_number=f"INV-{n}",
        invoice_date=dt.date(2024, 2, 1 + n % 28),
        accounting_date=dt.date(2024, 2, 1 + n % 28),
        due_date=None,
        period="2024-02",
        account="6000",
        cost_center="CC10",
        currency="EUR",
        amount=Decimal(amount),
        changed_at=T0 + dt.timedelta(minutes=n),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(run_id: str, connection: str = "acme", started: int = 0, **kw: object) -> RunInfo:
    return RunInfo(
        run_id=run_id,
        connection=connection,
        flows=("supplier_invoices",),
        started_at=T0 + dt.timedelta(hours=started),
        **kw,  # type: ignore[arg-type]
    )


def ev(record: SupplierInvoice, run_id: str, status: EventStatus, **kw: object) -> RecordEvent:
    return RecordEvent.of(record, run_id=run_id, flow="supplier_invoices", status=status, **kw)  # type: ignore[arg-type]


async def test_schema_is_created_once_and_versioned(backend: Backend) -> None:
    async with backend.make() as first:
        assert await first.schema_version() == SCHEMA_VERSION
    async with backend.make() as second:  # reopening migrates nothing and keeps the data
        assert await second.schema_version() == SCHEMA_VERSION
        rows = await second._fetch("SELECT COUNT(*) FROM audit_schema")
        assert rows[0][0] == 1


async def test_a_newer_schema_is_refused_with_a_clear_message(backend: Backend) -> None:
    async with backend.make() as store:
        await store._transaction(
            [("INSERT INTO audit_schema (version, applied_at) VALUES (?, ?)", [(99, store._ts_param(T0))])]
        )
    newer = backend.make()
    with pytest.raises(AuditSchemaError, match=r"schema version 99.*up to 1"):
        await newer.open()
    await newer._disconnect()


async def test_run_lifecycle(store: SqlAuditStore) -> None:
    await store.start_run(run("r1", started=0))
    await store.start_run(run("r2", started=1, replay_of="r1", dry_run=True))
    await store.start_run(run("r3", connection="other", started=2))
    await store.start_run(run("r1", started=0))  # idempotent for the same connection

    got = await store.get_run("r2")
    assert got is not None
    assert (got.connection, got.flows, got.status, got.replay_of, got.dry_run) == (
        "acme",
        ("supplier_invoices",),
        RunStatus.RUNNING,
        "r1",
        True,
    )
    assert got.started_at == T0 + dt.timedelta(hours=1)
    assert await store.get_run("nope") is None

    rec = invoice(1)
    await store.record([ev(rec, "r1", EventStatus.EXTRACTED, with_payload=True), ev(rec, "r1", EventStatus.LOADED)])
    summary = {"totals": {"source": {"count": 1, "amount": "100.00"}}}
    await store.finish_run("r1", status=RunStatus.SUCCEEDED, reconciliation=summary, finished_at=T0 + dt.timedelta(1))
    done = await store.get_run("r1")
    assert done is not None
    assert done.status is RunStatus.SUCCEEDED
    assert done.finished_at == T0 + dt.timedelta(1)
    assert done.reconciliation == summary
    assert done.counts == {"supplier_invoices": FlowCounts("supplier_invoices", extracted=1, loaded=1)}

    assert [r.run_id for r in await store.list_runs()] == ["r3", "r2", "r1"]
    assert [r.run_id for r in await store.list_runs(connection="acme", limit=1)] == ["r2"]


async def test_run_id_reused_by_another_connection_is_an_error(store: SqlAuditStore) -> None:
    await store.start_run(run("r1"))
    with pytest.raises(AuditError, match=r"already exists.*'acme'.*not 'other'"):
        await store.start_run(run("r1", connection="other"))


async def test_events_need_a_known_run_and_finish_needs_one(store: SqlAuditStore) -> None:
    with pytest.raises(AuditError, match=r"run 'ghost'.*start_run"):
        await store.record([ev(invoice(1), "ghost", EventStatus.EXTRACTED)])
    with pytest.raises(AuditError, match="no such run"):
        await store.finish_run("ghost", status=RunStatus.FAILED, counts={})


async def test_an_unopened_store_says_so(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(AuditError, match="not open"):
        await store.record([])


async def test_batched_writes_and_the_accounting_per_flow(store: SqlAuditStore) -> None:
    await store.start_run(run("r1"))
    events: list[RecordEvent] = []
    for n in range(230):  # several batches of 50 plus a remainder
        rec = invoice(n)
        events.append(ev(rec, "r1", EventStatus.EXTRACTED, with_payload=True))
        outcome = (EventStatus.LOADED, EventStatus.REJECTED, EventStatus.SKIPPED)[n % 3]
        events.append(ev(rec, "r1", outcome, reason="missing account" if outcome is EventStatus.REJECTED else None))
    events.append(
        RecordEvent("r1", "payments", "payments", "100/AAA/P1", "h", EventStatus.EXTRACTED)
    )  # no outcome: does not balance
    await store.record(events)
    assert store.buffered == 461 % 50  # full batches went out as they filled
    counts = await store.counts("r1")
    assert store.buffered == 0  # queries flush first
    inv = counts["supplier_invoices"]
    assert (inv.extracted, inv.loaded, inv.rejected, inv.skipped) == (230, 77, 77, 76)
    assert inv.imbalance() is None
    assert counts["payments"].imbalance() == (
        "flow 'payments' does not balance: extracted 1 != loaded 0 + rejected 0 + skipped 0"
        " (1 record(s) without an outcome)"
    )


async def test_history_of_one_record_across_runs(store: SqlAuditStore) -> None:
    first, changed = invoice(7), invoice(7, amount="120.00")
    await store.start_run(run("r1", started=0))
    await store.start_run(run("r2", started=1))
    await store.start_run(run("r3", started=2))
    await store.start_run(run("x1", connection="other", started=3))
    await store.record(
        [
            ev(first, "r1", EventStatus.EXTRACTED, with_payload=True),
            ev(first, "r1", EventStatus.LOADED, file_row=2),
            ev(invoice(70), "r1", EventStatus.EXTRACTED),  # INV-70 must not match INV-7
            ev(first, "r2", EventStatus.EXTRACTED),
            ev(first, "r2", EventStatus.SKIPPED, reason="unchanged since run r1"),
            ev(changed, "r3", EventStatus.EXTRACTED, with_payload=True),
            ev(changed, "r3", EventStatus.REJECTED, file_row=5, reason="Account 6000 not found"),
            ev(first, "x1", EventStatus.EXTRACTED),
        ]
    )
    key = first.natural_key
    assert key == "100/AAA/S0000/INV-7"
    steps = await store.history(key, connection="acme")
    assert [(e.run_id, e.status) for e in steps] == [
        ("r1", EventStatus.EXTRACTED),
        ("r1", EventStatus.LOADED),
        ("r2", EventStatus.EXTRACTED),
        ("r2", EventStatus.SKIPPED),
        ("r3", EventStatus.EXTRACTED),
        ("r3", EventStatus.REJECTED),
    ]
    rejected = steps[-1]
    assert (rejected.file_row, rejected.reason, rejected.content_hash) == (
        5,
        "Account 6000 not found",
        content_hash(changed),
    )
    assert steps[0].payload == first.to_dict()
    assert steps[2].payload is None

    by_invoice_number = await store.history("INV-7", suffix=True)
    assert {e.natural_key for e in by_invoice_number} == {key}
    assert len(by_invoice_number) == 7  # including the other connection's run
    assert await store.history("INV-7") == []  # exact match only without suffix
    assert len(await store.history(key, limit=2)) == 2
    assert await store.history(key, flow="payments") == []


async def test_failed_records_of_a_run_are_streamed(store: SqlAuditStore) -> None:
    await store.start_run(run("r1"))
    await store.start_run(run("r2"))
    events = []
    for n in range(1100):  # more than one page
        status = EventStatus.REJECTED if n % 2 else EventStatus.LOADED
        events.append(ev(invoice(n), "r1", status, file_row=n + 2, reason=f"line {n + 2} bad" if n % 2 else None))
    events.append(ev(invoice(1), "r2", EventStatus.REJECTED, reason="other run"))
    events.append(RecordEvent("r1", "payments", "payments", "100/AAA/P1", "h", EventStatus.REJECTED, reason="x"))
    await store.record(events)
    failed = [e async for e in store.failed("r1", flow="supplier_invoices")]
    assert len(failed) == 550
    assert [e.file_row for e in failed[:3]] == [3, 5, 7]
    assert all(e.status is EventStatus.REJECTED and e.run_id == "r1" for e in failed)
    assert [e.id for e in failed] == sorted(e.id for e in failed)
    assert len([e async for e in store.failed("r1")]) == 551


async def test_last_loaded_hash_per_natural_key(store: SqlAuditStore) -> None:
    a, b, b2 = invoice(1), invoice(2), invoice(2, amount="5.00")
    await store.start_run(run("r1", started=0))
    await store.start_run(run("r2", started=1))
    await store.start_run(run("x1", connection="other"))
    await store.record(
        [
            ev(a, "r1", EventStatus.LOADED),
            ev(b, "r1", EventStatus.LOADED),
            ev(b2, "r2", EventStatus.REJECTED),  # a rejection does not replace the last loaded hash
            ev(b2, "x1", EventStatus.LOADED),  # another connection
        ]
    )
    await store.flush()
    found = await store.last_loaded("acme", "supplier_invoices", [a.natural_key, b.natural_key, "100/AAA/S9/none"])
    assert {k: (v.content_hash, v.run_id) for k, v in found.items()} == {
        a.natural_key: (content_hash(a), "r1"),
        b.natural_key: (content_hash(b), "r1"),
    }
    await store.record([ev(b2, "r2", EventStatus.LOADED), ev(b2, "r2", EventStatus.LOADED)])
    await store.flush()
    found = await store.last_loaded("acme", "supplier_invoices", [b.natural_key])
    assert (found[b.natural_key].content_hash, found[b.natural_key].run_id) == (content_hash(b2), "r2")
    assert await store.last_loaded("acme", "payments", [a.natural_key]) == {}
    many = [f"k{i}" for i in range(1200)] + [a.natural_key]  # more keys than one IN (...) holds
    assert set(await store.last_loaded("acme", "supplier_invoices", many)) == {a.natural_key}


async def test_watermarks_per_connection_and_flow(store: SqlAuditStore) -> None:
    assert await store.get_watermark("acme", "gl_postings") is None
    await store.start_run(run("r1"))
    await store.record([ev(invoice(1), "r1", EventStatus.EXTRACTED)])
    await store.set_watermark("acme", "gl_postings", T0, run_id="r1")
    assert store.buffered == 0  # events are written before the watermark moves
    await store.set_watermark("acme", "payments", T0 + dt.timedelta(days=1), run_id="r1")
    await store.set_watermark("acme", "gl_postings", T0 + dt.timedelta(hours=2), run_id="r2")
    mark = await store.get_watermark("acme", "gl_postings")
    assert mark is not None
    assert (mark.value, mark.run_id) == (T0 + dt.timedelta(hours=2), "r2")
    assert await store.get_watermark("other", "gl_postings") is None
    with pytest.raises(AuditError, match="timezone-aware"):
        await store.set_watermark("acme", "gl_postings", dt.datetime(2024, 1, 1), run_id="r3")


async def test_payloads_for_replay(store: SqlAuditStore) -> None:
    await store.start_run(run("r1"))
    sent = [invoice(n) for n in range(5)]
    events: list[RecordEvent] = []
    for n, rec in enumerate(sent):
        events.append(ev(rec, "r1", EventStatus.EXTRACTED, with_payload=True))
        events.append(ev(rec, "r1", EventStatus.REJECTED if n in (1, 3) else EventStatus.LOADED))
    skipped = invoice(9)
    events += [ev(skipped, "r1", EventStatus.EXTRACTED), ev(skipped, "r1", EventStatus.SKIPPED)]
    await store.record(events)
    every = [e async for e in store.payloads("r1")]
    assert [e.natural_key for e in every] == [r.natural_key for r in sent]
    failed = [e async for e in store.payloads("r1", only_failed=True)]
    assert [e.payload for e in failed] == [sent[1].to_dict(), sent[3].to_dict()]
    assert [e async for e in store.payloads("r1", flow="payments")] == []


async def test_reasons_and_errors_are_redacted(store: SqlAuditStore) -> None:
    secret = "pa55-w0rd-in-a-reason"
    SECRETS.add(secret)
    await store.start_run(run("r1"))
    await store.record([ev(invoice(1), "r1", EventStatus.REJECTED, reason=f"auth {secret} refused")])
    await store.finish_run("r1", status=RunStatus.FAILED, error=f"login with {secret} failed")
    (event,) = [e async for e in store.failed("r1")]
    assert event.reason == "auth *** refused"
    got = await store.get_run("r1")
    assert got is not None
    assert got.error == "login with *** failed"


def test_create_store_picks_the_backend(tmp_path: object) -> None:
    assert isinstance(create_store("postgresql://u:pw@db.example:5433/audit"), PostgresAuditStore)
    sqlite_store = create_store("sqlite:///var/tmp/audit.db")
    assert isinstance(sqlite_store, SqliteAuditStore)
    assert str(sqlite_store.path) == "var/tmp/audit.db"
    assert isinstance(create_store("/tmp/x/audit.db"), SqliteAuditStore)
    with pytest.raises(AuditError, match="sqlite:///"):
        create_store("sqlite://host/x.db")
    pg = create_store("postgresql://u:hunter2-secret@db.example:5433/audit")
    assert pg.describe() == "postgresql://db.example:5433/audit"  # type: ignore[attr-defined]
    assert "hunter2-secret" in SECRETS.values()
