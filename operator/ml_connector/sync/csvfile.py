"""Streaming CSV writer for Anaplan import files: rows in, upload-ready chunks out, memory flat.

``CsvChunker(columns).chunks(rows)`` turns an async iterable of rows into :class:`CsvChunk`\\ s:

* **Format.** UTF-8 without BOM, comma separator, one header row, RFC 4180 quoting (a field is quoted
  when it holds a comma or a double quote; quotes are doubled), records ended by ``\\r\\n``. CRLF is
  what RFC 4180 prescribes and what Anaplan's own CSV exports and the spreadsheets its import data
  sources usually come from use; Anaplan's importer accepts it, and since fields never contain a line
  break (below), one physical line is always one record.
* **Chunks** are cut on row boundaries at ``chunk_size`` uncompressed bytes (Anaplan: 1-50 MB per
  chunk, at most 1,000 chunks); with ``compress`` each chunk is gzipped on its own (deterministic:
  no file name, mtime 0), which is what the chunk upload with ``Content-Type: application/x-gzip``
  takes. Compression runs in a worker thread while the next chunk is being built.
* **Line numbers.** Every data row gets the number Anaplan reports as ``_Line_`` in failure dumps
  (the header is line 1, the first data row line 2); :attr:`CsvChunker.refs` maps each line to the
  records (natural key, content hash) behind it, spilling to a temporary SQLite file beyond a
  threshold, so rejected lines can be traced back to records at any row count.
* **Text hygiene** for ``text`` columns: line breaks (CR, LF, CRLF, VT, FF, NEL, U+2028/2029) become a
  space, other control characters are removed, and a value that starts with ``=``, ``+``, ``-``,
  ``@``, tab or CR is prefixed with ``'`` so spreadsheets do not run it as a formula (CSV injection).
  ``number`` columns are never altered that way: they take int/Decimal/float (or a numeric string)
  and are written in plain notation, never with an exponent (``1E+3`` -> ``1000``).
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import gzip
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal

from ml_connector.sync.spill import RowRef, RowRefs

ColumnKind = Literal["text", "number"]

MB = 1_000_000
#: Anaplan: "a chunk is expected to be between 1 and 50 MB"; no chunk may exceed 50 MB uncompressed.
MAX_CHUNK_SIZE = 50 * MB
DEFAULT_CHUNK_SIZE = 10 * MB
MAX_CHUNKS = 1000
HEADER_LINE = 1
_YIELD_EVERY = 1000  # rows between cooperative yields to the event loop

_LINE_BREAKS = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f]")
_FORMULA_TRIGGERS = frozenset("=+-@\t\r")


class CsvFileError(ValueError):
    """A row cannot be written (wrong shape, a value that is not a number...); says which line and column."""


@dataclasses.dataclass(frozen=True, slots=True)
class CsvColumn:
    """One column of an import file; ``neutralize`` guards text against formula injection."""

    name: str
    kind: ColumnKind = "text"
    neutralize: bool = True


@dataclasses.dataclass(frozen=True, slots=True)
class KeyedRow:
    """A row (values in column order, or by column name) and the records it comes from."""

    values: Sequence[object] | Mapping[str, object]
    refs: Iterable[RowRef] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class CsvChunk:
    index: int
    data: bytes
    compressed: bool
    raw_size: int
    first_line: int
    last_line: int

    @property
    def content_type(self) -> str:
        return "application/x-gzip" if self.compressed else "application/octet-stream"

    @property
    def rows(self) -> int:
        """Data rows in this chunk (the header is not one)."""
        return self.last_line - max(self.first_line, HEADER_LINE + 1) + 1


@dataclasses.dataclass(slots=True)
class CsvStats:
    rows: int = 0
    chunks: int = 0
    raw_bytes: int = 0
    sent_bytes: int = 0


def clean_text(value: str, *, neutralize: bool = True) -> str:
    """Text hygiene for one field (see the module docstring)."""
    cleaned = value if value.isprintable() else _CONTROLS.sub("", _LINE_BREAKS.sub(" ", value))
    if neutralize and ((cleaned and cleaned[0] in _FORMULA_TRIGGERS) or value[:1] == "\r"):
        cleaned = "'" + cleaned
    return cleaned


def format_number(value: object) -> str:
    """Plain decimal notation (no exponent, no ``-0``); ``None`` is an empty cell."""
    if type(value) is Decimal:
        number = value
    elif value is None:
        return ""
    elif isinstance(value, bool):
        raise TypeError(f"a boolean ({value}) is not a number")
    elif isinstance(value, int):
        return str(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    else:
        raise TypeError(f"{type(value).__name__} {value!r} is not a number")
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    text = format(number, "f")
    return text[1:] if text.startswith("-") and number.is_zero() else text


def _text_formatter(neutralize: bool) -> Callable[[object], str]:
    triggers = _FORMULA_TRIGGERS if neutralize else frozenset()

    def fmt(value: object) -> str:
        if type(value) is str:  # the common case, inlined: printable and not a formula
            if value.isprintable() and (not value or value[0] not in triggers):
                return value
            return clean_text(value, neutralize=neutralize)
        if value is None:
            return ""
        if isinstance(value, dt.date):  # datetime is a date
            return value.isoformat()
        if isinstance(value, Decimal):
            return format_number(value)
        return clean_text(str(value), neutralize=neutralize)

    return fmt


class _LineSink:
    """csv.writer target that collects one written line."""

    __slots__ = ("line",)

    def __init__(self) -> None:
        self.line = ""

    def write(self, text: str) -> int:
        self.line = text
        return len(text)


class CsvChunker:
    """Write one import file as chunks; single use (one file per instance)."""

    def __init__(
        self,
        columns: Sequence[CsvColumn],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compress: bool = True,
        compresslevel: int = 6,
        line_terminator: str = "\r\n",
        refs: RowRefs | None = None,
    ) -> None:
        if not columns:
            raise ValueError("a CSV file needs at least one column")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names: {names}")
        if not 0 < chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be between 1 byte and {MAX_CHUNK_SIZE} (50 MB), got {chunk_size}")
        if line_terminator not in ("\r\n", "\n"):
            raise ValueError("line_terminator must be '\\r\\n' or '\\n'")
        self.columns = tuple(columns)
        self.chunk_size = chunk_size
        self.compress = compress
        self.compresslevel = compresslevel
        self.refs = refs if refs is not None else RowRefs()
        self.stats = CsvStats()
        self._sink = _LineSink()
        self._writer = csv.writer(self._sink, lineterminator=line_terminator, quoting=csv.QUOTE_MINIMAL)
        self._formatters: list[Callable[[object], str]] = [
            format_number if c.kind == "number" else _text_formatter(c.neutralize) for c in self.columns
        ]
        self._used = False

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def _encode(self, cells: Sequence[str]) -> bytes:
        self._writer.writerow(cells)
        return self._sink.line.encode("utf-8")

    def _row_values(self, item: KeyedRow | Sequence[object] | Mapping[str, object], line: int) -> Sequence[object]:
        values = item.values if isinstance(item, KeyedRow) else item
        if type(values) is tuple or type(values) is list:  # the common case, without ABC checks
            if len(values) == len(self.columns):
                return values
        elif isinstance(values, Mapping):
            try:
                return [values[c.name] for c in self.columns]
            except KeyError as exc:
                raise CsvFileError(f"line {line}: row has no value for column {exc.args[0]!r}") from None
        if isinstance(values, str | bytes):
            raise CsvFileError(f"line {line}: a row must be a sequence or mapping of values, not a string")
        if len(values) != len(self.columns):
            raise CsvFileError(
                f"line {line}: row has {len(values)} values for {len(self.columns)} columns ({', '.join(self.header)})"
            )
        return values

    def _format(self, values: Sequence[object], line: int) -> list[str]:
        try:
            return [fmt(value) for fmt, value in zip(self._formatters, values, strict=True)]
        except (TypeError, ValueError):
            pass
        for column, fmt, value in zip(self.columns, self._formatters, values, strict=True):  # say which one
            try:
                fmt(value)
            except (TypeError, ValueError) as exc:
                raise CsvFileError(f"line {line}, column {column.name!r} ({column.kind}): {exc}") from None
        raise AssertionError("unreachable: a formatter failed once and not again")  # pragma: no cover

    async def _pack(self, index: int, parts: list[bytes], size: int, first: int, last: int) -> CsvChunk:
        data = b"".join(parts)
        if self.compress:
            data = await asyncio.to_thread(gzip.compress, data, self.compresslevel, mtime=0)
        return CsvChunk(index, data, self.compress, size, first, last)

    async def chunks(
        self, rows: AsyncIterable[KeyedRow | Sequence[object] | Mapping[str, object]]
    ) -> AsyncIterator[CsvChunk]:
        """The file as chunks, in order; :attr:`stats` and :attr:`refs` are complete when iteration ends."""
        if self._used:
            raise RuntimeError("a CsvChunker writes one file; create a new one for the next file")
        self._used = True
        header = self._encode(self.header)
        parts: list[bytes] = [header]
        size = len(header)
        first = HEADER_LINE
        line = HEADER_LINE
        index = 0
        pending: asyncio.Task[CsvChunk] | None = None

        async def emit(until: int) -> CsvChunk | None:
            """Start packing the current chunk; return the previous one once it is packed."""
            nonlocal pending, parts, size, first, index
            if index >= MAX_CHUNKS:
                raise CsvFileError(
                    f"the file needs more than {MAX_CHUNKS} chunks (Anaplan's limit) at line {until}:"
                    f" raise chunk_size (now {self.chunk_size} bytes)"
                )
            done = await pending if pending is not None else None
            pending = asyncio.ensure_future(self._pack(index, parts, size, first, until))
            self.stats.raw_bytes += size
            index += 1
            parts, size, first = [], 0, until + 1
            return done

        try:
            async for item in rows:
                line += 1
                encoded = self._encode(self._format(self._row_values(item, line), line))
                if size and size + len(encoded) > self.chunk_size:
                    ready = await emit(line - 1)
                    if ready is not None:
                        self._sent(ready)
                        yield ready
                if len(encoded) > MAX_CHUNK_SIZE:
                    raise CsvFileError(f"line {line} alone is {len(encoded)} bytes, over Anaplan's 50 MB chunk limit")
                parts.append(encoded)
                size += len(encoded)
                if isinstance(item, KeyedRow):
                    for ref in item.refs:
                        self.refs.add(line, ref)
                    if self.refs.needs_spill:
                        await self.refs.spill()
                if line % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            self.stats.rows = line - HEADER_LINE
            if parts:
                ready = await emit(line)
                if ready is not None:
                    self._sent(ready)
                    yield ready
            if pending is not None:
                last = await pending
                pending = None
                self._sent(last)
                yield last
        finally:
            if pending is not None:
                pending.cancel()

    def _sent(self, chunk: CsvChunk) -> None:
        self.stats.chunks += 1
        self.stats.sent_bytes += len(chunk.data)

    async def records_for_lines(self, lines: Iterable[int]) -> dict[int, list[RowRef]]:
        """The records behind each file line (as Anaplan's ``_Line_``); unknown lines are absent."""
        return await self.refs.get(lines)
