"""Property-based: canonical records -> layout rows -> CSV -> gzip chunks, read back with a CSV reader.

Whatever the text (commas, quotes, line breaks, control characters, formula triggers, any script) and whatever
the amount, the file has one header and one line per record (or per aggregated cell), every field reads back
as the cleaned text or the exact amount, no field can run as a spreadsheet formula, chunks are cut on line
boundaries, and every line traces back to the records behind it.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_connector.records import GLPosting, SupplierInvoice, content_hash, period_of
from ml_connector.sync.csvfile import CsvChunker, clean_text
from ml_connector.sync.extract import MAX_AMOUNT, source_problem
from ml_connector.sync.layouts import GL_ACTUALS, SUPPLIER_INVOICES, Hashed

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
FILES = settings(FUZZ, max_examples=50)  # each example writes, gzips and reads back a whole file
FORMULA_TRIGGERS = tuple("=+-@\t\r")

# any text a source may hold: every Unicode category but lone surrogates (refused at the source: see
# test_lone_surrogates_never_reach_the_file), with the characters that break CSV files made likely
nasty = st.sampled_from(["=", "+", "-", "@", "\t", "\r", "\n", "\r\n", ",", '"', "'", ";", "\x00", "\x0b", "\x85",
                         "\u2028", "\u202e", "\ufeff", "é", "漢", "🙂", " "])  # fmt: skip
text = st.lists(st.one_of(nasty, st.characters(exclude_categories=("Cs",))), max_size=24).map("".join)
amounts = st.decimals(min_value=-MAX_AMOUNT, max_value=MAX_AMOUNT, allow_nan=False, allow_infinity=False, places=2)
dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2039, 12, 31))
codes = st.text(alphabet=st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8)


@st.composite
def invoices(draw: st.DrawFn) -> SupplierInvoice:
    date = draw(dates)
    return SupplierInvoice(
        company="100",
        division=draw(codes),
        supplier_id=draw(text),
        invoice_number=draw(text),
        invoice_date=date,
        accounting_date=date,
        due_date=None,
        period=period_of(date),
        account=draw(text),
        cost_center=draw(text),
        currency=draw(st.sampled_from(["USD", "EUR"])),
        amount=draw(amounts),
    )


@st.composite
def postings(draw: st.DrawFn) -> GLPosting:
    date = draw(dates)
    return GLPosting(
        company="100",
        division=draw(codes),
        year=date.year,
        journal=draw(codes),
        line=draw(st.integers(1, 999)),
        account=draw(st.sampled_from(["6100", "=6200", "+63,00", '64"00'])),
        cost_center=draw(st.sampled_from(["CC1", "-CC2", "@CC3"])),
        accounting_date=date,
        period=period_of(date),
        currency="USD",
        amount=draw(amounts),
        text=draw(text),
    )


async def stream(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


def write(layout: Any, records: list[Any], chunk_size: int, **rows: Any) -> tuple[list[Any], CsvChunker]:
    async def run() -> tuple[list[Any], CsvChunker]:
        chunker = CsvChunker(layout.csv_columns, chunk_size=chunk_size, compress=True, compresslevel=1)
        hashed = [Hashed(r, content_hash(r)) for r in records]
        chunks = [c async for c in chunker.chunks(layout.rows(stream(hashed), **rows))]
        return chunks, chunker

    return asyncio.run(run())


def read_back(chunks: list[Any]) -> list[list[str]]:
    data = b"".join(gzip.decompress(chunk.data) for chunk in chunks)
    for chunk in chunks:  # each chunk is whole lines: it decompresses on its own and ends with a line end
        assert gzip.decompress(chunk.data).endswith(b"\r\n")
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


@FILES
@given(st.lists(invoices(), max_size=30), st.integers(min_value=60, max_value=4000))
def test_invoices_round_trip_through_the_csv_file(records: list[SupplierInvoice], chunk_size: int) -> None:
    chunks, chunker = write(SUPPLIER_INVOICES, records, chunk_size)

    rows = read_back(chunks)

    assert rows[0] == list(SUPPLIER_INVOICES.header)
    assert len(rows) == len(records) + 1  # no field ever broke a line
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunker.stats.rows == len(records)
    for record, row in zip(records, rows[1:], strict=True):
        assert len(row) == len(SUPPLIER_INVOICES.header)
        cells = dict(zip(SUPPLIER_INVOICES.header, row, strict=True))
        assert cells["Code"] == clean_text(record.natural_key)
        assert cells["Supplier"] == clean_text(record.supplier_id)
        assert cells["Invoice Number"] == clean_text(record.invoice_number)
        assert cells["Account"] == clean_text(record.account)
        assert cells["Invoice Date"] == record.invoice_date.isoformat()
        assert Decimal(cells["Amount"]) == record.amount
        assert "e" not in cells["Amount"].lower()
        for name, value in cells.items():
            if name != "Amount":  # numbers are written as numbers (a minus sign is a minus sign)
                assert not value.startswith(FORMULA_TRIGGERS), (name, value)
            assert "\n" not in value
            assert "\r" not in value
    lines = asyncio.run(chunker.records_for_lines(range(2, len(records) + 2)))
    assert [[ref.natural_key for ref in lines[n + 2]] for n in range(len(records))] == [
        [r.natural_key] for r in records
    ]


@FILES
@given(st.lists(postings(), max_size=40), st.integers(min_value=40, max_value=2000))
def test_gl_cells_sum_exactly_and_trace_every_posting(records: list[GLPosting], chunk_size: int) -> None:
    chunks, chunker = write(GL_ACTUALS, records, chunk_size, threshold=7)  # spill the cell map to disk too

    rows = read_back(chunks)

    assert rows[0] == list(GL_ACTUALS.header)
    sums: dict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0, []])
    for p in records:
        cell = sums[(clean_text(p.account), clean_text(p.cost_center), p.period)]
        cell[0] += p.amount
        cell[1] += 1
        cell[2].append(p.natural_key)
    assert len(rows) - 1 == len(sums)
    refs = asyncio.run(chunker.records_for_lines(range(2, len(rows) + 1)))
    for line, row in enumerate(rows[1:], start=2):
        account, center, period, amount, count = row
        expected = sums[(account, center, period)]
        assert Decimal(amount) == expected[0]
        assert int(count) == expected[1]
        assert sorted(ref.natural_key for ref in refs[line]) == sorted(expected[2])
        assert not account.startswith(FORMULA_TRIGGERS)
        assert not center.startswith(FORMULA_TRIGGERS)


@FUZZ
@given(text)
def test_clean_text_leaves_nothing_a_spreadsheet_or_a_csv_reader_would_misread(value: str) -> None:
    cleaned = clean_text(value)
    assert not cleaned.startswith(FORMULA_TRIGGERS)
    assert not any(c in cleaned for c in "\n\r\x0b\x0c\x85\u2028\u2029")
    assert "\x00" not in cleaned
    if value.isprintable() and not value.startswith(FORMULA_TRIGGERS):
        assert cleaned == value  # ordinary text is never altered
    assert clean_text(cleaned) == cleaned or cleaned.startswith("'")  # stable, apart from the guard quote


@FUZZ
@given(st.text(alphabet=st.characters(categories=("Cs", "Ll")), min_size=1, max_size=8))
def test_lone_surrogates_never_reach_the_file(value: str) -> None:
    """Text that is not valid Unicode cannot be written to a UTF-8 file: the record is refused at the source
    (audited rejected with the field named), never handed to the CSV writer."""
    date = dt.date(2025, 1, 31)
    record = GLPosting(company="100", division="P10", year=2025, journal="1", line=1, account="6100",
                       cost_center="CC1", accounting_date=date, period=period_of(date), currency="USD",
                       amount=Decimal("1.00"), text=value)  # fmt: skip
    problem = source_problem(record)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        assert problem is not None
        assert problem.field == "text"
        assert "not valid Unicode" in problem.reason
        str(problem).encode("utf-8")  # the error itself is printable
    else:
        assert problem is None
