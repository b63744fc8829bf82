"""EXPORTMI cursor batching against an in-memory table that applies the WHERE clause like M3 does."""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from typing import Any

import pytest

from ml_connector.infor import ExtractionError
from ml_connector.infor.m3export import Exporter, ExportSpec

SPEC = ExportSpec("FGLEDG", ("EGDIVI", "EGJRNO", "EGJSNO", "EGVTXT"), "EGJRNO", "EGJSNO",
                  frozenset({"EGJRNO", "EGJSNO"}))  # fmt: skip
OPS = {"=": operator.eq, ">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
COND = re.compile(r"(\w+) (>=|<=|=|>|<) ('(?:[^']|'')*'|-?\d+)")


class FakeTable:
    """Rows in key order; ``select`` filters with the AND-only WHERE clause and honours ``maxrecs``."""

    def __init__(self, rows: list[tuple[str, int, int, str]]) -> None:
        self.rows = sorted(rows, key=lambda r: (r[0], r[1], r[2]))
        self.queries: list[str] = []

    async def select(self, fields: Sequence[str], table: str, where: str | None, *, maxrecs: int) -> list[list[str]]:
        self.queries.append(where or "")
        conds = []
        for name, op, literal in COND.findall(where or ""):
            value: Any = literal[1:-1] if literal.startswith("'") else int(literal)
            conds.append((("EGDIVI", "EGJRNO", "EGJSNO", "EGVTXT").index(name), OPS[op], value))
        out = []
        for row in self.rows:
            if all(op(row[i], v) for i, op, v in conds):
                out.append([str(row[("EGDIVI", "EGJRNO", "EGJSNO", "EGVTXT").index(f)]) for f in fields])
                if maxrecs and len(out) >= maxrecs:
                    break
        return out


def ledger() -> list[tuple[str, int, int, str]]:
    rows = []
    for journal in range(1, 30):
        lines = 7 if journal == 11 else 1 + journal % 3  # journal 11 is longer than a batch
        rows += [("P10", journal, line, f"j{journal}") for line in range(1, lines + 1)]
    rows += [("P20", 1, 1, "other division")]
    return rows


async def read(table: FakeTable, batch: int) -> list[tuple[int, int]]:
    out = []
    async for rows in Exporter(table).batches(SPEC, ["EGDIVI = 'P10'"], batch):  # type: ignore[arg-type]
        out += [(int(r[1]), int(r[2])) for r in rows]
    return out


@pytest.mark.parametrize("batch", [2, 3, 5, 8, 100])
async def test_every_row_once_in_key_order_whatever_the_batch_size(batch: int) -> None:
    table = FakeTable(ledger())
    expected = [(j, s) for d, j, s, _ in table.rows if d == "P10"]
    assert await read(table, batch) == expected


async def test_long_journal_is_drained_by_line() -> None:
    table = FakeTable(ledger())
    await read(table, 3)
    assert any("EGJRNO = 11 and EGJSNO > " in q for q in table.queries)
    assert any("EGJRNO > 11" in q for q in table.queries)


async def test_distinct_by_skip_scan() -> None:
    table = FakeTable(ledger())
    assert await Exporter(table).distinct("FGLEDG", "EGDIVI", numeric=False) == ["P10", "P20"]  # type: ignore[arg-type]


async def test_rows_out_of_key_order_are_refused() -> None:
    class Shuffled(FakeTable):
        async def select(
            self, fields: Sequence[str], table: str, where: str | None, *, maxrecs: int
        ) -> list[list[str]]:
            rows = await super().select(fields, table, where, maxrecs=maxrecs)
            return list(reversed(rows))

    with pytest.raises(ExtractionError, match="not in key order"):
        await read(Shuffled(ledger()), 4)


def test_literals() -> None:
    assert SPEC.literal("EGDIVI", "O'Neil") == "'O''Neil'"
    assert SPEC.literal("EGJRNO", "42") == "42"
    with pytest.raises(ExtractionError, match="not numeric"):
        SPEC.literal("EGJRNO", "4x")
