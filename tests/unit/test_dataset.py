"""The deterministic Northwind dataset (pure: no I/O)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter, defaultdict

import pytest

from ml_connector import records
from ml_connector.sandbox.dataset import (
    BLOCK,
    COMPANY,
    PLANTS,
    YEARS,
    Dataset,
    DatasetConfig,
    format_cents,
    parse_cents,
)

SMALL = DatasetConfig(seed=3, gl_postings=4_000)


@pytest.fixture(scope="module")
def ds() -> Dataset:
    return Dataset(SMALL)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = Dataset(SMALL), Dataset(SMALL), Dataset(DatasetConfig(seed=4, gl_postings=4_000))
    assert list(a.iter_postings()) == list(b.iter_postings())
    assert a.suppliers == b.suppliers
    assert list(a.budget_cells(2025)) == list(b.budget_cells(2025))
    assert [p.amount for p in itertools.islice(a.iter_postings(), 50)] != [
        p.amount for p in itertools.islice(c.iter_postings(), 50)
    ]


def test_shape_of_the_company(ds: Dataset) -> None:
    assert ds.company == COMPANY == "100"
    assert [(p.code, p.currency) for p in PLANTS] == [("P10", "USD"), ("P20", "MXN"), ("P30", "EUR")]
    assert 115 <= len(ds.accounts) <= 130
    assert {a.type for a in ds.accounts} == {"Revenue", "COGS", "Expense", "Asset", "Liability", "Equity"}
    assert all(len(a.code) == 4 and a.code.isdigit() for a in ds.accounts)
    assert len(ds.cost_centers) == 45
    for plant in PLANTS:
        centers = ds.plant_cost_centers(plant.code)
        assert len(centers) == 15
        assert all(c.code.startswith(f"CC{plant.digit}") for c in centers)
    assert len(ds.suppliers) == 500
    assert len({s.id for s in ds.suppliers}) == 500
    assert len({s.name for s in ds.suppliers}) == 500
    assert {s.status for s in ds.suppliers} <= {"active", "inactive"}
    assert len(ds.customers) == 300
    assert len(ds.items) == 400


def test_gl_count_is_exact_and_posting_at_follows_key_order(ds: Dataset) -> None:
    postings = list(ds.iter_postings())
    assert len(postings) == ds.gl_count == 4_000
    keys = [(p.division, p.year, p.journal, p.line) for p in postings]
    assert keys == sorted(keys)
    for index in (0, 1, 17, 1_999, 3_999):
        assert ds.posting_at(index) == postings[index]
    with pytest.raises(IndexError):
        ds.posting_at(4_000)
    assert Dataset(DatasetConfig(gl_postings=4_001)).gl_count == 4_000


def test_postings_cover_every_plant_and_month_of_three_years(ds: Dataset) -> None:
    months = {(p.division, p.date.year, p.date.month) for p in ds.iter_postings()}
    assert months == {(pl.code, y, m) for pl in PLANTS for y in YEARS for m in range(1, 13)}
    assert all(p.currency == ds.plant(p.division).currency for p in ds.iter_postings())
    assert all(p.date.year == p.year for p in ds.iter_postings())


def test_every_journal_balances_and_dates_never_go_backwards(ds: Dataset) -> None:
    sums: dict[tuple[str, int, int], int] = defaultdict(int)
    for seg in ds.segments:
        previous = dt.date.min
        for p in ds.postings(seg):
            sums[(p.division, p.year, p.journal)] += p.amount
            assert p.date >= previous
            previous = p.date
            assert p.changed >= dt.datetime(p.date.year, p.date.month, p.date.day, tzinfo=dt.UTC)
            assert p.changed < ds.max_stamp
            assert p.cost_center.startswith(f"CC{ds.plant(p.division).digit}")
            assert p.account in ds.account_by_code
    assert set(sums.values()) == {0}


def test_every_invoice_has_exactly_one_expense_line(ds: Dataset) -> None:
    trcd40 = Counter((p.division, p.year, p.journal) for p in ds.iter_postings() if p.trcd == "40")
    invoices = list(ds.iter_invoices())
    assert invoices
    for inv in invoices:
        assert trcd40[(inv.division, inv.year, inv.journal)] == 1
        seg = ds.segment(inv.division, inv.year)
        line = ds.posting(seg, inv.journal, 1)
        assert (line.trcd, line.account, line.cost_center, line.amount) == ("40", inv.account, inv.cost_center,
                                                                             inv.amount)  # fmt: skip
        assert ds.account_by_code[inv.account].type in ("Expense", "COGS")
        assert ds.posting(seg, inv.journal, 2).account == "2100"
        assert inv.invoice_date <= inv.date
        assert inv.due_date > inv.invoice_date
        assert inv.amount > 0
    assert sum(trcd40.values()) == len(invoices)


def test_payments_pay_earlier_invoices_once(ds: Dataset) -> None:
    paid = Counter()
    for pay in ds.iter_payments():
        seg = ds.segment(pay.division, pay.year)
        inv = ds.invoice(seg, pay.invoice_journal)
        paid[(pay.division, pay.year, pay.invoice_journal)] += 1
        assert (pay.supplier, pay.invoice_number, pay.amount) == (inv.supplier, inv.number, inv.amount)
        assert pay.date >= inv.date
        assert pay.journal != inv.journal
        lines = [ds.posting(seg, pay.journal, 1), ds.posting(seg, pay.journal, 2)]
        assert [(p.account, p.trcd) for p in lines] == [("2100", "50"), ("1000", "51")]
    assert paid
    assert set(paid.values()) == {1}
    assert len(paid) < sum(1 for _ in ds.iter_invoices())  # the most recent invoices are still open


def test_po_backed_invoices_equal_their_po(ds: Dataset) -> None:
    for seg in ds.segments:
        for block in range(ds.blocks(seg)):
            lines = ds.po_lines_of_block(seg, block)
            assert 1 <= len(lines) <= 3
            assert {p.po_number for p in lines} == {ds.po_number(seg, block)}
            assert ds.parse_po_number(lines[0].po_number) == (seg, block)
            inv = ds.invoice(seg, block * BLOCK + 1)
            assert inv.po_number == lines[0].po_number
            assert inv.supplier == lines[0].supplier
            assert inv.amount == sum(p.amount for p in lines)
            assert all(p.amount == p.quantity * p.unit_price for p in lines)
    assert ds.parse_po_number("P999000001") is None


def test_seeks_are_arithmetic(ds: Dataset) -> None:
    seg = ds.segment("P20", 2025)
    day = dt.date(2025, 6, 15)
    n = ds.first_journal_on_or_after(seg, day)
    assert ds.journal_date(seg, n) >= day > ds.journal_date(seg, n - 1)
    assert ds.first_journal_on_or_after(seg, dt.date(2026, 1, 1)) == seg.journals + 1
    serial = 2 * (seg.site_offset + 10 - 1) + 2
    assert ds.site_posting("P20", serial) == ds.posting(seg, 10, 2)
    assert ds.site_locate("P20", seg.site_offset + 10) == (seg, 10)
    assert ds.site_locate("P20", ds.site_journals("P20") + 1) is None


def test_budgets(ds: Dataset) -> None:
    cells = list(ds.budget_cells(2026))
    assert len(cells) == 45 * 8 * 12
    assert {c.division for c in cells} == {"P10", "P20", "P30"}
    assert all(c.amount > 0 and c.amount % 100 == 0 for c in cells)
    assert len(ds.budget_accounts("CC3070")) == 8
    assert list(ds.budget_cells(2026, "P30")) == [c for c in cells if c.division == "P30"]


def test_canonical_records(ds: Dataset) -> None:
    for entity in records.ENTITIES:
        first = next(iter(ds.records(entity)))
        assert isinstance(first, records.RECORD_TYPES[entity])
        assert first.natural_key
    posting = next(iter(ds.records("gl_postings")))
    assert isinstance(posting, records.GLPosting)
    assert posting.company == "100"
    assert posting.period == "2024-01"
    assert str(posting.amount) == format_cents(ds.posting_at(0).amount)
    invoices = list(ds.records("supplier_invoices"))
    assert len({r.natural_key for r in invoices}) == len(invoices)
    gl_keys = [r.natural_key for r in ds.records("gl_postings")]
    assert len(set(gl_keys)) == len(gl_keys) == ds.gl_count


def test_a_million_postings_cost_no_memory_up_front() -> None:
    big = Dataset(DatasetConfig(gl_postings=1_000_000))
    assert big.gl_count == 1_000_000
    last = big.posting_at(999_999)
    assert (last.division, last.year, last.line) == ("P30", 2026, 2)
    assert big.posting_at(500_000) == big.posting_at(500_000)


@pytest.mark.parametrize(("text", "cents"), [("1", 100), ("-12.5", -1250), ("0.01", 1), (" 3.999 ", 400)])
def test_cents(text: str, cents: int) -> None:
    assert parse_cents(text) == cents
    assert parse_cents(format_cents(cents)) == cents
    assert format_cents(-5) == "-0.05"
    assert format_cents(12345, 8) == "123.45000000"


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="gl_postings"):
        DatasetConfig(gl_postings=10)
    with pytest.raises(ValueError, match="suppliers"):
        DatasetConfig(suppliers=1)
    with pytest.raises(KeyError, match="P99"):
        Dataset(SMALL).plant("P99")
