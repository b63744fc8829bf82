"""M3 ``EXPORTMI/Select``: the SQL-like query engine over the big tables ``FGLEDG``, ``FPLEDG``, ``MPLINE``.

Grammar (pinned contract): ``<fields|*> from <TABLE> [where <cond> ((and|or) <cond>)*]`` with
conditions ``F = v``, ``F <> v``, ``F >= v``, ``F > v``, ``F <= v``, ``F < v``; string literals in single
quotes; keywords case-insensitive; ``and`` binds tighter than ``or``. The company comes from the session.

Rows come in table key order. The engine *plans* before it scans: division, year, journal/voucher/PO
cursors and accounting-date bounds taken from a top-level conjunction turn into arithmetic seeks, and a
``..LMDT >= d`` bound later than every base change date reads only the late-change overlay. So the
client's batching loop (``EGDIVI = 'P10' and EGYEA4 = 2025 and EGJRNO >= x`` with ``maxrecs=N``) costs
O(N) per batch, never a rescan of the ledger.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_connector.sandbox.dataset import COMPANY, Invoice, Payment, POLine, Posting, Segment, format_cents
from ml_connector.sandbox.infor.overlay import LiveData

Kind = Literal["A", "N", "C"]  # alphanumeric, integer (incl. YYYYMMDD dates), amount in cents


class QueryError(ValueError):
    """The query does not parse or names something that does not exist; the message says what and where."""

    def __init__(self, message: str, field: str = "QERY") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    length: int
    description: str


Row = tuple[Any, ...]


def ymd(day: dt.date) -> int:
    return day.year * 10_000 + day.month * 100 + day.day


def _from_ymd(value: int) -> dt.date | None:
    try:
        return dt.date(value // 10_000, value // 100 % 100, value % 100)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------ parsing

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<num>-?\d+(?:\.\d+)?)|(?P<op><>|!=|>=|<=|=|>|<)"
    r"|(?P<comma>,)|(?P<star>\*)|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    value: str
    quoted: bool


@dataclass
class Query:
    fields: list[str]
    table: str
    terms: list[list[Condition]] = field(default_factory=list)  # OR of ANDs; empty = no WHERE


def parse_query(text: str) -> Query:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(f"QERY: unexpected character {text[pos]!r} at position {pos + 1}")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    i = 0

    def peek() -> tuple[str, str]:
        return tokens[i] if i < len(tokens) else ("end", "")

    def take() -> tuple[str, str]:
        nonlocal i
        tok = peek()
        i += 1
        return tok

    fields: list[str] = []
    if peek()[0] == "star":
        take()
        fields = ["*"]
    else:
        while True:
            kind, value = take()
            if kind != "word" or value.lower() == "from":
                raise QueryError(f"QERY: expected a field name or '*' before 'from', got {value or 'end of query'!r}")
            fields.append(value.upper())
            if peek()[0] != "comma":
                break
            take()
    kind, value = take()
    if kind != "word" or value.lower() != "from":
        raise QueryError(f"QERY: expected 'from' after the field list, got {value or 'end of query'!r}")
    kind, table = take()
    if kind != "word":
        raise QueryError(f"QERY: expected a table name after 'from', got {table or 'end of query'!r}")
    query = Query(fields, table.upper())
    if peek()[0] == "end":
        return query
    kind, value = take()
    if kind != "word" or value.lower() != "where":
        raise QueryError(f"QERY: expected 'where' or end of query after the table, got {value!r}")
    term: list[Condition] = []
    while True:
        kind, column = take()
        if kind != "word":
            raise QueryError(f"QERY: expected a field name in the where clause, got {column or 'end of query'!r}")
        kind, op = take()
        if kind != "op":
            raise QueryError(f"QERY: expected an operator (=, <>, >=, >, <=, <) after {column}, got {op!r}")
        kind, literal = take()
        if kind == "str":
            term.append(Condition(column.upper(), "<>" if op == "!=" else op, literal[1:-1].replace("''", "'"), True))
        elif kind in ("num", "word"):
            term.append(Condition(column.upper(), "<>" if op == "!=" else op, literal, False))
        else:
            raise QueryError(f"QERY: expected a value after {column} {op}, got {literal or 'end of query'!r}")
        kind, value = take()
        if kind == "end":
            query.terms.append(term)
            return query
        if kind == "word" and value.lower() == "and":
            continue
        if kind == "word" and value.lower() == "or":
            query.terms.append(term)
            term = []
            continue
        raise QueryError(f"QERY: expected 'and', 'or' or end of query, got {value!r}")


# ------------------------------------------------------------------------------------------------ compiling

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
}  # fmt: skip


def _literal(column: Column, cond: Condition) -> Any:
    if column.kind == "A":
        return cond.value.strip()
    try:
        if column.kind == "C":
            from decimal import Decimal, InvalidOperation

            try:
                return int((Decimal(cond.value) * 100).to_integral_value())
            except InvalidOperation:
                raise ValueError(cond.value) from None
        return int(cond.value)
    except ValueError:
        raise QueryError(f"QERY: {cond.column} is numeric, {cond.value!r} is not a number", cond.column) from None


@dataclass
class Bounds:
    """Seek hints from a top-level conjunction: equality sets and inclusive lower/upper bounds."""

    eq: dict[str, set[Any]] = field(default_factory=dict)
    ne: dict[str, set[Any]] = field(default_factory=dict)
    low: dict[str, Any] = field(default_factory=dict)
    high: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, op: str, value: Any, kind: Kind) -> None:
        if op == "=":
            self.eq.setdefault(name, set()).add(value)
        elif op == "<>":
            self.ne.setdefault(name, set()).add(value)
        elif op in (">=", ">"):
            v = value + 1 if op == ">" and kind != "A" else value
            if op == ">" and kind == "A":
                return  # exclusive string bound: leave it to the predicate
            if name not in self.low or v > self.low[name]:
                self.low[name] = v
        elif op in ("<=", "<"):
            v = value - 1 if op == "<" and kind != "A" else value
            if op == "<" and kind == "A":
                return
            if name not in self.high or v < self.high[name]:
                self.high[name] = v

    def allows(self, name: str, value: Any) -> bool:
        if name in self.eq and (len(self.eq[name]) != 1 or value not in self.eq[name]):
            return False
        if value in self.ne.get(name, ()):
            return False
        if name in self.low and value < self.low[name]:
            return False
        return not (name in self.high and value > self.high[name])

    def lower(self, name: str) -> Any:
        if name in self.eq and len(self.eq[name]) == 1:
            return next(iter(self.eq[name]))
        return self.low.get(name)

    def upper(self, name: str) -> Any:
        if name in self.eq and len(self.eq[name]) == 1:
            return next(iter(self.eq[name]))
        return self.high.get(name)


# ------------------------------------------------------------------------------------------------ tables


class Table:
    name: str
    description: str
    columns: tuple[Column, ...]
    #: column -> operators whose condition the seek in :meth:`rows` guarantees exactly (no re-check needed)
    exact: dict[str, frozenset[str]] = {}

    def __init__(self) -> None:
        self.index = {c.name: i for i, c in enumerate(self.columns)}

    def column(self, name: str) -> Column:
        try:
            return self.columns[self.index[name]]
        except KeyError:
            raise QueryError(f"QERY: field {name} does not exist in table {self.name}", name) from None

    def rows(self, data: LiveData, bounds: Bounds | None) -> Iterator[Row]:
        raise NotImplementedError

    def overlay_only(self, data: LiveData, bounds: Bounds | None) -> bool:
        return False

    def format(self, column: Column, value: Any) -> str:
        if column.kind == "C":
            return format_cents(value)
        return str(value)


_ALL_OPS = frozenset({"=", "<>", ">=", ">", "<=", "<"})
_RANGE_OPS = frozenset({"=", ">=", ">", "<=", "<"})
_TEXT_OPS = frozenset({"=", "<>", ">=", "<="})  # exclusive bounds on text are left to the predicate


def _col(name: str, kind: Kind, length: int, description: str) -> Column:
    return Column(name, kind, length, description)


def _lmdt(changed: dt.datetime) -> int:
    return ymd(changed.date())


class _SegmentedTable(Table):
    """A table ordered by (division, year, document number, ...) that lives in ledger segments."""

    division_column: str
    year_column: str
    lmdt_column: str

    def segments(self, data: LiveData, bounds: Bounds | None) -> Iterator[Segment]:
        for seg in data.ds.segments:
            if bounds is None or (
                bounds.allows(self.division_column, seg.plant.code) and bounds.allows(self.year_column, seg.year)
            ):
                yield seg

    def overlay_only(self, data: LiveData, bounds: Bounds | None) -> bool:
        """True when the change-date bound is later than every base change: read the overlay only."""
        if bounds is None:
            return False
        low = bounds.lower(self.lmdt_column)
        return low is not None and low >= ymd(data.ds.max_stamp.date())


class FGLEDG(_SegmentedTable):
    name = "FGLEDG"
    description = "General ledger transactions"
    division_column, year_column, lmdt_column = "EGDIVI", "EGYEA4", "EGLMDT"
    exact = {"EGDIVI": _TEXT_OPS, "EGYEA4": _ALL_OPS, "EGJRNO": _RANGE_OPS}
    columns = (
        _col("EGCONO", "N", 3, "Company"),
        _col("EGDIVI", "A", 3, "Division"),
        _col("EGYEA4", "N", 4, "Year"),
        _col("EGJRNO", "N", 7, "Journal number"),
        _col("EGJSNO", "N", 5, "Journal sequence number"),
        _col("EGACDT", "N", 8, "Accounting date"),
        _col("EGAIT1", "A", 8, "Accounting dimension 1"),
        _col("EGAIT2", "A", 8, "Accounting dimension 2"),
        _col("EGAIT3", "A", 8, "Accounting dimension 3"),
        _col("EGAIT4", "A", 8, "Accounting dimension 4"),
        _col("EGAIT5", "A", 8, "Accounting dimension 5"),
        _col("EGAIT6", "A", 8, "Accounting dimension 6"),
        _col("EGAIT7", "A", 8, "Accounting dimension 7"),
        _col("EGACAM", "C", 17, "Recorded amount - local currency"),
        _col("EGCUAM", "C", 17, "Foreign currency amount"),
        _col("EGCUCD", "A", 3, "Currency"),
        _col("EGVSER", "A", 3, "Voucher number series"),
        _col("EGVONO", "N", 8, "Voucher number"),
        _col("EGVTXT", "A", 40, "Voucher text"),
        _col("EGTRCD", "N", 2, "Transaction code"),
        _col("EGLMDT", "N", 8, "Change date"),
    )

    @staticmethod
    def row(p: Posting) -> Row:
        return (int(COMPANY), p.division, p.year, p.journal, p.line, ymd(p.date), p.account, p.cost_center, "", "",
                "", "", "", p.amount, p.amount, p.currency, p.vser, p.journal, p.text, int(p.trcd),
                _lmdt(p.changed))  # fmt: skip

    def rows(self, data: LiveData, bounds: Bounds | None) -> Iterator[Row]:
        if self.overlay_only(data, bounds):
            for p in data.changed_gl():
                yield self.row(p)
            return
        for seg in self.segments(data, bounds):
            first, last = 1, None
            if bounds is not None:
                low, high = bounds.lower("EGJRNO"), bounds.upper("EGJRNO")
                first = max(first, low) if low is not None else first
                last = high
                acdt_low, acdt_high = bounds.lower("EGACDT"), bounds.upper("EGACDT")
                if acdt_low is not None and (day := _from_ymd(acdt_low)) is not None and day.year == seg.year:
                    first = max(first, data.ds.first_journal_on_or_after(seg, day))
                if acdt_high is not None and (day := _from_ymd(acdt_high)) is not None and day.year == seg.year:
                    # last base journal dated <= day; added journals (any date) are still scanned
                    cut = data.ds.first_journal_on_or_after(seg, day + dt.timedelta(days=1)) - 1
                    if not data.added.get(seg.number):
                        last = cut if last is None else min(last, cut)
            for p in data.gl_segment(seg, first, last):
                yield self.row(p)


class FPLEDG(_SegmentedTable):
    name = "FPLEDG"
    description = "Supplier ledger (accounts payable)"
    division_column, year_column, lmdt_column = "EPDIVI", "EPINYR", "EPLMDT"
    exact = {"EPDIVI": _TEXT_OPS, "EPINYR": _ALL_OPS, "EPVONO": _RANGE_OPS}
    columns = (
        _col("EPCONO", "N", 3, "Company"),
        _col("EPDIVI", "A", 3, "Division"),
        _col("EPSUNO", "A", 10, "Supplier"),
        _col("EPSPYN", "A", 10, "Payee"),
        _col("EPSINO", "A", 24, "Supplier invoice number"),
        _col("EPINYR", "N", 4, "Invoice year"),
        _col("EPVONO", "N", 8, "Voucher number"),
        _col("EPIVDT", "N", 8, "Invoice date"),
        _col("EPDUDT", "N", 8, "Due date"),
        _col("EPACDT", "N", 8, "Accounting date"),
        _col("EPCUCD", "A", 3, "Currency"),
        _col("EPCUAM", "C", 17, "Foreign currency amount"),
        _col("EPTRCD", "N", 2, "Transaction code"),
        _col("EPAPRV", "N", 1, "Approved"),
        _col("EPLMDT", "N", 8, "Change date"),
    )

    @staticmethod
    def row(r: Invoice | Payment) -> Row:
        if isinstance(r, Invoice):
            return (int(COMPANY), r.division, r.supplier, r.supplier, r.number, r.year, r.journal,
                    ymd(r.invoice_date), ymd(r.due_date), ymd(r.date), r.currency, -r.amount, 40, 1,
                    _lmdt(r.changed))  # fmt: skip
        # [INF] signs as on the supplier ledger: an invoice is a credit (negative EPCUAM), its payment a debit
        # (positive) that clears it; a payment row's EPSINO = the invoice it pays, EPVONO = its own voucher
        return (int(COMPANY), r.division, r.supplier, r.supplier, r.invoice_number, r.year, r.journal,
                ymd(r.date), ymd(r.date), ymd(r.date), r.currency, r.amount, 50, 1, _lmdt(r.changed))  # fmt: skip

    def rows(self, data: LiveData, bounds: Bounds | None) -> Iterator[Row]:
        if self.overlay_only(data, bounds):
            changed: list[Invoice | Payment] = [*data.changed_invoices_list(), *data.changed_payments_list()]
            for r in sorted(changed, key=lambda x: (x.division, x.year, x.journal)):
                yield self.row(r)
            return
        for seg in self.segments(data, bounds):
            first = 1
            high = None
            if bounds is not None:
                low = bounds.lower("EPVONO")
                first = low if low is not None else 1
                high = bounds.upper("EPVONO")
            for r in data.ap_segment(seg, first):
                if high is not None and r.journal > high:
                    break
                yield self.row(r)


class MPLINE(_SegmentedTable):
    name = "MPLINE"
    description = "Purchase order lines"
    division_column, year_column, lmdt_column = "IBDIVI", "", "IBLMDT"
    columns = (
        _col("IBCONO", "N", 3, "Company"),
        _col("IBDIVI", "A", 3, "Division"),
        _col("IBPUNO", "A", 10, "Purchase order number"),
        _col("IBPNLI", "N", 5, "Purchase order line"),
        _col("IBITNO", "A", 15, "Item number"),
        _col("IBSUNO", "A", 10, "Supplier"),
        _col("IBORQA", "N", 15, "Ordered quantity"),
        _col("IBPUPR", "C", 17, "Purchase price"),
        _col("IBLNAM", "C", 17, "Line amount"),
        _col("IBCUCD", "A", 3, "Currency"),
        _col("IBPUDT", "N", 8, "Order date"),
        _col("IBPUSL", "A", 2, "Lowest status"),
        _col("IBLMDT", "N", 8, "Change date"),
    )

    @staticmethod
    def row(p: POLine) -> Row:
        return (int(COMPANY), p.division, p.po_number, p.line, p.item, p.supplier, p.quantity, p.unit_price,
                p.amount, p.currency, ymd(p.order_date), p.status, _lmdt(p.changed))  # fmt: skip

    def segments(self, data: LiveData, bounds: Bounds | None) -> Iterator[Segment]:
        for seg in data.ds.segments:
            if bounds is None or bounds.allows("IBDIVI", seg.plant.code):
                yield seg

    def rows(self, data: LiveData, bounds: Bounds | None) -> Iterator[Row]:
        if self.overlay_only(data, bounds):
            for p in data.changed_po_list():
                yield self.row(p)
            return
        low = bounds.lower("IBPUNO") if bounds is not None else None
        for seg in self.segments(data, bounds):
            first_block = 0
            if low is not None:
                first_po, last_po = data.ds.po_number(seg, 0), data.ds.po_number(seg, data.ds.blocks(seg) - 1)
                if low > last_po:
                    continue
                if low > first_po:
                    located = data.ds.parse_po_number(low[:10]) if len(low) >= 10 else None
                    first_block = located[1] if located is not None and located[0] == seg else 0
            for p in data.po_lines_segment(seg, first_block):
                yield self.row(p)


TABLES: dict[str, Table] = {t.name: t for t in (FGLEDG(), FPLEDG(), MPLINE())}


# ------------------------------------------------------------------------------------------------ execution


@dataclass
class Selection:
    """A parsed, checked query: what to output and how to filter, ready to stream."""

    table: Table
    output: list[int]
    predicate: Callable[[Row], bool] | None
    bounds: Bounds | None
    #: the predicate minus the conditions the seek already guarantees (used when the seek applies)
    residual: Callable[[Row], bool] | None = None

    def header(self) -> list[str]:
        return [self.table.columns[i].name for i in self.output]

    def rows(self, data: LiveData) -> Iterator[list[str]]:
        table, output = self.table, self.output
        seeking = self.bounds is not None and not table.overlay_only(data, self.bounds)
        predicate = self.residual if seeking else self.predicate
        money = [table.columns[i].kind == "C" for i in output]
        if not any(money):
            for row in table.rows(data, self.bounds):
                if predicate is None or predicate(row):
                    yield [str(row[i]) for i in output]
            return
        pairs = list(zip(output, money, strict=True))
        for row in table.rows(data, self.bounds):
            if predicate is None or predicate(row):
                yield [format_cents(row[i]) if m else str(row[i]) for i, m in pairs]


def compile_query(text: str, division: str = "") -> Selection:
    """Parse and check ``QERY``; ``division`` (the session's, if not blank) restricts the rows too."""
    query = parse_query(text)
    table = TABLES.get(query.table)
    if table is None:
        raise QueryError(f"QERY: table {query.table} is not available for EXPORTMI "
                         f"(emulated: {', '.join(sorted(TABLES))})")  # fmt: skip
    if query.fields == ["*"]:
        output = list(range(len(table.columns)))
    else:
        output = [table.index[table.column(name).name] for name in query.fields]
    terms: list[list[tuple[int, Callable[[Any, Any], bool], Any]]] = []
    for term in query.terms:
        compiled = []
        for cond in term:
            column = table.column(cond.column)
            compiled.append((table.index[column.name], _OPS[cond.op], _literal(column, cond)))
        terms.append(compiled)
    division_column = getattr(table, "division_column", "")
    if division and division_column:
        # [INF] a session on a division only sees that division (EXPORTMI doc: division filters need a blank one)
        extra = (table.index[division_column], operator.eq, division)
        terms = [[*t, extra] for t in terms] if terms else [[extra]]
    bounds: Bounds | None = None
    if len(terms) == 1:
        bounds = Bounds()
        for index, op, value in terms[0]:
            column = table.columns[index]
            symbol = next(k for k, v in _OPS.items() if v is op)
            bounds.add(column.name, symbol, value, column.kind)
    predicate: Callable[[Row], bool] | None = None
    residual: Callable[[Row], bool] | None = None
    if len(terms) == 1:
        predicate = _conjunction(terms[0])
        exact = table.exact
        residual = _conjunction([c for c in terms[0] if _SYMBOL[c[1]] not in exact.get(table.columns[c[0]].name, ())])
    elif terms:
        conjunctions = [_conjunction(term) for term in terms]

        def predicate(row: Row) -> bool:
            return any(c is None or c(row) for c in conjunctions)

    return Selection(table, output, predicate, bounds, residual)


_SYMBOL = {v: k for k, v in _OPS.items()}


def _conjunction(conds: Sequence[tuple[int, Callable[[Any, Any], bool], Any]]) -> Callable[[Row], bool] | None:
    if not conds:
        return None
    if len(conds) == 1:
        ((i, op, v),) = conds
        return lambda row: op(row[i], v)
    return lambda row: all(op(row[i], v) for i, op, v in conds)


def list_fields(table_name: str) -> list[dict[str, str]]:
    table = TABLES.get(table_name.strip().upper())
    if table is None:
        raise QueryError(f"Table {table_name} does not exist", "FILE")
    return [
        {"FLDN": c.name, "FLDS": c.description, "FLTY": "A" if c.kind == "A" else "N", "FLLE": str(c.length),
         "FLDP": "2" if c.kind == "C" else "0"}
        for c in table.columns
    ]  # fmt: skip


def render(values: Sequence[str], columns: Sequence[Column], separator: str | None) -> str:
    """One ``REPL`` value: trimmed values joined by ``SEPC``, or padded to field lengths without it."""
    if separator:
        return separator.join(values)  # generated values carry no padding: already trimmed
    # [INF] without SEPC the values come blank-padded to their field length, as SelectPad does
    return "".join(
        v.ljust(c.length) if c.kind == "A" else v.rjust(c.length) for v, c in zip(values, columns, strict=True)
    )
