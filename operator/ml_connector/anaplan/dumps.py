"""Parse Anaplan failure dumps into row-level :class:`~ml_connector.anaplan.models.Rejection` objects.

A dump is CSV: a header naming ``_Status_``, the original columns, ``_Line_`` and one or more
``_Error_N_`` columns, then one row per rejected (``E``) or warned (``W``) source line. Dumps come
in chunks (up to 10 MB each) that may cut a line or a quoted field anywhere, so the parser is
incremental: feed bytes, get the rejections of every record completed so far.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable

from ml_connector.anaplan.models import Rejection

STATUS_COLUMN = "_Status_"
LINE_COLUMN = "_Line_"
_ERROR_COLUMN = re.compile(r"^_Error_(\d+)_$")
_COLUMN_NAMED = re.compile(r"column name\s*:\s*([^,;]+)", re.IGNORECASE)


class DumpFormatError(ValueError):
    """The bytes are not a CSV failure dump."""


class DumpParser:
    """Incremental CSV dump parser: ``feed(bytes)`` repeatedly, then ``close()``.

    ``row`` of each rejection is the dump's ``_Line_`` (line number in the uploaded file); when a
    dump has no ``_Line_`` column the row is 0 (unknown).
    """

    def __init__(self, encoding: str = "utf-8") -> None:
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = ""
        self._scanned = 0  # how much of _pending has been scanned for newlines
        self._parity = 0  # quote parity of _pending up to _scanned
        self._record_start = 0
        self._header: list[str] | None = None
        self._bom_checked = False

    def feed(self, data: bytes) -> list[Rejection]:
        return self._feed_text(self._decoder.decode(data))

    def close(self) -> list[Rejection]:
        found = self._feed_text(self._decoder.decode(b"", final=True))
        tail = self._pending[self._record_start :]
        self._pending, self._scanned, self._record_start = "", 0, 0
        if tail.strip():
            found.extend(self._parse([tail]))
        return found

    def _feed_text(self, text: str) -> list[Rejection]:
        if not text:
            return []
        if not self._bom_checked:
            text = text.removeprefix("\ufeff")
            self._bom_checked = True
        self._pending += text
        records: list[str] = []
        pending = self._pending
        position = self._scanned
        while True:
            newline = pending.find("\n", position)
            if newline < 0:
                self._parity ^= pending.count('"', position) & 1
                self._scanned = len(pending)
                break
            self._parity ^= pending.count('"', position, newline) & 1
            position = newline + 1
            if self._parity == 0:
                records.append(pending[self._record_start : position])
                self._record_start = position
        if self._record_start:
            self._pending = pending[self._record_start :]
            self._scanned -= self._record_start
            self._record_start = 0
        return self._parse(records)

    def _parse(self, records: Iterable[str]) -> list[Rejection]:
        found: list[Rejection] = []
        try:
            self._parse_into(found, records)
        except csv.Error as exc:  # not a CSV dump (corrupt, truncated, something else altogether)
            raise DumpFormatError(f"not a CSV failure dump: {exc}") from None
        return found

    def _parse_into(self, found: list[Rejection], records: Iterable[str]) -> None:
        for fields in csv.reader(records):
            if not fields or all(not f.strip() for f in fields):
                continue
            if self._header is None:
                self._header = fields
                continue
            found.append(to_rejection(self._header, fields))


def to_rejection(header: list[str], fields: list[str]) -> Rejection:
    """One dump row to a :class:`Rejection` (see :func:`guess_column` for ``column``)."""
    severity = "E"
    line = 0
    errors: list[tuple[int, str]] = []
    values: dict[str, str] = {}
    for name, value in zip(header, fields, strict=False):
        if name == STATUS_COLUMN:
            severity = value.strip() or "E"
        elif name == LINE_COLUMN:
            try:
                line = int(value.strip())
            except ValueError:
                line = 0
        elif match := _ERROR_COLUMN.match(name):
            if value.strip():
                errors.append((int(match.group(1)), value.strip()))
        else:
            values[name] = value
    messages = [text for _, text in sorted(errors)]
    message = "; ".join(messages) if messages else "rejected by Anaplan (no message in the failure dump)"
    return Rejection(row=line, column=guess_column(messages, values), message=message, values=values, severity=severity)


def guess_column(messages: list[str], values: dict[str, str]) -> str | None:
    """The column an error message is about, when it can be told.

    In order: an explicit ``column name: X``; the one column whose value the message quotes after
    its last colon (``Item not located in Account list: 4711``); the one column name the message
    mentions. ``None`` when it stays ambiguous.
    """
    for text in messages:
        named = _COLUMN_NAMED.search(text)
        if named and named.group(1).strip() in values:
            return named.group(1).strip()
    for text in messages:
        if ":" in text:
            quoted = text.rsplit(":", 1)[1].strip().strip("\"'")
            if quoted:
                owners = [name for name, value in values.items() if value.strip() == quoted]
                if len(owners) == 1:
                    return owners[0]
    for text in messages:
        mentioned = [
            name for name in values if name and re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
        ]
        if len(mentioned) == 1:
            return mentioned[0]
    return None
