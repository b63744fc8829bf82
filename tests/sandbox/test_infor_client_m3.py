"""The M3 adapter against the emulated M3 tenant over real HTTP: every entity, paging, incremental reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from test_infor_client_support import (
    READ_ENTITIES,
    emulator,
    open_m3,
    projected,
    read_all,
)

from ml_connector.infor import ExtractionError
from ml_connector.records import Entity
from ml_connector.sandbox.infor import RunningInfor


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with emulator(products=("M3",)) as running:
        yield running


@pytest.mark.parametrize("entity", READ_ENTITIES)
async def test_every_entity_is_read_completely_and_faithfully(infor: RunningInfor, entity: Entity) -> None:
    expected = list(infor.state.dataset.records(entity))
    async with open_m3(infor) as m3:
        records, errors = await read_all(m3, entity)
    assert errors == []
    assert len(records) == len(expected)
    assert len({r.natural_key for r in records}) == len(records)  # no duplicates across batches/pages
    assert projected(entity, records) == projected(entity, expected)
    if entity not in ("items", "cost_centers", "gl_accounts"):
        assert {r.natural_key for r in records} == {r.natural_key for r in expected}


async def test_gl_postings_cross_many_batches_per_partition(infor: RunningInfor) -> None:
    before = infor.state.stats["requests.M3"]
    async with open_m3(infor, export_batch_size=25) as m3:
        records, _ = await read_all(m3, "gl_postings")
    requests = infor.state.stats["requests.M3"] - before
    assert len(records) == infor.state.dataset.gl_count
    assert requests >= len(records) // 25  # one EXPORTMI call per batch of 25 at least


async def test_a_journal_larger_than_the_batch_is_drained_with_the_line_cursor(infor: RunningInfor) -> None:
    # Batches of 2 rows: every batch holds exactly one 2-line journal, so the inclusive journal cursor
    # alone never advances; the reader drains each journal on EGJSNO and steps past it.
    expected = [r for r in infor.state.dataset.records("gl_postings") if r.division == "P30" and r.year == 2024]  # type: ignore[attr-defined]
    async with open_m3(infor, export_batch_size=2, divisions=("P30",), years=(2024,)) as m3:
        records, errors = await read_all(m3, "gl_postings")
    assert errors == []
    assert [r.natural_key for r in records] == [r.natural_key for r in expected]


async def test_divisions_and_years_are_discovered_when_not_configured(infor: RunningInfor) -> None:
    async with open_m3(infor) as m3:
        assert await m3.divisions() == ["P10", "P20", "P30"]  # type: ignore[attr-defined]


async def test_a_server_ignoring_the_cursor_fails_loudly(infor: RunningInfor) -> None:
    # Simulated with a WHERE clause that matches nothing the reader expects: an unknown division yields
    # no rows (fine), but a paging call whose answer does not advance must raise, never loop.
    from ml_connector.infor.m3api import M3Api
    from ml_connector.infor.m3export import Exporter, ExportSpec

    class Stuck(M3Api):
        async def select(self, fields, table, where, *, maxrecs):  # type: ignore[no-untyped-def,override]
            return [["1", "1"], ["1", "2"]]  # always the same full batch

    async with open_m3(infor) as m3:
        exporter = Exporter(Stuck(m3.client))  # type: ignore[attr-defined]
        spec = ExportSpec("FGLEDG", ("EGJRNO", "EGJSNO"), "EGJRNO", "EGJSNO", frozenset({"EGJRNO", "EGJSNO"}))
        with pytest.raises(ExtractionError, match="did not advance"):
            async for _ in exporter.batches(spec, ["EGDIVI = 'P10'"], 2):
                pass


async def test_incremental_reads_pick_up_late_changes(infor: RunningInfor) -> None:
    data = infor.state.data
    watermark = infor.state.dataset.max_stamp  # every base record changed at or before it
    async with open_m3(infor) as m3:
        for entity in ("gl_postings", "supplier_invoices", "suppliers", "purchase_orders"):
            records, _ = await read_all(m3, entity, changed_since=watermark)
            assert records == [], entity
        changed = data.update_posting("P10", 2025, 9, 1, amount="123.45")
        added = data.add_posting("P20", "2026-03-15", "6100", "CC2100", "999.99", text="Late travel accrual")
        invoice = data.add_invoice("P30", "2026-02-10", "S00003", "6400", "CC3030", "4321.00", number="LATE-1")
        data.update_supplier("S00005", name="Renamed Supplier GmbH")
        data.update_po_line("P124000002", 1, quantity=7)

        postings, _ = await read_all(m3, "gl_postings", changed_since=watermark)
        keyed = {(p.division, p.year, p.journal, p.line): p for p in postings}  # type: ignore[attr-defined]
        assert changed.amount == 12345
        assert str(keyed[("P10", 2025, "9", 1)].amount) == "123.45"
        assert {(p.division, p.account, str(p.amount)) for p in postings} >= {
            ("P20", "6100", "999.99"), ("P20", "2200", "-999.99"), ("P30", "6400", "4321.00")}  # fmt: skip
        assert len(postings) == 1 + len(added) + 2

        invoices, _ = await read_all(m3, "supplier_invoices", changed_since=watermark)
        assert [(i.invoice_number, i.account, i.cost_center, str(i.amount)) for i in invoices] == [  # type: ignore[attr-defined]
            (invoice.number, "6400", "CC3030", "4321.00")
        ]
        suppliers, _ = await read_all(m3, "suppliers", changed_since=watermark)
        assert [(s.supplier_id, s.name) for s in suppliers] == [("S00005", "Renamed Supplier GmbH")]  # type: ignore[attr-defined]
        lines, _ = await read_all(m3, "purchase_orders", changed_since=watermark)
        assert [(p.po_number, p.line, p.quantity) for p in lines] == [("P124000002", 1, 7)]  # type: ignore[attr-defined]
        # the change timestamps are the late ones
        assert all(p.changed_at >= dt.datetime.combine(watermark.date(), dt.time(), dt.UTC) for p in postings)


async def test_incremental_read_through_the_admin_mutation_api(infor: RunningInfor) -> None:
    import httpx

    watermark = infor.state.dataset.max_stamp
    async with httpx.AsyncClient(base_url=infor.url) as admin:
        response = await admin.post("/_sandbox/infor/mutate", json={"op": "update_customer", "customer": "C00002",
                                                                    "name": "Late Rename Utilities"})  # fmt: skip
        assert response.status_code == 200, response.text
    async with open_m3(infor) as m3:
        customers, _ = await read_all(m3, "customers", changed_since=watermark)
    assert [(c.customer_id, c.name) for c in customers] == [("C00002", "Late Rename Utilities")]  # type: ignore[attr-defined]
