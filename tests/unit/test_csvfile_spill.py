"""The line -> records map and the seen-keys set stay correct when they spill to a temporary file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ml_connector.sync.csvfile import CsvChunker, CsvColumn, KeyedRow
from ml_connector.sync.spill import RowRef, RowRefs, SeenHashes


async def keyed_rows(count: int) -> AsyncIterator[KeyedRow]:
    for n in range(count):
        refs = [RowRef(f"k{n}", f"h{n}")] + ([RowRef(f"k{n}b", f"h{n}b")] if n % 10 == 0 else [])
        yield KeyedRow((f"C{n}", n), refs)


async def test_chunker_refs_spill_and_still_answer(tmp_path: Path) -> None:
    refs = RowRefs(threshold=64, directory=tmp_path)
    chunker = CsvChunker((CsvColumn("Code"), CsvColumn("N", "number")), chunk_size=2000, refs=refs)
    async with refs:
        chunks = [c async for c in chunker.chunks(keyed_rows(1000))]
        assert len(chunks) > 1
        assert refs.spilled
        assert len(list(tmp_path.iterdir())) == 1  # noqa: ASYNC240
        assert len(refs) == 1100
        found = await chunker.records_for_lines([2, 3, 12, 1001, 1002, 5000])
        assert found == {
            2: [RowRef("k0", "h0"), RowRef("k0b", "h0b")],
            3: [RowRef("k1", "h1")],
            12: [RowRef("k10", "h10"), RowRef("k10b", "h10b")],
            1001: [RowRef("k999", "h999")],
        }
        everything = [(line, ref) async for line, ref in refs.items()]
        assert len(everything) == 1100
        assert [line for line, _ in everything] == sorted(line for line, _ in everything)
        assert everything[:3] == [(2, RowRef("k0", "h0")), (2, RowRef("k0b", "h0b")), (3, RowRef("k1", "h1"))]
    assert list(tmp_path.iterdir()) == []  # closed: the temporary file is removed  # noqa: ASYNC240


async def test_refs_in_memory_when_small() -> None:
    async with RowRefs(threshold=1000) as refs:
        refs.add(5, RowRef("a", "1"))
        refs.add(2, RowRef("b", "2"))
        refs.add(5, RowRef("c", "3"))
        assert not refs.spilled
        assert await refs.get([5, 7]) == {5: [RowRef("a", "1"), RowRef("c", "3")]}
        assert [(g, r.natural_key) async for g, r in refs.items()] == [(2, "b"), (5, "a"), (5, "c")]


async def test_refs_mixed_memory_and_disk_keep_insertion_order_per_group(tmp_path: Path) -> None:
    async with RowRefs(threshold=2, directory=tmp_path) as refs:
        refs.add(1, RowRef("a", "1"))
        refs.add(2, RowRef("b", "2"))
        await refs.maybe_spill()
        refs.add(1, RowRef("c", "3"))  # still buffered in memory
        assert refs.spilled
        assert await refs.get([1, 2]) == {1: [RowRef("a", "1"), RowRef("c", "3")], 2: [RowRef("b", "2")]}
        assert [(g, r.natural_key) async for g, r in refs.items()] == [(1, "a"), (1, "c"), (2, "b")]


async def test_seen_hashes_spill(tmp_path: Path) -> None:
    async with SeenHashes(threshold=50, directory=tmp_path) as seen:
        for start in range(0, 500, 25):
            await seen.put_many((f"k{n}", f"h{n}") for n in range(start, start + 25))
        assert seen.spilled
        assert len(seen) == 500
        got = await seen.get_many([f"k{n}" for n in (0, 49, 50, 499)] + ["nope"])
        assert got == {"k0": "h0", "k49": "h49", "k50": "h50", "k499": "h499"}
        await seen.put_many([("k0", "other")])  # the first hash stays
        assert await seen.get_many(["k0"]) == {"k0": "h0"}


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        RowRefs(threshold=0)
