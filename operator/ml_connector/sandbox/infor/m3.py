"""M3 behind the gateway: ``m3api-rest`` v2 (reference section 4, pinned contract).

* ``GET /{TI}/M3/m3api-rest/v2/execute/{PROGRAM}/{TRANSACTION}[;opt=v...]?FIELD=v&opt=v`` — options
  (``maxrecs`` default 100, 0 = unlimited; ``returncols``; ``cono``; ``divi``; ``excludempty``; ``righttrim``;
  ``dateformat``; ``metadata``; ``_rid``) as matrix or query parameters, names case-insensitive; input
  fields are the 4-character upper-case MI names. Errors -> HTTP 400 with top-level ``errorMessage``,
  ``errorCode``, ``errorField``, ``errorType="ServerReturnedNOK"``.
* ``POST /{TI}/M3/m3api-rest/v2/execute`` — bulk: one program, many transactions; HTTP 200 with one
  result per transaction (errors inside) and ``nrOfSuccessfullTransactions`` (sic) / ``nrOfFailedTransactions``.

Every value is a string. Responses stream, so ``maxrecs=0`` over a million rows keeps memory flat.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ml_connector.sandbox.dataset import COMPANY, format_cents, parse_cents
from ml_connector.sandbox.infor import exportmi
from ml_connector.sandbox.infor.gateway import STATE_KEY
from ml_connector.sandbox.infor.overlay import LiveData
from ml_connector.sandbox.infor.state import BudgetHeader, InforState, Tenant

OPTIONS = frozenset({"maxrecs", "returncols", "cono", "divi", "excludempty", "excludeempty", "righttrim",
                     "dateformat", "metadata", "_rid", "returnsystemfields", "extendedresult"})  # fmt: skip
DEFAULT_MAXRECS = 100  # [INF] server default when maxrecs is omitted
STREAM_CHUNK = 500


class M3Error(Exception):
    """A NOK answer from an MI transaction."""

    def __init__(self, message: str, code: str = "WMI0001", field: str = "") -> None:
        super().__init__(message)
        self.message, self.code, self.field = message, code, field

    def body(self) -> dict[str, str]:
        return {"errorMessage": self.message, "errorCode": self.code, "errorField": self.field,
                "errorType": "ServerReturnedNOK"}  # fmt: skip


@dataclass
class Call:
    """One MI transaction call: session context plus input fields (upper-case names)."""

    state: InforState
    tenant: Tenant
    program: str
    transaction: str
    fields: dict[str, str]
    cono: str
    divi: str
    maxrecs: int

    @property
    def data(self) -> LiveData:
        return self.state.data

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default).strip()

    def req(self, name: str) -> str:
        value = self.get(name)
        if not value:
            raise M3Error(f"{name} is mandatory for {self.program}/{self.transaction} and must be entered",
                          "WMI0002", name)  # fmt: skip
        return value

    def int_field(self, name: str, default: int | None = None, required: bool = False) -> int | None:
        value = self.req(name) if required else self.get(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise M3Error(f"{name} must be numeric, got {value!r}", "WMI0003", name) from None

    def date_field(self, name: str, required: bool = False) -> int | None:
        value = self.int_field(name, required=required)
        if value is not None and (value < 19000101 or value > 29991231 or exportmi._from_ymd(value) is None):
            raise M3Error(f"{name} must be a date YYYYMMDD, got {self.get(name)!r}", "WMI0004", name)
        return value

    def division(self, required: bool = False) -> str:
        divi = self.get("DIVI") or self.divi
        if required and not divi:
            raise M3Error(f"DIVI is mandatory for {self.program}/{self.transaction} and must be entered",
                          "WMI0002", "DIVI")  # fmt: skip
        if divi and divi not in self.data.ds.plant_by_code:
            raise M3Error(f"Division {divi} does not exist", "WDI0103", "DIVI")
        return divi

    def amount(self, name: str) -> int:
        value = self.req(name)
        try:
            return parse_cents(value)
        except (ValueError, ArithmeticError):
            raise M3Error(f"{name} must be a decimal number, got {value!r}", "WMI0003", name) from None


Record = dict[str, str]
Transaction = Callable[[Call], Iterable[Record]]


def _lmts(changed: dt.datetime) -> str:
    return str(int(changed.timestamp() * 1000))


def _lmdt(changed: dt.datetime) -> str:
    return changed.strftime("%Y%m%d")


def _m3_status(status: str) -> str:
    return "20" if status == "active" else "90"


# ------------------------------------------------------------------------------------------------ CRS620MI


def _supplier(c: Call, p: Any) -> Record:
    return {"CONO": c.cono, "SUNO": p.id, "SUNM": p.name, "CSCD": p.country, "CUCD": p.currency,
            "STAT": _m3_status(p.status), "LMDT": _lmdt(p.changed), "LMTS": _lmts(p.changed)}  # fmt: skip


def crs620_lst_suppliers(c: Call) -> Iterator[Record]:
    frsu, tosu = c.get("FRSU"), c.get("TOSU")
    lmts = c.int_field("LMTS", 0) or 0
    start = None
    if frsu:
        keys = c.data.suppliers.keys
        import bisect

        i = bisect.bisect_left(keys, frsu)
        start = keys[i - 1] if i > 0 else None
    for p in c.data.suppliers.scan(start):
        if tosu and p.id > tosu:
            break
        if lmts and int(p.changed.timestamp() * 1000) < lmts:
            continue
        yield _supplier(c, p)


def crs620_lst_by_number(c: Call) -> Iterator[Record]:
    suno = c.get("SUNO")
    for p in c.data.suppliers.scan():
        if suno and p.id < suno:
            continue
        yield _supplier(c, p)


def crs620_get_basic_data(c: Call) -> list[Record]:
    suno = c.req("SUNO")
    p = c.data.suppliers.get(suno)
    if p is None:
        raise M3Error(f"Supplier number {suno} does not exist", "WSU0203", "SUNO")
    return [_supplier(c, p)]


# ------------------------------------------------------------------------------------------------ CRS630MI


def crs630_lst_account_id(c: Call) -> Iterator[Record]:
    aitp = c.int_field("AITP", required=True)
    if aitp is None or not 1 <= aitp <= 7:
        raise M3Error(f"Accounting dimension AITP must be 1-7, got {c.get('AITP')!r}", "WAI0101", "AITP")
    divi = c.division()
    aitm = c.get("AITM")
    if aitp == 1:
        for a in c.data.accounts.scan():
            if aitm and a.code < aitm:
                continue
            yield {"CONO": c.cono, "DIVI": divi, "AITP": "1", "AITM": a.code, "TX40": a.name, "TX15": a.type,
                   "LMDT": _lmdt(a.changed)}  # fmt: skip
    elif aitp == 2:
        for cc in c.data.cost_centers.scan():
            if (aitm and cc.code < aitm) or (divi and cc.plant != divi):
                continue
            yield {"CONO": c.cono, "DIVI": cc.plant, "AITP": "2", "AITM": cc.code, "TX40": cc.name,
                   "TX15": cc.name[:15], "LMDT": _lmdt(cc.changed)}  # fmt: skip
    # dimensions 3-7 are not used by Northwind: an empty list


def crs630_get_account_id(c: Call) -> list[Record]:
    aitp = c.req("AITP")
    aitm = c.req("AITM")
    for record in crs630_lst_account_id(c):
        if record["AITM"] == aitm:
            return [record]
    raise M3Error(f"Accounting identity {aitm} does not exist for dimension {aitp}", "WAI0103", "AITM")


# ------------------------------------------------------------------------------------------------ CRS610MI


def _customer(c: Call, p: Any) -> Record:
    return {"CONO": c.cono, "CUNO": p.id, "CUNM": p.name, "CSCD": p.country, "CUCD": p.currency,
            "STAT": _m3_status(p.status), "LMDT": _lmdt(p.changed), "LMTS": _lmts(p.changed)}  # fmt: skip


def crs610_lst_by_number(c: Call) -> Iterator[Record]:
    cuno = c.get("CUNO")
    lmts = c.int_field("LMTS", 0) or 0
    for p in c.data.customers.scan():
        if cuno and p.id < cuno:
            continue
        if lmts and int(p.changed.timestamp() * 1000) < lmts:
            continue
        yield _customer(c, p)


def crs610_get_basic_data(c: Call) -> list[Record]:
    cuno = c.req("CUNO")
    p = c.data.customers.get(cuno)
    if p is None:
        raise M3Error(f"Customer number {cuno} does not exist", "WCU0203", "CUNO")
    return [_customer(c, p)]


# ------------------------------------------------------------------------------------------------ MMS200MI


def _item(c: Call, i: Any) -> Record:
    return {"CONO": c.cono, "ITNO": i.id, "ITDS": i.description[:30], "FUDS": i.description, "ITTY": i.type,
            "STAT": _m3_status(i.status), "LMDT": _lmdt(i.changed)}  # fmt: skip


def mms200_lst_itm_by_chg_date(c: Call) -> Iterator[Record]:
    flmd = c.date_field("FLMD")
    tlmd = c.date_field("TLMD")
    for i in c.data.items.scan():
        d = int(_lmdt(i.changed))
        if (flmd and d < flmd) or (tlmd and d > tlmd):
            continue
        yield _item(c, i)


def mms200_lst_itm_by_itm(c: Call) -> Iterator[Record]:
    itno = c.get("ITNO")
    for i in c.data.items.scan():
        if itno and i.id < itno:
            continue
        yield _item(c, i)


def mms200_get_itm_basic(c: Call) -> list[Record]:
    itno = c.req("ITNO")
    i = c.data.items.get(itno)
    if i is None:
        raise M3Error(f"Item number {itno} does not exist", "WIT0103", "ITNO")
    return [_item(c, i)]


# ------------------------------------------------------------------------------------------------ PPS200MI


def pps200_lst_line(c: Call) -> list[Record]:
    puno = c.req("PUNO")
    lines = c.data.po_lines_of(puno)
    if not lines:
        raise M3Error(f"Purchase order number {puno} does not exist", "WPU0203", "PUNO")
    return [
        {"CONO": c.cono, "DIVI": p.division, "PUNO": p.po_number, "PNLI": str(p.line), "ITNO": p.item,
         "SUNO": p.supplier, "PUPR": format_cents(p.unit_price), "ORQA": str(p.quantity),
         "LNAM": format_cents(p.amount), "CUCD": p.currency, "PUDT": p.order_date.strftime("%Y%m%d"),
         "PUSL": p.status, "LMDT": _lmdt(p.changed)}
        for p in lines
    ]  # fmt: skip


def pps200_get_head(c: Call) -> list[Record]:
    lines = pps200_lst_line(c)
    first = lines[0]
    total = sum(parse_cents(r["LNAM"]) for r in lines)
    return [{"CONO": c.cono, "DIVI": first["DIVI"], "PUNO": first["PUNO"], "SUNO": first["SUNO"],
             "PUDT": first["PUDT"], "CUCD": first["CUCD"], "PUSL": min(r["PUSL"] for r in lines),
             "PUST": max(r["PUSL"] for r in lines), "COAM": format_cents(total),
             "LMDT": max(r["LMDT"] for r in lines)}]  # fmt: skip


# ------------------------------------------------------------------------------------------------ GLS200MI


def gls200_lst_vouchers_by_dt(c: Call) -> Iterator[Record]:
    frdt = c.date_field("FRDT", required=True)
    todt = c.date_field("TODT", required=True)
    assert frdt is not None
    assert todt is not None
    if todt < frdt:
        raise M3Error(f"To date {todt} is before from date {frdt}", "WTO0101", "TODT")
    divi = c.division()
    query = f"* from FGLEDG where EGACDT >= {frdt} and EGACDT <= {todt}"
    selection = exportmi.compile_query(query, divi)
    names = [col.name[2:] for col in exportmi.FGLEDG.columns]

    def records() -> Iterator[Record]:
        for values in selection.rows(c.data):
            yield dict(zip(names, values, strict=True))

    return records()


# ------------------------------------------------------------------------------------------------ EXPORTMI


def exportmi_select(c: Call) -> Iterator[Record]:
    qery = c.fields.get("QERY", "").strip()
    if not qery:
        raise M3Error("QERY is mandatory for EXPORTMI/Select and must be entered", "WMI0002", "QERY")
    sepc = c.fields.get("SEPC", "")
    hdrs = c.get("HDRS") == "1"
    try:
        selection = exportmi.compile_query(qery, c.divi)
    except exportmi.QueryError as exc:
        raise M3Error(str(exc), "WQE0001", "QERY") from None
    cols = [selection.table.columns[i] for i in selection.output]
    data = c.data

    rows = selection.rows(data)
    if c.maxrecs:
        rows = itertools.islice(rows, c.maxrecs)

    def records() -> Iterator[Record]:
        if hdrs:  # [INF] the header row comes on top of maxrecs data rows
            yield {"REPL": (sepc or ";").join(selection.header())}
        for values in rows:
            yield {"REPL": exportmi.render(values, cols, sepc or None)}

    return records()


def exportmi_lst_fields(c: Call) -> list[Record]:
    try:
        return exportmi.list_fields(c.req("FILE"))
    except exportmi.QueryError as exc:
        raise M3Error(str(exc), "WFI0103", "FILE") from None


# ------------------------------------------------------------------------------------------------ BUS100MI


def _budget_key(c: Call) -> tuple[str, str, str]:
    return c.division(required=True), c.req("BUNO"), c.req("BVER")


def _header(c: Call, key: tuple[str, str, str]) -> BudgetHeader:
    header = c.state.m3_budget_headers[c.tenant.tenant_id].get(key)
    if header is None:
        raise M3Error(f"Budget {key[1]} version {key[2]} does not exist in division {key[0]}", "WBU0003", "BUNO")
    return header


def _header_record(c: Call, h: BudgetHeader) -> Record:
    return {"CONO": c.cono, "DIVI": h.divi, "BUNO": h.buno, "BVER": h.bver, "TX40": h.tx40, "TX15": h.tx15,
            "BSPR": h.bspr, "CRTP": h.crtp, "NPAM": h.npam, "BUST": "90" if h.locked else "10"}  # fmt: skip


def bus100_get_budget_header(c: Call) -> list[Record]:
    return [_header_record(c, _header(c, _budget_key(c)))]


def bus100_lst_budget_header(c: Call) -> Iterator[Record]:
    divi = c.division()
    buno, bver = c.get("BUNO"), c.get("BVER")
    for key in sorted(c.state.m3_budget_headers[c.tenant.tenant_id]):
        if (divi and key[0] != divi) or (buno and key[1] != buno) or (bver and key[2] != bver):
            continue
        yield _header_record(c, c.state.m3_budget_headers[c.tenant.tenant_id][key])


def bus100_add_budget_header(c: Call) -> list[Record]:
    key = _budget_key(c)
    headers = c.state.m3_budget_headers[c.tenant.tenant_id]
    if key in headers:
        raise M3Error(f"Budget {key[1]} version {key[2]} already exists", "WBU0001", "BUNO")
    tx40 = c.req("TX40")
    bspr = c.req("BSPR")
    if len(bspr) != 6 or not bspr.isdigit() or not 1 <= int(bspr[4:]) <= 12:
        raise M3Error(f"Start period BSPR must be YYYYMM, got {bspr!r}", "WBS0101", "BSPR")
    crtp = c.req("CRTP")
    npam = c.req("NPAM")
    if not npam.isdigit() or not 1 <= int(npam) <= 15:
        raise M3Error(f"Number of periods NPAM must be 1-15, got {npam!r}", "WNP0101", "NPAM")
    headers[key] = BudgetHeader(key[0], key[1], key[2], tx40, bspr, crtp, npam, c.get("TX15"))
    c.state.m3_budget_lines[c.tenant.tenant_id][key] = {}
    return []


def _lock(c: Call, locked: bool) -> list[Record]:
    header = _header(c, _budget_key(c))
    header.locked = locked
    return []


def _line_key(c: Call) -> tuple[tuple[str, str, str], tuple[str, str, str, str]]:
    key = _budget_key(c)
    ait1 = c.req("AIT1")
    if c.data.accounts.get(ait1) is None:
        raise M3Error(f"Account {ait1} does not exist", "WAI0103", "AIT1")
    ait2 = c.get("AIT2")
    if ait2:
        cc = c.data.cost_centers.get(ait2)
        if cc is None:
            raise M3Error(f"Accounting identity {ait2} does not exist for dimension 2", "WAI0203", "AIT2")
    cucd = c.req("CUCD")
    bupe = c.req("BUPE")
    if len(bupe) != 6 or not bupe.isdigit() or not 1 <= int(bupe[4:]) <= 12:
        raise M3Error(f"Budget period BUPE must be YYYYMM, got {bupe!r}", "WBU0105", "BUPE")
    return key, (ait1, ait2, cucd, bupe)


def _writable(c: Call, key: tuple[str, str, str]) -> dict[tuple[str, str, str, str], int]:
    header = _header(c, key)
    if header.locked:
        raise M3Error(f"Budget {key[1]} version {key[2]} is locked", "WBU0010", "BVER")
    return c.state.m3_budget_lines[c.tenant.tenant_id][key]


def bus100_add_budget_ln_per(c: Call) -> list[Record]:
    key, cell = _line_key(c)
    lines = _writable(c, key)
    if cell in lines:
        raise M3Error("Record already exists", "WBU0001", "BUPE")
    lines[cell] = c.amount("BCUA")
    return []


def bus100_upd_budget_ln_per(c: Call) -> list[Record]:
    key, cell = _line_key(c)
    lines = _writable(c, key)
    if cell not in lines:
        raise M3Error("Record does not exist", "WBU0002", "BUPE")
    lines[cell] = c.amount("BCUA")
    return []


def bus100_del_budget_lines(c: Call) -> list[Record]:
    key = _budget_key(c)
    ait1 = c.req("AIT1")
    cucd = c.req("CUCD")
    ait2, bupe = c.get("AIT2"), c.get("BUPE")
    lines = _writable(c, key)
    doomed = [k for k in lines if k[0] == ait1 and k[2] == cucd and (not ait2 or k[1] == ait2)
              and (not bupe or k[3] == bupe)]  # fmt: skip
    if not doomed:
        raise M3Error("Record does not exist", "WBU0002", "AIT1")
    for k in doomed:
        del lines[k]
    return []


def bus100_lst_bud_period_val(c: Call) -> Iterator[Record]:
    key = _budget_key(c)
    _header(c, key)
    lines = c.state.m3_budget_lines[c.tenant.tenant_id][key]
    filters = {f: c.get(f) for f in ("AIT1", "AIT2", "CUCD", "BUPE") if c.get(f)}
    for (ait1, ait2, cucd, bupe), cents in sorted(lines.items(), key=lambda kv: (kv[0][3], kv[0][0], kv[0][1])):
        record = {"CONO": c.cono, "DIVI": key[0], "BUNO": key[1], "BVER": key[2], "BUPE": bupe, "AIT1": ait1,
                  "AIT2": ait2, "AIT3": "", "AIT4": "", "AIT5": "", "AIT6": "", "AIT7": "", "CUCD": cucd,
                  "BCUA": format_cents(cents), "BLAM": format_cents(cents)}  # fmt: skip
        if all(record[f] == v for f, v in filters.items()):
            yield record


PROGRAMS: dict[str, dict[str, Transaction]] = {
    "CRS620MI": {"LstSuppliers": crs620_lst_suppliers, "LstByNumber": crs620_lst_by_number,
                 "GetBasicData": crs620_get_basic_data},
    "CRS630MI": {"LstAccountID": crs630_lst_account_id, "GetAccountID": crs630_get_account_id},
    "CRS610MI": {"LstByNumber": crs610_lst_by_number, "GetBasicData": crs610_get_basic_data},
    "MMS200MI": {"LstItmByChgDate": mms200_lst_itm_by_chg_date, "LstItmByItm": mms200_lst_itm_by_itm,
                 "GetItmBasic": mms200_get_itm_basic},
    "PPS200MI": {"LstLine": pps200_lst_line, "GetHead": pps200_get_head},
    "GLS200MI": {"LstVouchersByDt": gls200_lst_vouchers_by_dt},
    "EXPORTMI": {"Select": exportmi_select, "LstFields": exportmi_lst_fields},
    "BUS100MI": {"GetBudgetHeader": bus100_get_budget_header, "LstBudgetHeader": bus100_lst_budget_header,
                 "AddBudgetHeader": bus100_add_budget_header, "LockBudget": lambda c: _lock(c, True),
                 "UnlockBudget": lambda c: _lock(c, False), "AddBudgetLnPer": bus100_add_budget_ln_per,
                 "UpdBudgetLnPer": bus100_upd_budget_ln_per, "DelBudgetLines": bus100_del_budget_lines,
                 "LstBudPeriodVal": bus100_lst_bud_period_val},
}  # fmt: skip


#: transactions that apply ``maxrecs`` themselves (EXPORTMI's header row is not a data row)
SELF_LIMITING: frozenset[Transaction] = frozenset({exportmi_select})

# ------------------------------------------------------------------------------------------------ HTTP


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


@dataclass
class Options:
    maxrecs: int = DEFAULT_MAXRECS
    returncols: list[str] | None = None
    cono: str = COMPANY
    divi: str = ""
    excludempty: bool = False


def _parse_options(raw: dict[str, str]) -> Options:
    opts = Options()
    if "maxrecs" in raw:
        try:
            opts.maxrecs = int(raw["maxrecs"])
        except ValueError:
            raise M3Error(f"maxrecs must be a number, got {raw['maxrecs']!r}", "WMI0010", "maxrecs") from None
        if opts.maxrecs < 0:
            raise M3Error(f"maxrecs must be >= 0, got {opts.maxrecs}", "WMI0010", "maxrecs")
    if raw.get("returncols"):
        opts.returncols = [c.strip().upper() for c in raw["returncols"].split(",") if c.strip()]
    if raw.get("cono"):
        opts.cono = raw["cono"].strip()
    opts.divi = raw.get("divi", "").strip()
    opts.excludempty = _truthy(raw.get("excludempty", raw.get("excludeempty")))
    return opts


def _check_session(state: InforState, opts: Options, fields: dict[str, str]) -> None:
    cono = fields.get("CONO", "").strip() or opts.cono
    if cono != COMPANY:
        raise M3Error(f"Not authorized for company {cono}", "XAU0008", "CONO")
    opts.cono = cono
    if opts.divi and opts.divi not in state.dataset.plant_by_code:
        raise M3Error(f"Division {opts.divi} does not exist", "WDI0103", "DIVI")


def _resolve(program: str, transaction: str) -> Transaction:
    trx = PROGRAMS.get(program.upper())
    if trx is None:
        raise M3Error(f"Program {program} does not exist or is not available", "WPG0001", "")
    fn = trx.get(transaction)
    if fn is None:
        raise M3Error(f"Transaction {transaction} does not exist in program {program}", "WTR0001", "")
    return fn


def _shape(records: Iterable[Record], opts: Options) -> Iterator[Record]:
    it: Iterable[Record] = records if opts.maxrecs == 0 else itertools.islice(records, opts.maxrecs)
    cols = opts.returncols
    for record in it:
        if cols is not None:
            record = {k: record.get(k, "") for k in cols}
        if opts.excludempty:
            record = {k: v for k, v in record.items() if v != ""}
        yield record


def _run(state: InforState, tenant: Tenant, program: str, transaction: str, fields: dict[str, str],
         opts: Options) -> Iterator[Record]:  # fmt: skip
    """Validate eagerly (errors raise here), then return the lazily shaped records."""
    fn = _resolve(program, transaction)
    _check_session(state, opts, fields)
    call = Call(state, tenant, program.upper(), transaction, fields, opts.cono, opts.divi, opts.maxrecs)
    records = iter(fn(call))
    try:
        first = next(records)
    except StopIteration:
        return iter(())
    if fn in SELF_LIMITING:
        opts = dataclasses.replace(opts, maxrecs=0)
    return _shape(itertools.chain((first,), records), opts)


def _error(exc: M3Error, status: int = 400) -> web.Response:
    return web.json_response(exc.body(), status=status)


async def execute_get(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    tenant = state.tenants[request.match_info["tenant"]]
    program = request.match_info["program"]
    transaction, *matrix = request.match_info["transaction"].split(";")
    raw: dict[str, str] = {}
    for part in matrix:
        if part:
            name, _, value = part.partition("=")
            raw[name.strip().lower()] = value
    fields: dict[str, str] = {}
    for name, value in request.query.items():
        if len(name) == 4 and name.isupper():
            fields[name] = value
        elif name.lower() in OPTIONS:
            raw[name.lower()] = value
        else:
            fields[name.upper()] = value
    try:
        opts = _parse_options(raw)
        records = _run(state, tenant, program, transaction, fields, opts)
        first_batch = list(itertools.islice(records, STREAM_CHUNK))
    except M3Error as exc:
        state.stats["m3.nok"] += 1
        return _error(exc)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    head = json.dumps({"transaction": transaction})[:-1]
    await response.write(f'{{"results":[{head},"records":['.encode())
    batch = first_batch
    first = True
    while batch:
        text = json.dumps(batch, ensure_ascii=False, separators=(",", ":"))[1:-1]
        await response.write((text if first else "," + text).encode())
        first = False
        batch = list(itertools.islice(records, STREAM_CHUNK))
    await response.write(b']}],"wasTerminated":false,"nrOfSuccessfullTransactions":1,"nrOfFailedTransactions":0}')
    await response.write_eof()
    return response


async def execute_bulk(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    tenant = state.tenants[request.match_info["tenant"]]
    try:
        body = await request.json()
    except ValueError:
        return _error(M3Error("The request body is not valid JSON", "WMI0020", ""))
    if not isinstance(body, dict) or not isinstance(body.get("program"), str):
        return _error(M3Error("The bulk body needs a 'program' and a 'transactions' list", "WMI0021", "program"))
    transactions = body.get("transactions")
    if not isinstance(transactions, list):
        return _error(M3Error("The bulk body needs a 'transactions' list", "WMI0021", "transactions"))
    program = body["program"]
    if program.upper() not in PROGRAMS:
        return _error(M3Error(f"Program {program} does not exist or is not available", "WPG0001", ""))
    raw = {"cono": str(body.get("cono") or COMPANY), "divi": str(body.get("divi") or ""),
           "maxrecs": str(body.get("maxReturnedRecords", DEFAULT_MAXRECS)),
           "excludempty": str(body.get("excludeEmptyValues", False))}  # fmt: skip
    results: list[dict[str, Any]] = []
    ok = failed = 0
    for item in transactions:
        name = item.get("transaction", "") if isinstance(item, dict) else ""
        record = item.get("record") or {} if isinstance(item, dict) else {}
        try:
            if not isinstance(record, dict):
                raise M3Error("'record' must be an object of field -> value", "WMI0021", "record")
            opts = _parse_options(raw)
            selected = item.get("selectedColumns")
            if selected:
                opts.returncols = [str(s).upper() for s in selected]
            fields = {str(k).upper(): "" if v is None else str(v) for k, v in record.items()}
            records = list(_run(state, tenant, program, str(name), fields, opts))
            results.append({"transaction": name, "records": records, "parameters": record})
            ok += 1
        except M3Error as exc:
            results.append({"transaction": name, **exc.body(), "errorCfg": "", "notProcessed": False,
                            "parameters": record})  # fmt: skip
            failed += 1
    state.stats["m3.bulk"] += 1
    return web.json_response({
        "results": results, "wasTerminated": False, "nrOfSuccessfullTransactions": ok,
        "nrOfFailedTransactions": failed, "nrOfNotProcessedTransactions": 0,
    })  # fmt: skip


def routes() -> list[web.RouteDef]:
    return [
        web.get("/{tenant}/M3/m3api-rest/v2/execute/{program}/{transaction}", execute_get),
        web.post("/{tenant}/M3/m3api-rest/v2/execute", execute_bulk),
    ]
