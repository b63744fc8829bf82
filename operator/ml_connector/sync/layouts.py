"""Record -> Anaplan import file rows, as data: a layout is a file name and a list of columns, each
with a name, a kind (text | number) and a function of the record. Custom layouts (from the spec) are
built the same way.

The default model's files (header names fixed by the emulator's default model)::

    gl_accounts.csv        Code,Name,Type
    cost_centers.csv       Code,Name,Plant
    suppliers.csv          Code,Name,Currency
    supplier_invoices.csv  Code,Supplier,Invoice Number,Invoice Date,Period,Account,Cost Center,Currency,Amount
    payments.csv           Code,Supplier,Invoice Number,Payment Date,Period,Currency,Amount
    gl_actuals.csv         Account,Cost Center,Period,Amount,Postings

``Code`` of invoices and payments is the record's natural key, so loading a record again replaces its
row. ``gl_actuals`` is an :class:`AggregateLayout`: GL postings summed per account x cost center x
period, because the import replaces module cells — re-sending a period replaces its cells, never adds
to them. An aggregate row is only right when it is built from *all* postings of its cells: feed it a
full extract of the periods concerned, and do not drop unchanged postings before it (see
:mod:`ml_connector.sync.dedupe`). Memory: one small entry per cell (cells are account x cost center x
period, thousands, where postings are millions); the postings behind each cell (natural key, content
hash) go to a :class:`~ml_connector.sync.spill.RowRefs`, which spills to disk beyond its threshold, so a
rejected aggregate row marks all its postings rejected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

from ml_connector.records import (
    CostCenter,
    Entity,
    GLAccount,
    GLPosting,
    Payment,
    Record,
    Supplier,
    SupplierInvoice,
    content_hash,
)
from ml_connector.sync.csvfile import ColumnKind, CsvColumn, KeyedRow
from ml_connector.sync.spill import DEFAULT_THRESHOLD, RowRef, RowRefs

R = TypeVar("R", bound=Record)


class LayoutError(ValueError):
    """Records that cannot be put into a layout's rows (e.g. mixed currencies in one aggregate cell)."""


@dataclasses.dataclass(frozen=True, slots=True)
class LayoutColumn(Generic[R]):
    name: str
    value: Callable[[R], object]
    kind: ColumnKind = "text"

    def csv(self) -> CsvColumn:
        return CsvColumn(self.name, self.kind)


def text(name: str, value: Callable[[R], object]) -> LayoutColumn[R]:
    return LayoutColumn(name, value, "text")


def number(name: str, value: Callable[[R], object]) -> LayoutColumn[R]:
    return LayoutColumn(name, value, "number")


class Hashed(NamedTuple, Generic[R]):
    """A record with its content hash, as the deduplicator passes it on (so it is not computed twice)."""

    record: R
    content_hash: str


def _unpack(item: R | Hashed[R]) -> tuple[R, RowRef]:
    if isinstance(item, Hashed):
        return item.record, RowRef(item.record.natural_key, item.content_hash)
    return item, RowRef(item.natural_key, content_hash(item))


@dataclasses.dataclass(frozen=True, slots=True)
class Layout(Generic[R]):
    """One row per record."""

    name: str
    file_name: str
    entity: Entity
    columns: tuple[LayoutColumn[R], ...]
    aggregated = False

    @property
    def csv_columns(self) -> tuple[CsvColumn, ...]:
        return tuple(c.csv() for c in self.columns)

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def row(self, item: R | Hashed[R]) -> KeyedRow:
        record, ref = _unpack(item)
        return KeyedRow(tuple(c.value(record) for c in self.columns), (ref,))

    async def rows(self, records: AsyncIterable[R] | AsyncIterable[Hashed[R]]) -> AsyncIterator[KeyedRow]:
        async for item in records:
            yield self.row(item)


@dataclasses.dataclass(slots=True)
class _Cell:
    index: int
    amount: Decimal
    count: int
    currency: str


