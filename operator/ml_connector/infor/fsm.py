"""FSM (Infor CloudSuite Financials & Supply Management, Landmark): GL and AP reads only.

Landmark's generic list API through the gateway (reference §6.1; parameters are [INF], pinned contract):
``GET FSM/fsm/soap/classes/{BusinessClass}/lists/_generic?_fields=a,b&_limit=N&_start=OFFSET&_out=JSON``
(``&_fts=<epoch ms>`` for changes since) -> a JSON array of flat objects. Pages are read until one is
shorter than ``_limit``.

Covered: ``gl_postings`` (GLTransactionDetail), ``suppliers`` (Vendor), ``supplier_invoices``
(PayablesInvoice), ``gl_accounts`` (GeneralLedgerChartAccount), ``cost_centers`` (AccountingUnit).
Not covered (raise :class:`~ml_connector.infor.errors.UnsupportedEntityError`): payments, purchase
orders, customers, items, and budget read/write-back (FSM budget business classes are not confirmed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ml_connector.infor.adapter import BaseProductLine, Extracted, ProductLineKind
from ml_connector.infor.client import IonApiClient
from ml_connector.infor.errors import ProtocolError
from ml_connector.infor.mapping import (
    Row,
    convert,
    decimal,
    epoch_millis,
    iso_date,
    key,
    optional_iso_date,
    period,
    text,
)
from ml_connector.infor.options import FsmOptions
from ml_connector.infor.paging import prefetch
from ml_connector.records import CostCenter, Entity, GLAccount, GLPosting, Record, Supplier, SupplierInvoice

BASE = "FSM/fsm/soap/classes"


@dataclass(frozen=True)
class ClassRead:
    entity: Entity
    business_class: str
    fields: tuple[str, ...]
    key_fields: tuple[str, ...]
    incremental: bool  # has LastModified: _fts applies


READS: dict[Entity, ClassRead] = {
    r.entity: r
    for r in (
        ClassRead("gl_postings", "GLTransactionDetail", ("GLTransactionDetail", "AccountingEntity",
                  "GeneralLedgerChartAccount", "AccountingUnit", "PostingDate", "TransactionAmount", "Currency",
                  "Description", "LastModified"), ("AccountingEntity", "GLTransactionDetail"), True),
        ClassRead("suppliers", "Vendor", ("Vendor", "VendorName", "Currency", "LastModified"), ("Vendor",), True),
        # [INF] beyond the pinned field lists: AccountingEntity on PayablesInvoice (the division) and
        # LastModified on the chart classes (incremental reads); both exist in the emulator.
        ClassRead("supplier_invoices", "PayablesInvoice", ("Vendor", "Invoice", "InvoiceDate", "DistributionDate",
                  "DueDate", "InvoiceAmount", "Currency", "GeneralLedgerChartAccount", "AccountingUnit",
                  "AccountingEntity", "LastModified"), ("AccountingEntity", "Vendor", "Invoice"), True),
        ClassRead("gl_accounts", "GeneralLedgerChartAccount", ("GeneralLedgerChartAccount", "Description",
                  "AccountType", "LastModified"), ("GeneralLedgerChartAccount",), True),
        ClassRead("cost_centers", "AccountingUnit", ("AccountingUnit", "Description", "AccountingEntity",
                  "LastModified"), ("AccountingUnit",), True),
    )
}  # fmt: skip


class FsmProductLine(BaseProductLine):
    name: ClassVar[ProductLineKind] = "FSM"
    supported: ClassVar[frozenset[Entity]] = frozenset(READS)

    def __init__(self, client: IonApiClient, options: FsmOptions) -> None:
        super().__init__(client)
        self.options = options
        self._builders: dict[Entity, Callable[[Row], Record]] = {
            "gl_postings": self._posting,
            "suppliers": self._supplier,
            "supplier_invoices": self._invoice,
            "gl_accounts": self._account,
            "cost_centers": self._cost_center,
        }

    async def _pages(self, spec: ClassRead, since: dt.datetime | None) -> AsyncGenerator[list[dict[str, Any]], None]:
        size = self.options.page_size
        start = 0
        path = f"{BASE}/{spec.business_class}/lists/_generic"
        while True:
            params: dict[str, str | int] = {"_fields": ",".join(spec.fields), "_limit": size, "_start": start,
                                            "_out": "JSON"}  # fmt: skip
            if since is not None and spec.incremental:
                params["_fts"] = int(since.timestamp() * 1000)
            _, body = await self.client.request_json("GET", path, params=params)
            if not isinstance(body, list):
                raise ProtocolError(f"FSM {spec.business_class} list: expected a JSON array")
            rows = [r for r in body if isinstance(r, dict)]
            yield rows
            if len(body) < size:
                return
            start += len(body)

    async def _read(
        self, entity: Entity, changed_since: dt.datetime | None, periods: frozenset[str] | None = None
    ) -> AsyncGenerator[Extracted, None]:
        # ``periods`` is filtered client-side by BaseProductLine.read (the generic list API has no date filter).
        spec = READS[entity]
        since = None if changed_since is None else changed_since - self.options.incremental_overlap
        build = self._builders[entity]
        source = f"FSM {spec.business_class}"
        async for rows in prefetch(self._pages(spec, since)):
            for row in rows:
                yield convert(entity, source, row, build, spec.key_fields)

    # -- mapping -------------------------------------------------------------------------------

    def _posting(self, row: Row) -> GLPosting:
        day = iso_date(row, "PostingDate")
        entity = key(row, "AccountingEntity")
        return GLPosting(company=self.options.company or entity, division=entity, year=day.year,
                         journal=key(row, "GLTransactionDetail"), line=1,
                         account=key(row, "GeneralLedgerChartAccount"), cost_center=text(row, "AccountingUnit"),
                         accounting_date=day, period=period(day), currency=text(row, "Currency"),
                         amount=decimal(row, "TransactionAmount"), text=text(row, "Description"),
                         changed_at=epoch_millis(row, "LastModified"))  # fmt: skip

    def _supplier(self, row: Row) -> Supplier:
        return Supplier(supplier_id=key(row, "Vendor"), name=text(row, "VendorName"), currency=text(row, "Currency"),
                        changed_at=epoch_millis(row, "LastModified"))  # fmt: skip

    def _invoice(self, row: Row) -> SupplierInvoice:
        distributed = iso_date(row, "DistributionDate")
        return SupplierInvoice(company=self.options.company, division=text(row, "AccountingEntity"),
                               supplier_id=key(row, "Vendor"),
                               invoice_number=key(row, "Invoice"), invoice_date=iso_date(row, "InvoiceDate"),
                               accounting_date=distributed, due_date=optional_iso_date(row, "DueDate"),
                               period=period(distributed), account=text(row, "GeneralLedgerChartAccount"),
                               cost_center=text(row, "AccountingUnit"), currency=text(row, "Currency"),
                               amount=decimal(row, "InvoiceAmount"),
                               changed_at=epoch_millis(row, "LastModified"))  # fmt: skip

    def _account(self, row: Row) -> GLAccount:
        return GLAccount(account=key(row, "GeneralLedgerChartAccount"), name=text(row, "Description"),
                         account_type=text(row, "AccountType"),
                         changed_at=epoch_millis(row, "LastModified"))  # fmt: skip

    def _cost_center(self, row: Row) -> CostCenter:
        return CostCenter(cost_center=key(row, "AccountingUnit"), name=text(row, "Description"),
                          plant=text(row, "AccountingEntity"),
                          changed_at=epoch_millis(row, "LastModified"))  # fmt: skip
