"""Incremental reads and duplicate removal, in bounded memory.

**Watermarks.** Each (connection, flow) keeps the latest source change time it has loaded. The next
run reads records changed since ``watermark - overlap`` (:func:`changed_since`): the overlap window
catches records whose change was committed late or stamped by a skewed clock, and the duplicates it
brings back are removed by content hash. The new watermark is the latest ``changed_at`` seen — the
source's clock, never ours — and is stored only after the load succeeded (:meth:`WatermarkTracker.commit`);
it never moves backwards, except to re-read a record version that had to be skipped (below).

**Duplicates.** :class:`Deduplicator` passes each extracted record on, or skips it:

* *unchanged* — its content hash equals the hash its natural key had when last loaded (looked up in
  the audit store in batches);
* *duplicate* — its natural key was already read in this run with the same content;
* *conflict* — its natural key was already read in this run with other content (the source changed
  during the read): the first version is kept, this one is skipped, and the watermark is held at its
  ``changed_at`` so the next run reads the record again.

Every record gets an ``extracted`` event (with its payload when it is passed on, for replay) and every
skip a ``skipped`` event with the reason, so ``extracted == loaded + rejected + skipped`` holds.
Keys seen in this run live in a :class:`~ml_connector.sync.spill.SeenHashes` that spills to disk.

Aggregated layouts (``gl_actuals``) need every posting of a cell, changed or not, to rebuild it: use
``skip_unchanged=False`` there (within-run duplicates are still removed, so nothing is counted twice).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Generic, TypeVar

from ml_connector.audit.store import AuditStore, EventStatus, RecordEvent
from ml_connector.records import Record, content_hash
from ml_connector.sync.layouts import Hashed
from ml_connector.sync.spill import SeenHashes

R = TypeVar("R", bound=Record)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SkipKind = str  # "unchanged" | "duplicate" | "conflict"


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def changed_since(
    previous: dt.datetime | None, overlap: dt.timedelta, *, initial: dt.datetime | None = None
) -> dt.datetime | None:
    """Where the next incremental read starts: ``previous - overlap``; ``initial`` (or a full read, None)
    when there is no watermark yet."""
    if overlap < dt.timedelta(0):
        raise ValueError(f"the overlap window must not be negative, got {overlap}")
    if previous is None:
        return _aware(initial) if initial is not None else None
    return _aware(previous) - overlap


@dataclasses.dataclass(frozen=True, slots=True)
class IncrementalWindow:
    connection: str
    flow: str
    previous: dt.datetime | None
    changed_since: dt.datetime | None
    overlap: dt.timedelta


async def read_window(
    store: AuditStore,
    connection: str,
    flow: str,
    *,
    overlap: dt.timedelta,
    initial: dt.datetime | None = None,
) -> IncrementalWindow:
    """The window of the next read of ``flow``, from the stored watermark."""
    mark = await store.get_watermark(connection, flow)
    previous = mark.value if mark is not None else None
    return IncrementalWindow(connection, flow, previous, changed_since(previous, overlap, initial=initial), overlap)


class WatermarkTracker:
    """Follows the ``changed_at`` of the records of one read; says what the watermark becomes."""

    def __init__(self, window: IncrementalWindow) -> None:
        self.window = window
        self.latest: dt.datetime | None = None
        self.held: dt.datetime | None = None

    def observe(self, record: Record) -> None:
        changed = _aware(record.changed_at)
        if changed == _EPOCH:
            return  # the source gave no change time
        if self.latest is None or changed > self.latest:
            self.latest = changed

    def hold(self, changed_at: dt.datetime) -> None:
        """Keep the next watermark at or below ``changed_at`` (a version that must be read again)."""
        changed = _aware(changed_at)
        if self.held is None or changed < self.held:
            self.held = changed

    @property
    def value(self) -> dt.datetime | None:
        """The watermark to store after a successful load (None: nothing to store)."""
        candidates = [v for v in (self.window.previous, self.latest) if v is not None]
        if not candidates:
            return None
        new = max(_aware(v) for v in candidates)
        if self.held is not None and self.held < new:
            new = self.held
        return new

    async def commit(self, store: AuditStore, *, run_id: str) -> dt.datetime | None:
        """Store :attr:`value` (call only once the flow's load has succeeded)."""
        value = self.value
        if value is not None and value != self.window.previous:
            await store.set_watermark(self.window.connection, self.window.flow, value, run_id=run_id)
        return value


@dataclasses.dataclass(slots=True)
class DedupeStats:
    extracted: int = 0
    passed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    conflicts: int = 0

    @property
    def skipped(self) -> int:
        return self.unchanged + self.duplicates + self.conflicts


class Deduplicator(Generic[R]):
    """Filters one flow's extract of one run; writes ``extracted`` and ``skipped`` events to the audit store."""

    def __init__(
        self,
        store: AuditStore,
        *,
        run_id: str,
        connection: str,
        flow: str,
        skip_unchanged: bool = True,
        tracker: WatermarkTracker | None = None,
        batch_size: int = 1000,
        seen: SeenHashes | None = None,
        on_skip: Callable[[R, SkipKind, str], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.store = store
        self.run_id = run_id
        self.connection = connection
        self.flow = flow
        self.skip_unchanged = skip_unchanged
        self.tracker = tracker
        self.batch_size = batch_size
        self.seen = seen if seen is not None else SeenHashes()
        self.on_skip = on_skip
        self.stats = DedupeStats()

    async def filter(self, records: AsyncIterable[R]) -> AsyncIterator[Hashed[R]]:
        """The records to load, with their content hashes, in source order."""
        try:
            batch: list[R] = []
            async for record in records:
                batch.append(record)
                if len(batch) >= self.batch_size:
                    for item in await self._batch(batch):
                        yield item
                    batch = []
            if batch:
                for item in await self._batch(batch):
                    yield item
        finally:
            await self.seen.close()

    async def _batch(self, batch: list[R]) -> list[Hashed[R]]:
        payloads = [record.to_dict() for record in batch]  # once per record: the hash and the stored payload
        hashed = [
            (record, record.natural_key, content_hash(record, payload))
            for record, payload in zip(batch, payloads, strict=True)
        ]
        keys = [key for _, key, _ in hashed]
        earlier = await self.seen.get_many(keys)
        loaded = await self.store.last_loaded(self.connection, self.flow, keys) if self.skip_unchanged else {}
        first_in_batch: dict[str, str] = {}
        events: list[RecordEvent] = []
        passed: list[Hashed[R]] = []
        for (record, key, hash_), payload in zip(hashed, payloads, strict=True):
            self.stats.extracted += 1
            skip: tuple[SkipKind, str] | None = None
            before = earlier.get(key) or first_in_batch.get(key)
            if before is not None:
                if before == hash_:
                    skip = ("duplicate", "duplicate: the same record was already read in this run")
                    if self.tracker is not None:
                        self.tracker.observe(record)
                else:
                    skip = (
                        "conflict",
                        "another version of this record was already read in this run (the source changed during"
                        " the read): the first is loaded, this one will be read again by the next run",
                    )
                    if self.tracker is not None:
                        self.tracker.hold(record.changed_at)
            else:
                first_in_batch[key] = hash_
                if self.tracker is not None:
                    self.tracker.observe(record)
                last = loaded.get(key)
                if last is not None and last.content_hash == hash_:
                    skip = ("unchanged", f"unchanged since run {last.run_id} loaded it")
            events.append(
                RecordEvent(
                    run_id=self.run_id,
                    flow=self.flow,
                    entity=record.entity,
                    natural_key=key,
                    content_hash=hash_,
                    status=EventStatus.EXTRACTED,
                    payload=payload if skip is None else None,
                )
            )
            if skip is None:
                self.stats.passed += 1
                passed.append(Hashed(record, hash_))
                continue
            kind, reason = skip
            if kind == "unchanged":
                self.stats.unchanged += 1
            elif kind == "duplicate":
                self.stats.duplicates += 1
            else:
                self.stats.conflicts += 1
            events.append(
                RecordEvent(
                    run_id=self.run_id,
                    flow=self.flow,
                    entity=record.entity,
                    natural_key=key,
                    content_hash=hash_,
                    status=EventStatus.SKIPPED,
                    reason=reason,
                )
            )
            if self.on_skip is not None:
                self.on_skip(record, kind, reason)
        await self.seen.put_many(first_in_batch.items())
        await self.store.record(events)
        return passed
