"""Canonical finance records: what every Infor product line is read into, and what the sync engine loads.

They sit below both clients (DESIGN.md places them in ``sync/records.py``; they live here so that the
Infor adapters, which are below ``sync`` in the layering, can yield them; ``sync.records`` re-exports).

Records are frozen slotted dataclasses (cheap at millions of rows). Amounts are :class:`~decimal.Decimal`,
periods are ``YYYY-MM`` strings, ``changed_at`` is the source's last-change time (UTC) used for
incremental reads. ``natural_key`` identifies a record across runs; :func:`content_hash` detects change.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

Entity = Literal[
    "suppliers",
    "supplier_invoices",
    "purchase_orders",
    "payments",
    "gl_accounts",
    "cost_centers",
    "gl_postings",
    "customers",
    "items",
    "budget_lines",
]

ENTITIES: tuple[Entity, ...] = (
    "suppliers",
    "supplier_invoices",
    "purchase_orders",
    "payments",
    "gl_accounts",
    "cost_centers",
    "gl_postings",
    "customers",
    "items",
    "budget_lines",
)

_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def period_of(day: dt.date) -> str:
    """``YYYY-MM`` of a date."""
    return f"{day.year:04d}-{day.month:02d}"


def check_period(value: str) -> str:
    if not _PERIOD.match(value):
        raise ValueError(f"period {value!r} is not of the form YYYY-MM")
    return value


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    """Base of all canonical records."""

    entity: ClassVar[Entity]
    key_fields: ClassVar[tuple[str, ...]]

    changed_at: dt.datetime = _EPOCH

    @property
    def natural_key(self) -> str:
        """Stable identity across runs, e.g. ``100/AAA/S0001/INV-42``."""
        return "/".join(str(getattr(self, name)) for name in self.key_fields)

    def to_dict(self) -> dict[str, Any]:
        """Normalized, JSON-ready payload (amounts and dates as strings)."""
        out: dict[str, Any] = {}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            if isinstance(value, Decimal):
                value = format(value, "f")
            elif isinstance(value, dt.date):  # datetime is a date
                value = value.isoformat()
            out[name] = value
        return out


_FIELD_NAMES: dict[type[Record], tuple[str, ...]] = {}


def _field_names(cls: type[Record]) -> tuple[str, ...]:
    """Field names of a record class, computed once (``dataclasses.fields`` per call dominated ``to_dict``)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Supplier(Record):
    entity: ClassVar[Entity] = "suppliers"
    key_fields: ClassVar[tuple[str, ...]] = ("supplier_id",)

    supplier_id: str
    name: str
    currency: str = ""
    country: str = ""
    status: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SupplierInvoice(Record):
    entity: ClassVar[Entity] = "supplier_invoices"
    key_fields: ClassVar[tuple[str, ...]] = ("company", "division", "supplier_id", "invoice_number")

    company: str
    division: str
    supplier_id: str
    invoice_number: str
    invoice_date: dt.date
    accounting_date: dt.date
    due_date: dt.date | None
    period: str
    account: str
    cost_center: str
    currency: str
    amount: Decimal
    status: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Payment(Record):
    entity: ClassVar[Entity] = "payments"
    key_fields: ClassVar[tuple[str, ...]] = ("company", "division", "payment_id")

    company: str
    division: str
    payment_id: str
    supplier_id: str
    invoice_number: str
    payment_date: dt.date
    period: str
    currency: str
    amount: Decimal


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PurchaseOrder(Record):
    entity: ClassVar[Entity] = "purchase_orders"
    key_fields: ClassVar[tuple[str, ...]] = ("company", "po_number", "line")

    company: str
    division: str
    po_number: str
    line: int
    supplier_id: str
    item_id: str
    order_date: dt.date
    quantity: Decimal
    amount: Decimal
    currency: str
    status: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GLAccount(Record):
    entity: ClassVar[Entity] = "gl_accounts"
    key_fields: ClassVar[tuple[str, ...]] = ("account",)

    account: str
    name: str
    account_type: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CostCenter(Record):
    entity: ClassVar[Entity] = "cost_centers"
    key_fields: ClassVar[tuple[str, ...]] = ("cost_center",)

    cost_center: str
    name: str
    plant: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class GLPosting(Record):
    """One GL transaction line: amount on an account and cost center in a period (debit positive)."""

    entity: ClassVar[Entity] = "gl_postings"
    key_fields: ClassVar[tuple[str, ...]] = ("company", "division", "year", "journal", "line")

    company: str
    division: str
    year: int
    journal: str
    line: int
    account: str
    cost_center: str
    accounting_date: dt.date
    period: str
    currency: str
    amount: Decimal
    text: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Customer(Record):
    entity: ClassVar[Entity] = "customers"
    key_fields: ClassVar[tuple[str, ...]] = ("customer_id",)

    customer_id: str
    name: str
    currency: str = ""
    country: str = ""
    status: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Item(Record):
    entity: ClassVar[Entity] = "items"
    key_fields: ClassVar[tuple[str, ...]] = ("item_id",)

    item_id: str
    description: str
    item_type: str = ""
    status: str = ""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BudgetLine(Record):
    """One approved budget or forecast figure for write-back: account x cost center x period."""

    entity: ClassVar[Entity] = "budget_lines"
    key_fields: ClassVar[tuple[str, ...]] = ("version", "account", "cost_center", "period")

    version: str
    account: str
    cost_center: str
    period: str
    currency: str
    amount: Decimal


RECORD_TYPES: Mapping[Entity, type[Record]] = {
    cls.entity: cls
    for cls in (
        Supplier,
        SupplierInvoice,
        Payment,
        PurchaseOrder,
        GLAccount,
        CostCenter,
        GLPosting,
        Customer,
        Item,
        BudgetLine,
    )
}


def content_hash(record: Record, payload: Mapping[str, Any] | None = None) -> str:
    """SHA-256 over the normalized payload, ``changed_at`` excluded: equal content, equal hash.

    ``payload`` is ``record.to_dict()`` when the caller has it already (it is read, not modified).
    """
    data = record.to_dict() if payload is None else payload
    canonical = "\x1f".join(f"{k}={data[k]}" for k in sorted(data) if k != "changed_at")
    return hashlib.sha256(f"{record.entity}\x1e{canonical}".encode()).hexdigest()