@dataclasses.dataclass(frozen=True, slots=True)
class AggregateLayout(Generic[R]):
    """Rows are groups of records: ``group_by`` columns, the sum of ``amount``, and the record count.

    ``currency`` (optional) must be the same for all records of a group: summing across currencies is
    refused with a :class:`LayoutError` naming the cell.
    """

    name: str
    file_name: str
    entity: Entity
    group_by: tuple[LayoutColumn[R], ...]
    amount_column: str
    amount: Callable[[R], Decimal]
    count_column: str
    currency: Callable[[R], str] | None = None
    aggregated = True

    @property
    def csv_columns(self) -> tuple[CsvColumn, ...]:
        return (
            *(c.csv() for c in self.group_by),
            CsvColumn(self.amount_column, "number"),
            CsvColumn(self.count_column, "number"),
        )

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.csv_columns)

    async def rows(
        self,
        records: AsyncIterable[R] | AsyncIterable[Hashed[R]],
        *,
        threshold: int = DEFAULT_THRESHOLD,
        directory: Path | None = None,
    ) -> AsyncIterator[KeyedRow]:
        """Aggregate every record, then yield one row per cell in sorted cell order (stable across runs)."""
        cells: dict[tuple[str, ...], _Cell] = {}
        async with RowRefs(threshold=threshold, directory=directory) as members:
            async for item in records:
                record, ref = _unpack(item)
                key = tuple(str(c.value(record)) for c in self.group_by)
                currency = self.currency(record) if self.currency is not None else ""
                cell = cells.get(key)
                if cell is None:
                    cell = cells[key] = _Cell(len(cells), Decimal(0), 0, currency)
                elif currency != cell.currency:
                    where = ", ".join(f"{c.name} {v}" for c, v in zip(self.group_by, key, strict=True))
                    raise LayoutError(
                        f"{self.file_name}: cannot add {record.entity} {record.natural_key} in {currency} to the cell"
                        f" ({where}) that holds {cell.currency}: one cell, one currency"
                    )
                cell.amount += self.amount(record)
                cell.count += 1
                members.add(cell.index, ref)
                if members.needs_spill:
                    await members.spill()
            for key in sorted(cells):
                cell = cells[key]
                refs = (await members.get([cell.index])).get(cell.index, [])
                yield KeyedRow((*key, cell.amount, cell.count), refs)


AnyLayout = Layout[Any] | AggregateLayout[Any]


def _period(record: Any) -> str:
    return str(record.period)


GL_ACCOUNTS: Layout[GLAccount] = Layout(
    "gl_accounts",
    "gl_accounts.csv",
    "gl_accounts",
    (text("Code", lambda r: r.account), text("Name", lambda r: r.name), text("Type", lambda r: r.account_type)),
)
COST_CENTERS: Layout[CostCenter] = Layout(
    "cost_centers",
    "cost_centers.csv",
    "cost_centers",
    (text("Code", lambda r: r.cost_center), text("Name", lambda r: r.name), text("Plant", lambda r: r.plant)),
)
SUPPLIERS: Layout[Supplier] = Layout(
    "suppliers",
    "suppliers.csv",
    "suppliers",
    (text("Code", lambda r: r.supplier_id), text("Name", lambda r: r.name), text("Currency", lambda r: r.currency)),
)
SUPPLIER_INVOICES: Layout[SupplierInvoice] = Layout(
    "supplier_invoices",
    "supplier_invoices.csv",
    "supplier_invoices",
    (
        text("Code", lambda r: r.natural_key),
        text("Supplier", lambda r: r.supplier_id),
        text("Invoice Number", lambda r: r.invoice_number),
        text("Invoice Date", lambda r: r.invoice_date),
        text("Period", _period),
        text("Account", lambda r: r.account),
        text("Cost Center", lambda r: r.cost_center),
        text("Currency", lambda r: r.currency),
        number("Amount", lambda r: r.amount),
    ),
)
PAYMENTS: Layout[Payment] = Layout(
    "payments",
    "payments.csv",
    "payments",
    (
        text("Code", lambda r: r.natural_key),
        text("Supplier", lambda r: r.supplier_id),
        text("Invoice Number", lambda r: r.invoice_number),
        text("Payment Date", lambda r: r.payment_date),
        text("Period", _period),
        text("Currency", lambda r: r.currency),
        number("Amount", lambda r: r.amount),
    ),
)
GL_ACTUALS: AggregateLayout[GLPosting] = AggregateLayout(
    "gl_actuals",
    "gl_actuals.csv",
    "gl_postings",
    (text("Account", lambda r: r.account), text("Cost Center", lambda r: r.cost_center), text("Period", _period)),
    amount_column="Amount",
    amount=lambda r: r.amount,
    count_column="Postings",
    currency=lambda r: r.currency,
)

#: The default model's layouts by name.
DEFAULT_LAYOUTS: Mapping[str, AnyLayout] = {
    layout.name: layout for layout in (GL_ACCOUNTS, COST_CENTERS, SUPPLIERS, SUPPLIER_INVOICES, PAYMENTS, GL_ACTUALS)
}


def layout_for(entity: str, layouts: Mapping[str, AnyLayout] = DEFAULT_LAYOUTS) -> AnyLayout:
    """The layout that loads ``entity`` (``gl_postings`` -> ``gl_actuals``)."""
    for layout in layouts.values():
        if layout.entity == entity:
            return layout
    known = ", ".join(f"{lay.entity} -> {lay.file_name}" for lay in layouts.values())
    raise LayoutError(f"no import file layout for {entity!r} (known: {known})")
