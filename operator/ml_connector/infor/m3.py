"""M3 (CloudSuite Distribution/Food/Fashion...) through ``m3api-rest`` v2: reads of every entity.

| Entity            | Source                                                         | Incremental                  |
|-------------------|----------------------------------------------------------------|------------------------------|
| suppliers         | ``CRS620MI/LstSuppliers`` (keyset paging on ``FRSU``)          | ``LMTS`` (epoch ms)          |
| customers         | ``CRS610MI/LstByNumber`` (keyset paging on ``CUNO``)           | ``LMTS``                     |
| items             | ``MMS200MI/LstItmByChgDate`` (``maxrecs=0``)                   | ``FLMD`` (date)              |
| gl_accounts       | ``CRS630MI/LstAccountID`` ``AITP=1`` (paging on ``AITM``)      | ``LMDT`` filtered here       |
| cost_centers      | ``CRS630MI/LstAccountID`` ``AITP=<cost-center dimension>``     | ``LMDT`` filtered here       |
| gl_postings       | ``EXPORTMI`` ``FGLEDG`` per division x year, cursor ``EGJRNO`` | ``EGLMDT >=``                |
| supplier_invoices | ``EXPORTMI`` ``FPLEDG`` ``EPTRCD=40`` + its ``FGLEDG`` expense line | ``EPLMDT >=``           |
| payments          | ``EXPORTMI`` ``FPLEDG`` ``EPTRCD=50``                          | ``EPLMDT >=``                |
| purchase_orders   | ``EXPORTMI`` ``MPLINE`` per division, cursor ``IBPUNO``        | ``IBLMDT >=``                |

Sign conventions: M3 books a supplier invoice as a credit on the supplier (negative ``EPCUAM``);
the canonical invoice amount is the invoice's own amount (positive; credit notes negative), so it is
negated here. Payments keep their sign (positive = paid). GL amounts are ``EGACAM`` (debit positive).
Budget write-back: :mod:`ml_connector.infor.m3budget`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Sequence
from decimal import Decimal
from typing import ClassVar

from ml_connector.infor.adapter import BaseProductLine, Extracted, ProductLineKind, period_ranges
from ml_connector.infor.budgets import BudgetLines, BudgetWriteReport
from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import ExtractionError
from ml_connector.infor.m3api import M3Api
from ml_connector.infor.m3export import Exporter, ExportSpec
from ml_connector.infor.mapping import (
    EPOCH,
    BadField,
    Row,
    SourceRecordError,
    convert,
    decimal,
    epoch_millis,
    integer,
    key,
    midnight,
    optional_ymd,
    parse_ymd,
    party_status,
    period,
    text,
    ymd,
    ymd_stamp,
)
from ml_connector.infor.options import M3Options
from ml_connector.infor.paging import merge
from ml_connector.records import (
    ENTITIES,
    BudgetLine,
    CostCenter,
    Customer,
    Entity,
    GLAccount,
    GLPosting,
    Item,
    Payment,
    PurchaseOrder,
    Supplier,
    SupplierInvoice,
)

TRCD_INVOICE = "40"
TRCD_PAYMENT = "50"


def _ymd_text(day: dt.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _millis(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


def fgledg_spec(dimension: int) -> ExportSpec:
    cc = f"EGAIT{dimension}"
    return ExportSpec(
        table="FGLEDG",
        fields=(
            "EGCONO",
            "EGDIVI",
            "EGYEA4",
            "EGJRNO",
            "EGJSNO",
            "EGACDT",
            "EGAIT1",
            cc,
            "EGACAM",
            "EGCUCD",
            "EGVSER",
            "EGVONO",
            "EGTRCD",
            "EGLMDT",
            "EGVTXT",
        ),
        cursor="EGJRNO",
        sub="EGJSNO",
        numeric=frozenset({"EGCONO", "EGYEA4", "EGJRNO", "EGJSNO", "EGVONO", "EGTRCD", "EGLMDT", "EGACDT"}),
    )


FPLEDG = ExportSpec(
    table="FPLEDG",
    fields=(
        "EPCONO",
        "EPDIVI",
        "EPSUNO",
        "EPSPYN",
        "EPINYR",
        "EPVONO",
        "EPTRCD",
        "EPIVDT",
        "EPDUDT",
        "EPACDT",
        "EPCUCD",
        "EPCUAM",
        "EPAPRV",
        "EPLMDT",
        "EPSINO",
    ),
    cursor="EPVONO",
    sub="EPTRCD",
    numeric=frozenset({"EPCONO", "EPINYR", "EPVONO", "EPTRCD", "EPLMDT"}),
)

MPLINE = ExportSpec(
    table="MPLINE",
    fields=(
        "IBCONO",
        "IBDIVI",
        "IBPUNO",
        "IBPNLI",
        "IBITNO",
        "IBSUNO",
        "IBORQA",
        "IBPUPR",
        "IBLNAM",
        "IBCUCD",
        "IBPUDT",
        "IBPUSL",
        "IBLMDT",
    ),
    cursor="IBPUNO",
    sub="IBPNLI",
    numeric=frozenset({"IBCONO", "IBPNLI", "IBLMDT"}),
)


class M3ProductLine(BaseProductLine):
    name: ClassVar[ProductLineKind] = "M3"
    supported: ClassVar[frozenset[Entity]] = frozenset(ENTITIES)
    budget_supported: ClassVar[bool] = True

    def __init__(self, client: IonApiClient, options: M3Options) -> None:
        super().__init__(client)
        self.options = options
        self.api = M3Api(client, company=options.company or None)
        self.exporter = Exporter(self.api)
        self._divisions: list[str] | None = None
        self._gl = fgledg_spec(options.cost_center_dimension)
        self._currencies: dict[str, str] = {}

    # -- dispatch ------------------------------------------------------------------------------

    async def _read(
        self, entity: Entity, changed_since: dt.datetime | None, periods: frozenset[str] | None = None
    ) -> AsyncGenerator[Extracted, None]:
        since = None if changed_since is None else changed_since - self.options.incremental_overlap
        readers: dict[Entity, Callable[[dt.datetime | None], AsyncGenerator[list[Extracted], None]]] = {
            "suppliers": self._suppliers,
            "customers": self._customers,
            "items": self._items,
            "gl_accounts": self._accounts,
            "cost_centers": self._cost_centers,
            "gl_postings": lambda since: self._gl_postings(since, periods),
            "supplier_invoices": self._supplier_invoices,
            "payments": self._payments,
            "purchase_orders": self._purchase_orders,
        }
        async for page in readers[entity](since):
            for item in page:
                yield item

    # -- MI list transactions ------------------------------------------------------------------

    async def _mi_pages(
        self,
        program: str,
        transaction: str,
        inputs: dict[str, str | int | None],
        *,
        cursor_input: str | None,
        cursor_output: str,
    ) -> AsyncGenerator[list[dict[str, str]], None]:
        """A list transaction, paged by restarting at the last key (inclusive; the repeat is dropped)."""
        size = self.options.list_page_size
        if cursor_input is None:
            yield await self.api.execute(program, transaction, inputs, maxrecs=0)
            return
        cursor: str | None = None
        while True:
            call = dict(inputs)
            if cursor is not None:
                call[cursor_input] = cursor
            rows = await self.api.execute(program, transaction, call, maxrecs=size)
            full = len(rows) >= size
            if cursor is not None:
                rows = [r for r in rows if r.get(cursor_output) != cursor]
            if rows:
                yield rows
            if not full:
                return
            last = rows[-1].get(cursor_output) if rows else None
            if not last or (cursor is not None and last <= cursor):
                raise ExtractionError(
                    f"M3 {program}/{transaction}: paging on {cursor_input} did not advance past {cursor!r}; "
                    "the server ignores the start key or does not return rows in key order"
                )
            cursor = last

    def _company_input(self) -> str | None:
        return self.options.company or None

    async def _suppliers(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        inputs: dict[str, str | int | None] = {"CONO": self._company_input()}
        if since is not None:
            inputs["LMTS"] = _millis(since)
        source = "M3 CRS620MI/LstSuppliers"

        def build(row: Row) -> Supplier:
            return Supplier(supplier_id=key(row, "SUNO"), name=text(row, "SUNM"), currency=text(row, "CUCD"),
                            country=text(row, "CSCD"), status=party_status(text(row, "STAT")),
                            changed_at=epoch_millis(row, "LMTS"))  # fmt: skip

        async for rows in self._mi_pages("CRS620MI", "LstSuppliers", inputs, cursor_input="FRSU", cursor_output="SUNO"):
            yield [convert("suppliers", source, r, build, ("SUNO",)) for r in rows]

    async def _customers(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        inputs: dict[str, str | int | None] = {"CONO": self._company_input()}
        if since is not None:
            inputs["LMTS"] = _millis(since)
        source = "M3 CRS610MI/LstByNumber"

        def build(row: Row) -> Customer:
            return Customer(customer_id=key(row, "CUNO"), name=text(row, "CUNM"), currency=text(row, "CUCD"),
                            country=text(row, "CSCD"), status=party_status(text(row, "STAT")),
                            changed_at=epoch_millis(row, "LMTS"))  # fmt: skip

        async for rows in self._mi_pages("CRS610MI", "LstByNumber", inputs, cursor_input="CUNO", cursor_output="CUNO"):
            yield [convert("customers", source, r, build, ("CUNO",)) for r in rows]

    async def _items(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        # [INF] LstItmByChgDate has no start key to page on: one call, maxrecs=0.
        inputs: dict[str, str | int | None] = {"CONO": self._company_input()}
        if since is not None:
            inputs["FLMD"] = _ymd_text(since.astimezone(dt.UTC).date())
        source = "M3 MMS200MI/LstItmByChgDate"

        def build(row: Row) -> Item:
            return Item(item_id=key(row, "ITNO"), description=text(row, "ITDS"), item_type=text(row, "ITTY"),
                        status=party_status(text(row, "STAT")), changed_at=ymd_stamp(row, "LMDT"))  # fmt: skip

        async for rows in self._mi_pages(
            "MMS200MI", "LstItmByChgDate", inputs, cursor_input=None, cursor_output="ITNO"
        ):
            yield [convert("items", source, r, build, ("ITNO",)) for r in rows]

    async def _dimension_rows(self, dimension: int) -> AsyncGenerator[list[dict[str, str]], None]:
        async for rows in self._mi_pages(
            "CRS630MI", "LstAccountID", {"AITP": dimension}, cursor_input="AITM", cursor_output="AITM"
        ):
            yield rows

    @staticmethod
    def _changed_since(records: list[Extracted], since: dt.datetime | None) -> list[Extracted]:
        if since is None:
            return records
        return [r for r in records if isinstance(r, SourceRecordError) or r.changed_at >= since]

    async def _accounts(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        source = "M3 CRS630MI/LstAccountID AITP=1"
        floor = None if since is None else dt.datetime.combine(since.astimezone(dt.UTC).date(), dt.time(), dt.UTC)

        def build(row: Row) -> GLAccount:
            return GLAccount(account=key(row, "AITM"), name=text(row, "TX40"), account_type=text(row, "TX15"),
                             changed_at=ymd_stamp(row, "LMDT"))  # fmt: skip

        async for rows in self._dimension_rows(1):
            page = self._changed_since([convert("gl_accounts", source, r, build, ("AITM",)) for r in rows], floor)
            if page:
                yield page

    async def _cost_centers(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        dimension = self.options.cost_center_dimension
        source = f"M3 CRS630MI/LstAccountID AITP={dimension}"
        floor = None if since is None else dt.datetime.combine(since.astimezone(dt.UTC).date(), dt.time(), dt.UTC)

        def build(row: Row) -> CostCenter:
            return CostCenter(cost_center=key(row, "AITM"), name=text(row, "TX40"), plant=text(row, "DIVI"),
                              changed_at=ymd_stamp(row, "LMDT"))  # fmt: skip

        async for rows in self._dimension_rows(dimension):
            page = self._changed_since([convert("cost_centers", source, r, build, ("AITM",)) for r in rows], floor)
            if page:
                yield page

    async def cost_center_divisions(self) -> dict[str, str]:
        """Cost center -> owning division (``CRS630MI`` ``DIVI`` of the cost-center dimension)."""
        out: dict[str, str] = {}
        async for rows in self._dimension_rows(self.options.cost_center_dimension):
            for row in rows:
                if row.get("AITM") and row.get("DIVI"):
                    out[row["AITM"]] = row["DIVI"]
        return out

    async def division_currency(self, division: str) -> str:
        """The local currency of ``division``: the currency of its general ledger (``EGCUCD`` of an FGLEDG line).

        [INF] M3 keeps it in MNS100MI (``LOCD``); the ledger's own currency needs no extra program and is what
        the budget lines of the division are kept in. Cached; ``""`` when the division has no ledger lines.
        """
        cached = self._currencies.get(division)
        if cached is None:
            where = "EGDIVI = '" + division.replace("'", "''") + "'"
            rows = await self.api.select(["EGCUCD"], "FGLEDG", where, maxrecs=1)
            cached = self._currencies[division] = rows[0][0].strip() if rows and rows[0] else ""
        return cached

    # -- EXPORTMI tables -----------------------------------------------------------------------

    async def divisions(self) -> list[str]:
        """Configured divisions, else those found in the general ledger (skip-scan, cached)."""
        if self.options.divisions:
            return list(self.options.divisions)
        if self._divisions is None:
            self._divisions = await self.exporter.distinct("FGLEDG", "EGDIVI", numeric=False)
        return list(self._divisions)

    async def _partitions(
        self, table: str, division_field: str, year_field: str, extra: Sequence[str]
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for division in await self.divisions():
            base = [f"{division_field} = '{division}'", *extra]
            if self.options.years:
                years = [str(y) for y in self.options.years]
            else:
                years = await self.exporter.distinct(table, year_field, numeric=True, conditions=base)
            out.extend((division, year) for year in years)
        return out

    def _rows_to_dicts(self, spec: ExportSpec, rows: list[list[str]]) -> list[dict[str, str]]:
        fields = spec.fields
        width = len(fields)
        out = []
        for row in rows:
            if len(row) < width:
                padded = dict(zip(fields, row, strict=False))
                padded["__malformed__"] = f"{len(row)} of {width} fields"
                out.append(padded)
            else:
                out.append(dict(zip(fields, row, strict=True)))
        return out

    async def _gl_postings(
        self, since: dt.datetime | None, periods: frozenset[str] | None = None
    ) -> AsyncGenerator[list[Extracted], None]:
        """FGLEDG per (division, year); ``periods`` become ``EGACDT`` ranges in the where clause (one read per
        contiguous run of periods)."""
        changed = [f"EGLMDT >= {_ymd_text(since.astimezone(dt.UTC).date())}"] if since is not None else []
        if periods is None:
            async for page in self._gl_range(changed):
                yield page
            return
        for first, last in period_ranges(periods):
            dates = [f"EGACDT >= {_ymd_text(first)}", f"EGACDT <= {_ymd_text(last)}"]
            async for page in self._gl_range([*changed, *dates]):
                yield page

    async def _gl_range(self, extra: list[str]) -> AsyncGenerator[list[Extracted], None]:
        spec = self._gl
        cc_field = f"EGAIT{self.options.cost_center_dimension}"
        company = self.options.company

        def build(row: Row) -> GLPosting:
            _whole(row)
            accounting_date = ymd(row, "EGACDT")
            return GLPosting(company=company or text(row, "EGCONO"), division=key(row, "EGDIVI"),
                             year=integer(row, "EGYEA4"), journal=key(row, "EGJRNO"), line=integer(row, "EGJSNO"),
                             account=key(row, "EGAIT1"), cost_center=text(row, cc_field),
                             accounting_date=accounting_date, period=period(accounting_date),
                             currency=text(row, "EGCUCD"), amount=decimal(row, "EGACAM"), text=text(row, "EGVTXT"),
                             changed_at=ymd_stamp(row, "EGLMDT"))  # fmt: skip

        keys = ("EGCONO", "EGDIVI", "EGYEA4", "EGJRNO", "EGJSNO")
        fields = spec.fields
        width = len(fields)

        def fast(row: list[str]) -> GLPosting | None:
            """The common case straight from the split row; None sends the row to ``build`` (which explains)."""
            cono, divi, yea4, jrno, jsno, acdt, ait1, cc, acam, cucd, _, _, _, lmdt, vtxt = row
            day = parse_ymd(acdt)
            stamp = parse_ymd(lmdt) if lmdt and lmdt != "0" else None
            if not (cono and divi and jrno and ait1 and acam) or isinstance(day, str) or isinstance(stamp, str):
                return None
            try:
                amount = Decimal(acam)
                if not amount.is_finite():
                    return None
                changed = EPOCH if stamp is None else midnight(stamp)
                return GLPosting(company=company or cono, division=divi, year=int(yea4), journal=jrno, line=int(jsno),
                                 account=ait1, cost_center=cc, accounting_date=day, period=period(day), currency=cucd,
                                 amount=amount, text=vtxt, changed_at=changed)  # fmt: skip
            except (ValueError, ArithmeticError):
                return None

        def source_of(division: str, year: str) -> Callable[[], AsyncGenerator[list[Extracted], None]]:
            async def pages() -> AsyncGenerator[list[Extracted], None]:
                source = f"M3 EXPORTMI FGLEDG ({division}/{year})"
                conditions = [f"EGDIVI = '{division}'", f"EGYEA4 = {year}", *extra]
                async for rows in self.exporter.batches(spec, conditions, self.options.export_batch_size):
                    page: list[Extracted] = []
                    for row in rows:
                        record = fast(row) if len(row) == width else None
                        if record is None:
                            slow = self._rows_to_dicts(spec, [row])[0]
                            page.append(convert("gl_postings", source, slow, build, keys))
                        else:
                            page.append(record)
                    yield page

            return pages

        partitions = await self._partitions("FGLEDG", "EGDIVI", "EGYEA4", extra)
        async for page in merge([source_of(d, y) for d, y in partitions], limit=self.client.concurrency):
            yield page

    async def _ap_pages(
        self,
        trcd: str,
        since: dt.datetime | None,
        mapper: Callable[[str, str, list[dict[str, str]]], Awaitable[list[Extracted]]],
    ) -> AsyncGenerator[list[Extracted], None]:
        """FPLEDG rows of one transaction code, per (division, year) partition, partitions concurrently."""
        extra = [f"EPTRCD = {trcd}"]
        if since is not None:
            extra.append(f"EPLMDT >= {_ymd_text(since.astimezone(dt.UTC).date())}")

        def source_of(division: str, year: str) -> Callable[[], AsyncGenerator[list[Extracted], None]]:
            async def pages() -> AsyncGenerator[list[Extracted], None]:
                conditions = [f"EPDIVI = '{division}'", f"EPINYR = {year}", *extra]
                async for rows in self.exporter.batches(FPLEDG, conditions, self.options.export_batch_size):
                    yield await mapper(division, year, self._rows_to_dicts(FPLEDG, rows))

            return pages

        partitions = await self._partitions("FPLEDG", "EPDIVI", "EPINYR", extra)
        async for page in merge([source_of(d, y) for d, y in partitions], limit=self.client.concurrency):
            yield page

    async def _expense_lines(self, division: str, year: str, vouchers: list[str]) -> dict[str, tuple[str, str]]:
        """Voucher -> (account, cost center) from its FGLEDG line with ``EGTRCD = 40``."""
        numbers = sorted({int(v) for v in vouchers if v.isdigit()})
        if not numbers:
            return {}
        cc_field = f"EGAIT{self.options.cost_center_dimension}"
        fields = ("EGVONO", "EGJRNO", "EGJSNO", "EGAIT1", cc_field)
        conditions = (
            f"EGDIVI = '{division}' and EGYEA4 = {year} and EGTRCD = {TRCD_INVOICE} "
            f"and EGVONO >= {numbers[0]} and EGVONO <= {numbers[-1]}"
        )
        rows = await self.api.select(fields, "FGLEDG", conditions, maxrecs=0)
        out: dict[str, tuple[str, str]] = {}
        for row in rows:
            if len(row) < len(fields):
                continue
            voucher, account, cost_center = row[0], row[3], row[4]
            # [INF] several TRCD 40 lines: the first one carrying a cost center is the expense line.
            if voucher not in out or (not out[voucher][1] and cost_center):
                out[voucher] = (account, cost_center)
        return out

    async def _supplier_invoices(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        keys = ("EPCONO", "EPDIVI", "EPSUNO", "EPSINO")
        company = self.options.company

        async def mapper(division: str, year: str, rows: list[dict[str, str]]) -> list[Extracted]:
            source = f"M3 EXPORTMI FPLEDG/FGLEDG ({division}/{year})"
            expense = await self._expense_lines(division, year, [r.get("EPVONO", "") for r in rows])

            def build(row: Row, expense: dict[str, tuple[str, str]] = expense) -> SupplierInvoice:
                _whole(row)
                voucher = key(row, "EPVONO")
                if voucher not in expense:
                    raise BadField(
                        "EPVONO", voucher, "no FGLEDG line with EGTRCD = 40 for this voucher (account unknown)"
                    )
                account, cost_center = expense[voucher]
                accounting_date = ymd(row, "EPACDT")
                return SupplierInvoice(company=company or text(row, "EPCONO"), division=key(row, "EPDIVI"),
                                       supplier_id=key(row, "EPSUNO"), invoice_number=key(row, "EPSINO"),
                                       invoice_date=ymd(row, "EPIVDT"), accounting_date=accounting_date,
                                       due_date=optional_ymd(row, "EPDUDT"), period=period(accounting_date),
                                       account=account, cost_center=cost_center, currency=text(row, "EPCUCD"),
                                       amount=-decimal(row, "EPCUAM"), changed_at=ymd_stamp(row, "EPLMDT"))  # fmt: skip

            return [convert("supplier_invoices", source, r, build, keys) for r in rows]

        async for page in self._ap_pages(TRCD_INVOICE, since, mapper):
            yield page

    async def _payments(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        keys = ("EPCONO", "EPDIVI", "EPINYR", "EPVONO")
        company = self.options.company

        def build(row: Row) -> Payment:
            _whole(row)
            paid = ymd(row, "EPACDT")
            return Payment(company=company or text(row, "EPCONO"), division=key(row, "EPDIVI"),
                           payment_id=f"{key(row, 'EPINYR')}-{key(row, 'EPVONO')}", supplier_id=key(row, "EPSUNO"),
                           invoice_number=text(row, "EPSINO"), payment_date=paid, period=period(paid),
                           currency=text(row, "EPCUCD"), amount=decimal(row, "EPCUAM"),
                           changed_at=ymd_stamp(row, "EPLMDT"))  # fmt: skip

        async def mapper(division: str, year: str, rows: list[dict[str, str]]) -> list[Extracted]:
            source = f"M3 EXPORTMI FPLEDG ({division}/{year})"
            return [convert("payments", source, r, build, keys) for r in rows]

        async for page in self._ap_pages(TRCD_PAYMENT, since, mapper):
            yield page

    async def _purchase_orders(self, since: dt.datetime | None) -> AsyncGenerator[list[Extracted], None]:
        extra = [f"IBLMDT >= {_ymd_text(since.astimezone(dt.UTC).date())}"] if since is not None else []
        keys = ("IBCONO", "IBPUNO", "IBPNLI")
        company = self.options.company

        def build(row: Row) -> PurchaseOrder:
            _whole(row)
            return PurchaseOrder(company=company or text(row, "IBCONO"), division=text(row, "IBDIVI"),
                                 po_number=key(row, "IBPUNO"), line=integer(row, "IBPNLI"),
                                 supplier_id=text(row, "IBSUNO"), item_id=text(row, "IBITNO"),
                                 order_date=ymd(row, "IBPUDT"), quantity=decimal(row, "IBORQA"),
                                 amount=decimal(row, "IBLNAM"), currency=text(row, "IBCUCD"),
                                 status=text(row, "IBPUSL"), changed_at=ymd_stamp(row, "IBLMDT"))  # fmt: skip

        def source_of(division: str) -> Callable[[], AsyncGenerator[list[Extracted], None]]:
            async def pages() -> AsyncGenerator[list[Extracted], None]:
                source = f"M3 EXPORTMI MPLINE ({division})"
                conditions = [f"IBDIVI = '{division}'", *extra]
                async for rows in self.exporter.batches(MPLINE, conditions, self.options.export_batch_size):
                    yield [
                        convert("purchase_orders", source, r, build, keys) for r in self._rows_to_dicts(MPLINE, rows)
                    ]

            return pages

        divisions = await self.divisions()
        async for page in merge([source_of(d) for d in divisions], limit=self.client.concurrency):
            yield page

    # -- budgets -------------------------------------------------------------------------------

    def read_budget(
        self, version: str, *, periods: Collection[str] | None = None
    ) -> AsyncGenerator[BudgetLine | SourceRecordError, None]:
        from ml_connector.infor.m3budget import M3Budgets

        return M3Budgets(self).read(version, periods=periods)

    async def write_budget(self, lines: BudgetLines, *, version: str, dry_run: bool = False) -> BudgetWriteReport:
        from ml_connector.infor.m3budget import M3Budgets

        return await M3Budgets(self).write(lines, version=version, dry_run=dry_run)


def _whole(row: Row) -> None:
    """Reject an EXPORTMI row that came back with fewer fields than selected."""
    problem = row.get("__malformed__")
    if problem:
        raise BadField("REPL", None, f"EXPORTMI row has {problem}")


__all__ = ["M3ProductLine"]
