"""Pure pieces of the Anaplan client: line-aligned chunk cutting and incremental failure-dump parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_connector.anaplan.dumps import DumpParser, guess_column
from ml_connector.anaplan.files import cut_points, iter_chunks
from ml_connector.anaplan.models import TaskDetail, TaskResult

lines = st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"") + b"\n"), max_size=60)


def pieces(data: bytes, sizes: list[int]) -> list[bytes]:
    out, start = [], 0
    for size in sizes:
        out.append(data[start : start + size])
        start += size
    out.append(data[start:])
    return [p for p in out if p]


async def collect(source: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in source]


@settings(max_examples=200, deadline=None)
@given(lines, st.integers(min_value=8, max_value=120), st.lists(st.integers(1, 50), max_size=20))
async def test_chunks_reassemble_the_input_and_end_on_line_boundaries(
    rows: list[bytes], chunk_size: int, sizes: list[int]
) -> None:
    data = b"".join(rows)
    chunks = await collect(iter_chunks(pieces(data, sizes), chunk_size))
    assert b"".join(chunks) == data
    assert all(chunks)
    for chunk in chunks[:-1]:
        assert chunk.endswith(b"\n")
    longest = max((len(r) for r in rows), default=0)
    for chunk in chunks:
        assert len(chunk) <= max(chunk_size, longest)
    # Whole-buffer cutting agrees with streaming cutting.
    cuts = cut_points(data, chunk_size, final=True)
    starts = [0, *cuts][: len(cuts)]
    assert [data[s:e] for s, e in zip(starts, cuts, strict=True)] == chunks


def test_a_line_longer_than_max_size_is_cut_hard() -> None:
    data = b"x" * 250 + b"\nshort\n"
    cuts = cut_points(data, 100, final=True, max_size=120)
    assert cuts == [120, 240, 257]  # the rest of the long line and the short one fit one chunk


def test_chunks_are_close_to_the_requested_size() -> None:
    row = b"2024-01,4711,CC-100,1234.56,EUR\n"
    data = row * 1000
    cuts = cut_points(data, 1000, final=True)
    sizes = [b - a for a, b in zip([0, *cuts], cuts, strict=False)]
    assert all(1000 - len(row) < size <= 1000 for size in sizes[:-1])


DUMP = (
    b'"_Status_","Account","Cost Center","Period","Amount","_Line_","_Error_1_"\n'
    b'"E","4711","CC-999","2024-01","10.00","3","Item not located in Cost Center list: CC-999"\n'
    b'"E","4712","CC-100","2024-13","5.00","7","Invalid period: 2024-13"\n'
    b'"W","note with\nnewline and ""quotes""","CC-100","2024-01","1.00","9","Value rounded"\n'
)


@pytest.mark.parametrize("step", [1, 2, 7, 64, len(DUMP)])
def test_dump_parser_is_independent_of_chunk_boundaries(step: int) -> None:
    parser = DumpParser()
    found = []
    for start in range(0, len(DUMP), step):
        found.extend(parser.feed(DUMP[start : start + step]))
    found.extend(parser.close())
    assert [r.row for r in found] == [3, 7, 9]
    first, second, third = found
    assert first.column == "Cost Center"
    assert first.message == "Item not located in Cost Center list: CC-999"
    assert first.values == {"Account": "4711", "Cost Center": "CC-999", "Period": "2024-01", "Amount": "10.00"}
    assert second.column == "Period"
    assert third.severity == "W"
    assert third.values["Account"] == 'note with\nnewline and "quotes"'


def test_dump_with_several_errors_crlf_and_bom() -> None:
    data = (
        "\ufeff_Status_,Name,Code,_Line_,_Error_1_,_Error_2_\r\n"
        "E,Ünïcode,c1,2,Duplicate code,column name: Code\r\n"
        "E,Other,,,Row rejected,\r\n"
    ).encode()
    parser = DumpParser()
    rows = parser.feed(data) + parser.close()
    assert rows[0].row == 2
    assert rows[0].message == "Duplicate code; column name: Code"
    assert rows[0].column == "Code"
    assert rows[0].values["Name"] == "Ünïcode"
    assert rows[1].row == 0  # no line number given
    assert rows[1].column is None


def test_dump_without_trailing_newline_keeps_its_last_row() -> None:
    parser = DumpParser()
    rows = parser.feed(b"_Status_,A,_Line_,_Error_1_\nE,x,2,bad: x") + parser.close()
    assert [(r.row, r.column) for r in rows] == [(2, "A")]


def test_column_guess_stays_none_when_ambiguous() -> None:
    assert guess_column(["Invalid value: 1"], {"A": "1", "B": "1"}) is None
    assert guess_column(["Something went wrong"], {"A": "1"}) is None
    assert guess_column(["No code given"], {"Code": "", "Name": "n"}) == "Code"


def test_task_detail_values_pair_up_and_results_flatten() -> None:
    detail = TaskDetail.model_validate(
        {"type": "hierarchyRowsProcessed", "values": ["successRowCount", "90", "failedCount", "5"]}
    )
    assert detail.fields == {"successRowCount": "90", "failedCount": "5"}
    result = TaskResult.model_validate(
        {
            "successful": False,
            "objectId": "118000000001",
            "nestedResults": [
                {"objectId": "112000000001", "successful": True},
                {"objectId": "112000000002", "successful": False, "details": [{"localMessageText": "2 rows bad"}]},
            ],
        }
    )
    assert result.summary() == "112000000002: 2 rows bad"
    assert result.all_rejections() == []
