"""SyteLine / CloudSuite Industrial (CSI) through Mongoose IDO REST v2: reads of every entity.

Each site is a Mongoose configuration (header ``X-Infor-MongooseConfig``). Every IDO is read with
``load`` and bookmark paging (``recordcap`` rows per page, ``loadtype=NEXT`` until ``MoreRowsExist``
is false); sites are read concurrently (bounded), the next page is fetched while the current one
is mapped. Incremental reads filter ``RecordDate >= '<watermark - overlap>'``.

| Entity            | IDO          | Read from                               |
|-------------------|--------------|-----------------------------------------|
| suppliers         | SLVendors    | master-data site(s), de-duplicated      |
| customers         | SLCustomers  | master-data site(s), de-duplicated      |
| items             | SLItems      | master-data site(s), de-duplicated      |
| gl_accounts       | SLCharts     | master-data site(s), de-duplicated      |
| cost_centers      | SLUnitcd1s   | every site (``Site`` = plant), de-dup.  |
| gl_postings       | SLLedgers    | every site                              |
| supplier_invoices | SLAptrxps    | every site                              |
| payments          | SLAppmts     | every site                              |
| purchase_orders   | SLPoItems    | every site                              |

Budget write-back (``SLChartBps``): :mod:`ml_connector.infor.sytelinebudget`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from ml_connector.infor.adapter import BaseProductLine, Extracted, ProductLineKind, period_ranges
from ml_connector.infor.budgets import BudgetLines, BudgetWriteReport
from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import InforError
from ml_connector.infor.mapping import (
    Row,
    SourceRecordError,
    convert,
    decimal,
    format_mongoose_datetime,
    integer,
    key,
    mongoose_date,
    mongoose_datetime,
    optional_mongoose_date,
    party_status,
    period,
    text,
    zone,
)
from ml_connector.infor.mongoose import MongooseApi
from ml_connector.infor.options import SyteLineOptions
from ml_connector.infor.paging import merge
from ml_connector.records import (
    BudgetLine,
    CostCenter,
    Customer,
    Entity,
    GLAccount,
    GLPosting,
    Item,
    Payment,
    PurchaseOrder,
    Record,
    Supplier,
    SupplierInvoice,
)

#: [INF] SyteLine chart-of-accounts types -> the canonical names used by M3's TX15 and the dataset.
ACCOUNT_TYPES = {"A": "Asset", "L": "Liability", "O": "Equity", "R": "Revenue", "E": "Expense"}


@dataclass(frozen=True)
class IdoRead:
    entity: Entity
    ido: str
    properties: tuple[str, ...]
    key_fields: tuple[str, ...]
    master: bool  # master data: read from the master-data site(s) and de-duplicate


READS: dict[Entity, IdoRead] = {
    r.entity: r
    for r in (
        IdoRead("suppliers", "SLVendors", ("VendNum", "Name", "CurrCode", "Country", "Stat", "RecordDate"),
                ("VendNum",), True),
        IdoRead("customers", "SLCustomers", ("CustNum", "Name", "CurrCode", "Country", "Stat", "RecordDate"),
                ("CustNum",), True),
        IdoRead("items", "SLItems", ("Item", "Description", "ProductCode", "Stat", "RecordDate"), ("Item",), True),
        IdoRead("gl_accounts", "SLCharts", ("Acct", "Description", "Type", "RecordDate"), ("Acct",), True),
        IdoRead("cost_centers", "SLUnitcd1s", ("UnitCode1", "Description", "Site", "RecordDate"),
                ("UnitCode1",), False),
        IdoRead("gl_postings", "SLLedgers", ("Site", "TransNum", "Acct", "AcctUnit1", "TransDate", "DomAmount",
                "CurrCode", "Ref", "RecordDate"), ("Site", "TransNum"), False),
        IdoRead("supplier_invoices", "SLAptrxps", ("Site", "VendNum", "Voucher", "InvNum", "InvDate", "DistDate",
                "DueDate", "Acct", "AcctUnit1", "CurrCode", "InvAmt", "Type", "RecordDate"),
                ("Site", "VendNum", "InvNum"), False),
        IdoRead("payments", "SLAppmts", ("Site", "VendNum", "CheckNum", "CheckSeq", "CheckDate", "Voucher", "InvNum",
                "CurrCode", "DomCheckAmt", "RecordDate"), ("Site", "VendNum", "CheckNum", "CheckSeq"), False),
        IdoRead("purchase_orders", "SLPoItems", ("Site", "PoNum", "PoLine", "VendNum", "Item", "OrderDate",
                "QtyOrdered", "UnitCost", "CurrCode", "Stat", "RecordDate"), ("Site", "PoNum", "PoLine"), False),
    )
}  # fmt: skip


class SyteLineProductLine(BaseProductLine):
    name: ClassVar[ProductLineKind] = "SyteLine"
    supported: ClassVar[frozenset[Entity]] = frozenset({*READS, "budget_lines"})
    budget_supported: ClassVar[bool] = True

    def __init__(self, client: IonApiClient, options: SyteLineOptions) -> None:
        super().__init__(client)
        if not options.sites:
            raise InforError(
                "SyteLine needs SyteLineOptions.sites: site code -> Mongoose configuration "
                f"(e.g. {SyteLineOptions.configs_for(client.tenant, ['SITE1'])})"
            )
        self.options = options
        self.api = MongooseApi(client)
        self.zone = zone(options.timezone)
        self._builders: dict[Entity, Callable[[Row], Record]] = {
            "suppliers": self._supplier,
            "customers": self._customer,
            "items": self._item,
            "gl_accounts": self._account,
            "cost_centers": self._cost_center,
            "gl_postings": self._posting,
            "supplier_invoices": self._invoice,
            "payments": self._payment,
            "purchase_orders": self._po_line,
        }

    # -- reading -------------------------------------------------------------------------------

    def sites_for(self, spec: IdoRead) -> list[tuple[str, str]]:
        if spec.master and self.options.master_data_site is not None:
            site = self.options.master_data_site
            return [(site, self.options.sites[site])]
        return sorted(self.options.sites.items())

    def record_date_filter(self, since: dt.datetime | None) -> str | None:
        if since is None:
            return None
        return f"RecordDate >= '{format_mongoose_datetime(since, self.zone)}'"

    def trans_date_filter(self, periods: frozenset[str] | None) -> str | None:
        """``periods`` as ``TransDate`` ranges (``SLLedgers``), one parenthesized range per run of months."""
        if not periods:
            return None
        ranges = [
            f"(TransDate >= '{first:%Y%m%d}' AND TransDate < '{last + dt.timedelta(days=1):%Y%m%d}')"
            for first, last in period_ranges(periods)
        ]
        return ranges[0] if len(ranges) == 1 else "(" + " OR ".join(ranges) + ")"

    async def _read(
        self, entity: Entity, changed_since: dt.datetime | None, periods: frozenset[str] | None = None
    ) -> AsyncGenerator[Extracted, None]:
        spec = READS[entity]
        since = None if changed_since is None else changed_since - self.options.incremental_overlap
        build = self._builders[entity]
        deduplicate = spec.master or entity == "cost_centers"
        seen: set[str] = set()
        filters = [self.record_date_filter(since)]
        if entity == "gl_postings":
            filters.append(self.trans_date_filter(periods))
        combined = " AND ".join(f for f in filters if f) or None
        async for page in self.pages(spec, build, combined):
            for item in page:
                if deduplicate and not isinstance(item, SourceRecordError):
                    if item.natural_key in seen:
                        continue
                    seen.add(item.natural_key)
                yield item

    def pages(
        self, spec: IdoRead, build: Callable[[Row], Record], filter: str | None
    ) -> AsyncGenerator[list[Extracted], None]:
        def source_of(site: str, config: str) -> Callable[[], AsyncGenerator[list[Extracted], None]]:
            async def pages() -> AsyncGenerator[list[Extracted], None]:
                source = f"SyteLine {spec.ido} ({config})"
                async for items in self.api.load(
                    spec.ido, config, properties=spec.properties, filter=filter, page_size=self.options.page_size
                ):
                    yield [convert(spec.entity, source, row, build, spec.key_fields) for row in items]

            return pages

        sources = [source_of(site, config) for site, config in self.sites_for(spec)]
        return merge(sources, limit=self.client.concurrency)

    # -- row mapping ---------------------------------------------------------------------------

    def _changed(self, row: Row) -> dt.datetime:
        return mongoose_datetime(row, "RecordDate", self.zone)

    def _supplier(self, row: Row) -> Supplier:
        return Supplier(supplier_id=key(row, "VendNum"), name=text(row, "Name"), currency=text(row, "CurrCode"),
                        country=text(row, "Country"), status=party_status(text(row, "Stat")),
                        changed_at=self._changed(row))  # fmt: skip

    def _customer(self, row: Row) -> Customer:
        return Customer(customer_id=key(row, "CustNum"), name=text(row, "Name"), currency=text(row, "CurrCode"),
                        country=text(row, "Country"), status=party_status(text(row, "Stat")),
                        changed_at=self._changed(row))  # fmt: skip

    def _item(self, row: Row) -> Item:
        return Item(item_id=key(row, "Item"), description=text(row, "Description"),
                    item_type=text(row, "ProductCode"), status=party_status(text(row, "Stat")),
                    changed_at=self._changed(row))  # fmt: skip

    def _account(self, row: Row) -> GLAccount:
        kind = text(row, "Type")
        return GLAccount(account=key(row, "Acct"), name=text(row, "Description"),
                         account_type=ACCOUNT_TYPES.get(kind, kind), changed_at=self._changed(row))  # fmt: skip

    def _cost_center(self, row: Row) -> CostCenter:
        return CostCenter(cost_center=key(row, "UnitCode1"), name=text(row, "Description"), plant=text(row, "Site"),
                          changed_at=self._changed(row))  # fmt: skip

    def _posting(self, row: Row) -> GLPosting:
        day = mongoose_date(row, "TransDate")
        # [INF] SLLedgers has one row per posted line, numbered site-wide by TransNum: it is the journal
        # reference here and the line number is 1.
        return GLPosting(company=self.options.company, division=key(row, "Site"), year=day.year,
                         journal=key(row, "TransNum"), line=1, account=key(row, "Acct"),
                         cost_center=text(row, "AcctUnit1"), accounting_date=day, period=period(day),
                         currency=text(row, "CurrCode"), amount=decimal(row, "DomAmount"), text=text(row, "Ref"),
                         changed_at=self._changed(row))  # fmt: skip

    def _invoice(self, row: Row) -> SupplierInvoice:
        distributed = mongoose_date(row, "DistDate")
        return SupplierInvoice(company=self.options.company, division=key(row, "Site"),
                               supplier_id=key(row, "VendNum"), invoice_number=key(row, "InvNum"),
                               invoice_date=mongoose_date(row, "InvDate"), accounting_date=distributed,
                               due_date=optional_mongoose_date(row, "DueDate"), period=period(distributed),
                               account=key(row, "Acct"), cost_center=text(row, "AcctUnit1"),
                               currency=text(row, "CurrCode"), amount=decimal(row, "InvAmt"),
                               status=text(row, "Type"), changed_at=self._changed(row))  # fmt: skip

    def _payment(self, row: Row) -> Payment:
        paid = mongoose_date(row, "CheckDate")
        payment_id = f"{key(row, 'CheckNum')}-{integer(row, 'CheckSeq')}"
        return Payment(company=self.options.company, division=key(row, "Site"), payment_id=payment_id,
                       supplier_id=key(row, "VendNum"), invoice_number=text(row, "InvNum"), payment_date=paid,
                       period=period(paid), currency=text(row, "CurrCode"), amount=decimal(row, "DomCheckAmt"),
                       changed_at=self._changed(row))  # fmt: skip

    def _po_line(self, row: Row) -> PurchaseOrder:
        quantity, unit_cost = decimal(row, "QtyOrdered"), decimal(row, "UnitCost")
        return PurchaseOrder(company=self.options.company, division=key(row, "Site"), po_number=key(row, "PoNum"),
                             line=integer(row, "PoLine"), supplier_id=text(row, "VendNum"), item_id=text(row, "Item"),
                             order_date=mongoose_date(row, "OrderDate"), quantity=quantity,
                             amount=_money(quantity * unit_cost), currency=text(row, "CurrCode"),
                             status=text(row, "Stat"), changed_at=self._changed(row))  # fmt: skip

    async def cost_center_sites(self) -> dict[str, str]:
        """Unit code 1 -> the site that owns it (``SLUnitcd1s.Site``)."""
        out: dict[str, str] = {}
        spec = READS["cost_centers"]
        async for page in self.pages(spec, self._cost_center, None):
            for item in page:
                if isinstance(item, CostCenter) and item.plant:
                    out.setdefault(item.cost_center, item.plant)
        return out

    # -- budgets -------------------------------------------------------------------------------

    def read_budget(
        self, version: str, *, periods: Collection[str] | None = None
    ) -> AsyncGenerator[BudgetLine | SourceRecordError, None]:
        from ml_connector.infor.sytelinebudget import SyteLineBudgets

        return SyteLineBudgets(self).read(version, periods=periods)

    async def write_budget(self, lines: BudgetLines, *, version: str, dry_run: bool = False) -> BudgetWriteReport:
        from ml_connector.infor.sytelinebudget import SyteLineBudgets

        return await SyteLineBudgets(self).write(lines, version=version, dry_run=dry_run)


def _money(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))
