"""Bounded-memory maps for the sync engine: kept in a dict while small, moved to a temporary SQLite file
beyond a threshold, so a run of a million records keeps a flat memory profile.

* :class:`RowRefs` — group (a file line, an aggregate cell) → the records behind it, as ``(natural key,
  content hash)`` pairs; used to map Anaplan's rejected ``_Line_`` numbers back to records.
* :class:`SeenHashes` — natural key → content hash; used to catch duplicates within one extract.

Blocking SQLite work runs in a worker thread (``asyncio.to_thread``); one operation at a time.
The temporary file is deleted by :meth:`close` (both are async context managers).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

DEFAULT_THRESHOLD = 50_000
_PAGE = 5_000
_IN_CHUNK = 500
_SELECT_REFS = "SELECT grp, natural_key, content_hash FROM refs WHERE grp IN (?) ORDER BY grp, seq"
_SELECT_SEEN = "SELECT natural_key, content_hash FROM seen WHERE natural_key IN (?)"


class RowRef(NamedTuple):
    natural_key: str
    content_hash: str


class _TempDb:
    """A private SQLite file in ``directory`` (default: the system temp dir), removed on close."""

    def __init__(self, schema: Sequence[str], directory: Path | None) -> None:
        fd, name = tempfile.mkstemp(prefix="ml-connector-spill-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=OFF")
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA temp_store=FILE")
        for statement in schema:
            self.conn.execute(statement)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        self.conn.execute("BEGIN")
        try:
            self.conn.executemany(sql, rows)
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise

    def fetch(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        return self.conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        self.conn.close()
        self.path.unlink(missing_ok=True)


class _Spillable:
    def __init__(self, *, threshold: int, directory: Path | None) -> None:
        if threshold < 1:
            raise ValueError(f"spill threshold must be >= 1, got {threshold}")
        self.threshold = threshold
        self.directory = directory
        self._db: _TempDb | None = None
        self._lock = asyncio.Lock()

    @property
    def spilled(self) -> bool:
        """True once entries live in the temporary file."""
        return self._db is not None

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(db.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class RowRefs(_Spillable):
    """Group number → ``RowRef``\\ s, in insertion order; spills to disk beyond ``threshold`` buffered refs."""

    _SCHEMA = (
        "CREATE TABLE refs (grp INTEGER NOT NULL, seq INTEGER NOT NULL, natural_key TEXT NOT NULL,"
        " content_hash TEXT NOT NULL, PRIMARY KEY (grp, seq)) WITHOUT ROWID",
    )

    def __init__(self, *, threshold: int = DEFAULT_THRESHOLD, directory: Path | None = None) -> None:
        super().__init__(threshold=threshold, directory=directory)
        self._memory: dict[int, list[RowRef]] = {}
        self._buffered = 0
        self._seq = 0
        self._count = 0

    def __len__(self) -> int:
        """All refs added so far."""
        return self._count

    def add(self, group: int, ref: RowRef) -> None:
        """Add one ref (cheap, synchronous); call :meth:`maybe_spill` now and then."""
        self._memory.setdefault(group, []).append(ref)
        self._buffered += 1
        self._count += 1

    @property
    def needs_spill(self) -> bool:
        return self._buffered >= self.threshold

    async def maybe_spill(self) -> None:
        if self.needs_spill:
            await self.spill()

    async def spill(self) -> None:
        """Move every buffered ref to the temporary file."""
        if not self._buffered:
            return
        memory, self._memory, self._buffered = self._memory, {}, 0
        rows: list[tuple[int, int, str, str]] = []
        for group, refs in memory.items():
            for ref in refs:
                self._seq += 1
                rows.append((group, self._seq, ref.natural_key, ref.content_hash))
        async with self._lock:
            if self._db is None:
                self._db = await asyncio.to_thread(_TempDb, self._SCHEMA, self.directory)
            await asyncio.to_thread(
                self._db.executemany, "INSERT INTO refs (grp, seq, natural_key, content_hash) VALUES (?, ?, ?, ?)", rows
            )

    async def get(self, groups: Iterable[int]) -> dict[int, list[RowRef]]:
        """Refs of each requested group (groups without any are absent)."""
        wanted = sorted(set(groups))
        out: dict[int, list[RowRef]] = {}
        if self._db is not None:
            async with self._lock:
                for start in range(0, len(wanted), _IN_CHUNK):
                    part = wanted[start : start + _IN_CHUNK]
                    sql = _SELECT_REFS.replace("(?)", "({})".format(", ".join("?" * len(part))))
                    for grp, key, hash_ in await asyncio.to_thread(self._db.fetch, sql, part):
                        out.setdefault(int(str(grp)), []).append(RowRef(str(key), str(hash_)))
        for group in wanted:
            if group in self._memory:
                out.setdefault(group, []).extend(self._memory[group])
        return out

    async def items(self) -> AsyncIterator[tuple[int, RowRef]]:
        """Every ``(group, ref)`` ordered by group (then insertion), streamed."""
        if self._db is None:
            for group in sorted(self._memory):
                for ref in self._memory[group]:
                    yield group, ref
            return
        await self.spill()
        last: tuple[int, int] = (-(2**62), 0)
        while True:
            async with self._lock:
                assert self._db is not None
                rows = await asyncio.to_thread(
                    self._db.fetch,
                    "SELECT grp, seq, natural_key, content_hash FROM refs WHERE (grp, seq) > (?, ?)"
                    " ORDER BY grp, seq LIMIT ?",
                    (*last, _PAGE),
                )
            for grp, seq, key, hash_ in rows:
                yield int(str(grp)), RowRef(str(key), str(hash_))
                last = (int(str(grp)), int(str(seq)))
            if len(rows) < _PAGE:
                return


class SeenHashes(_Spillable):
    """Natural key → content hash of the first occurrence; spills to disk beyond ``threshold`` keys."""

    _SCHEMA = ("CREATE TABLE seen (natural_key TEXT PRIMARY KEY, content_hash TEXT NOT NULL) WITHOUT ROWID",)

    def __init__(self, *, threshold: int = DEFAULT_THRESHOLD, directory: Path | None = None) -> None:
        super().__init__(threshold=threshold, directory=directory)
        self._memory: dict[str, str] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    async def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """The recorded hash of each key seen before (unseen keys are absent)."""
        wanted = list(dict.fromkeys(keys))
        out = {k: self._memory[k] for k in wanted if k in self._memory}
        missing = [k for k in wanted if k not in out]
        if self._db is not None and missing:
            async with self._lock:
                for start in range(0, len(missing), _IN_CHUNK):
                    part = missing[start : start + _IN_CHUNK]
                    sql = _SELECT_SEEN.replace("(?)", "({})".format(", ".join("?" * len(part))))
                    for key, hash_ in await asyncio.to_thread(self._db.fetch, sql, part):
                        out[str(key)] = str(hash_)
        return out

    async def put_many(self, items: Iterable[tuple[str, str]]) -> None:
        """Record keys not seen before (a key already present keeps its first hash)."""
        pending: dict[str, str] = {}
        for key, hash_ in items:
            pending.setdefault(key, hash_)
        if self._db is not None:  # keys that went to disk are not in memory any more
            for key in await self.get_many(pending):
                del pending[key]
        for key, hash_ in pending.items():
            if key not in self._memory:
                self._memory[key] = hash_
                self._count += 1
        if len(self._memory) >= self.threshold:
            memory, self._memory = self._memory, {}
            async with self._lock:
                if self._db is None:
                    self._db = await asyncio.to_thread(_TempDb, self._SCHEMA, self.directory)
                await asyncio.to_thread(
                    self._db.executemany,
                    "INSERT OR IGNORE INTO seen (natural_key, content_hash) VALUES (?, ?)",
                    list(memory.items()),
                )
