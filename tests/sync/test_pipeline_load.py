"""A Load run end to end against both emulators: alignment, every flow, failure-dump mapping, reconciliation,
audit accounting; then reruns (idempotent) and late changes (incremental)."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from sync_helpers import Env, aggregate, current_postings, gl_cells, list_codes, list_items

from ml_connector.audit.store import EventStatus, RunStatus
from ml_connector.commands.demo import UNKNOWN_COST_CENTER, UNKNOWN_SUPPLIER
from ml_connector.records import Record


def totals(records: list[Record]) -> tuple[int, Decimal]:
    return len(records), sum((r.amount for r in records), Decimal(0))  # type: ignore[attr-defined]


async def test_first_load_aligns_loads_everything_and_traces_the_rejections(env: Env) -> None:
    dataset = env.infor.dataset
    before = {name: list_codes(env.model, name) for name in ("GL Accounts", "Cost Centers", "Suppliers")}
    assert {a.code for a in dataset.accounts} - before["GL Accounts"]  # the seed left some out

    result = await env.run()

    assert result.succeeded, result.problems
    # alignment added every member Infor has and Anaplan lacked, before loading
    assert list_codes(env.model, "GL Accounts") >= {a.code for a in dataset.accounts}
    assert list_codes(env.model, "Cost Centers") >= {c.code for c in dataset.cost_centers}
    assert list_codes(env.model, "Suppliers") >= {s.id for s in dataset.suppliers}
    assert result.alignment_added == {
        "gl_accounts": len({a.code for a in dataset.accounts} - before["GL Accounts"]),
        "cost_centers": len({c.code for c in dataset.cost_centers} - before["Cost Centers"]),
        "suppliers": len({s.id for s in dataset.suppliers} - before["Suppliers"]),
    }
    assert result.alignment is not None
    unknown = {d.dimension: d.unknown for d in result.alignment.dimensions}
    assert unknown == {"account": (), "cost_center": (UNKNOWN_COST_CENTER,), "supplier": (UNKNOWN_SUPPLIER,)}

    # GL Actuals holds every cell of the source exactly, except the one on the unknown cost center
    postings = current_postings(env)
    expected = {k: v for k, v in aggregate(postings).items() if k[1] != UNKNOWN_COST_CENTER}
    assert gl_cells(env.model) == expected

    # invoices and payments: one list item per record (Code = natural key)
    invoices = {k for k in list_items(env.model, "Supplier Invoices")}
    source_invoices = [r for r in dataset.records("supplier_invoices")]
    assert len(invoices) == len(source_invoices) - 1  # the one of the unknown supplier was rejected
    assert not any(UNKNOWN_SUPPLIER in key for key in invoices)
    assert len(list_items(env.model, "Payments")) == len(list(dataset.records("payments")))

    # failure-dump mapping: the rejected rows come back as the records behind them, with the dump's reason
    gl = result.flow("gl_postings")
    assert gl is not None
    broken = [p for p in postings if p.cost_center == UNKNOWN_COST_CENTER]  # type: ignore[attr-defined]
    assert gl.rejected == len(broken) == 1
    assert [r.natural_key for r in gl.rejections] == [broken[0].natural_key]
    assert gl.rejections[0].reason.startswith(f"Item not located in Cost Centers list: {UNKNOWN_COST_CENTER}")
    assert gl.rejections[0].file_row is not None
    assert gl.rejections[0].file_row > 1
    inv = result.flow("supplier_invoices")
    assert inv is not None
    assert inv.rejected == 1
    assert f"Item not located in Suppliers list: {UNKNOWN_SUPPLIER}" in inv.rejections[0].reason
    failed = [e async for e in env.store.failed(result.run_id)]
    assert {(e.flow, e.natural_key) for e in failed} == {
        ("gl_postings", broken[0].natural_key),
        ("supplier_invoices", inv.rejections[0].natural_key),
    }
    assert all(e.reason and e.file_row for e in failed)

    # reconciliation totals equal the source's sums; accounting balances per flow
    summary = result.reconciliation
    assert summary is not None
    assert summary.balanced, summary.problems
    for flow, records in (
        ("gl_postings", postings),
        ("supplier_invoices", [r for r in source_invoices]),
        ("payments", list(dataset.records("payments"))),
    ):
        tallies = summary.flow(flow)
        assert tallies is not None
        count, amount = totals(records)  # (the broken invoice kept its amount: only its supplier changed)
        assert (tallies.tallies.source.count, tallies.tallies.source.amount) == (count, amount), flow
        assert tallies.tallies.loaded.count + tallies.tallies.rejected.count == count
    gl_tally = summary.flow("gl_postings")
    assert gl_tally is not None
    assert gl_tally.tallies.rejected.amount == broken[0].amount  # type: ignore[attr-defined]
    counts = await env.store.counts(result.run_id)
    for flow, c in counts.items():
        assert c.imbalance() is None, flow
    assert counts["gl_postings"].loaded == len(postings) - 1
    run = await env.store.get_run(result.run_id)
    assert run is not None
    assert run.status is RunStatus.SUCCEEDED
    assert result.discovered is not None
    assert "Load GL Actuals" in result.discovered.imports
    assert result.counts().extracted == sum(f.extracted for f in result.flows)


async def test_a_rerun_skips_everything_and_changes_nothing(clean_env: Env) -> None:
    env = clean_env
    first = await env.run()
    cells = gl_cells(env.model)
    invoices = list_items(env.model, "Supplier Invoices")
    members = {name: list_codes(env.model, name) for name in ("GL Accounts", "Cost Centers", "Suppliers")}

    second = await env.run()

    assert second.succeeded
    for flow in ("supplier_invoices", "payments"):
        r = second.flow(flow)
        assert r is not None
        assert (r.loaded, r.rejected, r.rows) == (0, 0, 0), flow
        assert r.extracted == r.skipped > 0, flow  # read again within the overlap window, skipped by content hash
    gl = second.flow("gl_postings")
    assert gl is not None
    assert (gl.extracted, gl.loaded, gl.rows) == (0, 0, 0)
    assert not second.alignment_added
    assert gl_cells(env.model) == cells  # nothing doubled, nothing lost
    assert list_items(env.model, "Supplier Invoices") == invoices
    assert {name: list_codes(env.model, name) for name in members} == members
    counts = await env.store.counts(second.run_id)
    assert all(c.imbalance() is None for c in counts.values())
    assert all(c.loaded == 0 for c in counts.values())
    assert first.run_id != second.run_id


async def test_late_changes_reload_only_what_changed_and_totals_stay_right(env: Env) -> None:
    await env.run()
    data = env.infor.data
    changed = data.update_posting("P20", 2025, 5, 1, amount="777.77")
    added = data.add_posting("P30", "2026-03-15", "6100", "CC3030", "999.99", text="Late travel accrual")
    invoice = data.add_invoice("P10", "2026-02-10", "S00003", "6400", "CC1030", "4321.00", number="LATE-1")

    result = await env.run()

    assert result.succeeded, result.problems
    periods = {changed.date.strftime("%Y-%m"), "2026-03", "2026-02"}
    gl = result.flow("gl_postings")
    assert gl is not None
    assert set(gl.periods) == periods  # only the periods holding a changed posting were reloaded, whole
    postings = current_postings(env)
    in_periods = [p for p in postings if p.period in periods]  # type: ignore[attr-defined]
    assert gl.extracted == len(in_periods)
    assert gl_cells(env.model) == {k: v for k, v in aggregate(postings).items() if k[1] != "CC1999"}
    cell = gl_cells(env.model)[("6100", "CC3030", "2026-03")]
    assert Decimal("999.99") <= cell[0] or cell[1] >= 1
    inv = result.flow("supplier_invoices")
    assert inv is not None
    assert inv.loaded == 1  # just the new one; the rest is skipped as unchanged
    assert any(k.endswith("/LATE-1") for k in list_items(env.model, "Supplier Invoices"))
    assert invoice.number == "LATE-1"
    assert added[0].amount == 99999
    summary = result.reconciliation
    assert summary is not None
    assert summary.balanced
    gl_tally = summary.flow("gl_postings")
    assert gl_tally is not None
    assert gl_tally.tallies.source.count == len(in_periods)
    assert gl_tally.tallies.source.amount == sum((p.amount for p in in_periods), Decimal(0))  # type: ignore[attr-defined]
    # the watermark follows the source's change stamps (the late changes are stamped after the dataset)
    mark = await env.store.get_watermark(result.connection, "gl_postings")
    assert mark is not None
    assert mark.value.date() >= env.infor.dataset.max_stamp.date()


async def test_audit_accounting_balances_and_answers_what_happened_to_a_record(env: Env) -> None:
    result = await env.run()
    counts = await env.store.counts(result.run_id)
    assert set(counts) >= {"gl_postings", "supplier_invoices", "payments"}
    for c in counts.values():
        assert c.extracted + c.replayed == c.loaded + c.rejected + c.skipped
    history = await env.store.history("INV1250000002", suffix=True)
    statuses = Counter(e.status for e in history)
    assert statuses[EventStatus.EXTRACTED] == 1
    assert statuses[EventStatus.REJECTED] == 1
    extracted = next(e for e in history if e.status is EventStatus.EXTRACTED)
    assert extracted.payload is not None
    assert extracted.payload["supplier_id"] == UNKNOWN_SUPPLIER


async def test_rejected_records_within_the_overlap_are_sent_again_and_rejected_again(env: Env) -> None:
    await env.run()
    cells = gl_cells(env.model)
    second = await env.run()
    inv = second.flow("supplier_invoices")
    gl = second.flow("gl_postings")
    assert inv is not None
    assert gl is not None
    assert (inv.loaded, inv.rejected) == (0, 1)  # never loaded, so not "unchanged": tried again, still unknown
    broken = next(p for p in current_postings(env) if p.cost_center == UNKNOWN_COST_CENTER)  # type: ignore[attr-defined]
    assert gl.rejected == 1
    assert gl.periods == (broken.period,)  # type: ignore[attr-defined] # its period is reloaded whole, cells unchanged
    assert gl_cells(env.model) == cells
