"""Large M3 tables through ``EXPORTMI/Select`` with cursor batching (reference §4.7, pinned contract).

EXPORTMI has no paging. Per partition (division x year), rows come in table key order; a batch is
``... where <partition> and <CURSOR> >= <last cursor value>`` with ``maxrecs = N``:

* the cursor is inclusive: the rows of the last cursor value already yielded are skipped (by the
  tie-breaker field, e.g. the journal line);
* a batch shorter than N ends the partition;
* when one cursor value alone fills a batch (a journal with N lines or more), it is drained with
  the tie-breaker (``<CURSOR> = v and <SUB> > last``), then reading resumes at ``<CURSOR> > v``;
* rows out of key order, or a cursor that does not advance, raise :class:`ExtractionError` instead
  of looping or losing rows.

Partitions are discovered by skip-scans (``<DIVI> > 'last'`` with ``maxrecs=1``): a few one-row queries.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from ml_connector.infor.errors import ExtractionError
from ml_connector.infor.m3api import M3Api


@dataclass(frozen=True)
class ExportSpec:
    """A table read: its fields (free text last), cursor and tie-breaker, and which fields are numeric."""

    table: str
    fields: tuple[str, ...]
    cursor: str
    sub: str
    numeric: frozenset[str]

    def literal(self, name: str, value: str) -> str:
        if name in self.numeric:
            if not value.lstrip("-").isdigit():
                raise ExtractionError(f"EXPORTMI {self.table}: {name} value {value!r} is not numeric")
            return value
        return "'" + value.replace("'", "''") + "'"

    def order(self, name: str, value: str) -> tuple[int, str]:
        """Sort key matching the table's order for ``name`` (numbers numerically)."""
        if name in self.numeric:
            try:
                return (int(value), "")
            except ValueError:
                return (0, value)
        return (0, value)


def where(*conditions: str | None) -> str | None:
    parts = [c for c in conditions if c]
    return " and ".join(parts) if parts else None


class Exporter:
    def __init__(self, api: M3Api) -> None:
        self.api = api

    async def distinct(self, table: str, field: str, *, numeric: bool, conditions: Sequence[str] = ()) -> list[str]:
        """Distinct values of a leading key field, by skip-scan (one one-row query per value)."""
        spec = ExportSpec(table, (field,), field, field, frozenset({field}) if numeric else frozenset())
        values: list[str] = []
        last: str | None = None
        while True:
            bound = f"{field} > {spec.literal(field, last)}" if last is not None else None
            rows = await self.api.select([field], table, where(*conditions, bound), maxrecs=1)
            if not rows or not rows[0] or not rows[0][0]:
                return values
            value = rows[0][0]
            if last is not None and spec.order(field, value) <= spec.order(field, last):
                raise ExtractionError(
                    f"EXPORTMI {table}: skip-scan on {field} did not advance ({value!r} after {last!r}); "
                    "the server ignores the WHERE clause or returns rows out of key order"
                )
            values.append(value)
            last = value

    async def batches(
        self, spec: ExportSpec, conditions: Sequence[str], batch_size: int
    ) -> AsyncGenerator[list[list[str]], None]:
        """All rows of one partition (``conditions``), in batches; each row aligned with ``spec.fields``."""
        width = len(spec.fields)
        ic, isub = spec.fields.index(spec.cursor), spec.fields.index(spec.sub)
        bound: tuple[str, str] | None = None  # (">=" | ">", cursor value)
        seen: set[str] = set()  # tie-breaker values already yielded at the ">=" cursor value
        where_text = f"{spec.table} {where(*conditions) or ''}".strip()
        while True:
            cond = f"{spec.cursor} {bound[0]} {spec.literal(spec.cursor, bound[1])}" if bound else None
            rows = await self.api.select(spec.fields, spec.table, where(*conditions, cond), maxrecs=batch_size)
            self._check_order(spec, rows, bound, ic, isub, width, where_text)
            if bound is not None and bound[0] == ">=":
                value = bound[1]
                fresh = [r for r in rows if len(r) < width or r[ic] != value or r[isub] not in seen]
            else:
                fresh = rows
            if fresh:
                yield fresh
            if len(rows) < batch_size:
                return
            last = rows[-1][ic]
            if bound is None or bound[0] == ">" or last != bound[1]:
                bound = (">=", last)
                seen = {r[isub] for r in rows if len(r) >= width and r[ic] == last}
                continue
            # One cursor value fills a whole batch: drain it with the tie-breaker, then step past it.
            seen.update(r[isub] for r in rows if len(r) >= width)
            top = max(seen, key=lambda v: spec.order(spec.sub, v))
            async for drained in self._drain(spec, conditions, last, top, batch_size, where_text):
                yield drained
            bound = (">", last)
            seen = set()

    async def _drain(
        self, spec: ExportSpec, conditions: Sequence[str], value: str, after: str, batch_size: int, where_text: str
    ) -> AsyncGenerator[list[list[str]], None]:
        width = len(spec.fields)
        isub = spec.fields.index(spec.sub)
        pinned = f"{spec.cursor} = {spec.literal(spec.cursor, value)}"
        while True:
            cond = f"{spec.sub} > {spec.literal(spec.sub, after)}"
            rows = await self.api.select(spec.fields, spec.table, where(*conditions, pinned, cond), maxrecs=batch_size)
            good = [r for r in rows if len(r) >= width]
            for r in good:
                if spec.order(spec.sub, r[isub]) <= spec.order(spec.sub, after):
                    raise ExtractionError(
                        f"EXPORTMI {where_text}: {spec.sub} did not advance past {after!r} for {spec.cursor} {value!r}"
                    )
            if rows:
                yield rows
            if len(rows) < batch_size:
                return
            after = good[-1][isub] if good else after
            if not good:
                raise ExtractionError(f"EXPORTMI {where_text}: a full batch without a readable {spec.sub}")

    @staticmethod
    def _check_order(
        spec: ExportSpec,
        rows: list[list[str]],
        bound: tuple[str, str] | None,
        ic: int,
        isub: int,
        width: int,
        where_text: str,
    ) -> None:
        previous: tuple[tuple[int, str], tuple[int, str]] | None = None
        floor = spec.order(spec.cursor, bound[1]) if bound else None
        for row in rows:
            if len(row) < width:
                continue  # malformed; the mapper reports it
            position = (spec.order(spec.cursor, row[ic]), spec.order(spec.sub, row[isub]))
            if floor is not None and (position[0] < floor or (bound and bound[0] == ">" and position[0] == floor)):
                raise ExtractionError(
                    f"EXPORTMI {where_text}: row with {spec.cursor} {row[ic]!r} outside the requested cursor range"
                )
            if previous is not None and position <= previous:
                raise ExtractionError(
                    f"EXPORTMI {where_text}: rows are not in key order ({spec.cursor}, {spec.sub}); cannot page safely"
                )
            previous = position
