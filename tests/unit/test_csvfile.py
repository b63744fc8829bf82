"""The streaming CSV/gzip chunker: format, chunk cutting, line numbers, text hygiene, numbers."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import itertools
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.sync.csvfile import (
    MAX_CHUNK_SIZE,
    CsvChunk,
    CsvChunker,
    CsvColumn,
    CsvFileError,
    KeyedRow,
    clean_text,
    format_number,
)
from ml_connector.sync.spill import RowRef

COLUMNS = (CsvColumn("Code"), CsvColumn("Name"), CsvColumn("Amount", "number"))
Row = KeyedRow | Sequence[object] | Mapping[str, object]


async def aiter(rows: Iterable[Row]) -> AsyncIterator[Row]:
    for row in rows:
        yield row


async def write(chunker: CsvChunker, rows: Iterable[Row]) -> list[CsvChunk]:
    return [chunk async for chunk in chunker.chunks(aiter(rows))]


def raw(chunks: Sequence[CsvChunk]) -> bytes:
    return b"".join(gzip.decompress(c.data) if c.compressed else c.data for c in chunks)


def parse(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


async def test_header_rows_quoting_and_crlf() -> None:
    chunker = CsvChunker(COLUMNS, compress=False)
    chunks = await write(
        chunker,
        [
            ("A1", "Plain", Decimal("10.50")),
            ("A2", 'Comma, and "quotes"', Decimal("-3")),
            {"Code": "A3", "Name": "Ünïcödé €", "Amount": None},
        ],
    )
    data = raw(chunks)
    assert data == (
        b"Code,Name,Amount\r\n"
        b"A1,Plain,10.50\r\n"
        b'A2,"Comma, and ""quotes""",-3\r\n'
        b"A3,\xc3\x9cn\xc3\xafc\xc3\xb6d\xc3\xa9 \xe2\x82\xac,\r\n"
    )
    assert not data.startswith(b"\xef\xbb\xbf")  # no BOM
    assert len(chunks) == 1
    assert (chunks[0].first_line, chunks[0].last_line, chunks[0].rows) == (1, 4, 3)
    assert chunks[0].content_type == "application/octet-stream"
    assert (chunker.stats.rows, chunker.stats.chunks, chunker.stats.raw_bytes) == (3, 1, len(data))


async def test_lf_line_terminator_on_request() -> None:
    chunks = await write(CsvChunker(COLUMNS, compress=False, line_terminator="\n"), [("A", "B", 1)])
    assert raw(chunks) == b"Code,Name,Amount\nA,B,1\n"


async def test_chunks_are_cut_on_row_boundaries_below_the_target_size() -> None:
    rows = [
        KeyedRow((f"C{n:04d}", "x" * (n % 17), Decimal(n) / 100), (RowRef(f"key-{n}", f"h{n}"),)) for n in range(500)
    ]
    chunker = CsvChunker(COLUMNS, chunk_size=1000, compress=True)
    chunks = await write(chunker, rows)
    assert len(chunks) > 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        body = gzip.decompress(chunk.data)
        assert len(body) == chunk.raw_size <= 1000
        assert body.endswith(b"\r\n")
        assert chunk.content_type == "application/x-gzip"
    assert chunks[0].first_line == 1
    for before, after in itertools.pairwise(chunks):
        assert after.first_line == before.last_line + 1
    assert chunks[-1].last_line == 501
    assert sum(c.rows for c in chunks) == 500
    parsed = parse(raw(chunks))
    assert parsed[0] == ["Code", "Name", "Amount"]
    assert parsed[1:] == [[f"C{n:04d}", "x" * (n % 17), format_number(Decimal(n) / 100)] for n in range(500)]
    assert chunker.stats.sent_bytes == sum(len(c.data) for c in chunks)

    # _Line_ as Anaplan reports it: header is line 1, so record n is on line n + 2
    found = await chunker.records_for_lines([2, 251, 501, 999])
    assert found == {2: [RowRef("key-0", "h0")], 251: [RowRef("key-249", "h249")], 501: [RowRef("key-499", "h499")]}


async def test_gzip_chunks_are_deterministic() -> None:
    rows = [(f"C{n}", "name", n) for n in range(200)]
    first = [c.data for c in await write(CsvChunker(COLUMNS, chunk_size=700), rows)]
    second = [c.data for c in await write(CsvChunker(COLUMNS, chunk_size=700), rows)]
    assert first == second


async def test_chunk_sizes_count_bytes_not_characters() -> None:
    rows = [("é" * 10, "€" * 10, 1) for _ in range(20)]  # 2- and 3-byte characters
    chunks = await write(CsvChunker(COLUMNS, chunk_size=200, compress=False), rows)
    assert all(len(c.data) == c.raw_size <= 200 for c in chunks)


async def test_a_row_larger_than_the_target_gets_a_chunk_of_its_own() -> None:
    rows = [("A", "short", 1), ("B", "y" * 500, 2), ("C", "short", 3)]
    chunks = await write(CsvChunker(COLUMNS, chunk_size=100, compress=False), rows)
    assert [(c.first_line, c.last_line) for c in chunks] == [(1, 2), (3, 3), (4, 4)]


