"""Where a run spends its time, per stage (extract, transform, upload, import, audit, ...), exclusive of nesting.

The stages of a streaming run are nested iterators (upload pulls chunks, which pull rows, which pull
records from the source); :class:`StageClock` keeps a stack so that wall time is charged to the innermost
active stage only: the shares add up to the run's duration. Wrap a source with :meth:`StageClock.iterate`,
a block with :meth:`StageClock.stage`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self, TypeVar

from ml_connector.audit.store import (
    AuditStore,
    FlowCounts,
    LoadedHash,
    OutagePolicy,
    RecordEvent,
    RunInfo,
    RunStatus,
    StoredEvent,
    Watermark,
)

T = TypeVar("T")

OTHER = "other"


class StageClock:
    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._stack: list[str] = [OTHER]
        self._mark = clock()
        self.seconds: dict[str, float] = {}

    def _charge(self) -> None:
        now = self._clock()
        top = self._stack[-1]
        self.seconds[top] = self.seconds.get(top, 0.0) + (now - self._mark)
        self._mark = now

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    async def iterate(self, source: AsyncIterable[T], name: str) -> AsyncIterator[T]:
        """``source``'s items; the time spent producing each one is charged to ``name``."""
        iterator = aiter(source)
        try:
            while True:
                with self.stage(name):
                    try:
                        item = await anext(iterator)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None:
                await close()

    def snapshot(self) -> dict[str, float]:
        self._charge()
        return dict(self.seconds)

    @staticmethod
    def shares(seconds: dict[str, float]) -> dict[str, float]:
        total = sum(seconds.values())
        return {k: (v / total if total else 0.0) for k, v in seconds.items()}


class TimedAuditStore:
    """An :class:`~ml_connector.audit.store.AuditStore` whose every call is charged to the ``audit`` stage."""

    def __init__(self, store: AuditStore, clock: StageClock, stage: str = "audit") -> None:
        self.inner = store
        self.clock = clock
        self.stage_name = stage
        self.policy: OutagePolicy = store.policy

    async def open(self) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.open()

    async def close(self) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start_run(self, run: RunInfo) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.start_run(run)

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
        with self.clock.stage(self.stage_name):
            await self.inner.finish_run(
                run_id,
                status=status,
                counts=counts,
                reconciliation=reconciliation,
                error=error,
                finished_at=finished_at,
            )

    async def get_run(self, run_id: str) -> RunInfo | None:
        with self.clock.stage(self.stage_name):
            return await self.inner.get_run(run_id)

    async def list_runs(self, *, connection: str | None = None, limit: int = 20) -> list[RunInfo]:
        with self.clock.stage(self.stage_name):
            return await self.inner.list_runs(connection=connection, limit=limit)

    async def record(self, events: Iterable[RecordEvent]) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.record(events)

    async def flush(self) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.flush()

    async def get_watermark(self, connection: str, flow: str) -> Watermark | None:
        with self.clock.stage(self.stage_name):
            return await self.inner.get_watermark(connection, flow)

    async def set_watermark(self, connection: str, flow: str, value: dt.datetime, *, run_id: str) -> None:
        with self.clock.stage(self.stage_name):
            await self.inner.set_watermark(connection, flow, value, run_id=run_id)

    async def last_loaded(self, connection: str, flow: str, natural_keys: Sequence[str]) -> dict[str, LoadedHash]:
        with self.clock.stage(self.stage_name):
            return await self.inner.last_loaded(connection, flow, natural_keys)

    async def history(
        self,
        natural_key: str,
        *,
        flow: str | None = None,
        connection: str | None = None,
        suffix: bool = False,
        limit: int = 1000,
    ) -> list[StoredEvent]:
        with self.clock.stage(self.stage_name):
            return await self.inner.history(natural_key, flow=flow, connection=connection, suffix=suffix, limit=limit)

    def failed(self, run_id: str, *, flow: str | None = None) -> AsyncIterator[StoredEvent]:
        return self.clock.iterate(self.inner.failed(run_id, flow=flow), self.stage_name)

    async def counts(self, run_id: str) -> dict[str, FlowCounts]:
        with self.clock.stage(self.stage_name):
            return await self.inner.counts(run_id)

    def payloads(
        self, run_id: str, *, only_failed: bool = False, flow: str | None = None
    ) -> AsyncIterator[StoredEvent]:
        return self.clock.iterate(self.inner.payloads(run_id, only_failed=only_failed, flow=flow), self.stage_name)
