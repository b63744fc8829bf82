"""The SyteLine adapter against the emulated CSI tenant over real HTTP: every entity, bookmark paging, increments."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_infor_client_support import READ_ENTITIES, emulator, open_syteline, projected, read_all

from ml_connector.infor import MongooseError
from ml_connector.records import Entity
from ml_connector.sandbox.infor import RunningInfor


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with emulator(products=("SyteLine",)) as running:
        yield running


@pytest.mark.parametrize("entity", READ_ENTITIES)
async def test_every_entity_is_read_completely_and_faithfully(infor: RunningInfor, entity: Entity) -> None:
    expected = list(infor.state.dataset.records(entity))
    async with open_syteline(infor) as sl:
        records, errors = await read_all(sl, entity)
    assert errors == []
    assert len(records) == len(expected)
    assert len({r.natural_key for r in records}) == len(records)
    assert projected(entity, records) == projected(entity, expected)


async def test_bookmark_paging_runs_many_pages_per_site(infor: RunningInfor) -> None:
    before = infor.state.stats["requests.SyteLine"]
    async with open_syteline(infor, page_size=10) as sl:
        records, _ = await read_all(sl, "gl_postings")
    pages = infor.state.stats["requests.SyteLine"] - before
    assert len(records) == infor.state.dataset.gl_count
    assert pages >= len(records) // 10


async def test_master_data_from_one_site_only(infor: RunningInfor) -> None:
    before = infor.state.stats["requests.SyteLine"]
    async with open_syteline(infor, master_data_site="P20", page_size=1000) as sl:
        records, _ = await read_all(sl, "suppliers")
    assert len(records) == len(infor.state.dataset.suppliers)
    assert infor.state.stats["requests.SyteLine"] - before == 1


async def test_incremental_reads_pick_up_late_changes(infor: RunningInfor) -> None:
    data = infor.state.data
    watermark = infor.state.dataset.max_stamp
    async with open_syteline(infor) as sl:
        for entity in ("gl_postings", "supplier_invoices", "payments", "suppliers"):
            records, _ = await read_all(sl, entity, changed_since=watermark)
            assert records == [], entity
        data.update_posting("P20", 2024, 4, 2, amount="-77.10")
        invoice = data.add_invoice("P10", "2026-05-04", "S00007", "6700", "CC1010", "1500.00", number="LATE-SL-1")
        data.update_item("ITM00004", description="Renamed item PP-999")

        postings, _ = await read_all(sl, "gl_postings", changed_since=watermark)
        assert sorted((p.division, p.account, str(p.amount)) for p in postings) == sorted([  # type: ignore[attr-defined]
            ("P20", data.posting(infor.state.dataset.segment("P20", 2024), 4, 2).account, "-77.10"),
            ("P10", "6700", "1500.00"), ("P10", "2100", "-1500.00"),
        ])  # fmt: skip
        invoices, _ = await read_all(sl, "supplier_invoices", changed_since=watermark)
        assert [(i.invoice_number, str(i.amount)) for i in invoices] == [(invoice.number, "1500.00")]  # type: ignore[attr-defined]
        items, _ = await read_all(sl, "items", changed_since=watermark)
        assert [(i.item_id, i.description) for i in items] == [("ITM00004", "Renamed item PP-999")]  # type: ignore[attr-defined]


async def test_unknown_mongoose_configuration_is_a_clear_error(infor: RunningInfor) -> None:
    async with open_syteline(infor, sites={"P99": "NORTHWIND_CSI_TST_P99"}) as sl:
        with pytest.raises(MongooseError, match="NORTHWIND_CSI_TST_P99") as info:
            await read_all(sl, "gl_postings")
    assert info.value.ido == "SLLedgers"
