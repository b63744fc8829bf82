"""The embedded audit store: SQLite from the standard library, in WAL mode, on a dedicated thread.

All database work runs on one private worker thread (sqlite3 connections are not shareable across
threads), so the event loop never blocks on disk I/O. Timestamps are stored as UTC ISO-8601 text,
JSON as text. ``busy_timeout`` is how long one statement waits for a lock held by another process
before the write is treated as a transient failure and retried under the store's
:class:`~ml_connector.audit.store.OutagePolicy`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ml_connector.audit.sqlbase import Op, SqlAuditStore

T = TypeVar("T")
_JSON = json.JSONEncoder(separators=(",", ":"))  # one encoder: json.dumps(..., separators=) builds one per call

_TRANSIENT_MARKERS = ("locked", "busy", "disk i/o", "unable to open", "readonly", "disk is full", "interrupted")

MIGRATIONS: Mapping[int, Sequence[str]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS audit_runs (
            run_id TEXT PRIMARY KEY,
            connection TEXT NOT NULL,
            direction TEXT NOT NULL,
            flows TEXT NOT NULL,
            started_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            counts TEXT,
            reconciliation TEXT,
            error TEXT,
            replay_of TEXT,
            dry_run INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX IF NOT EXISTS audit_runs_connection ON audit_runs (connection, started_at)",
        """CREATE TABLE IF NOT EXISTS audit_events (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL,
            flow TEXT NOT NULL,
            entity TEXT NOT NULL,
            natural_key TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            status TEXT NOT NULL,
            payload TEXT,
            file_row INTEGER,
            reason TEXT,
            at TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS audit_events_key ON audit_events (natural_key)",
        "CREATE INDEX IF NOT EXISTS audit_events_run_status ON audit_events (run_id, status, id)",
        """CREATE TABLE IF NOT EXISTS audit_watermarks (
            connection TEXT NOT NULL,
            flow TEXT NOT NULL,
            value TEXT NOT NULL,
            run_id TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (connection, flow)
        )""",
        """CREATE TABLE IF NOT EXISTS audit_last_loaded (
            connection TEXT NOT NULL,
            flow TEXT NOT NULL,
            natural_key TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            run_id TEXT NOT NULL,
            loaded_at TEXT NOT NULL,
            PRIMARY KEY (connection, flow, natural_key)
        ) WITHOUT ROWID""",
    ),
}


class SqliteAuditStore(SqlAuditStore):
    """``SqliteAuditStore(path)``; use as ``async with`` or call :meth:`open` / :meth:`close`."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _sync_connect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS audit_schema (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def _connect(self) -> None:
        await self._call(self._sync_connect)

    def _sync_disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _disconnect(self) -> None:
        try:
            await self._call(self._sync_disconnect)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.OperationalError("unable to open database: not connected")
        return self._conn

    def _sync_transaction(self, ops: Sequence[Op]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in ops:
                if rows is None:
                    conn.execute(sql)
                else:
                    conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _transaction(self, ops: Sequence[Op]) -> None:
        await self._call(self._sync_transaction, ops)

    def _sync_fetch(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, tuple(params)).fetchall()

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._call(self._sync_fetch, sql, params)

    def _sync_migrate(self, version: int, statements: Sequence[str]) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # the write lock serializes concurrent migrators
        try:
            row = conn.execute("SELECT 1 FROM audit_schema WHERE version = ?", (version,)).fetchone()
            if row is None:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO audit_schema (version, applied_at) VALUES (?, ?)",
                    (version, self._ts_param(self._clock())),
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _apply_migration(self, version: int, statements: Sequence[str]) -> None:
        await self._call(self._sync_migrate, version, statements)

    def _migrations(self) -> Mapping[int, Sequence[str]]:
        return MIGRATIONS

    def _is_transient(self, exc: BaseException) -> bool:
        if not isinstance(exc, sqlite3.OperationalError):
            return False
        message = str(exc).lower()
        return any(marker in message for marker in _TRANSIENT_MARKERS)

    def _ts_param(self, value: dt.datetime) -> str:
        if value.tzinfo is None:
            raise ValueError(f"audit timestamps must be timezone-aware, got {value.isoformat()}")
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")

    def _ts_value(self, value: Any) -> dt.datetime:
        return dt.datetime.fromisoformat(str(value))

    def _json_param(self, value: Any) -> str:
        return _JSON.encode(value)

    def _json_value(self, value: Any) -> Any:
        return json.loads(value)
