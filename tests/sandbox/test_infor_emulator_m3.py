"""Infor emulator, M3 tenant: m3api-rest v2 programs, options, EXPORTMI batching, late changes, BUS100MI."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import infor_emulator_helpers as h
import pytest

from ml_connector.sandbox.dataset import format_cents
from ml_connector.sandbox.infor import RunningInfor

infor = h.infor
http = h.http


@pytest.fixture
async def m3(infor: RunningInfor, http: httpx.AsyncClient) -> h.M3:
    return h.M3(await h.logged_in(infor, http, "M3"), http)


# ------------------------------------------------------------------------------------------- master data


async def test_suppliers_every_one_with_contract_fields(infor: RunningInfor, m3: h.M3) -> None:
    records = await m3.records("CRS620MI/LstSuppliers", maxrecs=0)
    ds = infor.state.dataset
    assert [r["SUNO"] for r in records] == [s.id for s in ds.suppliers]
    first = records[0]
    assert set(first) >= {"CONO", "SUNO", "SUNM", "CSCD", "CUCD", "STAT", "LMTS"}
    assert first["CONO"] == "100"
    assert first["SUNM"] == ds.suppliers[0].name
    assert first["LMTS"] == str(int(ds.suppliers[0].changed.timestamp() * 1000))
    assert all(isinstance(v, str) for r in records for v in r.values())
    ranged = await m3.records("CRS620MI/LstSuppliers", FRSU="S00005", TOSU="S00007")
    assert [r["SUNO"] for r in ranged] == ["S00005", "S00006", "S00007"]
    by_number = await m3.records("CRS620MI/LstByNumber", SUNO="S00039")
    assert [r["SUNO"] for r in by_number] == ["S00039", "S00040"]
    basic = await m3.records("CRS620MI/GetBasicData", SUNO="S00002")
    assert basic[0]["SUNM"] == ds.suppliers[1].name


async def test_get_basic_data_of_a_missing_supplier_is_http_400(m3: h.M3) -> None:
    r = await m3.raw("CRS620MI/GetBasicData", SUNO="S99999")
    assert r.status_code == 400
    assert r.json() == {"errorMessage": "Supplier number S99999 does not exist", "errorCode": "WSU0203",
                        "errorField": "SUNO", "errorType": "ServerReturnedNOK"}  # fmt: skip
    r = await m3.raw("CRS620MI/GetBasicData")
    assert r.status_code == 400
    assert r.json()["errorField"] == "SUNO"


async def test_chart_of_accounts_and_cost_centers(infor: RunningInfor, m3: h.M3) -> None:
    accounts = await m3.records("CRS630MI/LstAccountID", AITP="1", maxrecs=0)
    ds = infor.state.dataset
    assert len(accounts) == len(ds.accounts) >= 120
    types = {r["AITM"]: r["TX15"] for r in accounts}
    assert types["4000"] == "Revenue"
    assert types["5110"] == "COGS"
    assert types["6000"] == "Expense"
    assert types["2100"] == "Liability"
    assert set(types.values()) == {"Revenue", "COGS", "Expense", "Asset", "Liability", "Equity"}
    assert all(len(code) == 4 for code in types)
    centers = await m3.records("CRS630MI/LstAccountID", AITP="2", maxrecs=0)
    assert len(centers) == 45
    assert {r["DIVI"] for r in centers} == {"P10", "P20", "P30"}
    p20 = await m3.records("CRS630MI/LstAccountID", AITP="2", DIVI="P20", maxrecs=0)
    assert [r["AITM"] for r in p20] == [f"CC2{n:03d}" for n in range(10, 160, 10)]
    assert await m3.records("CRS630MI/LstAccountID", AITP="3") == []
    r = await m3.raw("CRS630MI/LstAccountID", AITP="9")
    assert r.status_code == 400
    assert r.json()["errorField"] == "AITP"


async def test_customers_items_and_incremental_by_change(
    infor: RunningInfor, m3: h.M3, http: httpx.AsyncClient
) -> None:
    ds = infor.state.dataset
    customers = await m3.records("CRS610MI/LstByNumber", maxrecs=0)
    assert [r["CUNO"] for r in customers] == [c.id for c in ds.customers]
    assert set(customers[0]) >= {"CONO", "CUNO", "CUNM", "CSCD", "CUCD", "STAT", "LMTS"}
    items = await m3.records("MMS200MI/LstItmByChgDate", maxrecs=0)
    assert len(items) == len(ds.items)
    assert set(items[0]) >= {"ITNO", "ITDS", "ITTY", "STAT", "LMDT"}
    some = sorted(r["LMDT"] for r in items)[len(items) // 2]
    later = await m3.records("MMS200MI/LstItmByChgDate", FLMD=some, maxrecs=0)
    assert later
    assert all(r["LMDT"] >= some for r in later)
    assert len(later) < len(items)
    # late change: only the changed customer comes back for LMTS >= the watermark
    watermark = max(int(r["LMTS"]) for r in customers) + 1
    assert await m3.records("CRS610MI/LstByNumber", LMTS=str(watermark)) == []
    changed = await h.mutate(http, infor, "update_customer", customer="C00007", name="Renamed Customer")
    assert changed["name"] == "Renamed Customer"
    fresh = await m3.records("CRS610MI/LstByNumber", LMTS=str(watermark))
    assert [(r["CUNO"], r["CUNM"]) for r in fresh] == [("C00007", "Renamed Customer")]
    await h.mutate(http, infor, "update_item", item="ITM00003", status="inactive")
    flmd = infor.state.data.last_stamp.strftime("%Y%m%d")
    items_after = await m3.records("MMS200MI/LstItmByChgDate", FLMD=flmd)
    assert [(r["ITNO"], r["STAT"]) for r in items_after] == [("ITM00003", "90")]


async def test_purchase_order_lines_by_mi_and_by_exportmi(infor: RunningInfor, m3: h.M3) -> None:
    ds = infor.state.dataset
    seg = ds.segment("P20", 2025)
    expected = ds.po_lines_of_block(seg, 3)
    puno = expected[0].po_number
    lines = await m3.records("PPS200MI/LstLine", PUNO=puno)
    assert [(r["PUNO"], r["PNLI"]) for r in lines] == [(p.po_number, str(p.line)) for p in expected]
    assert set(lines[0]) >= {"PUNO", "PNLI", "ITNO", "SUNO", "PUPR", "ORQA", "LNAM", "CUCD", "PUDT", "PUSL", "LMDT"}
    assert lines[0]["LNAM"] == format_cents(expected[0].amount)
    assert lines[0]["CUCD"] == "MXN"
    rows = await m3.select(f"IBPUNO, IBPNLI, IBLNAM, IBSUNO from MPLINE where IBPUNO = '{puno}'")
    assert rows == [[p.po_number, str(p.line), format_cents(p.amount), p.supplier] for p in expected]
    # the PO-backed invoice of that block carries the PO total
    invoice = ds.invoice(seg, 3 * 8 + 1)
    assert invoice.po_number == puno
    assert invoice.amount == sum(p.amount for p in expected)
    everything = await m3.select("* from MPLINE")
    assert len(everything) == sum(1 for _ in ds.iter_po_lines())
    assert [r[2] for r in everything] == sorted(r[2] for r in everything)  # key order (PUNO, PNLI)
    r = await m3.raw("PPS200MI/LstLine", PUNO="P999999999")
    assert r.status_code == 400


async def test_gl_vouchers_by_date(infor: RunningInfor, m3: h.M3) -> None:
    records = await m3.records("GLS200MI/LstVouchersByDt", FRDT="20250301", TODT="20250310", DIVI="P10", maxrecs=0)
    expected = [p for p in infor.state.dataset.postings(infor.state.dataset.segment("P10", 2025))
                if dt.date(2025, 3, 1) <= p.date <= dt.date(2025, 3, 10)]  # fmt: skip
    assert [(r["JRNO"], r["JSNO"]) for r in records] == [(str(p.journal), str(p.line)) for p in expected]
    assert records[0]["AIT1"] == expected[0].account
    assert records[0]["ACAM"] == format_cents(expected[0].amount)
    r = await m3.raw("GLS200MI/LstVouchersByDt", FRDT="20250310", TODT="20250301")
    assert r.status_code == 400


# ------------------------------------------------------------------------------------------- options


async def test_options_as_matrix_or_query_any_case(m3: h.M3) -> None:
    assert len(await m3.records("CRS620MI/LstSuppliers")) == 40  # < default 100
    assert len(await m3.records("CRS630MI/LstAccountID", AITP="1")) == 100  # default maxrecs
    assert len(await m3.records("CRS630MI/LstAccountID;maxrecs=0", AITP="1")) > 100
    assert len(await m3.records("CRS620MI/LstSuppliers;MaxRecs=3")) == 3
    assert len(await m3.records("CRS620MI/LstSuppliers", maxrecs=4)) == 4
    assert len(await m3.records("CRS620MI/LstSuppliers", MAXRECS=5)) == 5
    projected = await m3.records("CRS620MI/LstSuppliers;returncols=SUNO,SUNM;maxrecs=2")
    assert [list(r) for r in projected] == [["SUNO", "SUNM"], ["SUNO", "SUNM"]]
    projected = await m3.records("CRS620MI/LstSuppliers", returnCols="CUCD", maxrecs=1)
    assert list(projected[0]) == ["CUCD"]
    lean = await m3.records("CRS630MI/LstAccountID;excludempty=true;maxrecs=1", AITP="1")
    assert "DIVI" not in lean[0]
    full = await m3.records("CRS630MI/LstAccountID;excludempty=false;maxrecs=1", AITP="1")
    assert full[0]["DIVI"] == ""
    assert len(await m3.records("CRS620MI/LstSuppliers;cono=100;metadata=false;maxrecs=1", _rid="123")) == 1


async def test_other_company_and_bad_options_are_errors(m3: h.M3) -> None:
    r = await m3.raw("CRS620MI/LstSuppliers;cono=200")
    assert r.status_code == 400
    assert r.json()["errorCode"] == "XAU0008"
    r = await m3.raw("CRS620MI/LstSuppliers", CONO="300")
    assert r.status_code == 400
    r = await m3.raw("CRS620MI/LstSuppliers;maxrecs=lots")
    assert r.status_code == 400
    assert r.json()["errorField"] == "maxrecs"
    r = await m3.raw("CRS620MI/LstSuppliers;divi=P99")
    assert r.status_code == 400


async def test_unknown_program_transaction_and_wrong_verbs(m3: h.M3, http: httpx.AsyncClient) -> None:
    r = await m3.raw("NOPE99MI/LstAll")
    assert r.status_code == 400
    assert r.json()["errorType"] == "ServerReturnedNOK"
    assert "NOPE99MI" in r.json()["errorMessage"]
    r = await m3.raw("CRS620MI/LstEverything")
    assert r.status_code == 400
    assert "LstEverything" in r.json()["errorMessage"]
    r = await http.post(f"{m3.url}/CRS620MI/LstSuppliers", headers=m3.t.auth)
    assert r.status_code == 405
    r = await http.get(m3.url, headers=m3.t.auth)
    assert r.status_code == 405


# ------------------------------------------------------------------------------------------- EXPORTMI


async def test_exportmi_header_separator_padding_and_keywords(infor: RunningInfor, m3: h.M3) -> None:
    records = await m3.records("EXPORTMI/Select;maxrecs=2", QERY="EGDIVI, EGJRNO, EGAIT1 from FGLEDG", SEPC=";",
                               HDRS="1")  # fmt: skip
    assert records[0] == {"REPL": "EGDIVI;EGJRNO;EGAIT1"}
    assert len(records) == 3  # the header row does not count against maxrecs
    first = infor.state.dataset.posting_at(0)
    assert records[1]["REPL"] == f"P10;{first.journal};{first.account}"
    padded = await m3.records("EXPORTMI/Select;maxrecs=1", QERY="EGDIVI, EGAIT1, EGJRNO from FGLEDG")
    assert padded[0]["REPL"] == "P10" + first.account.ljust(8) + str(first.journal).rjust(7)
    upper = await m3.select("EGJRNO FROM FGLEDG WHERE EGDIVI = 'P30' AND EGYEA4 = 2024", maxrecs=3)
    lower = await m3.select("EGJRNO from FGLEDG where EGDIVI = 'P30' and EGYEA4 = 2024", maxrecs=3)
    assert upper == lower == [["1"], ["1"], ["2"]]
    star = await m3.select("* from FGLEDG", maxrecs=1)
    assert len(star[0]) == 21


@pytest.mark.parametrize(
    ("query", "check"),
    [
        ("EGDIVI, EGYEA4 from FGLEDG where EGDIVI <> 'P10' and EGYEA4 >= 2026",
         lambda r: r[0] != "P10" and r[1] == "2026"),
        ("EGDIVI, EGTRCD from FGLEDG where EGTRCD = 40 or EGTRCD = 50", lambda r: r[1] in ("40", "50")),
        ("EGACAM, EGDIVI from FGLEDG where EGACAM > 10000 and EGDIVI = 'P30'", lambda r: float(r[0]) > 10000),
        ("EGACDT from FGLEDG where EGACDT < 20240105", lambda r: r[0] < "20240105"),
        ("EGACDT, EGDIVI from FGLEDG where EGACDT <= 20251231 and EGACDT > 20251220 and EGDIVI = 'P20'",
         lambda r: "20251220" < r[0] <= "20251231"),
        ("EPTRCD, EPAPRV from FPLEDG where EPTRCD = 50", lambda r: r == ["50", "1"]),
    ],
)  # fmt: skip
async def test_exportmi_conditions(infor: RunningInfor, m3: h.M3, query: str, check: Any) -> None:
    rows = await m3.select(query)
    assert rows
    assert all(check(r) for r in rows)


async def test_exportmi_or_matches_a_full_scan(infor: RunningInfor, m3: h.M3) -> None:
    rows = await m3.select("EGDIVI, EGAIT1 from FGLEDG where EGAIT1 = '2100' and EGDIVI = 'P30' or EGAIT1 = '1000'")
    expected = [p for p in infor.state.dataset.iter_postings()
                if (p.account == "2100" and p.division == "P30") or p.account == "1000"]  # fmt: skip
    assert rows == [[p.division, p.account] for p in expected]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("EGNOPE from FGLEDG", "QERY"),
        ("EGDIVI from NOTABLE", "QERY"),
        ("EGDIVI FGLEDG", "QERY"),
        ("EGDIVI from FGLEDG where EGYEA4 = 'abc'", "QERY"),
        ("EGDIVI from FGLEDG where EGDIVI ~ 'P10'", "QERY"),
        ("EGDIVI from FGLEDG where EGDIVI = 'P10' and", "QERY"),
    ],
)
async def test_exportmi_bad_queries_are_400(m3: h.M3, query: str, field: str) -> None:
    r = await m3.raw("EXPORTMI/Select", QERY=query)
    assert r.status_code == 400
    assert r.json()["errorField"] == field
    assert r.json()["errorMessage"].startswith("QERY")


async def test_exportmi_lst_fields(m3: h.M3) -> None:
    fields = await m3.records("EXPORTMI/LstFields", FILE="FPLEDG", maxrecs=0)
    assert [f["FLDN"] for f in fields][:3] == ["EPCONO", "EPDIVI", "EPSUNO"]
    assert {"FLDN", "FLDS", "FLTY", "FLLE", "FLDP"} == set(fields[0])


async def _batched(m3: h.M3, divi: str, year: int, batch: int) -> tuple[list[tuple[int, int]], int]:
    """The client loop of the contract: inclusive cursor on EGJRNO, de-duplicate by key, stop on a short batch."""
    cursor, keys, seen, calls = 0, [], set(), 0
    while True:
        rows = await m3.select(f"EGJRNO, EGJSNO from FGLEDG where EGDIVI = '{divi}' and EGYEA4 = {year} "
                               f"and EGJRNO >= {cursor}", maxrecs=batch)  # fmt: skip
        calls += 1
        for jrno, jsno in rows:
            key = (int(jrno), int(jsno))
            if key not in seen:
                seen.add(key)
                keys.append(key)
        if len(rows) < batch:
            return keys, calls
        last = int(rows[-1][0])
        assert last > cursor, "cursor did not advance"
        cursor = last


async def test_exportmi_batching_over_many_pages(infor: RunningInfor, m3: h.M3) -> None:
    ds = infor.state.dataset
    for divi, year in (("P10", 2025), ("P30", 2026)):
        keys, calls = await _batched(m3, divi, year, batch=25)
        seg = ds.segment(divi, year)
        assert keys == [(p.journal, p.line) for p in ds.postings(seg)]
        assert calls >= 2 * seg.journals // 25


async def test_invoice_joins_its_expense_line_and_payments_point_at_invoices(infor: RunningInfor, m3: h.M3) -> None:
    ap = await m3.select("EPDIVI, EPINYR, EPVONO, EPTRCD, EPSINO, EPSUNO, EPCUAM from FPLEDG where EPDIVI = 'P20'")
    gl = await m3.select("EGDIVI, EGYEA4, EGVONO, EGTRCD, EGAIT1, EGAIT2, EGACAM from FGLEDG "
                         "where EGDIVI = 'P20' and EGTRCD = 40")  # fmt: skip
    expense = {}
    for divi, year, vono, _, ait1, ait2, amount in gl:
        assert (divi, year, vono) not in expense  # exactly one TRCD-40 line per voucher
        expense[(divi, year, vono)] = (ait1, ait2, amount)
    invoices = {r[4]: r for r in ap if r[3] == "40"}
    payments = [r for r in ap if r[3] == "50"]
    assert invoices
    assert payments
    for divi, year, vono, _, _, _, amount in invoices.values():
        ait1, ait2, gl_amount = expense[(divi, year, vono)]
        assert amount == "-" + gl_amount  # a credit on the supplier ledger, a debit on the expense account
        assert infor.state.dataset.account_by_code[ait1].type in ("Expense", "COGS")
        assert ait2.startswith("CC2")
    for _, _, vono, _, sino, suno, amount in payments:
        paid = invoices[sino]
        assert paid[5] == suno
        assert vono != paid[2]  # a payment has its own voucher
        assert "-" + amount == paid[6]  # it clears the invoice
    assert [(int(r[1]), int(r[2]), r[3]) for r in ap] == sorted((int(r[1]), int(r[2]), r[3]) for r in ap)


async def test_incremental_gl_reads_pick_up_late_changes(
    infor: RunningInfor, m3: h.M3, http: httpx.AsyncClient
) -> None:
    everything = await m3.select("EGLMDT from FGLEDG")
    watermark = max(r[0] for r in everything)
    before = await m3.select(f"EGDIVI, EGJRNO from FGLEDG where EGLMDT > {watermark}")
    assert before == []
    ds = infor.state.dataset
    seg = ds.segment("P10", 2025)
    changed = await h.mutate(http, infor, "update_posting", division="P10", year=2025, journal=7, line=1,
                             amount="1234.50")  # fmt: skip
    assert changed["amount"] == "1234.50"
    invoice = await h.mutate(http, infor, "add_invoice", division="P20", date="2026-11-30", supplier="S00003",
                             account="6400", cost_center="CC2030", amount="999.99")  # fmt: skip
    rows = await m3.select(f"EGDIVI, EGYEA4, EGJRNO, EGJSNO, EGACAM, EGTRCD, EGLMDT from FGLEDG "
                           f"where EGLMDT >= {watermark} and EGLMDT > {watermark}")  # fmt: skip
    new_jrno = str(infor.state.dataset.segment("P20", 2026).journals + 1)
    assert [r[:6] for r in rows] == [
        ["P10", "2025", "7", "1", "1234.50", str(int(ds.posting(seg, 7, 1).trcd))],
        ["P20", "2026", new_jrno, "1", "999.99", "40"],
        ["P20", "2026", new_jrno, "2", "-999.99", "41"],
    ]
    assert all(r[6] > watermark for r in rows)
    # an overlap window (older lower bound) scans the ledger and still finds exactly them
    overlap = await m3.select(f"EGJRNO from FGLEDG where EGLMDT >= {watermark}")
    assert len(overlap) >= 3
    ap = await m3.select(f"EPSINO, EPCUAM, EPVONO from FPLEDG where EPLMDT > {watermark}")
    assert ap == [[invoice["number"], "-999.99", new_jrno]]
    # the added journal sits at the end of its segment for cursor batching
    keys, _ = await _batched(m3, "P20", 2026, batch=40)
    assert keys[-2:] == [(int(new_jrno), 1), (int(new_jrno), 2)]


async def test_changing_an_invoice_moves_its_gl_lines_and_its_payment(
    infor: RunningInfor, m3: h.M3, http: httpx.AsyncClient
) -> None:
    ds = infor.state.dataset
    seg = ds.segment("P10", 2024)
    pay_n = next(p.journal for p in ds.payments(seg))
    inv_n = ds.payment(seg, pay_n).invoice_journal
    await h.mutate(http, infor, "update_invoice", division="P10", year=2024, journal=inv_n, amount="500")
    stamp = infor.state.data.last_stamp.strftime("%Y%m%d")
    gl = await m3.select(f"EGJRNO, EGJSNO, EGACAM from FGLEDG where EGLMDT >= {stamp}")
    assert gl == [[str(inv_n), "1", "500.00"], [str(inv_n), "2", "-500.00"],
                  [str(pay_n), "1", "500.00"], [str(pay_n), "2", "-500.00"]]  # fmt: skip
    ap = await m3.select(f"EPVONO, EPTRCD, EPCUAM from FPLEDG where EPLMDT >= {stamp}")
    assert ap == [[str(inv_n), "40", "-500.00"], [str(pay_n), "50", "500.00"]]


async def test_mutations_are_validated(infor: RunningInfor, http: httpx.AsyncClient) -> None:
    for body, fragment in (
        ({"op": "update_posting", "division": "P10", "year": 2030, "journal": 1, "line": 1}, "no ledger segment"),
        ({"op": "update_posting", "division": "P10", "year": 2025, "journal": 1, "line": 3}, "no GL line"),
        ({"op": "add_posting", "division": "P10", "date": "2025-01-01", "account": "9999", "cost_center": "CC1010",
          "amount": "1"}, "unknown GL account"),
        ({"op": "add_posting", "division": "P10", "date": "2025-01-01", "account": "6000", "cost_center": "CC2010",
          "amount": "1"}, "belongs to plant P20"),
        ({"op": "drop_tables"}, "unknown mutation"),
        ({"op": "update_supplier", "supplier": "S00001", "colour": "red"}, "cannot change supplier"),
    ):  # fmt: skip
        r = await http.post(f"{infor.url}/_sandbox/infor/mutate", json=body)
        assert r.status_code == 400
        assert fragment in r.json()["error"]
    assert infor.state.data.version == 0


# ------------------------------------------------------------------------------------------- BUS100MI


def _cell(ait1: str, ait2: str, bupe: str, bcua: str, **more: str) -> dict[str, str]:
    return {"DIVI": "P10", "BUNO": "900", "BVER": "FC1", "AIT1": ait1, "AIT2": ait2, "CUCD": "USD", "BUPE": bupe,
            "BCUA": bcua, **more}  # fmt: skip


async def test_budget_header_lines_and_bulk_errors(infor: RunningInfor, m3: h.M3) -> None:
    header = {"DIVI": "P10", "BUNO": "900", "BVER": "FC1", "TX40": "Anaplan forecast", "BSPR": "202601",
              "CRTP": "1", "NPAM": "12"}  # fmt: skip
    r = await m3.raw("BUS100MI/GetBudgetHeader", DIVI="P10", BUNO="900", BVER="FC1")
    assert r.status_code == 400
    assert await m3.records("BUS100MI/AddBudgetHeader", **header) == []
    again = await m3.raw("BUS100MI/AddBudgetHeader", **header)
    assert again.status_code == 400
    assert again.json()["errorCode"] == "WBU0001"
    got = await m3.records("BUS100MI/GetBudgetHeader", DIVI="P10", BUNO="900", BVER="FC1")
    assert got[0]["TX40"] == "Anaplan forecast"
    body = await m3.bulk("BUS100MI", [
        {"transaction": "AddBudgetLnPer", "record": _cell("6000", "CC1010", "202601", "100.00")},
        {"transaction": "AddBudgetLnPer", "record": _cell("6000", "CC1010", "202601", "100.00")},
        {"transaction": "UpdBudgetLnPer", "record": _cell("6000", "CC1010", "202602", "5")},
        {"transaction": "AddBudgetLnPer", "record": _cell("9999", "CC1010", "202601", "1")},
        {"transaction": "AddBudgetLnPer", "record": _cell("6000", "CC1010", "202613", "1")},
        {"transaction": "NoSuchTrx", "record": {}},
        {"transaction": "LstBudPeriodVal", "record": {"DIVI": "P10", "BUNO": "900", "BVER": "FC1"},
         "selectedColumns": ["AIT1", "AIT2", "BUPE", "BCUA"]},
    ], maxReturnedRecords=0)  # fmt: skip
    assert body["nrOfSuccessfullTransactions"] == 2
    assert body["nrOfFailedTransactions"] == 5
    assert body["wasTerminated"] is False
    results = body["results"]
    assert [r["transaction"] for r in results][:3] == ["AddBudgetLnPer", "AddBudgetLnPer", "UpdBudgetLnPer"]
    assert "errorMessage" not in results[0]
    assert results[1]["errorMessage"] == "Record already exists"
    assert results[1]["errorCode"] == "WBU0001"
    assert results[1]["errorType"] == "ServerReturnedNOK"
    assert results[2]["errorMessage"] == "Record does not exist"
    assert results[3]["errorField"] == "AIT1"
    assert results[4]["errorField"] == "BUPE"
    assert "NoSuchTrx" in results[5]["errorMessage"]
    assert results[6]["records"] == [{"AIT1": "6000", "AIT2": "CC1010", "BUPE": "202601", "BCUA": "100.00"}]


async def test_locked_budgets_refuse_writes(m3: h.M3) -> None:
    seeded = await m3.records("BUS100MI/GetBudgetHeader", DIVI="P10", BUNO="100", BVER="2025")
    assert seeded[0]["TX40"] == "Approved budget 2025"
    assert seeded[0]["BUST"] == "90"
    r = await m3.raw("BUS100MI/UpdBudgetLnPer", **{**_cell("6000", "CC1010", "202501", "1"), "BUNO": "100",
                                                   "BVER": "2025"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["errorCode"] == "WBU0010"
    assert await m3.records("BUS100MI/UnlockBudget", DIVI="P10", BUNO="100", BVER="2025") == []
    lines = await m3.records("BUS100MI/LstBudPeriodVal", DIVI="P10", BUNO="100", BVER="2025", maxrecs=0)
    assert len(lines) == 15 * 8 * 12
    assert {"BUPE", "AIT1", "AIT2", "CUCD", "BCUA"} <= set(lines[0])


async def _upsert(m3: h.M3, target: dict[tuple[str, str, str], str]) -> tuple[int, int]:
    """Idempotent budget write-back (reference 7.1): read, then add missing, update different, skip equal."""
    existing = await m3.records("BUS100MI/LstBudPeriodVal;maxrecs=0", DIVI="P10", BUNO="900", BVER="FC1")
    have = {(r["AIT1"], r["AIT2"], r["BUPE"]): r["BCUA"] for r in existing}
    transactions = []
    for (ait1, ait2, bupe), value in sorted(target.items()):
        if (ait1, ait2, bupe) not in have:
            transactions.append({"transaction": "AddBudgetLnPer", "record": _cell(ait1, ait2, bupe, value)})
        elif have[(ait1, ait2, bupe)] != value:
            transactions.append({"transaction": "UpdBudgetLnPer", "record": _cell(ait1, ait2, bupe, value)})
    if transactions:
        body = await m3.bulk("BUS100MI", transactions)
        assert body["nrOfFailedTransactions"] == 0, body
    adds = sum(t["transaction"] == "AddBudgetLnPer" for t in transactions)
    return adds, len(transactions) - adds


async def test_idempotent_budget_write_back(infor: RunningInfor, m3: h.M3, http: httpx.AsyncClient) -> None:
    await m3.records("BUS100MI/AddBudgetHeader", DIVI="P10", BUNO="900", BVER="FC1", TX40="FC", BSPR="202601",
                     CRTP="1", NPAM="12")  # fmt: skip
    target = {("6000", f"CC1{n:03d}", f"2026{m:02d}"): f"{n * 10 + m}.00" for n in (10, 20, 30) for m in (1, 2, 3)}
    assert await _upsert(m3, target) == (9, 0)
    snapshot = (await http.get(f"{infor.url}/_sandbox/infor/budgets",
                               params={"tenant": m3.t.doc["ti"], "buno": "900"})).json()["rows"]  # fmt: skip
    assert len(snapshot) == 9
    assert await _upsert(m3, target) == (0, 0)  # the second run changes nothing
    target[("6000", "CC1010", "202601")] = "1.50"
    assert await _upsert(m3, target) == (0, 1)
    after = (
        await http.get(
            f"{infor.url}/_sandbox/infor/budgets",
            params={"tenant": m3.t.doc["ti"], "divi": "P10", "buno": "900", "bver": "FC1"},
        )
    ).json()
    cells = {(r["AIT1"], r["AIT2"], r["BUPE"]): r["BCUA"] for r in after["rows"]}
    assert cells == target | {("6000", "CC1010", "202601"): "1.50"}
