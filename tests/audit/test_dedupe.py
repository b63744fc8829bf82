"""Watermarks with an overlap window and content-hash dedupe, against SQLite and PostgreSQL; and the
building blocks chained the way the pipeline will chain them (extract -> dedupe -> layout -> CSV ->
rejections mapped back -> audit + reconciliation balance)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest

from conftest import Backend
from ml_connector.audit.sqlbase import SqlAuditStore
from ml_connector.audit.store import EventStatus, RecordEvent, RunInfo
from ml_connector.records import GLPosting, Record, SupplierInvoice
from ml_connector.sync.csvfile import CsvChunker, KeyedRow
from ml_connector.sync.dedupe import Deduplicator, IncrementalWindow, WatermarkTracker, changed_since, read_window
from ml_connector.sync.layouts import GL_ACTUALS
from ml_connector.sync.reconcile import Reconciler, check_against_audit
from ml_connector.sync.spill import SeenHashes

T = TypeVar("T")
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


async def aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


def invoice(n: int, amount: str = "10.00", minutes: int | None = None, account: str = "6000") -> SupplierInvoice:
    return SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id="S1",
        invoice_number=f"INV-{n}",
        invoice_date=dt.date(2024, 2, 1),
        accounting_date=dt.date(2024, 2, 1),
        due_date=None,
        period="2024-02",
        account=account,
        cost_center="CC1",
        currency="EUR",
        amount=Decimal(amount),
        changed_at=T0 + dt.timedelta(minutes=n if minutes is None else minutes),
    )


async def mark_loaded(store: SqlAuditStore, run_id: str, flow: str, records: Iterable[Record]) -> None:
    await store.record(RecordEvent.of(r, run_id=run_id, flow=flow, status=EventStatus.LOADED) for r in records)


def test_changed_since_applies_the_overlap() -> None:
    assert changed_since(None, HOUR) is None
    assert changed_since(None, HOUR, initial=T0) == T0
    assert changed_since(T0, HOUR) == T0 - HOUR
    assert changed_since(dt.datetime(2024, 3, 1), dt.timedelta(0)) == T0  # naive means UTC
    with pytest.raises(ValueError, match="overlap"):
        changed_since(T0, -HOUR)


def test_tracker_moves_forward_and_holds_for_conflicts() -> None:
    window = IncrementalWindow("acme", "supplier_invoices", T0, T0 - HOUR, HOUR)
    tracker = WatermarkTracker(window)
    assert tracker.value == T0  # nothing read: unchanged
    tracker.observe(invoice(1, minutes=-30))  # inside the overlap: older than the watermark
    assert tracker.value == T0  # never backwards
    tracker.observe(invoice(2, minutes=90))
    tracker.observe(dataclasses.replace(invoice(3), changed_at=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)))  # no time
    assert tracker.value == T0 + dt.timedelta(minutes=90)
    tracker.hold(T0 - dt.timedelta(minutes=10))  # a version that must be read again
    assert tracker.value == T0 - dt.timedelta(minutes=10)
    fresh = WatermarkTracker(IncrementalWindow("acme", "x", None, None, HOUR))
    assert fresh.value is None


@pytest.mark.parametrize("batch_size", [1, 2, 100])
async def test_dedupe_across_runs_and_within_a_run(backend: Backend, batch_size: int, tmp_path: Path) -> None:
    async with backend.make() as store:
        await store.start_run(RunInfo("r1", "acme"))
        first = [invoice(n) for n in range(5)]
        window = await read_window(store, "acme", "supplier_invoices", overlap=HOUR)
        assert (window.previous, window.changed_since) == (None, None)
        tracker = WatermarkTracker(window)
        dedupe: Deduplicator[SupplierInvoice] = Deduplicator(
            store, run_id="r1", connection="acme", flow="supplier_invoices", tracker=tracker, batch_size=batch_size
        )
        passed = [item async for item in dedupe.filter(aiter(first))]
        assert [p.record for p in passed] == first
        await mark_loaded(store, "r1", "supplier_invoices", first)
        assert await tracker.commit(store, run_id="r1") == T0 + dt.timedelta(minutes=4)

        # run 2 reads from watermark - overlap and gets old, changed, new, duplicated and conflicting records
        await store.start_run(RunInfo("r2", "acme"))
        window = await read_window(store, "acme", "supplier_invoices", overlap=HOUR)
        assert window.changed_since == T0 + dt.timedelta(minutes=4) - HOUR
        tracker = WatermarkTracker(window)
        changed = invoice(1, amount="11.00", minutes=60)
        new = invoice(5, minutes=61)
        conflict = invoice(1, amount="12.00", minutes=30)  # another version of INV-1 in the same extract
        second = [first[0], changed, first[2], new, new, conflict]
        spill_dir = tmp_path / "spill"
        spill_dir.mkdir()
        skips: list[tuple[str, str]] = []
        dedupe = Deduplicator(
            store,
            run_id="r2",
            connection="acme",
            flow="supplier_invoices",
            tracker=tracker,
            batch_size=batch_size,
            seen=SeenHashes(threshold=2, directory=spill_dir),  # spills to disk on the way
            on_skip=lambda record, kind, reason: skips.append((record.invoice_number, kind)),
        )
        passed = [item async for item in dedupe.filter(aiter(second))]
        assert [p.record for p in passed] == [changed, new]
        assert [(s.extracted, s.passed, s.unchanged, s.duplicates, s.conflicts) for s in [dedupe.stats]] == [
            (6, 2, 2, 1, 1)
        ]
        assert skips == [("INV-0", "unchanged"), ("INV-2", "unchanged"), ("INV-5", "duplicate"), ("INV-1", "conflict")]
        assert list(spill_dir.iterdir()) == []  # the spilled seen-set is cleaned up

        await mark_loaded(store, "r2", "supplier_invoices", [p.record for p in passed])
        counts = (await store.counts("r2"))["supplier_invoices"]
        assert (counts.extracted, counts.loaded, counts.skipped) == (6, 2, 4)
        assert counts.imbalance() is None
        history = await store.history(first[0].natural_key)
        assert [(e.run_id, e.status, e.reason) for e in history][-2:] == [
            ("r2", EventStatus.EXTRACTED, None),
            ("r2", EventStatus.SKIPPED, "unchanged since run r1 loaded it"),
        ]
        assert history[-2].payload is None  # payloads are stored only for what is sent
        assert [e.natural_key async for e in store.payloads("r2")] == [changed.natural_key, new.natural_key]

        # without the conflict the watermark would move to minute 61 (INV-5); the skipped version of INV-1
        # holds it at minute 30, so the next run (from 30 - overlap) reads INV-1 again
        assert await tracker.commit(store, run_id="r2") == T0 + dt.timedelta(minutes=30)
        mark = await store.get_watermark("acme", "supplier_invoices")
        assert mark is not None
        assert (mark.value, mark.run_id) == (T0 + dt.timedelta(minutes=30), "r2")


async def test_aggregated_flows_keep_unchanged_records_but_drop_duplicates(backend: Backend) -> None:
    async with backend.make() as store:
        await store.start_run(RunInfo("r1", "acme"))
        await store.start_run(RunInfo("r2", "acme"))
        records = [invoice(n) for n in range(3)]
        await mark_loaded(store, "r1", "supplier_invoices", records)
        dedupe: Deduplicator[SupplierInvoice] = Deduplicator(
            store, run_id="r2", connection="acme", flow="supplier_invoices", skip_unchanged=False
        )
        passed = [p.record async for p in dedupe.filter(aiter([*records, records[1]]))]
        assert passed == records
        assert (dedupe.stats.unchanged, dedupe.stats.duplicates) == (0, 1)


async def test_the_blocks_chained_balance_end_to_end(store: SqlAuditStore, tmp_path: Path) -> None:
    """Extract -> dedupe -> gl_actuals -> CSV -> 'Anaplan rejects line 3' -> outcomes -> balance."""
    await store.start_run(RunInfo("r1", "acme", flows=("gl_actuals",)))

    def posting(n: int, account: str, amount: str) -> GLPosting:
        return GLPosting(
            company="100",
            division="AAA",
            year=2024,
            journal=f"J{n}",
            line=1,
            account=account,
            cost_center="CC1",
            accounting_date=dt.date(2024, 2, 1),
            period="2024-02",
            currency="EUR",
            amount=Decimal(amount),
        )

    extract = [posting(1, "6000", "10"), posting(2, "6100", "5"), posting(3, "6000", "2.5"), posting(2, "6100", "5")]
    reconciler = Reconciler()
    flow = "gl_actuals"

    async def source() -> AsyncIterator[GLPosting]:
        for record in extract:
            reconciler.add_record(flow, "source", record)
            yield record

    dedupe: Deduplicator[GLPosting] = Deduplicator(
        store,
        run_id="r1",
        connection="acme",
        flow=flow,
        skip_unchanged=False,
        on_skip=lambda record, kind, reason: reconciler.add_record(flow, "skipped", record),
    )
    sent: dict[int, tuple[str, str, Decimal, int]] = {}  # what the failure dump would echo back, by _Line_

    async def rows() -> AsyncIterator[KeyedRow]:
        line = 1
        async for row in GL_ACTUALS.rows(dedupe.filter(source()), directory=tmp_path):
            line += 1
            account, _, period, amount, postings = row.values  # type: ignore[misc]
            reconciler.add(flow, "loaded", account=account, period=period, amount=amount, count=postings)
            sent[line] = (account, period, amount, postings)
            yield row

    chunker = CsvChunker(GL_ACTUALS.csv_columns, compress=True)
    chunks = [c async for c in chunker.chunks(rows())]
    assert sum(c.rows for c in chunks) == 2  # two cells: 6000 and 6100

    rejected_lines = {3}  # the failure dump: _Line_ 3 (account 6100) is not in the list
    for line in rejected_lines:
        account, period, amount, postings = sent[line]
        reconciler.move(flow, "loaded", "rejected", account=account, period=period, amount=amount, count=postings)
    events = []
    async for line, ref in chunker.refs.items():
        status = EventStatus.REJECTED if line in rejected_lines else EventStatus.LOADED
        reason = "Account 6100 not found" if status is EventStatus.REJECTED else None
        events.append(
            RecordEvent("r1", flow, "gl_postings", ref.natural_key, ref.content_hash, status, None, line, reason)
        )
    await store.record(events)

    summary = reconciler.summary()
    assert summary.balanced, summary.problems
    totals = summary.flow(flow)
    assert totals is not None
    assert (
        totals.tallies.source.count,
        totals.tallies.loaded.count,
        totals.tallies.rejected.count,
        totals.tallies.skipped.count,
    ) == (4, 2, 1, 1)
    assert totals.tallies.loaded.amount == Decimal("12.5")
    assert check_against_audit(summary, await store.counts("r1")) == []
    failed = [e async for e in store.failed("r1")]
    assert [(e.natural_key, e.file_row) for e in failed] == [("100/AAA/2024/J2/1", 3)]
