"""What the SQLite and PostgreSQL audit stores share: buffering, retries within an outage budget,
the SQL of every query (written with ``?`` placeholders; the PostgreSQL store translates them) and the
conversion of rows to models. A backend supplies connection handling, transactions, the schema DDL and
the type conversions that differ (timestamps, JSON, booleans).
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar

from ml_connector.audit.store import (
    AuditError,
    AuditSchemaError,
    AuditUnavailableError,
    EventStatus,
    FlowCounts,
    LoadedHash,
    OutagePolicy,
    RecordEvent,
    RunInfo,
    RunStatus,
    StoredEvent,
    Watermark,
    utcnow,
)
from ml_connector.net.redact import redact

log = logging.getLogger(__name__)

T = TypeVar("T")

#: One statement of a transaction: SQL and its parameter rows (``None``: run once without parameters).
Op = tuple[str, Sequence[Sequence[Any]] | None]

SCHEMA_VERSION = 1
_PAGE = 1000  # rows per page when streaming query results
_KEYS_PER_QUERY = 500  # natural keys per IN (...) lookup

_EVENT_COLUMNS = "id, run_id, flow, entity, natural_key, content_hash, status, payload, file_row, reason, at"
_RUN_COLUMNS = (
    "run_id, connection, direction, flows, started_at, finished_at, status, counts, reconciliation, error,"
    " replay_of, dry_run"
)
_INSERT_EVENT = (
    "INSERT INTO audit_events (run_id, flow, entity, natural_key, content_hash, status, payload, file_row, reason, at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_LOADED = (
    "INSERT INTO audit_last_loaded (connection, flow, natural_key, content_hash, run_id, loaded_at)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (connection, flow, natural_key) DO UPDATE SET"
    " content_hash = excluded.content_hash, run_id = excluded.run_id, loaded_at = excluded.loaded_at"
)
_SELECT_LOADED = (
    "SELECT natural_key, content_hash, run_id, loaded_at FROM audit_last_loaded"
    " WHERE connection = ? AND flow = ? AND natural_key IN (?)"
)
_PAYLOAD_STATUSES = (EventStatus.EXTRACTED.value, EventStatus.REPLAYED.value)


class SqlAuditStore(abc.ABC):
    """Base of the SQL audit stores; see :class:`~ml_connector.audit.store.AuditStore` for the contract.

    SQL text is only ever assembled from this module's constants and ``?`` placeholders; every value
    travels as a parameter (hence the ``noqa: S608`` markers).
    """

    dialect: ClassVar[str]

    def __init__(
        self,
        *,
        policy: OutagePolicy | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.policy = policy or OutagePolicy()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._buffer: list[RecordEvent] = []
        #: one drain at a time: two concurrent drains (runs sharing a store) would write the same batch twice
        #: and then delete two batches from the buffer, one of them never written
        self._drain_lock = asyncio.Lock()
        self._run_connections: dict[str, str] = {}
        self._outage_since: float | None = None
        self._failed_attempts = 0
        self._retry_not_before = 0.0
        self._last_error = ""
        self._opened = False

    # ------------------------------------------------------------------ backend primitives
    @abc.abstractmethod
    async def _connect(self) -> None: ...

    @abc.abstractmethod
    async def _disconnect(self) -> None: ...

    @abc.abstractmethod
    async def _transaction(self, ops: Sequence[Op]) -> None:
        """Run all ``ops`` (``executemany`` for parameter rows) in one transaction."""

    @abc.abstractmethod
    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    async def _apply_migration(self, version: int, statements: Sequence[str]) -> None:
        """Apply one schema version under the backend's migration lock, unless already applied."""

    @abc.abstractmethod
    def _migrations(self) -> Mapping[int, Sequence[str]]: ...

    @abc.abstractmethod
    def _is_transient(self, exc: BaseException) -> bool:
        """True for errors worth retrying (database locked, connection lost, lock timeout...)."""

    @abc.abstractmethod
    def _ts_param(self, value: dt.datetime) -> Any: ...

    @abc.abstractmethod
    def _ts_value(self, value: Any) -> dt.datetime: ...

    @abc.abstractmethod
    def _json_param(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def _json_value(self, value: Any) -> Any: ...

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""

    # ------------------------------------------------------------------ lifecycle
    async def open(self) -> None:
        if self._opened:
            return
        await self._retrying("open the audit database", self._open_once)
        self._opened = True

    async def _open_once(self) -> None:
        await self._connect()
        for version, statements in sorted(self._migrations().items()):
            await self._apply_migration(version, statements)
        rows = await self._fetch("SELECT MAX(version) FROM audit_schema")
        current = int(rows[0][0] or 0)
        if current > SCHEMA_VERSION:
            raise AuditSchemaError(
                f"audit database {self.describe()} has schema version {current}; this ml-connector knows versions"
                f" up to {SCHEMA_VERSION}: upgrade ml-connector or use another database"
            )

    async def close(self) -> None:
        if not self._opened:
            return
        try:
            await self.flush()
        finally:
            self._opened = False
            await self._disconnect()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT MAX(version) FROM audit_schema")
        return int(rows[0][0] or 0)

    # ------------------------------------------------------------------ retries
    def _check_open(self) -> None:
        if not self._opened:
            raise AuditError(f"audit store {self.describe()} is not open: call open() or use it as a context manager")

    def _note_failure(self, what: str, exc: BaseException) -> float:
        """Record a transient failure; raise when the outage budget is spent; return the backoff to wait."""
        now = self._monotonic()
        if self._outage_since is None:
            self._outage_since = now
        self._failed_attempts += 1
        self._last_error = redact(f"{type(exc).__name__}: {exc}".strip())
        elapsed = now - self._outage_since
        if elapsed >= self.policy.max_outage:
            raise AuditUnavailableError(
                f"audit database {self.describe()} unavailable for {elapsed:.1f}s (budget {self.policy.max_outage:g}s,"
                f" {self._failed_attempts} failed attempts) while trying to {what}; {len(self._buffer)} event(s) still"
                f" buffered; last error: {self._last_error}"
            ) from None
        # never sleep past the deadline: the last attempt happens when the budget is exactly spent
        wait = min(self.policy.backoff(self._failed_attempts), self.policy.max_outage - elapsed)
        log.warning(
            "audit database %s unavailable (%s), retrying in %.2fs (attempt %d, %d event(s) buffered)",
            self.describe(),
            self._last_error,
            wait,
            self._failed_attempts,
            len(self._buffer),
        )
        return wait

    def _note_success(self) -> None:
        if self._outage_since is not None:
            log.info(
                "audit database %s available again after %d failed attempt(s)", self.describe(), self._failed_attempts
            )
        self._outage_since = None
        self._failed_attempts = 0
        self._retry_not_before = 0.0

    async def _retrying(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """Run ``operation`` until it succeeds, retrying transient errors within the outage budget."""
        while True:
            try:
                result = await operation()
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                await self._sleep(self._note_failure(what, exc))
                continue
            self._note_success()
            return result

    # ------------------------------------------------------------------ runs
    async def start_run(self, run: RunInfo) -> None:
        self._check_open()
        params = (
            run.run_id,
            run.connection,
            run.direction,
            json.dumps(list(run.flows)),
            self._ts_param(run.started_at),
            self._ts_param(run.finished_at) if run.finished_at else None,
            run.status.value,
            self._json_param({k: v.to_dict() for k, v in run.counts.items()}),
            self._json_param(run.reconciliation) if run.reconciliation is not None else None,
            redact(run.error) if run.error else None,
            run.replay_of,
            run.dry_run,
        )
        sql = (
            f"INSERT INTO audit_runs ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
            " ON CONFLICT (run_id) DO NOTHING"
        )
        await self._retrying(f"start run {run.run_id}", lambda: self._transaction([(sql, [params])]))
        existing = await self.get_run(run.run_id)
        if existing is None or existing.connection != run.connection:
            raise AuditError(
                f"run {run.run_id!r} already exists in the audit store for connection "
                f"{existing.connection if existing else '?'!r}, not {run.connection!r}"
            )
        self._run_connections[run.run_id] = run.connection

    async def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        counts: Mapping[str, FlowCounts] | None = None,
        reconciliation: Mapping[str, Any] | None = None,
        error: str | None = None,
        finished_at: dt.datetime | None = None,
    ) -> None:
        self._check_open()
        await self.flush()
        if counts is None:
            counts = await self.counts(run_id)
        params = (
            self._ts_param(finished_at or self._clock()),
            status.value,
            self._json_param({k: v.to_dict() for k, v in counts.items()}),
            self._json_param(reconciliation) if reconciliation is not None else None,
            redact(error) if error else None,
            run_id,
        )
        sql = (
            "UPDATE audit_runs SET finished_at = ?, status = ?, counts = ?, reconciliation = ?, error = ?"
            " WHERE run_id = ?"
        )
        await self._retrying(f"finish run {run_id}", lambda: self._transaction([(sql, [params])]))
        if await self.get_run(run_id) is None:
            raise AuditError(f"cannot finish run {run_id!r}: the audit store has no such run")

    def _run_from_row(self, row: Sequence[Any]) -> RunInfo:
        counts_raw = self._json_value(row[7]) if row[7] is not None else {}
        return RunInfo(
            run_id=row[0],
            connection=row[1],
            direction=row[2],
            flows=tuple(json.loads(row[3])),
            started_at=self._ts_value(row[4]),
            finished_at=self._ts_value(row[5]) if row[5] is not None else None,
            status=RunStatus(row[6]),
            counts={flow: FlowCounts.from_dict(flow, data) for flow, data in counts_raw.items()},
            reconciliation=self._json_value(row[8]) if row[8] is not None else None,
            error=row[9],
            replay_of=row[10],
            dry_run=bool(row[11]),
        )

    async def get_run(self, run_id: str) -> RunInfo | None:
        self._check_open()
        sql = f"SELECT {_RUN_COLUMNS} FROM audit_runs WHERE run_id = ?"  # noqa: S608 (constants only)
        rows = await self._read(sql, (run_id,))
        return self._run_from_row(rows[0]) if rows else None

    async def list_runs(self, *, connection: str | None = None, limit: int = 20) -> list[RunInfo]:
        self._check_open()
        where, params = ("WHERE connection = ?", [connection]) if connection is not None else ("", [])
        rows = await self._read(
            f"SELECT {_RUN_COLUMNS} FROM audit_runs {where} ORDER BY started_at DESC, run_id DESC LIMIT ?",  # noqa: S608
            (*params, limit),
        )
        return [self._run_from_row(row) for row in rows]

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await self._retrying("read the audit database", lambda: self._fetch(sql, params))

    async def _connection_of(self, run_id: str) -> str:
        known = self._run_connections.get(run_id)
        if known is not None:
            return known
        rows = await self._read("SELECT connection FROM audit_runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise AuditError(f"event for run {run_id!r}, which the audit store does not know: call start_run() first")
        self._run_connections[run_id] = rows[0][0]
        return str(rows[0][0])

    # ------------------------------------------------------------------ events
    async def record(self, events: Iterable[RecordEvent]) -> None:
        self._check_open()
        for event in events:
            if event.run_id not in self._run_connections:
                await self._connection_of(event.run_id)
            self._buffer.append(event)
            if len(self._buffer) >= self.policy.batch_size:
                await self._drain(final=False)

    async def flush(self) -> None:
        self._check_open()
        await self._drain(final=True)

    async def _drain(self, *, final: bool) -> None:
        """Write full batches (all buffered events when ``final``).

        While the database is failing and the buffer is below ``max_buffer`` (and not ``final``), return at
        once and try again on a later call after the backoff; otherwise wait and retry until the outage
        budget is spent.
        """
        async with self._drain_lock:
            await self._drain_locked(final=final)

    async def _drain_locked(self, *, final: bool) -> None:
        size = self.policy.batch_size
        while self._buffer and (final or len(self._buffer) >= size):
            must_wait = final or len(self._buffer) >= self.policy.max_buffer
            if not must_wait and self._monotonic() < self._retry_not_before:
                return
            batch = self._buffer[:size]
            try:
                await self._write_batch(batch)
            except Exception as exc:
                if not self._is_transient(exc):
                    raise
                wait = self._note_failure(f"write {len(batch)} audit event(s)", exc)
                if not must_wait:
                    self._retry_not_before = self._monotonic() + wait
                    return
                await self._sleep(wait)
                continue
            del self._buffer[: len(batch)]
            self._note_success()

    @property
    def buffered(self) -> int:
        """Events accepted but not yet written."""
        return len(self._buffer)

    async def _write_batch(self, batch: Sequence[RecordEvent]) -> None:
        now = self._ts_param(self._clock())
        rows: list[tuple[Any, ...]] = []
        loaded: dict[tuple[str, str, str], tuple[Any, ...]] = {}
        for event in batch:
            at = self._ts_param(event.at) if event.at is not None else now
            rows.append(
                (
                    event.run_id,
                    event.flow,
                    event.entity,
                    event.natural_key,
                    event.content_hash,
                    event.status.value,
                    self._json_param(dict(event.payload)) if event.payload is not None else None,
                    event.file_row,
                    redact(event.reason) if event.reason else None,
                    at,
                )
            )
            if event.status is EventStatus.LOADED:
                connection = self._run_connections[event.run_id]
                key = (connection, event.flow, event.natural_key)
                loaded[key] = (connection, event.flow, event.natural_key, event.content_hash, event.run_id, at)
        await self._write_rows(rows, list(loaded.values()))

    async def _write_rows(self, events: list[tuple[Any, ...]], loaded: list[tuple[Any, ...]]) -> None:
        """Insert event rows and upsert last-loaded rows in one transaction (backends may do it faster)."""
        ops: list[Op] = [(_INSERT_EVENT, events)]
        if loaded:
            ops.append((_UPSERT_LOADED, loaded))
        await self._transaction(ops)

    def _event_from_row(self, row: Sequence[Any]) -> StoredEvent:
        return StoredEvent(
            id=int(row[0]),
            run_id=row[1],
            flow=row[2],
            entity=row[3],
            natural_key=row[4],
            content_hash=row[5],
            status=EventStatus(row[6]),
            payload=self._json_value(row[7]) if row[7] is not None else None,
            file_row=row[8],
            reason=row[9],
            at=self._ts_value(row[10]),
        )

    # ------------------------------------------------------------------ incremental state
    async def get_watermark(self, connection: str, flow: str) -> Watermark | None:
        self._check_open()
        rows = await self._read(
            "SELECT value, run_id, updated_at FROM audit_watermarks WHERE connection = ? AND flow = ?",
            (connection, flow),
        )
        if not rows:
            return None
        value, run_id, updated_at = rows[0]
        return Watermark(connection, flow, self._ts_value(value), run_id, self._ts_value(updated_at))

    async def set_watermark(self, connection: str, flow: str, value: dt.datetime, *, run_id: str) -> None:
        self._check_open()
        if value.tzinfo is None:
            raise AuditError(f"watermark for {connection}/{flow} must be timezone-aware, got {value.isoformat()}")
        await self.flush()
        sql = (
            "INSERT INTO audit_watermarks (connection, flow, value, run_id, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (connection, flow) DO UPDATE SET value = excluded.value, run_id = excluded.run_id,"
            " updated_at = excluded.updated_at"
        )
        params = (connection, flow, self._ts_param(value), run_id, self._ts_param(self._clock()))
        await self._retrying(f"set the watermark of {connection}/{flow}", lambda: self._transaction([(sql, [params])]))

    async def last_loaded(self, connection: str, flow: str, natural_keys: Sequence[str]) -> dict[str, LoadedHash]:
        self._check_open()
        out: dict[str, LoadedHash] = {}
        unique = list(dict.fromkeys(natural_keys))
        for start in range(0, len(unique), _KEYS_PER_QUERY):
            part = unique[start : start + _KEYS_PER_QUERY]
            marks = ", ".join("?" * len(part))
            rows = await self._read(_SELECT_LOADED.replace("(?)", f"({marks})"), (connection, flow, *part))
            for key, hash_, run_id, loaded_at in rows:
                out[key] = LoadedHash(key, hash_, run_id, self._ts_value(loaded_at))
        return out

    # ------------------------------------------------------------------ queries
    async def history(
        self,
        natural_key: str,
        *,
        flow: str | None = None,
        connection: str | None = None,
        suffix: bool = False,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        await self.flush()
        cols = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))
        conditions = ["e.natural_key = ?"]
        params: list[Any] = [natural_key]
        if suffix:
            tail = "/" + natural_key
            conditions = [
                "(e.natural_key = ? OR (length(e.natural_key) > ?"
                " AND substr(e.natural_key, length(e.natural_key) - ?) = ?))"
            ]
            params = [natural_key, len(tail), len(tail) - 1, tail]
        join = ""
        if flow is not None:
            conditions.append("e.flow = ?")
            params.append(flow)
        if connection is not None:
            join = " JOIN audit_runs r ON r.run_id = e.run_id"
            conditions.append("r.connection = ?")
            params.append(connection)
        where = " AND ".join(conditions)
        sql = f"SELECT {cols} FROM audit_events e{join} WHERE {where} ORDER BY e.id LIMIT ?"  # noqa: S608
        rows = await self._read(sql, (*params, limit))
        return [self._event_from_row(row) for row in rows]

    async def _stream(self, where: str, params: Sequence[Any]) -> AsyncIterator[StoredEvent]:
        """Keyset pagination in id order: no cursor stays open across ``await``\\ s."""
        last = 0
        while True:
            sql = f"SELECT {_EVENT_COLUMNS} FROM audit_events e WHERE {where} AND e.id > ? ORDER BY e.id LIMIT ?"  # noqa: S608
            rows = await self._read(sql, (*params, last, _PAGE))
            for row in rows:
                yield self._event_from_row(row)
            if len(rows) < _PAGE:
                return
            last = int(rows[-1][0])

    async def failed(self, run_id: str, *, flow: str | None = None) -> AsyncIterator[StoredEvent]:
        await self.flush()
        where = "e.run_id = ? AND e.status = ?"
        params: list[Any] = [run_id, EventStatus.REJECTED.value]
        if flow is not None:
            where += " AND e.flow = ?"
            params.append(flow)
        async for event in self._stream(where, params):
            yield event

    async def payloads(
        self, run_id: str, *, only_failed: bool = False, flow: str | None = None
    ) -> AsyncIterator[StoredEvent]:
        await self.flush()
        where = "e.run_id = ? AND e.status IN (?, ?) AND e.payload IS NOT NULL"
        params: list[Any] = [run_id, *_PAYLOAD_STATUSES]
        if flow is not None:
            where += " AND e.flow = ?"
            params.append(flow)
        if only_failed:
            where += (
                " AND EXISTS (SELECT 1 FROM audit_events f WHERE f.natural_key = e.natural_key"
                " AND f.run_id = e.run_id AND f.flow = e.flow AND f.status = ?)"  # via the natural_key index
            )
            params.append(EventStatus.REJECTED.value)
        async for event in self._stream(where, params):
            yield event

    async def counts(self, run_id: str) -> dict[str, FlowCounts]:
        await self.flush()
        rows = await self._read(
            "SELECT flow, status, COUNT(*) FROM audit_events WHERE run_id = ? GROUP BY flow, status ORDER BY flow",
            (run_id,),
        )
        per_flow: dict[str, dict[str, int]] = {}
        for flow, status, count in rows:
            per_flow.setdefault(flow, {})[status] = int(count)
        return {flow: FlowCounts.from_dict(flow, data) for flow, data in per_flow.items()}
