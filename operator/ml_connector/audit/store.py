"""The audit store: what it records, and the protocol every backend (SQLite, PostgreSQL) implements.

Every record's journey is a sequence of :class:`RecordEvent`\\ s within a run:

* ``extracted`` — read from the source (payload stored when the record is sent on), or
  ``replayed`` — re-sent from a stored payload by a replay run;
* then exactly one outcome: ``loaded``, ``rejected`` (with the reason and the Anaplan file row) or
  ``skipped`` (unchanged since its last load, or a duplicate within the extract).

So per flow the accounting ``extracted + replayed == loaded + rejected + skipped`` must balance
(:meth:`FlowCounts.imbalance`). Runs carry their counts, reconciliation summary and error;
watermarks (per connection and flow) and the last loaded content hash per natural key drive the
next incremental run.

Writes are buffered and sent in batches (one transaction per batch); a backend that is unavailable
for a while loses nothing: batches are retried with backoff and the run fails only after
:attr:`OutagePolicy.max_outage` seconds without success (:class:`AuditUnavailableError`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

from ml_connector.records import Record, content_hash


class EventStatus(enum.StrEnum):
    EXTRACTED = "extracted"
    LOADED = "loaded"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    REPLAYED = "replayed"


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditError(Exception):
    """The audit store refused an operation (bad input, unknown run, schema problem)."""


class AuditSchemaError(AuditError):
    """The database holds a schema this version of ml-connector cannot use."""


class AuditUnavailableError(AuditError):
    """The audit database stayed unreachable longer than the configured outage budget."""


@dataclasses.dataclass(frozen=True, slots=True)
class OutagePolicy:
    """How the store batches writes and rides out an unavailable database.

    ``batch_size`` events are written per transaction; up to ``max_buffer`` events are kept in memory
    while the database is unavailable (the caller is not slowed down); beyond that the caller waits
    while the store retries with exponential backoff (``initial_backoff`` doubling up to
    ``max_backoff``). After ``max_outage`` seconds without a successful write the store gives up with
    :class:`AuditUnavailableError` (the buffered events are kept, so a later :meth:`flush` may still
    succeed).
    """

    batch_size: int = 5000
    max_buffer: int = 50_000
    max_outage: float = 120.0
    initial_backoff: float = 0.2
    max_backoff: float = 5.0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"OutagePolicy.batch_size must be >= 1, got {self.batch_size}")
        if self.max_buffer < self.batch_size:
            raise ValueError(f"OutagePolicy.max_buffer ({self.max_buffer}) must be >= batch_size ({self.batch_size})")
        if self.max_outage < 0 or self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("OutagePolicy durations must not be negative")

    def backoff(self, attempt: int) -> float:
        """Wait before retry ``attempt`` (1-based)."""
        return float(min(self.max_backoff, self.initial_backoff * 2 ** max(0, attempt - 1)))


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """One sync run as the audit store knows it."""

    run_id: str
    connection: str
    direction: str = "Load"
    flows: tuple[str, ...] = ()
    started_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
    status: RunStatus = RunStatus.RUNNING
    counts: Mapping[str, FlowCounts] = dataclasses.field(default_factory=dict)
    reconciliation: Mapping[str, Any] | None = None
    error: str | None = None
    replay_of: str | None = None
    dry_run: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RecordEvent:
    """One step of one record's journey (what the pipeline writes)."""

    run_id: str
    flow: str
    entity: str
    natural_key: str
    content_hash: str
    status: EventStatus
    payload: Mapping[str, Any] | None = None
    file_row: int | None = None
    reason: str | None = None
    at: dt.datetime | None = None

    @classmethod
    def of(
        cls,
        record: Record,
        *,
        run_id: str,
        flow: str,
        status: EventStatus,
        with_payload: bool = False,
        file_row: int | None = None,
        reason: str | None = None,
        hash_: str | None = None,
        at: dt.datetime | None = None,
    ) -> RecordEvent:
        """The event for ``record``; ``with_payload`` stores its normalized payload (needed for replay)."""
        return cls(
            run_id=run_id,
            flow=flow,
            entity=record.entity,
            natural_key=record.natural_key,
            content_hash=hash_ if hash_ is not None else content_hash(record),
            status=status,
            payload=record.to_dict() if with_payload else None,
            file_row=file_row,
            reason=reason,
            at=at,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """A :class:`RecordEvent` as read back: with its id, timestamp and the run's connection."""

    id: int
    run_id: str
    flow: str
    entity: str
    natural_key: str
    content_hash: str
    status: EventStatus
    payload: Mapping[str, Any] | None
    file_row: int | None
    reason: str | None
    at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Watermark:
    connection: str
    flow: str
    value: dt.datetime
    run_id: str
    updated_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class LoadedHash:
    """The content hash a natural key had when it was last loaded, and by which run."""

    natural_key: str
    content_hash: str
    run_id: str
    loaded_at: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class FlowCounts:
    """Events per status for one flow of one run."""

    flow: str
    extracted: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped: int = 0
    replayed: int = 0

    @property
    def source(self) -> int:
        """Records that entered the run: extracted from the source or replayed from the store."""
        return self.extracted + self.replayed

    @property
    def accounted(self) -> int:
        return self.loaded + self.rejected + self.skipped

    def imbalance(self) -> str | None:
        """None when ``extracted (+ replayed) == loaded + rejected + skipped``, else what is wrong."""
        if self.source == self.accounted:
            return None
        origin = f"extracted {self.extracted}" + (f" + replayed {self.replayed}" if self.replayed else "")
        gap = self.source - self.accounted
        what = f"{gap} record(s) without an outcome" if gap > 0 else f"{-gap} outcome(s) more than records"
        return (
            f"flow {self.flow!r} does not balance: {origin} != loaded {self.loaded} + rejected {self.rejected}"
            f" + skipped {self.skipped} ({what})"
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "extracted": self.extracted,
            "loaded": self.loaded,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "replayed": self.replayed,
        }

    @classmethod
    def from_dict(cls, flow: str, data: Mapping[str, Any]) -> FlowCounts:
        return cls(
            flow=flow,
            extracted=int(data.get("extracted", 0)),
            loaded=int(data.get("loaded", 0)),
            rejected=int(data.get("rejected", 0)),
            skipped=int(data.get("skipped", 0)),
            replayed=int(data.get("replayed", 0)),
        )


@runtime_checkable
class AuditStore(Protocol):
    """What the pipeline, the replay command and the audit command use. Backends: SQLite, PostgreSQL."""

    policy: OutagePolicy

    async def open(self) -> None:
        """Connect and create or migrate the schema."""

    async def close(self) -> None:
        """Flush buffered events and disconnect."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    # runs
    async def start_run(self, run: RunInfo) -> None: ...

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
        """Flush, then mark the run finished (``error`` is redacted before it is stored)."""

    async def get_run(self, run_id: str) -> RunInfo | None: ...

    async def list_runs(self, *, connection: str | None = None, limit: int = 20) -> list[RunInfo]:
        """Newest first."""

    # events
    async def record(self, events: Iterable[RecordEvent]) -> None:
        """Buffer events; a full batch is written in one transaction (reasons are redacted)."""

    async def flush(self) -> None:
        """Write every buffered event now (retrying within the outage budget)."""

    # incremental state
    async def get_watermark(self, connection: str, flow: str) -> Watermark | None: ...

    async def set_watermark(self, connection: str, flow: str, value: dt.datetime, *, run_id: str) -> None:
        """Flushes first: the watermark never gets ahead of the events that justify it."""

    async def last_loaded(self, connection: str, flow: str, natural_keys: Sequence[str]) -> dict[str, LoadedHash]:
        """Last loaded content hash per natural key (keys never loaded are absent). Reads the database only."""

    # queries (each flushes first, so a run sees its own events)
    async def history(
        self,
        natural_key: str,
        *,
        flow: str | None = None,
        connection: str | None = None,
        suffix: bool = False,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        """Events of one natural key across runs, oldest first. ``suffix`` also matches keys ending in
        ``/<natural_key>`` (find invoice ``INV-42`` without its company/division/supplier prefix)."""

    def failed(self, run_id: str, *, flow: str | None = None) -> AsyncIterator[StoredEvent]:
        """Rejected events of a run, streamed in id order."""

    async def counts(self, run_id: str) -> dict[str, FlowCounts]:
        """Events per status per flow of a run."""

    def payloads(
        self, run_id: str, *, only_failed: bool = False, flow: str | None = None
    ) -> AsyncIterator[StoredEvent]:
        """The payloads a run sent (``extracted``/``replayed`` events that carry one), streamed in id order;
        ``only_failed`` keeps those whose record was rejected in that run."""
