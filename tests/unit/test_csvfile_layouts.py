"""Import file layouts of the default model, and the gl_actuals aggregation, through the chunker."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import gzip
import io
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest

from ml_connector.records import (
    CostCenter,
    GLAccount,
    GLPosting,
    Payment,
    Supplier,
    SupplierInvoice,
    content_hash,
)
from ml_connector.sync.csvfile import CsvChunker
from ml_connector.sync.layouts import (
    COST_CENTERS,
    DEFAULT_LAYOUTS,
    GL_ACCOUNTS,
    GL_ACTUALS,
    PAYMENTS,
    SUPPLIER_INVOICES,
    SUPPLIERS,
    Hashed,
    Layout,
    LayoutError,
    layout_for,
    number,
    text,
)
from ml_connector.sync.spill import RowRef

T = TypeVar("T")
DAY = dt.date(2024, 2, 15)


async def aiter(items: Iterable[T]) -> AsyncIterator[T]:
    for item in items:
        yield item


def posting(
    journal: str, line: int, account: str, cc: str, period: str, amount: str, currency: str = "EUR"
) -> GLPosting:
    return GLPosting(
        company="100",
        division="AAA",
        year=2024,
        journal=journal,
        line=line,
        account=account,
        cost_center=cc,
        accounting_date=DAY,
        period=period,
        currency=currency,
        amount=Decimal(amount),
    )


def test_default_headers_are_the_models() -> None:
    assert {name: ",".join(layout.header) for name, layout in DEFAULT_LAYOUTS.items()} == {
        "gl_accounts": "Code,Name,Type",
        "cost_centers": "Code,Name,Plant",
        "suppliers": "Code,Name,Currency",
        "supplier_invoices": "Code,Supplier,Invoice Number,Invoice Date,Period,Account,Cost Center,Currency,Amount",
        "payments": "Code,Supplier,Invoice Number,Payment Date,Period,Currency,Amount",
        "gl_actuals": "Account,Cost Center,Period,Amount,Postings",
    }
    assert {layout.file_name for layout in DEFAULT_LAYOUTS.values()} == {f"{name}.csv" for name in DEFAULT_LAYOUTS}
    kinds = {c.name: c.kind for c in SUPPLIER_INVOICES.csv_columns}
    assert kinds["Amount"] == "number"
    assert {k for k, v in kinds.items() if v == "text"} == set(SUPPLIER_INVOICES.header) - {"Amount"}
    assert [c.kind for c in GL_ACTUALS.csv_columns] == ["text", "text", "text", "number", "number"]


def test_rows_of_the_plain_layouts() -> None:
    inv = SupplierInvoice(
        company="100",
        division="AAA",
        supplier_id="S1",
        invoice_number="INV-9",
        invoice_date=DAY,
        accounting_date=DAY,
        due_date=None,
        period="2024-02",
        account="6000",
        cost_center="CC1",
        currency="EUR",
        amount=Decimal("12.50"),
    )
    row = SUPPLIER_INVOICES.row(inv)
    assert row.values == ("100/AAA/S1/INV-9", "S1", "INV-9", DAY, "2024-02", "6000", "CC1", "EUR", Decimal("12.50"))
    assert list(row.refs) == [RowRef(inv.natural_key, content_hash(inv))]
    assert list(SUPPLIER_INVOICES.row(Hashed(inv, "precomputed")).refs) == [RowRef(inv.natural_key, "precomputed")]

    pay = Payment(
        company="100",
        division="AAA",
        payment_id="P7",
        supplier_id="S1",
        invoice_number="INV-9",
        payment_date=DAY,
        period="2024-02",
        currency="EUR",
        amount=Decimal("12.50"),
    )
    assert PAYMENTS.row(pay).values == ("100/AAA/P7", "S1", "INV-9", DAY, "2024-02", "EUR", Decimal("12.50"))
    assert GL_ACCOUNTS.row(GLAccount(account="6000", name="Travel", account_type="E")).values == ("6000", "Travel", "E")
    assert COST_CENTERS.row(CostCenter(cost_center="CC1", name="Plant 1", plant="P1")).values == (
        "CC1",
        "Plant 1",
        "P1",
    )
    assert SUPPLIERS.row(Supplier(supplier_id="S1", name="Acme", currency="EUR")).values == ("S1", "Acme", "EUR")


def test_layout_for_entity() -> None:
    assert layout_for("gl_postings") is GL_ACTUALS
    assert layout_for("supplier_invoices") is SUPPLIER_INVOICES
    with pytest.raises(LayoutError, match=r"no import file layout for 'items' \(known: gl_accounts -> gl_accounts.csv"):
        layout_for("items")


async def test_plain_layout_through_the_chunker_maps_lines_back_to_records() -> None:
    invoices = [
        SupplierInvoice(
            company="100",
            division="AAA",
            supplier_id="S1",
            invoice_number=f"INV-{n}",
            invoice_date=DAY,
            accounting_date=DAY,
            due_date=None,
            period="2024-02",
            account="6000",
            cost_center="CC1",
            currency="EUR",
            amount=Decimal(n),
        )
        for n in range(10)
    ]
    chunker = CsvChunker(SUPPLIER_INVOICES.csv_columns, chunk_size=300)
    chunks = [c async for c in chunker.chunks(SUPPLIER_INVOICES.rows(aiter(invoices)))]
    body = b"".join(gzip.decompress(c.data) for c in chunks).decode()
    lines = list(csv.reader(io.StringIO(body, newline="")))
    assert lines[3] == ["100/AAA/S1/INV-2", "S1", "INV-2", "2024-02-15", "2024-02", "6000", "CC1", "EUR", "2"]
    found = await chunker.records_for_lines([4])  # _Line_ 4 = third invoice
    assert found == {4: [RowRef(invoices[2].natural_key, content_hash(invoices[2]))]}


@pytest.mark.parametrize("threshold", [1_000_000, 3], ids=["in-memory", "spilled"])
async def test_gl_actuals_aggregates_per_cell_and_keeps_the_postings_of_each_row(
    threshold: int, tmp_path: Path
) -> None:
    postings = [
        posting("J1", 1, "6000", "CC2", "2024-02", "10.00"),
        posting("J1", 2, "6000", "CC1", "2024-02", "5.25"),
        posting("J2", 1, "6000", "CC2", "2024-02", "-2.50"),
        posting("J2", 2, "4000", "CC1", "2024-01", "100"),
        posting("J3", 1, "6000", "CC2", "2024-03", "1"),
        posting("J3", 2, "6000", "CC2", "2024-02", "0.75"),
    ]
    rows = [r async for r in GL_ACTUALS.rows(aiter(postings), threshold=threshold, directory=tmp_path)]
    assert [r.values for r in rows] == [
        ("4000", "CC1", "2024-01", Decimal("100"), 1),
        ("6000", "CC1", "2024-02", Decimal("5.25"), 1),
        ("6000", "CC2", "2024-02", Decimal("8.25"), 3),
        ("6000", "CC2", "2024-03", Decimal("1"), 1),
    ]
    assert [[ref.natural_key for ref in r.refs] for r in rows] == [
        ["100/AAA/2024/J2/2"],
        ["100/AAA/2024/J1/2"],
        ["100/AAA/2024/J1/1", "100/AAA/2024/J2/1", "100/AAA/2024/J3/2"],
        ["100/AAA/2024/J3/1"],
    ]
    assert not list(tmp_path.iterdir())  # the spill file is gone  # noqa: ASYNC240

    # through the chunker: a rejected aggregate line marks all its postings
    chunker = CsvChunker(GL_ACTUALS.csv_columns, compress=False)
    chunks = [c async for c in chunker.chunks(GL_ACTUALS.rows(aiter(postings), threshold=threshold))]
    assert chunks[0].data.decode().splitlines()[3] == "6000,CC2,2024-02,8.25,3"
    found = await chunker.records_for_lines([4])
    assert {ref.natural_key for ref in found[4]} == {"100/AAA/2024/J1/1", "100/AAA/2024/J2/1", "100/AAA/2024/J3/2"}
    assert {ref.content_hash for ref in found[4]} == {
        content_hash(p) for p in postings if p.cost_center == "CC2" and p.period == "2024-02"
    }


async def test_the_same_postings_in_another_order_give_the_same_file() -> None:
    postings = [
        posting(f"J{n}", n, f"{6000 + n % 3}", f"CC{n % 2}", f"2024-0{1 + n % 3}", f"{n}.10") for n in range(30)
    ]
    first = [r.values async for r in GL_ACTUALS.rows(aiter(postings))]
    second = [r.values async for r in GL_ACTUALS.rows(aiter(list(reversed(postings))))]
    assert first == second


async def test_gl_actuals_refuses_to_sum_currencies() -> None:
    postings = [posting("J1", 1, "6000", "CC1", "2024-02", "1"), posting("J1", 2, "6000", "CC1", "2024-02", "1", "USD")]
    with pytest.raises(
        LayoutError,
        match=r"100/AAA/2024/J1/2 in USD to the cell \(Account 6000, Cost Center CC1, Period 2024-02\) that holds EUR",
    ):
        [r async for r in GL_ACTUALS.rows(aiter(postings))]


def test_custom_layouts_are_data() -> None:
    detail: Layout[GLPosting] = Layout(
        "gl_detail",
        "gl_detail.csv",
        "gl_postings",
        (text("Code", lambda r: r.natural_key), text("Text", lambda r: r.text), number("Amount", lambda r: r.amount)),
    )
    p = dataclasses.replace(posting("J1", 1, "6000", "CC1", "2024-02", "3"), text="=cmd")
    assert detail.header == ("Code", "Text", "Amount")
    assert detail.row(p).values == ("100/AAA/2024/J1/1", "=cmd", Decimal("3"))
