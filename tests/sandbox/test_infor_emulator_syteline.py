"""Infor emulator, SyteLine (CSI) tenant: IDO load/update/info, filters, bookmarks, late changes, SLChartBps."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import infor_emulator_helpers as h
import pytest

from ml_connector.sandbox.infor import RunningInfor

infor = h.infor
http = h.http

ITEM_ID = re.compile(r"^PBT=\[(\w+)\] (\w+)\.DT=\[(\d{8} \d\d:\d\d:\d\d\.\d{3})\] \2\.ID=\[[0-9a-f-]{36}\]$")
CONTRACT: dict[str, set[str]] = {
    "SLVendors": {"VendNum", "Name", "CurrCode", "Country", "Stat", "RecordDate"},
    "SLAptrxps": {"Site", "VendNum", "Voucher", "InvNum", "InvDate", "DistDate", "DueDate", "Acct", "AcctUnit1",
                  "CurrCode", "InvAmt", "Type", "RecordDate"},
    "SLAppmts": {"Site", "VendNum", "CheckNum", "CheckSeq", "CheckDate", "Voucher", "InvNum", "CurrCode",
                 "DomCheckAmt", "RecordDate"},
    "SLPoItems": {"Site", "PoNum", "PoLine", "VendNum", "Item", "OrderDate", "QtyOrdered", "UnitCost", "CurrCode",
                  "Stat", "RecordDate"},
    "SLCharts": {"Acct", "Description", "Type", "RecordDate"},
    "SLUnitcd1s": {"UnitCode1", "Description", "RecordDate"},
    "SLLedgers": {"Site", "TransNum", "Acct", "AcctUnit1", "TransDate", "DomAmount", "CurrCode", "Ref", "RecordDate"},
    "SLCustomers": {"CustNum", "Name", "CurrCode", "Country", "Stat", "RecordDate"},
    "SLItems": {"Item", "Description", "ProductCode", "Stat", "RecordDate"},
    "SLChartBps": {"Acct", "AcctUnit1", "FiscalYear", *(f"BudAmt{i}" for i in range(1, 13)),
                   *(f"PlanAmt{i}" for i in range(1, 13)), "RecordDate"},
}  # fmt: skip


@pytest.fixture
async def csi(infor: RunningInfor, http: httpx.AsyncClient) -> h.Tenant:
    return await h.logged_in(infor, http, "SyteLine")


@pytest.fixture
def p30(csi: h.Tenant, http: httpx.AsyncClient) -> h.IDO:
    return h.IDO(csi, http, "P30")


def _expected_count(infor: RunningInfor, ido: str, site: str) -> int:
    ds = infor.state.dataset
    segs = ds.site_segments(site)
    counts = {
        "SLLedgers": sum(2 * s.journals for s in segs),
        "SLAptrxps": sum(1 for s in segs for _ in ds.invoices(s)),
        "SLAppmts": sum(1 for s in segs for _ in ds.payments(s)),
        "SLPoItems": sum(1 for s in segs for _ in ds.po_lines(s)),
        "SLVendors": len(ds.suppliers),
        "SLCustomers": len(ds.customers),
        "SLItems": len(ds.items),
        "SLCharts": len(ds.accounts),
        "SLUnitcd1s": 15,
        "SLChartBps": 15 * 8 * 3,
    }
    return counts[ido]


@pytest.mark.parametrize("ido", sorted(CONTRACT))
async def test_every_ido_reads_completely_with_contract_properties(infor: RunningInfor, p30: h.IDO, ido: str) -> None:
    rows, pages = await p30.load_all(ido, recordcap=0)
    assert pages == 1
    assert len(rows) == _expected_count(infor, ido, "P30")
    assert CONTRACT[ido] <= set(rows[0])
    for row in rows[:50]:
        match = ITEM_ID.match(row["_ItemId"])
        assert match, row["_ItemId"]
        assert match.group(3) == row["RecordDate"]
        assert all(v is None or isinstance(v, str) for v in row.values())
    if "Site" in CONTRACT[ido]:
        assert {r["Site"] for r in rows} == {"P30"}
    assert len({r["_ItemId"] for r in rows}) == len(rows)


async def test_value_formats(infor: RunningInfor, p30: h.IDO) -> None:
    body = await p30.load("SLLedgers", recordcap=2)
    first = body["Items"][0]
    posting = infor.state.dataset.posting(infor.state.dataset.segment("P30", 2024), 1, 1)
    assert first["TransNum"] == "1"
    assert first["DomAmount"] == f"{Decimal(posting.amount) / 100:.8f}"
    assert re.fullmatch(r"\d+\.\d{8}", first["DomAmount"].lstrip("-"))
    assert first["TransDate"] == posting.date.strftime("%Y%m%d") + " 00:00:00.000"
    assert first["CurrCode"] == "EUR"
    assert first["Acct"] == posting.account
    assert first["AcctUnit1"] == posting.cost_center
    assert body["MoreRowsExist"] is True
    assert body["Success"] is True
    assert body["Message"] is None
    assert body["Bookmark"].startswith("<B><P><p>TransNum</p></P>")


async def test_recordcap_defaults_and_limits(p30: h.IDO) -> None:
    assert len((await p30.load("SLLedgers"))["Items"]) == 200
    assert len((await p30.load("SLLedgers", recordcap=-1))["Items"]) == 200
    assert len((await p30.load("SLLedgers", recordCap=7))["Items"]) == 7
    assert len((await p30.load("SLLedgers", recordcap=0))["Items"]) > 200
    body = await p30.load("SLLedgers", recordcap="many")
    assert body["Success"] is False
    assert "recordcap" in body["Message"]


async def test_bookmark_paging_over_many_pages_is_complete_and_ordered(infor: RunningInfor, p30: h.IDO) -> None:
    rows, pages = await p30.load_all("SLLedgers", recordcap=37, properties="TransNum,Acct,DomAmount")
    total = _expected_count(infor, "SLLedgers", "P30")
    assert [int(r["TransNum"]) for r in rows] == list(range(1, total + 1))
    assert pages == -(-total // 37) + (1 if total % 37 == 0 else 0)
    assert set(rows[0]) == {"TransNum", "Acct", "DomAmount", "_ItemId"}
    ledger = [p for s in infor.state.dataset.site_segments("P30") for p in infor.state.dataset.postings(s)]
    assert [r["Acct"] for r in rows] == [p.account for p in ledger]


async def test_bookmark_paging_with_a_filter(infor: RunningInfor, p30: h.IDO) -> None:
    rows, pages = await p30.load_all("SLAptrxps", recordcap=10, filter="Acct = N'5110' AND InvAmt > 100")
    ds = infor.state.dataset
    expected = [i for s in ds.site_segments("P30") for i in ds.invoices(s) if i.account == "5110" and i.amount > 10000]
    assert [int(r["Voucher"]) for r in rows] == [i.serial for i in expected]
    assert pages >= len(expected) // 10


@pytest.mark.parametrize(
    ("filter_", "check"),
    [
        ("VendNum = N'S00003'", lambda r: r["VendNum"] == "S00003"),
        ("VendNum = 'S00003' OR VendNum = 'S00005'", lambda r: r["VendNum"] in ("S00003", "S00005")),
        ("Name LIKE N'%steel%'", lambda r: "steel" in r["Name"].lower()),
        ("Name NOT LIKE '%Inc.'", lambda r: not r["Name"].endswith("Inc.")),
        ("(Country = N'MX' OR Country = N'DE') AND Stat = 'A'",
         lambda r: r["Country"] in ("MX", "DE") and r["Stat"] == "A"),
        ("CurrCode <> 'USD' and not Country = 'MX'", lambda r: r["CurrCode"] != "USD" and r["Country"] != "MX"),
        ("VendNum IN ('S00001', N'S00002')", lambda r: r["VendNum"] in ("S00001", "S00002")),
        ("country = n'us'", lambda r: r["Country"] == "US"),
        ("RecordDate >= '20230601 00:00:00.000' AND RecordDate < '2023-07-01'",
         lambda r: "20230601" <= r["RecordDate"][:8] < "20230701"),
        ("VendNum > 'S00035'", lambda r: r["VendNum"] > "S00035"),
    ],
)  # fmt: skip
async def test_filters(infor: RunningInfor, p30: h.IDO, filter_: str, check: Any) -> None:
    everything, _ = await p30.load_all("SLVendors", recordcap=0)
    rows, _ = await p30.load_all("SLVendors", recordcap=0, filter=filter_)
    assert rows
    assert [r for r in everything if check(r)] == rows


async def test_numeric_filters_compare_numbers(p30: h.IDO) -> None:
    rows, _ = await p30.load_all("SLLedgers", recordcap=0, filter="TransNum >= 9 AND TransNum <= 11")
    assert [r["TransNum"] for r in rows] == ["9", "10", "11"]
    rows, _ = await p30.load_all("SLLedgers", recordcap=0, filter="DomAmount < -10000.5")
    assert rows
    assert all(Decimal(r["DomAmount"]) < Decimal("-10000.5") for r in rows)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"filter": "Nope = 1"}, "Nope is not a property"),
        ({"filter": "VendNum = "}, "expected a literal"),
        ({"filter": "(VendNum = 'S1'"}, "expected ')'"),
        ({"filter": "TransNum = 'abc'"}, "not a number"),
        ({"properties": "VendNum,Colour"}, "Property 'Colour'"),
        ({"orderby": "Name SIDEWAYS"}, "orderby"),
        ({"loadtype": "NEXT"}, "needs the bookmark"),
        ({"loadtype": "SOMETIMES"}, "loadtype"),
    ],
)
async def test_bad_loads_answer_success_false(p30: h.IDO, params: dict[str, str], fragment: str) -> None:
    ido = "SLLedgers" if "TransNum" in params.get("filter", "") else "SLVendors"
    body = await p30.load(ido, **params)
    assert body["Success"] is False
    assert fragment in body["Message"]
    assert body["Items"] == []


async def test_missing_or_unknown_config_and_unknown_ido(csi: h.Tenant, http: httpx.AsyncClient) -> None:
    url = f"{csi.base}/CSI/IDORequestService/ido/load/SLVendors"
    r = await http.get(url, headers=csi.auth)
    assert r.status_code == 200
    assert r.json()["Success"] is False
    assert "X-Infor-MongooseConfig" in r.json()["Message"]
    assert "NORTHWIND_CSI_TST_P10" in r.json()["Message"]
    r = await http.get(url, headers={**csi.auth, "X-Infor-MongooseConfig": "OTHER_TST_SITE"})
    assert r.json()["Success"] is False
    assert "OTHER_TST_SITE" in r.json()["Message"]
    body = await h.IDO(csi, http).load("SLNothing")
    assert body["Success"] is False
    assert "IDO" in body["Message"]
    assert "not found" in body["Message"]


async def test_missing_privilege(infor: RunningInfor, p30: h.IDO) -> None:
    infor.state.denied_idos.add("SLAptrxps")
    body = await p30.load("SLAptrxps")
    assert body["Success"] is False
    assert body["Message"] == "User requires [Read] privilege for SLAptrxps"
    assert (await p30.load("SLAppmts", recordcap=1))["Success"] is True


async def test_wrong_verbs_are_405(csi: h.Tenant, http: httpx.AsyncClient) -> None:
    ido = h.IDO(csi, http)
    assert (await http.post(f"{ido.url}/load/SLVendors", headers=ido.headers)).status_code == 405
    assert (await http.get(f"{ido.url}/update/SLChartBps", headers=ido.headers)).status_code == 405
    assert (await http.get(f"{ido.url}/invoke/SLChartBps", headers=ido.headers)).status_code == 405
    assert (await http.post(f"{ido.url}/info/SLChartBps", headers=ido.headers)).status_code == 405


async def test_orderby_desc_paging_and_prev_last(p30: h.IDO) -> None:
    everything, _ = await p30.load_all("SLVendors", recordcap=0)
    expected = sorted(everything, key=lambda r: (r["Country"], r["VendNum"]))
    expected = sorted(expected, key=lambda r: r["Country"], reverse=True)  # stable: Country DESC, VendNum ASC
    rows, pages = await p30.load_all("SLVendors", recordcap=6, orderby="Country DESC")
    assert [r["VendNum"] for r in rows] == [r["VendNum"] for r in expected]
    assert pages == 7
    last = await p30.load("SLVendors", recordcap=5, loadtype="LAST")
    assert [r["VendNum"] for r in last["Items"]] == [f"S000{n}" for n in range(36, 41)]
    prev = await p30.load("SLVendors", recordcap=5, loadtype="PREV", bookmark=last["Bookmark"])
    assert [r["VendNum"] for r in prev["Items"]] == [f"S000{n}" for n in range(31, 36)]
    assert prev["MoreRowsExist"] is True


async def test_bookmark_must_match_the_order(p30: h.IDO) -> None:
    first = await p30.load("SLVendors", recordcap=3)
    body = await p30.load("SLVendors", recordcap=3, orderby="Name", loadtype="NEXT", bookmark=first["Bookmark"])
    assert body["Success"] is False
    assert "bookmark" in body["Message"].lower()


async def test_token_expiry_mid_extraction_keeps_the_bookmark_valid(
    infor: RunningInfor, csi: h.Tenant, http: httpx.AsyncClient
) -> None:
    ido = h.IDO(csi, http, "P20")
    params: dict[str, Any] = {"recordcap": 50, "properties": "TransNum"}
    rows: list[str] = []
    reauth = 0
    while True:
        r = await http.get(f"{ido.url}/load/SLLedgers", params=params, headers=ido.headers)
        if r.status_code == 401:
            reauth += 1
            await csi.login(http)
            continue
        body = r.json()
        rows.extend(item["TransNum"] for item in body["Items"])
        if len(rows) == 100:
            infor.state.expire_tokens()
        if not body["MoreRowsExist"]:
            break
        params = {**params, "loadtype": "NEXT", "bookmark": body["Bookmark"]}
    assert reauth == 1
    assert rows == [str(n) for n in range(1, _expected_count(infor, "SLLedgers", "P20") + 1)]


async def test_429_storm_during_paging(infor: RunningInfor, csi: h.Tenant, http: httpx.AsyncClient) -> None:
    infor.state.faults.add(status=429, retry_after=0, path="/ido/load/SLAppmts", skip=1, every=2, times=5)
    ido = h.IDO(csi, http, "P10")
    params: dict[str, Any] = {"recordcap": 20, "properties": "CheckNum"}
    rows: list[str] = []
    throttled = 0
    while True:
        r = await http.get(f"{ido.url}/load/SLAppmts", params=params, headers=ido.headers)
        if r.status_code == 429:
            throttled += 1
            continue
        body = r.json()
        rows.extend(item["CheckNum"] for item in body["Items"])
        if not body["MoreRowsExist"]:
            break
        params = {**params, "loadtype": "NEXT", "bookmark": body["Bookmark"]}
    assert throttled == 5
    assert len(rows) == len(set(rows)) == _expected_count(infor, "SLAppmts", "P10")


async def test_incremental_by_record_date_picks_up_late_changes(
    infor: RunningInfor, csi: h.Tenant, http: httpx.AsyncClient
) -> None:
    ido = h.IDO(csi, http, "P10")
    everything, _ = await ido.load_all("SLLedgers", recordcap=0, properties="TransNum,RecordDate")
    watermark = max(r["RecordDate"] for r in everything)
    assert (await ido.load("SLLedgers", filter=f"RecordDate > '{watermark}'"))["Items"] == []
    await h.mutate(http, infor, "update_posting", division="P10", year=2026, journal=3, line=2, amount="-42.00")
    await h.mutate(http, infor, "update_supplier", supplier="S00011", name="Late Name GmbH")
    invoice = await h.mutate(http, infor, "add_invoice", division="P10", date="20261201", supplier="S00011",
                             account="6720", cost_center="CC1110", amount="1500")  # fmt: skip
    changed, _ = await ido.load_all("SLLedgers", recordcap=0, filter=f"RecordDate > '{watermark}'")
    seg = infor.state.dataset.segment("P10", 2026)
    serial = 2 * (seg.site_offset + 3 - 1) + 2
    total = _expected_count(infor, "SLLedgers", "P10")
    assert [(r["TransNum"], r["DomAmount"]) for r in changed] == [
        (str(serial), "-42.00000000"),
        (str(total + 1), "1500.00000000"),
        (str(total + 2), "-1500.00000000"),
    ]
    assert all(r["RecordDate"] > watermark for r in changed)
    # an overlap window scans the ledger yet returns the same rows; the bookmark loop ends with the additions
    overlap, _ = await ido.load_all("SLLedgers", recordcap=2, filter=f"RecordDate >= '{watermark}' AND Site = 'P10'")
    assert [r["TransNum"] for r in changed] == [r["TransNum"] for r in overlap if r["RecordDate"] > watermark]
    vouchers, _ = await ido.load_all("SLAptrxps", filter=f"RecordDate > '{watermark}'")
    assert [(r["InvNum"], r["InvAmt"], r["Acct"]) for r in vouchers] == [(invoice["number"], "1500.00000000", "6720")]
    vendors, _ = await ido.load_all("SLVendors", filter=f"RecordDate > '{watermark}'")
    assert [(r["VendNum"], r["Name"]) for r in vendors] == [("S00011", "Late Name GmbH")]
    other_site = h.IDO(csi, http, "P20")
    assert (await other_site.load("SLLedgers", filter=f"RecordDate > '{watermark}'"))["Items"] == []


async def test_info_lists_properties(csi: h.Tenant, http: httpx.AsyncClient) -> None:
    ido = h.IDO(csi, http)
    r = await http.get(f"{ido.url}/info/SLChartBps", headers=ido.headers)
    body = r.json()
    assert body["Success"] is True
    names = [p["Name"] for p in body["Properties"]]
    assert names[:3] == ["Acct", "AcctUnit1", "FiscalYear"]
    assert {p["Name"]: p["Type"] for p in body["Properties"]}["BudAmt1"] == "Decimal"
    assert {p["Name"]: p["ReadOnly"] for p in body["Properties"]}["PlanAmt3"] is False
    r = await http.post(f"{ido.url}/invoke/SLChartBps", params={"method": "BudrollSp"}, json=[], headers=ido.headers)
    assert r.json()["Success"] is False


# ------------------------------------------------------------------------------------------- SLChartBps


def _insert(acct: str, unit: str, year: int, **amounts: str) -> dict[str, Any]:
    props = [h.prop("Acct", acct), h.prop("AcctUnit1", unit), h.prop("FiscalYear", year)]
    props += [h.prop(name, value) for name, value in amounts.items()]
    return {"Action": 1, "ItemId": "PBT=[chart_bp]", "Properties": props, "UpdateLocking": 1}


async def test_chart_bps_insert_update_delete_with_optimistic_locking(infor: RunningInfor, csi: h.Tenant,
                                                                     http: httpx.AsyncClient) -> None:  # fmt: skip
    ido = h.IDO(csi, http, "P20")
    body = await ido.update("SLChartBps", [_insert("6720", "CC2110", 2027, BudAmt1="100.5", PlanAmt2="7")])
    assert body["Success"] is True
    assert body["Message"] is None
    row = body["Items"][0]
    assert (row["Acct"], row["FiscalYear"], row["BudAmt1"], row["PlanAmt2"]) == ("6720", "2027", "100.50000000",
                                                                                  "7.00000000")  # fmt: skip
    dup = await ido.update("SLChartBps", [_insert("6720", "CC2110", 2027)])
    assert dup["Success"] is False
    assert "already exists" in dup["Message"]
    change = {"Action": 2, "ItemId": row["_ItemId"], "Properties": [h.prop("BudAmt1", "200")], "UpdateLocking": 1}
    updated = await ido.update("SLChartBps", [change])
    assert updated["Success"] is True
    new_row = updated["Items"][0]
    assert new_row["BudAmt1"] == "200.00000000"
    assert new_row["_ItemId"] != row["_ItemId"]  # DT moved on
    stale = await ido.update("SLChartBps", [change])  # same old ItemId
    assert stale["Success"] is False
    assert "changed by another user" in stale["Message"]
    # all-or-nothing: a failing change leaves the good one unapplied
    good = {"Action": 2, "ItemId": new_row["_ItemId"], "Properties": [h.prop("BudAmt2", "1")]}
    bad = _insert("0000", "CC2110", 2027)
    both = await ido.update("SLChartBps", [good, bad])
    assert both["Success"] is False
    assert "account 0000" in both["Message"]
    rows, _ = await ido.load_all("SLChartBps", filter="FiscalYear = 2027")
    assert [(r["BudAmt1"], r["BudAmt2"]) for r in rows] == [("200.00000000", "0.00000000")]
    # update by key without ItemId (no locking), then delete
    key_props = [h.prop("Acct", "6720"), h.prop("AcctUnit1", "CC2110"), h.prop("FiscalYear", 2027)]
    by_key = {"Action": 2, "ItemId": "", "Properties": [*key_props, h.prop("PlanAmt12", "3")]}
    assert (await ido.update("SLChartBps", [by_key]))["Success"] is True
    rows, _ = await ido.load_all("SLChartBps", filter="FiscalYear = 2027")
    assert rows[0]["PlanAmt12"] == "3.00000000"
    deleted = await ido.update("SLChartBps", [{"Action": 4, "ItemId": rows[0]["_ItemId"]}], refresh=False)
    assert deleted == {"Success": True, "Message": None, "Items": []}
    assert (await ido.load("SLChartBps", filter="FiscalYear = 2027"))["Items"] == []
    # the admin view of the end state, other sites untouched
    admin = await http.get(f"{infor.url}/_sandbox/infor/budgets", params={"tenant": csi.doc["ti"], "site": "P20"})
    assert all(r["FiscalYear"] != 2027 for r in admin.json()["rows"])
    assert len(admin.json()["rows"]) == 15 * 8 * 3


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_insert("6720", "CC1010", 2026), "unit code 1 CC1010 does not exist for site P20"),
        (_insert("6720", "CC2110", 2026, BudAmt1="abc"), "BudAmt1 must be a Decimal"),
        ({"Action": 3, "Properties": []}, "Action must be 1"),
        ({"Action": 1, "Properties": [h.prop("Acct", "6720")]}, "key properties"),
        ({"Action": 2, "ItemId": "PBT=[chart_bp] cha.DT=[20200101 00:00:00.000] cha.ID=[nope]",
          "Properties": []}, "does not exist"),
        ({"Action": 1, "Properties": [h.prop("Colour", "red")]}, "Colour"),
    ],
)  # fmt: skip
async def test_chart_bps_rejects_bad_changes(
    csi: h.Tenant, http: httpx.AsyncClient, change: Any, fragment: str
) -> None:
    body = await h.IDO(csi, http, "P20").update("SLChartBps", [change])
    assert body["Success"] is False
    assert fragment in body["Message"]


async def test_only_budgets_are_writable(csi: h.Tenant, http: httpx.AsyncClient) -> None:
    body = await h.IDO(csi, http).update("SLVendors", [{"Action": 2, "ItemId": "", "Properties": []}])
    assert body["Success"] is False
    assert "privilege" in body["Message"]


async def _write_back(ido: h.IDO, target: dict[tuple[str, str, int], dict[str, str]]) -> int:
    """Idempotent write-back (reference 7.3): load by key, update differing rows via ItemId, insert missing."""
    rows, _ = await ido.load_all("SLChartBps", recordcap=0, filter="FiscalYear = 2026")
    have = {(r["Acct"], r["AcctUnit1"], int(r["FiscalYear"])): r for r in rows}
    changes = []
    for key, amounts in target.items():
        row = have.get(key)
        if row is None:
            changes.append(_insert(*key, **amounts))
            continue
        diff = [h.prop(k, v) for k, v in amounts.items() if Decimal(row[k]) != Decimal(v)]
        if diff:
            changes.append({"Action": 2, "ItemId": row["_ItemId"], "Properties": diff, "UpdateLocking": 1})
    if changes:
        body = await ido.update("SLChartBps", changes)
        assert body["Success"], body["Message"]
    return len(changes)


async def test_idempotent_chart_bps_write_back(infor: RunningInfor, csi: h.Tenant, http: httpx.AsyncClient) -> None:
    ido = h.IDO(csi, http, "P10")
    target = {("6000", "CC1020", 2026): {"PlanAmt1": "10", "PlanAmt2": "20"},
              ("6720", "CC1110", 2026): {"PlanAmt1": "5.25"}}  # fmt: skip
    assert await _write_back(ido, target) == 2
    stamps = {k: v.record_date for k, v in infor.state.chart_bps[(csi.doc["ti"], "P10")].items()}
    assert await _write_back(ido, target) == 0  # the second run changes nothing
    assert stamps == {k: v.record_date for k, v in infor.state.chart_bps[(csi.doc["ti"], "P10")].items()}
