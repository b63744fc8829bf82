"""Progress of a run: bars on a terminal, plain structured log lines otherwise, and hooks.

The pipeline reports through one :class:`Progress`:

* ``await step(...)`` for milestones (a flow starts extracting, uploads, waits for the model lock, imports...),
* ``advance(flow, stage, n)`` on the hot path (records extracted, rows written): cheap, rendered at most a
  few times a second,
* ``await done(...)`` when a flow or the run ends.

A renderer draws them (:class:`TerminalRenderer` when attached to a terminal, :class:`LogRenderer` else,
:class:`NullRenderer` for tests); hooks receive every milestone as a :class:`ProgressEvent` (the Job's
hook patches the SyncRun status: ``WaitingForLock``, counts). A hook that fails is logged, never fatal.
"""

from __future__ import annotations

import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TextIO

log = logging.getLogger(__name__)

EventKind = Literal["run", "step", "lock", "flow", "done"]


@dataclass(frozen=True)
class ProgressEvent:
    """A milestone. ``kind``: run (started), step, lock (waiting for the model lock), flow (a flow ended),
    done (the run ended). ``fields`` carries counts and ids."""

    kind: EventKind
    message: str
    run_id: str = ""
    flow: str | None = None
    stage: str | None = None
    fields: Mapping[str, object] = field(default_factory=dict)


Hook = Callable[[ProgressEvent], Awaitable[None] | None]


class Renderer(Protocol):
    def event(self, event: ProgressEvent) -> None: ...

    def counter(self, flow: str, stage: str, count: int, total: int | None) -> None: ...

    def close(self) -> None: ...


class NullRenderer:
    def event(self, event: ProgressEvent) -> None:
        return None

    def counter(self, flow: str, stage: str, count: int, total: int | None) -> None:
        return None

    def close(self) -> None:
        return None


def _fields(event: ProgressEvent) -> str:
    parts = [f"event={event.kind}"]
    if event.run_id:
        parts.append(f"run={event.run_id}")
    if event.flow:
        parts.append(f"flow={event.flow}")
    if event.stage:
        parts.append(f"stage={event.stage}")
    parts += [f"{k}={v}" for k, v in event.fields.items()]
    return " ".join(parts)


class LogRenderer:
    """One structured log line per milestone; counters every ``interval`` seconds per (flow, stage)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger or log
        self.interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}

    def event(self, event: ProgressEvent) -> None:
        self.log.info("%s message=%r", _fields(event), event.message)

    def counter(self, flow: str, stage: str, count: int, total: int | None) -> None:
        now = self._clock()
        key = (flow, stage)
        if now - self._last.get(key, now - self.interval) < self.interval:
            return
        self._last[key] = now
        of = f" total={total}" if total is not None else ""
        self.log.info("event=progress flow=%s stage=%s count=%d%s", flow, stage, count, of)

    def close(self) -> None:
        return None


class TerminalRenderer:
    """A status line redrawn in place (a bar when the total is known, a rate otherwise); milestones scroll."""

    def __init__(
        self, stream: TextIO | None = None, *, refresh: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.stream = stream or sys.stderr
        self.refresh = refresh
        self._clock = clock
        self._drawn = 0.0
        self._line = ""
        self._started: dict[tuple[str, str], tuple[float, int]] = {}

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _clear(self) -> None:
        if self._line:
            self._write("\r\x1b[2K")
            self._line = ""

    def event(self, event: ProgressEvent) -> None:
        self._clear()
        where = f"[{event.flow}] " if event.flow else ""
        self._write(f"  {where}{event.message}\n")

    def counter(self, flow: str, stage: str, count: int, total: int | None) -> None:
        now = self._clock()
        key = (flow, stage)
        start, first = self._started.setdefault(key, (now, count))
        finished = total is not None and count >= total
        if now - self._drawn < self.refresh and not finished:
            return
        self._drawn = now
        if total:
            share = min(1.0, count / total)
            filled = int(share * 24)
            bar = f"[{'#' * filled}{'-' * (24 - filled)}] {share:4.0%} {count:,}/{total:,}"
        else:
            elapsed = max(now - start, 1e-9)
            bar = f"{count:,} ({(count - first) / elapsed:,.0f}/s)"
        line = f"  [{flow}] {stage:<9} {bar}"
        self._write("\r\x1b[2K" + line)
        self._line = line

    def close(self) -> None:
        self._clear()


class Progress:
    """Fans milestones out to a renderer and hooks; counts per (flow, stage)."""

    def __init__(self, renderer: Renderer | None = None, hooks: Sequence[Hook] = (), *, run_id: str = "") -> None:
        self.renderer: Renderer = renderer if renderer is not None else NullRenderer()
        self.hooks = list(hooks)
        self.run_id = run_id
        self.counts: dict[tuple[str, str], int] = {}
        self.totals: dict[tuple[str, str], int] = {}
        self.events: list[ProgressEvent] = []

    @classmethod
    def for_terminal(
        cls, hooks: Sequence[Hook] = (), *, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> Progress:
        """Bars (on stderr) when stdout and stderr are terminals, structured log lines otherwise."""
        out, err = stdout or sys.stdout, stderr or sys.stderr
        interactive = _isatty(out) and _isatty(err)
        return cls(TerminalRenderer(err) if interactive else LogRenderer(), hooks)

    @property
    def interactive(self) -> bool:
        return isinstance(self.renderer, TerminalRenderer)

    async def emit(self, event: ProgressEvent) -> None:
        self.events.append(event)
        self.renderer.event(event)
        for hook in self.hooks:
            try:
                outcome = hook(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # a status patch that fails must not fail the run
                log.warning("progress hook %r failed: %s", hook, exc)

    async def started(self, run_id: str, message: str, **fields: object) -> None:
        self.run_id = run_id
        await self.emit(ProgressEvent("run", message, run_id, fields=fields))

    async def step(self, message: str, *, flow: str | None = None, stage: str | None = None, **fields: object) -> None:
        await self.emit(ProgressEvent("step", message, self.run_id, flow, stage, fields))

    async def waiting_for_lock(self, holder: str, *, flow: str | None = None) -> None:
        await self.emit(
            ProgressEvent(
                "lock", f"waiting for the model lock held by {holder}", self.run_id, flow, "lock", {"holder": holder}
            )
        )

    async def flow_done(self, flow: str, message: str, **fields: object) -> None:
        await self.emit(ProgressEvent("flow", message, self.run_id, flow, None, fields))

    async def finished(self, message: str, **fields: object) -> None:
        await self.emit(ProgressEvent("done", message, self.run_id, fields=fields))
        self.renderer.close()

    def total(self, flow: str, stage: str, total: int) -> None:
        self.totals[(flow, stage)] = total

    def advance(self, flow: str, stage: str, n: int = 1) -> None:
        key = (flow, stage)
        count = self.counts.get(key, 0) + n
        self.counts[key] = count
        self.renderer.counter(flow, stage, count, self.totals.get(key))

    def close(self) -> None:
        self.renderer.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
