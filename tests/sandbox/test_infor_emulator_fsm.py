"""Infor emulator, FSM tenant: the minimal generic list API over the same dataset (read-only)."""

from __future__ import annotations

import httpx
import infor_emulator_helpers as h
import pytest

from ml_connector.sandbox.dataset import format_cents
from ml_connector.sandbox.infor import RunningInfor

infor = h.infor
http = h.http


@pytest.fixture
async def fsm(infor: RunningInfor, http: httpx.AsyncClient) -> h.Tenant:
    return await h.logged_in(infor, http, "FSM")


async def _list(http: httpx.AsyncClient, t: h.Tenant, bc: str, **params: object) -> httpx.Response:
    url = f"{t.base}/FSM/fsm/soap/classes/{bc}/lists/_generic"
    return await http.get(url, params={"_out": "JSON", **params}, headers=t.auth)


async def test_gl_transaction_detail_offset_paging(infor: RunningInfor, fsm: h.Tenant, http: httpx.AsyncClient) -> None:
    ds = infor.state.dataset
    rows: list[dict[str, str]] = []
    while True:
        page = (await _list(http, fsm, "GLTransactionDetail", _fields="_all", _limit=150, _start=len(rows))).json()
        rows.extend(page)
        if len(page) < 150:
            break
    expected = [p for plant in ds.plants for s in ds.site_segments(plant.code) for p in ds.postings(s)]
    assert len(rows) == len(expected) == ds.gl_count
    assert len({r["GLTransactionDetail"] for r in rows}) == len(rows)
    assert [(r["AccountingEntity"], r["GeneralLedgerChartAccount"], r["TransactionAmount"]) for r in rows] == [
        (p.division, p.account, format_cents(p.amount)) for p in expected
    ]
    first = rows[0]
    assert set(first) == {"GLTransactionDetail", "AccountingEntity", "GeneralLedgerChartAccount", "AccountingUnit",
                          "PostingDate", "TransactionAmount", "Currency", "Description", "LastModified"}  # fmt: skip
    assert first["PostingDate"] == "2024-01-01"
    assert first["LastModified"].isdigit()


async def test_fields_limit_and_master_classes(infor: RunningInfor, fsm: h.Tenant, http: httpx.AsyncClient) -> None:
    vendors = (await _list(http, fsm, "Vendor", _fields="Vendor,VendorName", _limit=5)).json()
    assert vendors == [{"Vendor": s.id, "VendorName": s.name} for s in infor.state.dataset.suppliers[:5]]
    default = (await _list(http, fsm, "GeneralLedgerChartAccount")).json()
    assert len(default) == 100
    assert {"GeneralLedgerChartAccount", "Description", "AccountType"} <= set(default[0])
    units = (await _list(http, fsm, "AccountingUnit", _limit=1000)).json()
    assert len(units) == 45
    assert units[0]["AccountingEntity"] == "P10"
    invoices = (await _list(http, fsm, "PayablesInvoice", _limit=3)).json()
    assert {"Vendor", "Invoice", "InvoiceDate", "DistributionDate", "DueDate", "InvoiceAmount", "Currency",
            "GeneralLedgerChartAccount", "AccountingUnit", "LastModified"} <= set(invoices[0])  # fmt: skip


async def test_fts_incremental_after_a_late_change(infor: RunningInfor, fsm: h.Tenant, http: httpx.AsyncClient) -> None:
    everything = (await _list(http, fsm, "GLTransactionDetail", _limit=0, _fields="LastModified")).json()
    watermark = max(int(r["LastModified"]) for r in everything) + 1
    assert (await _list(http, fsm, "GLTransactionDetail", _fts=watermark)).json() == []
    await h.mutate(http, infor, "update_posting", division="P30", year=2025, journal=2, line=1, amount="77.70")
    changed = (await _list(http, fsm, "GLTransactionDetail", _fts=watermark)).json()
    assert [(r["AccountingEntity"], r["TransactionAmount"]) for r in changed] == [("P30", "77.70")]
    overlap = (await _list(http, fsm, "GLTransactionDetail", _fts=watermark - 86_400_000, _limit=0)).json()
    assert changed[0] in overlap


@pytest.mark.parametrize(
    ("bc", "params", "status"),
    [
        ("NoSuchClass", {}, 404),
        ("Vendor", {"_fields": "Vendor,Colour"}, 400),
        ("Vendor", {"_limit": "-1"}, 400),
        ("Vendor", {"_out": "XML"}, 400),
    ],
)
async def test_bad_requests(
    fsm: h.Tenant, http: httpx.AsyncClient, bc: str, params: dict[str, str], status: int
) -> None:
    r = await _list(http, fsm, bc, **params)
    assert r.status_code == status
    assert r.json()["error"]