async def test_an_empty_extract_is_a_header_only_file() -> None:
    chunker = CsvChunker(COLUMNS)
    chunks = await write(chunker, [])
    assert len(chunks) == 1
    assert raw(chunks) == b"Code,Name,Amount\r\n"
    assert (chunks[0].rows, chunker.stats.rows) == (0, 0)


async def test_text_hygiene_and_formula_neutralization() -> None:
    cols = (CsvColumn("Text"), CsvColumn("Raw", neutralize=False), CsvColumn("Amount", "number"))
    values = [
        ("line1\r\nline2\rline3\nline4\u2028end", "a\nb", -5),
        ("bell\x07 and nul\x00 and esc\x1b gone", "ok", Decimal("-0.00")),
        ("=SUM(A1:A2)", "=SUM(A1:A2)", "-12.5"),
        ("+1", "+1", 0),
        ("-cmd", "-cmd", 1),
        ("@import", "@import", 1),
        ("\tTAB", "\tTAB", 1),
        ("\rCR", "\rCR", 1),
        ("plain - text = fine", "x", 1),
        (dt.date(2024, 2, 29), None, 1),
    ]
    chunks = await write(CsvChunker(cols, compress=False), values)
    data = raw(chunks)
    assert data.count(b"\r\n") == len(values) + 1  # one physical line per record
    parsed = parse(data)[1:]
    assert parsed == [
        ["line1 line2 line3 line4 end", "a b", "-5"],
        ["bell and nul and esc gone", "ok", "0.00"],
        ["'=SUM(A1:A2)", "=SUM(A1:A2)", "-12.5"],
        ["'+1", "+1", "0"],
        ["'-cmd", "-cmd", "1"],
        ["'@import", "@import", "1"],
        ["'\tTAB", "\tTAB", "1"],
        ["' CR", " CR", "1"],
        ["plain - text = fine", "x", "1"],
        ["2024-02-29", "", "1"],
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1E+3"), "1000"),
        (Decimal("1.5E-7"), "0.00000015"),
        (Decimal("-0"), "0"),
        (Decimal("123456789012345678901234567890.123"), "123456789012345678901234567890.123"),
        (1e-7, "0.0000001"),
        (2.5e20, "250000000000000000000"),
        (-42, "-42"),
        (" 12.30 ", "12.30"),
        (None, ""),
    ],
)
def test_numbers_never_use_an_exponent(value: object, expected: str) -> None:
    assert format_number(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (Decimal("NaN"), "not a finite number"),
        (float("inf"), "not a finite number"),
        (True, "boolean"),
        ("12abc", "not a number"),
        (dt.date(2024, 1, 1), "date"),
    ],
)
async def test_bad_numbers_name_the_line_and_column(value: object, message: str) -> None:
    with pytest.raises(CsvFileError, match=rf"line 3, column 'Amount' \(number\): .*{message}"):
        await write(CsvChunker(COLUMNS), [("A", "ok", 1), ("B", "bad", value)])


async def test_row_shape_errors_say_where() -> None:
    with pytest.raises(CsvFileError, match=r"line 2: row has 2 values for 3 columns \(Code, Name, Amount\)"):
        await write(CsvChunker(COLUMNS), [("A", "B")])
    with pytest.raises(CsvFileError, match="line 2: row has no value for column 'Amount'"):
        await write(CsvChunker(COLUMNS), [{"Code": "A", "Name": "B"}])
    with pytest.raises(CsvFileError, match="not a string"):
        await write(CsvChunker(COLUMNS), ["A,B,1"])


async def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="50 MB"):
        CsvChunker(COLUMNS, chunk_size=MAX_CHUNK_SIZE + 1)
    with pytest.raises(ValueError, match="duplicate column"):
        CsvChunker((CsvColumn("A"), CsvColumn("A")))
    chunker = CsvChunker(COLUMNS)
    await write(chunker, [])
    with pytest.raises(RuntimeError, match="one file"):
        await write(chunker, [])


async def test_more_than_a_thousand_chunks_is_refused() -> None:
    rows = [("A", "B", n) for n in range(1005)]
    with pytest.raises(CsvFileError, match="more than 1000 chunks"):
        await write(CsvChunker(COLUMNS, chunk_size=1, compress=False), rows)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=20))
def test_any_text_stays_one_line_per_record_and_reads_back_cleaned(texts: list[str]) -> None:
    import asyncio

    rows = [(t, t, n) for n, t in enumerate(texts)]
    chunks = asyncio.run(write(CsvChunker(COLUMNS, chunk_size=64, compress=False), rows))
    data = raw(chunks)
    assert data.count(b"\r\n") == len(texts) + 1
    assert len(data.split(b"\r\n")) == len(texts) + 2
    parsed = parse(data)[1:]
    assert parsed == [[clean_text(t), clean_text(t), str(n)] for n, t in enumerate(texts)]
    for cell, _, _ in parsed:
        assert not cell or cell[0] not in "=+-@\t\r"
