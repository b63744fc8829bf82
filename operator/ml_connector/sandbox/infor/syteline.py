"""SyteLine / CloudSuite Industrial behind the gateway: Mongoose IDO REST v2 (reference 5, pinned contract).

* ``GET  /{TI}/CSI/IDORequestService/ido/load/{IDO}`` — ``properties``, ``filter``, ``orderby``, ``recordcap``
  (-1/absent -> 200, 0 -> all), ``loadtype=FIRST|NEXT|PREV|LAST`` + ``bookmark``; answers ``Items``,
  ``Bookmark``, ``MoreRowsExist``, ``Success``, ``Message``. Every row carries ``_ItemId``
  (``PBT=[table] t.DT=[<RecordDate>] t.ID=[<uuid>]``).
* ``POST /{TI}/CSI/IDORequestService/ido/update/{IDO}`` — ``Changes[]`` with ``Action`` 1 insert, 2 update,
  4 delete; optimistic locking on the ``DT`` inside ``ItemId``; all-or-nothing; ``?refresh=true`` returns
  the refreshed rows in ``Items``. Writable: ``SLChartBps`` (budget and plan per account/unit/fiscal year).
* ``GET  .../ido/info/{IDO}``, ``POST .../ido/invoke/{IDO}`` (no methods are emulated).

Every call needs the ``X-Infor-MongooseConfig`` header naming one site's configuration; problems are
``Success: false`` with a ``Message`` on HTTP 200, as Mongoose does. Wrong verb -> 405.

Paging in key order seeks by arithmetic (``TransNum``, ``Voucher``, ``CheckNum`` map straight to the
generated ledger), so a bookmark loop over a million ``SLLedgers`` rows costs O(page) per page; a
``RecordDate >=`` filter later than every base row reads only the late-change overlay.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import html
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from ml_connector.sandbox.dataset import Dataset, Invoice, Payment, POLine, Posting, mix
from ml_connector.sandbox.infor import idofilter
from ml_connector.sandbox.infor.gateway import STATE_KEY
from ml_connector.sandbox.infor.idofilter import FilterError, PropType
from ml_connector.sandbox.infor.overlay import LiveData
from ml_connector.sandbox.infor.state import ChartBp, InforState, Tenant, _uuid

CONFIG_HEADER = "X-Infor-MongooseConfig"
DEFAULT_CAP = 200

Row = dict[str, Any]
KeyTuple = tuple[Any, ...]


class IdoError(Exception):
    """A ``Success: false`` answer."""


def fmt_datetime(value: dt.datetime) -> str:
    """Mongoose form ``20250115 10:22:33.000``."""
    iso = value.isoformat(" ", "milliseconds")  # 2025-01-15 10:22:33.000[+00:00]
    return iso[0:4] + iso[5:7] + iso[8:23]


def _naive(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo else value


def _day(value: dt.date) -> dt.datetime:
    return dt.datetime(value.year, value.month, value.day)


def _dec(cents: int) -> Decimal:
    return Decimal(cents).scaleb(-2)


def _format(value: Any, kind: PropType) -> str | None:
    if value is None:
        return None
    if kind == "Decimal":
        return f"{value:.8f}"
    if kind == "DateTime":
        return fmt_datetime(value)
    return str(value)


@dataclass
class Ctx:
    state: InforState
    tenant: Tenant
    site: str

    @property
    def data(self) -> LiveData:
        return self.state.data

    @property
    def ds(self) -> Dataset:
        return self.state.dataset


class IDO:
    """One IDO collection: typed properties, a key order, and a row source that can seek."""

    name: str = ""
    table: str = ""
    props: dict[str, PropType] = {}
    key: tuple[str, ...] = ()
    writable = False
    description = ""

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        """Rows in key order, strictly after ``after`` (all when None)."""
        raise NotImplementedError

    def changed(self, ctx: Ctx) -> list[Row] | None:
        """Only the rows changed after the base dataset (key order), or None if not tracked separately."""
        return None

    def key_of(self, row: Row) -> KeyTuple:
        return tuple(row[k] for k in self.key)

    def item_id(self, row: Row) -> str:
        alias = self.table[:3]
        return f"PBT=[{self.table}] {alias}.DT=[{fmt_datetime(row['RecordDate'])}] {alias}.ID=[{row['_id']}]"

    def info(self) -> list[dict[str, Any]]:
        return [
            {"Name": name, "Type": kind, "ReadOnly": not self.writable or name == "RecordDate",
             "IsKey": name in self.key, "RequiredForInsert": self.writable and name in self.key,
             "DefaultValue": None}
            for name, kind in self.props.items()
        ]  # fmt: skip


def _rid(*values: int) -> str:
    return _uuid(mix(*values))


def _sid(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class SLLedgers(IDO):
    name, table, description = "SLLedgers", "ledger", "G/L Posted Transactions"
    props = {"Site": "String", "TransNum": "Int", "Acct": "String", "AcctUnit1": "String", "TransDate": "DateTime",
             "DomAmount": "Decimal", "CurrCode": "String", "Ref": "String", "RecordDate": "DateTime"}  # fmt: skip
    key = ("TransNum",)

    @staticmethod
    def row(p: Posting) -> Row:
        return {"Site": p.division, "TransNum": p.serial, "Acct": p.account, "AcctUnit1": p.cost_center,
                "TransDate": _day(p.date), "DomAmount": _dec(p.amount), "CurrCode": p.currency, "Ref": p.text,
                "RecordDate": _naive(p.changed), "_id": _rid(1, ord(p.division[1]), p.serial)}  # fmt: skip

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        first = 1 if after is None else int(after[0]) + 1
        return (self.row(p) for p in ctx.data.gl_site(ctx.site, first))

    def changed(self, ctx: Ctx) -> list[Row]:
        rows = [self.row(p) for p in ctx.data.changed_gl() if p.division == ctx.site]
        return sorted(rows, key=lambda r: r["TransNum"])


class SLAptrxps(IDO):
    name, table, description = "SLAptrxps", "aptrxp", "A/P Posted Transaction"
    props = {"Site": "String", "VendNum": "String", "Voucher": "Int", "InvNum": "String", "InvDate": "DateTime",
             "DistDate": "DateTime", "DueDate": "DateTime", "Acct": "String", "AcctUnit1": "String",
             "CurrCode": "String", "InvAmt": "Decimal", "Type": "String", "RecordDate": "DateTime"}  # fmt: skip
    key = ("Voucher",)

    @staticmethod
    def row(i: Invoice) -> Row:
        return {"Site": i.division, "VendNum": i.supplier, "Voucher": i.serial, "InvNum": i.number,
                "InvDate": _day(i.invoice_date), "DistDate": _day(i.date), "DueDate": _day(i.due_date),
                "Acct": i.account, "AcctUnit1": i.cost_center, "CurrCode": i.currency, "InvAmt": _dec(i.amount),
                "Type": "V", "RecordDate": _naive(i.changed),
                "_id": _rid(2, ord(i.division[1]), i.serial)}  # fmt: skip

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        first = 1 if after is None else int(after[0]) + 1
        return (self.row(i) for i in ctx.data.invoices_site(ctx.site, first))

    def changed(self, ctx: Ctx) -> list[Row]:
        rows = [self.row(i) for i in ctx.data.changed_invoices_list() if i.division == ctx.site]
        return sorted(rows, key=lambda r: r["Voucher"])


class SLAppmts(IDO):
    name, table, description = "SLAppmts", "appmt", "A/P Payments"
    props = {"Site": "String", "VendNum": "String", "CheckNum": "Int", "CheckSeq": "Int", "CheckDate": "DateTime",
             "Voucher": "Int", "InvNum": "String", "CurrCode": "String", "DomCheckAmt": "Decimal",
             "RecordDate": "DateTime"}  # fmt: skip
    key = ("CheckNum",)

    @staticmethod
    def row(p: Payment) -> Row:
        return {"Site": p.division, "VendNum": p.supplier, "CheckNum": p.serial, "CheckSeq": 1,
                "CheckDate": _day(p.date), "Voucher": p.invoice_serial, "InvNum": p.invoice_number,
                "CurrCode": p.currency, "DomCheckAmt": _dec(p.amount), "RecordDate": _naive(p.changed),
                "_id": _rid(3, ord(p.division[1]), p.serial)}  # fmt: skip

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        first = 1 if after is None else int(after[0]) + 1
        return (self.row(p) for p in ctx.data.payments_site(ctx.site, first))

    def changed(self, ctx: Ctx) -> list[Row]:
        rows = [self.row(p) for p in ctx.data.changed_payments_list() if p.division == ctx.site]
        return sorted(rows, key=lambda r: r["CheckNum"])


class SLPoItems(IDO):
    name, table, description = "SLPoItems", "poitem", "Purchase Order Lines"
    props = {"Site": "String", "PoNum": "String", "PoLine": "Int", "VendNum": "String", "Item": "String",
             "OrderDate": "DateTime", "QtyOrdered": "Decimal", "UnitCost": "Decimal", "CurrCode": "String",
             "Stat": "String", "RecordDate": "DateTime"}  # fmt: skip
    key = ("PoNum", "PoLine")

    @staticmethod
    def row(p: POLine) -> Row:
        return {"Site": p.division, "PoNum": p.po_number, "PoLine": p.line, "VendNum": p.supplier, "Item": p.item,
                "OrderDate": _day(p.order_date), "QtyOrdered": Decimal(p.quantity), "UnitCost": _dec(p.unit_price),
                "CurrCode": p.currency, "Stat": "F", "RecordDate": _naive(p.changed),
                "_id": _rid(4, ord(p.po_number[1]), int(p.po_number[2:]), p.line)}  # fmt: skip

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        for seg in ctx.ds.site_segments(ctx.site):
            first_block = 0
            if after is not None:
                last = ctx.ds.po_number(seg, ctx.ds.blocks(seg) - 1)
                if str(after[0]) > last:
                    continue
                located = ctx.ds.parse_po_number(str(after[0]))
                if located is not None and located[0] == seg:
                    first_block = located[1]
            for p in ctx.data.po_lines_segment(seg, first_block):
                if after is None or (p.po_number, p.line) > (str(after[0]), int(after[1])):
                    yield self.row(p)

    def changed(self, ctx: Ctx) -> list[Row]:
        return [self.row(p) for p in ctx.data.changed_po_list() if p.division == ctx.site]


class _MasterIDO(IDO):
    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        raise NotImplementedError

    def rows(self, ctx: Ctx, after: KeyTuple | None) -> Iterator[Row]:
        for row in self.master_rows(ctx):
            if after is None or self.key_of(row) > after:
                yield row


def _stat(status: str) -> str:
    return "A" if status == "active" else "I"


class SLVendors(_MasterIDO):
    name, table, description = "SLVendors", "vendor", "Vendors"
    props = {"VendNum": "String", "Name": "String", "CurrCode": "String", "Country": "String", "Stat": "String",
             "RecordDate": "DateTime"}  # fmt: skip
    key = ("VendNum",)

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        for p in ctx.data.suppliers.scan():
            yield {"VendNum": p.id, "Name": p.name, "CurrCode": p.currency, "Country": p.country,
                   "Stat": _stat(p.status), "RecordDate": _naive(p.changed), "_id": _rid(5, _sid(p.id))}  # fmt: skip


class SLCustomers(_MasterIDO):
    name, table, description = "SLCustomers", "customer", "Customers"
    props = {"CustNum": "String", "Name": "String", "CurrCode": "String", "Country": "String", "Stat": "String",
             "RecordDate": "DateTime"}  # fmt: skip
    key = ("CustNum",)

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        for p in ctx.data.customers.scan():
            yield {"CustNum": p.id, "Name": p.name, "CurrCode": p.currency, "Country": p.country,
                   "Stat": _stat(p.status), "RecordDate": _naive(p.changed), "_id": _rid(6, _sid(p.id))}  # fmt: skip


class SLItems(_MasterIDO):
    name, table, description = "SLItems", "item", "Items"
    props = {"Item": "String", "Description": "String", "ProductCode": "String", "Stat": "String",
             "RecordDate": "DateTime"}  # fmt: skip
    key = ("Item",)

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        for i in ctx.data.items.scan():
            yield {"Item": i.id, "Description": i.description, "ProductCode": i.type, "Stat": _stat(i.status),
                   "RecordDate": _naive(i.changed), "_id": _rid(7, _sid(i.id))}  # fmt: skip


class SLCharts(_MasterIDO):
    name, table, description = "SLCharts", "chart", "Chart of Accounts"
    props = {"Acct": "String", "Description": "String", "Type": "String", "RecordDate": "DateTime"}
    key = ("Acct",)

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        for a in ctx.data.accounts.scan():
            # [INF] Type carries the canonical account type (Revenue|COGS|Expense|Asset|Liability|Equity)
            yield {"Acct": a.code, "Description": a.name, "Type": a.type, "RecordDate": _naive(a.changed),
                   "_id": _rid(8, _sid(a.code))}  # fmt: skip


class SLUnitcd1s(_MasterIDO):
    name, table, description = "SLUnitcd1s", "unitcd1", "Unit Code 1 (cost centers)"
    props = {"UnitCode1": "String", "Description": "String", "Site": "String", "RecordDate": "DateTime"}
    key = ("UnitCode1",)

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        for c in ctx.data.cost_centers.scan():
            if c.plant == ctx.site:
                yield {"UnitCode1": c.code, "Description": c.name, "Site": c.plant, "RecordDate": _naive(c.changed),
                       "_id": _rid(9, _sid(c.code))}  # fmt: skip


_BUD = tuple(f"BudAmt{i}" for i in range(1, 13))
_PLAN = tuple(f"PlanAmt{i}" for i in range(1, 13))


class SLChartBps(_MasterIDO):
    name, table, description = "SLChartBps", "chart_bp", "Chart of Accounts Budget and Plan"
    props: dict[str, PropType] = {"Acct": "String", "AcctUnit1": "String", "FiscalYear": "Int",
                                  **dict.fromkeys(_BUD, "Decimal"), **dict.fromkeys(_PLAN, "Decimal"),
                                  "RecordDate": "DateTime"}  # fmt: skip
    key = ("Acct", "AcctUnit1", "FiscalYear")
    writable = True

    @staticmethod
    def store(ctx: Ctx) -> dict[tuple[str, str, int], ChartBp]:
        return ctx.state.chart_bps[(ctx.tenant.tenant_id, ctx.site)]

    @staticmethod
    def row(bp: ChartBp) -> Row:
        row: Row = {"Acct": bp.acct, "AcctUnit1": bp.unit1, "FiscalYear": bp.fiscal_year}
        for i in range(12):
            row[_BUD[i]] = _dec(bp.bud[i])
        for i in range(12):
            row[_PLAN[i]] = _dec(bp.plan[i])
        row["RecordDate"] = _naive(bp.record_date)
        row["_id"] = bp.row_pointer
        return row

    def master_rows(self, ctx: Ctx) -> Iterator[Row]:
        store = self.store(ctx)
        for key in sorted(store):
            yield self.row(store[key])


IDOS: dict[str, IDO] = {
    ido.name.lower(): ido
    for ido in (SLLedgers(), SLAptrxps(), SLAppmts(), SLPoItems(), SLVendors(), SLCustomers(), SLItems(), SLCharts(),
                SLUnitcd1s(), SLChartBps())
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ bookmarks

_SECTION = re.compile(r"<(P|D|F|L)>(.*?)</\1>", re.DOTALL)
_VALUE = re.compile(r"<(p|f|v)>(.*?)</\1>|<(v)/>", re.DOTALL)


def make_bookmark(order: list[tuple[str, bool]], first: list[str], last: list[str]) -> str:
    def vals(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}>{html.escape(v, quote=False)}</{tag}>" for v in values)

    return (f"<B><P>{vals('p', [p for p, _ in order])}</P><D>{vals('f', ['true' if d else 'false' for _, d in order])}"
            f"</D><F>{vals('v', first)}</F><L>{vals('v', last)}</L></B>")  # fmt: skip


def parse_bookmark(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for section, body in _SECTION.findall(text):
        out[section] = [html.unescape(m[1]) if m[0] else "" for m in _VALUE.findall(body)]
    if "P" not in out or "L" not in out:
        raise IdoError(f"Bookmark {text[:80]!r} is not a bookmark returned by this load")
    return out


def _typed(value: str, kind: PropType) -> Any:
    try:
        if kind == "Int":
            return int(value)
        if kind == "Decimal":
            return Decimal(value)
        if kind == "DateTime":
            return idofilter.parse_datetime(value)
    except (ValueError, InvalidOperation, FilterError):
        raise IdoError(f"Bookmark value {value!r} is not a valid {kind}") from None
    return value


# ------------------------------------------------------------------------------------------------ load


def _params(request: web.Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.query.items()}


def _context(request: web.Request) -> Ctx:
    state = request.app[STATE_KEY]
    tenant = state.tenants[request.match_info["tenant"]]
    config = request.headers.get(CONFIG_HEADER, "").strip()
    known = ", ".join(tenant.configs)
    if not config:
        raise IdoError(f"The {CONFIG_HEADER} header is required when calling Mongoose through ION API "
                       f"(configurations: {known})")  # fmt: skip
    site = state.site_of_config(tenant, config)
    if site is None:
        raise IdoError(f"Configuration '{config}' does not exist (configurations: {known})")
    return Ctx(state, tenant, site)


def _ido(name: str, ctx: Ctx | None = None, privilege: str = "Read") -> IDO:
    ido = IDOS.get(name.lower())
    if ido is None:
        raise IdoError(f"The IDO collection {name} was not found (emulated IDOs: "
                       f"{', '.join(sorted(i.name for i in IDOS.values()))})")  # fmt: skip
    if ctx is not None and ido.name in ctx.state.denied_idos:
        raise IdoError(f"User requires [{privilege}] privilege for {ido.name}")
    return ido


def _properties(ido: IDO, text: str | None) -> list[str]:
    if text is None or text.strip() in ("", "*"):
        return list(ido.props)
    lower = {p.lower(): p for p in ido.props}
    out = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if name.lower() not in lower:
            raise IdoError(f"Property '{name}' is not a valid property of IDO {ido.name}")
        out.append(lower[name.lower()])
    return out


def _order(ido: IDO, text: str | None) -> list[tuple[str, bool]]:
    if not text or not text.strip():
        return [(k, False) for k in ido.key]
    lower = {p.lower(): p for p in ido.props}
    out: list[tuple[str, bool]] = []
    for part in text.split(","):
        words = part.split()
        if not words:
            continue
        if (
            words[0].lower() not in lower
            or len(words) > 2
            or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC"))
        ):
            raise IdoError(f"orderby '{part.strip()}' is not '<property> [ASC|DESC]' of IDO {ido.name}")
        out.append((lower[words[0].lower()], len(words) == 2 and words[1].upper() == "DESC"))
    seen = {p for p, _ in out}
    out.extend((k, False) for k in ido.key if k not in seen)  # the key breaks ties: a total, stable order
    return out


def _cap(text: str | None) -> int | None:
    if text is None or text.strip() == "":
        return DEFAULT_CAP
    try:
        cap = int(text)
    except ValueError:
        raise IdoError(f"recordcap must be a number, got {text!r}") from None
    if cap < 0:
        return DEFAULT_CAP
    return None if cap == 0 else cap


def _compare(order: list[tuple[str, bool]]) -> Any:
    def cmp(a: KeyTuple, b: KeyTuple) -> int:
        for (_, desc), x, y in zip(order, a, b, strict=True):
            if x == y:
                continue
            less = x is None if x is None or y is None else x < y
            return (1 if less else -1) if desc else (-1 if less else 1)
        return 0

    return cmp


def _overlay_only(ctx: Ctx, node: idofilter.Node | None) -> bool:
    for literal in idofilter.lower_bounds(node, "RecordDate"):
        try:
            if idofilter.parse_datetime(literal) >= _naive(ctx.ds.max_stamp):
                return True
        except FilterError:
            continue
    return False


def load(ctx: Ctx, ido: IDO, params: Mapping[str, str]) -> dict[str, Any]:
    props = _properties(ido, params.get("properties"))
    try:
        node = idofilter.parse_filter(params.get("filter", ""))
        predicate = idofilter.compile_filter(node, ido.props)
    except FilterError as exc:
        raise IdoError(f"{exc} (IDO {ido.name})") from None
    order = _order(ido, params.get("orderby"))
    cap = _cap(params.get("recordcap"))
    loadtype = (params.get("loadtype") or "FIRST").strip().upper()
    if loadtype not in ("FIRST", "NEXT", "PREV", "LAST"):
        raise IdoError(f"loadtype must be FIRST, NEXT, PREV or LAST, got {loadtype!r}")
    bookmark = params.get("bookmark", "")
    marks: dict[str, list[str]] | None = None
    if loadtype in ("NEXT", "PREV"):
        if not bookmark:
            raise IdoError(f"loadtype={loadtype} needs the bookmark of the previous response")
        marks = parse_bookmark(bookmark)
        if marks["P"] != [p for p, _ in order]:
            raise IdoError("The bookmark does not match this load's order; keep properties, filter and orderby "
                           "identical between pages")  # fmt: skip
    key_order = order == [(k, False) for k in ido.key]
    page: list[Row]
    more: bool
    if key_order and loadtype in ("FIRST", "NEXT"):
        after = None
        if marks is not None:
            after = tuple(_typed(v, ido.props[p]) for (p, _), v in zip(order, marks["L"], strict=True))
        changed = ido.changed(ctx) if _overlay_only(ctx, node) else None
        if changed is not None:
            source: Iterator[Row] = (r for r in changed if after is None or ido.key_of(r) > after)
        else:
            source = ido.rows(ctx, after)
        if predicate is not None:
            source = filter(predicate, source)
        taken = list(itertools.islice(source, None if cap is None else cap + 1))
        more = cap is not None and len(taken) > cap
        page = taken[:cap] if cap is not None else taken
    else:
        page, more = _generic(ctx, ido, order, predicate, cap, loadtype, marks)
    items = []
    for row in page:
        item: dict[str, Any] = {p: _format(row.get(p), ido.props[p]) for p in props}
        item["_ItemId"] = ido.item_id(row)
        items.append(item)
    if page:
        first = [_format(page[0][p], ido.props[p]) or "" for p, _ in order]
        last = [_format(page[-1][p], ido.props[p]) or "" for p, _ in order]
        mark = make_bookmark(order, first, last)
    else:
        mark = bookmark or make_bookmark(order, [], [])
    return {"Items": items, "Bookmark": mark, "MoreRowsExist": more, "Success": True, "Message": None}


def _generic(ctx: Ctx, ido: IDO, order: list[tuple[str, bool]], predicate: Any, cap: int | None, loadtype: str,
             marks: dict[str, list[str]] | None) -> tuple[list[Row], bool]:  # fmt: skip
    """Any order / PREV / LAST: materialize the filtered rows and sort them (fine for master data)."""
    rows = [r for r in ido.rows(ctx, None) if predicate is None or predicate(r)]
    cmp = _compare(order)
    names = [p for p, _ in order]
    sort_key = functools.cmp_to_key(cmp)
    rows.sort(key=lambda r: sort_key(tuple(r[p] for p in names)))
    keys = [tuple(r[p] for p in names) for r in rows]
    if loadtype == "LAST":
        start = 0 if cap is None else max(0, len(rows) - cap)
        return rows[start:], False
    if loadtype == "PREV":
        assert marks is not None
        first = tuple(_typed(v, ido.props[p]) for p, v in zip(names, marks["F"], strict=True))
        end = bisect.bisect_left([sort_key(k) for k in keys], sort_key(first))
        start = 0 if cap is None else max(0, end - cap)
        return rows[start:end], start > 0
    start = 0
    if loadtype == "NEXT":
        assert marks is not None
        last = tuple(_typed(v, ido.props[p]) for p, v in zip(names, marks["L"], strict=True))
        start = bisect.bisect_right([sort_key(k) for k in keys], sort_key(last))
    end = len(rows) if cap is None else start + cap
    return rows[start:end], end < len(rows)


# ------------------------------------------------------------------------------------------------ update

_ITEM_ID = re.compile(r"\.ID=\[([^\]]*)\]")
_ITEM_DT = re.compile(r"\.DT=\[([^\]]*)\]")


def _change_values(ido: IDO, change: dict[str, Any], index: int) -> dict[str, Any]:
    values: dict[str, Any] = {}
    lower = {p.lower(): p for p in ido.props}
    for prop in change.get("Properties") or []:
        if not isinstance(prop, dict) or "Name" not in prop:
            raise IdoError(f"Changes[{index}]: every property needs a Name and a Value")
        name = lower.get(str(prop["Name"]).lower())
        if name is None:
            raise IdoError(f"Changes[{index}]: property '{prop['Name']}' is not a valid property of IDO {ido.name}")
        if prop.get("Modified") is False:
            continue
        if name == "RecordDate":
            continue  # maintained by the server
        if prop.get("IsNull"):
            values[name] = None
            continue
        kind = ido.props[name]
        raw = prop.get("Value")
        try:
            if kind == "Decimal":
                values[name] = Decimal(str(raw).strip())
                if not values[name].is_finite():
                    raise InvalidOperation
            elif kind == "Int":
                values[name] = int(str(raw).strip())
            else:
                values[name] = "" if raw is None else str(raw).strip()
        except (ValueError, InvalidOperation):
            raise IdoError(f"Changes[{index}]: {name} must be a {kind}, got {raw!r}") from None
    return values


def _cents(value: Decimal | None) -> int:
    return 0 if value is None else int((value * 100).to_integral_value())


def update_chart_bps(ctx: Ctx, ido: SLChartBps, changes: list[Any]) -> list[Row]:
    """Validate every change, then apply all (one transaction): returns the refreshed rows."""
    store = ido.store(ctx)
    by_pointer = {bp.row_pointer: key for key, bp in store.items()}
    plan: list[tuple[int, tuple[str, str, int], dict[str, Any]]] = []
    pending: dict[tuple[str, str, int], str] = {}
    for index, change in enumerate(changes):
        if not isinstance(change, dict):
            raise IdoError(f"Changes[{index}] must be an object")
        action = change.get("Action")
        if action not in (1, 2, 4):
            raise IdoError(f"Changes[{index}]: Action must be 1 (insert), 2 (update) or 4 (delete), got {action!r}")
        values = _change_values(ido, change, index)
        item_id = str(change.get("ItemId") or "")
        if action == 1:
            missing = [k for k in ido.key if values.get(k) in (None, "")]
            if missing:
                raise IdoError(f"Changes[{index}]: insert needs the key properties {', '.join(missing)}")
            key = (str(values["Acct"]), str(values["AcctUnit1"]), int(values["FiscalYear"]))
            if key in store or pending.get(key) == "insert":
                raise IdoError(f"Changes[{index}]: a SLChartBps row for account {key[0]}, unit {key[1]}, fiscal "
                               f"year {key[2]} already exists")  # fmt: skip
            if ctx.data.accounts.get(key[0]) is None:
                raise IdoError(f"Changes[{index}]: account {key[0]} does not exist in the chart of accounts")
            unit = ctx.data.cost_centers.get(key[1])
            if unit is None or unit.plant != ctx.site:
                raise IdoError(f"Changes[{index}]: unit code 1 {key[1]} does not exist for site {ctx.site}")
            if key[2] not in ctx.ds.years and not 2000 <= key[2] <= 2100:
                raise IdoError(f"Changes[{index}]: fiscal year {key[2]} is out of range")
            pending[key] = "insert"
        else:
            match = _ITEM_ID.search(item_id)
            if match:
                key_or_none = by_pointer.get(match.group(1))
                if key_or_none is None:
                    raise IdoError(f"Changes[{index}]: the row {item_id!r} does not exist (deleted by another user?)")
                key = key_or_none
                dt_match = _ITEM_DT.search(item_id)
                if dt_match and dt_match.group(1).strip() != fmt_datetime(_naive(store[key].record_date)):
                    raise IdoError(f"Changes[{index}]: the row was changed by another user since it was read "
                                   f"(ItemId DT {dt_match.group(1)!r} is stale); reload it and retry")  # fmt: skip
            else:
                missing = [k for k in ido.key if values.get(k) in (None, "")]
                if missing:
                    raise IdoError(f"Changes[{index}]: without an ItemId the key properties "
                                   f"{', '.join(missing)} are required")  # fmt: skip
                key = (str(values["Acct"]), str(values["AcctUnit1"]), int(values["FiscalYear"]))
                if key not in store:
                    raise IdoError(f"Changes[{index}]: no SLChartBps row for account {key[0]}, unit {key[1]}, "
                                   f"fiscal year {key[2]}")  # fmt: skip
            changed_keys = [k for k in ido.key if k in values and values[k] != dict(zip(ido.key, key, strict=True))[k]]
            if action == 2 and changed_keys:
                raise IdoError(f"Changes[{index}]: key properties {', '.join(changed_keys)} cannot be updated")
            if pending.get(key) == "delete":
                raise IdoError(f"Changes[{index}]: the row was deleted by an earlier change of this request")
            pending[key] = "delete" if action == 4 else "update"
        plan.append((int(action), key, values))
    refreshed: list[Row] = []
    for action, key, values in plan:
        stamp = ctx.data.next_stamp()
        if action == 4:
            del store[key]
            continue
        if action == 1:
            h = mix(ctx.ds.seed, 977, len(store), int(stamp.timestamp() * 1000))
            store[key] = ChartBp(key[0], key[1], key[2], [0] * 12, [0] * 12, stamp, _uuid(h))
        bp = store[key]
        for i in range(12):
            if _BUD[i] in values:
                bp.bud[i] = _cents(values[_BUD[i]])
            if _PLAN[i] in values:
                bp.plan[i] = _cents(values[_PLAN[i]])
        bp.record_date = stamp
        refreshed.append(ido.row(bp))
    return refreshed


# ------------------------------------------------------------------------------------------------ HTTP


def _fail(message: str, **extra: Any) -> web.Response:
    return web.json_response({**extra, "Success": False, "Message": message})


async def load_handler(request: web.Request) -> web.Response:
    try:
        ctx = _context(request)
        ido = _ido(request.match_info["ido"], ctx)
        body = load(ctx, ido, _params(request))
    except IdoError as exc:
        request.app[STATE_KEY].stats["csi.fail"] += 1
        return _fail(str(exc), Items=[], Bookmark=None, MoreRowsExist=False)
    return web.json_response(body)


async def update_handler(request: web.Request) -> web.Response:
    try:
        ctx = _context(request)
        ido = _ido(request.match_info["ido"], ctx, "Update")
        try:
            body = await request.json()
        except ValueError:
            raise IdoError("The request body is not valid JSON") from None
        changes = body.get("Changes") if isinstance(body, dict) else None
        if not isinstance(changes, list):
            raise IdoError("The body needs a 'Changes' list")
        if not isinstance(ido, SLChartBps):
            raise IdoError(f"User requires [Update] privilege for {ido.name}")  # [INF] only budgets are writable
        refreshed = update_chart_bps(ctx, ido, changes)
    except IdoError as exc:
        request.app[STATE_KEY].stats["csi.fail"] += 1
        return _fail(str(exc), Items=[])
    refresh = _params(request).get("refresh", "").lower() in ("true", "1")
    items = []
    if refresh:
        for row in refreshed:
            item: dict[str, Any] = {p: _format(row.get(p), ido.props[p]) for p in ido.props}
            item["_ItemId"] = ido.item_id(row)
            items.append(item)
    return web.json_response({"Success": True, "Message": None, "Items": items})


async def info_handler(request: web.Request) -> web.Response:
    try:
        _context(request)
        ido = _ido(request.match_info["ido"])
    except IdoError as exc:
        return _fail(str(exc))
    return web.json_response({"Name": ido.name, "Description": ido.description, "Properties": ido.info(),
                              "Methods": [], "Success": True, "Message": None})  # fmt: skip


async def invoke_handler(request: web.Request) -> web.Response:
    try:
        _context(request)
        ido = _ido(request.match_info["ido"])
    except IdoError as exc:
        return _fail(str(exc))
    method = request.query.get("method", "")
    return _fail(f"Method '{method}' of IDO {ido.name} is not available in this emulator", ReturnValue="16",
                 Parameters=[])  # fmt: skip


def routes() -> list[web.RouteDef]:
    base = "/{tenant}/CSI/IDORequestService/ido"
    return [
        web.get(base + "/load/{ido}", load_handler),
        web.post(base + "/update/{ido}", update_handler),
        web.get(base + "/info/{ido}", info_handler),
        web.post(base + "/invoke/{ido}", invoke_handler),
    ]
