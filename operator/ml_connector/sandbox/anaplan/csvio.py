"""Stream CSV rows over uploaded chunks without joining them (chunks may split a row anywhere)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from ml_connector.sandbox.anaplan.state import FileDef

_ENCODINGS = {"UTF-8": "utf-8-sig", "ISO-8859-1": "latin-1", "UTF-16LE": "utf-16-le", "UTF-16": "utf-16"}


class ChunkStream(io.RawIOBase):
    """A readable byte stream over an iterable of byte chunks; counts the bytes consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not len(self._view):
            try:
                self._view = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        self.consumed += n
        return n


def read_rows(chunks: Iterable[bytes], source: FileDef) -> tuple[ChunkStream, Iterator[list[str]]]:
    """``(stream, rows)``: rows of the file as the import data source defines it (encoding, separator, quote)."""
    stream = ChunkStream(chunks)
    text = io.TextIOWrapper(
        io.BufferedReader(stream, buffer_size=1 << 20),
        encoding=_ENCODINGS.get(source.encoding.upper(), source.encoding),
        errors="replace",
        newline="",
    )
    reader = csv.reader(
        text,
        delimiter=source.separator or ",",
        quotechar=source.delimiter or '"',
        quoting=csv.QUOTE_MINIMAL if source.delimiter else csv.QUOTE_NONE,
        strict=False,
    )
    return stream, reader


class CsvWriter:
    """Accumulates CSV lines as UTF-8 bytes."""

    def __init__(self) -> None:
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")
        self.rows = 0

    def write(self, row: Iterable[object]) -> None:
        self._writer.writerow(row)
        self.rows += 1

    def getvalue(self) -> bytes:
        return self._buffer.getvalue().encode("utf-8")


def split_lines(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into pieces of at most ``size`` bytes at line ends (a longer line becomes its own piece)."""
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        end = start + size
        if end >= len(data):
            pieces.append(data[start:])
            break
        cut = data.rfind(b"\n", start, end)
        cut = end if cut < 0 else cut + 1
        pieces.append(data[start:cut])
        start = cut
    return pieces
