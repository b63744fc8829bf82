"""Run Anaplan actions as tasks: start, poll to a terminal state, parse results and failure dumps, cancel.

Task states: ``NOT_STARTED`` (also: queued behind another task on the model), ``IN_PROGRESS``,
``CANCELLING`` (not terminal), and the terminal ``COMPLETE`` and ``CANCELLED``. There is no FAILED
state: a failure is ``COMPLETE`` with ``result.successful == false``; it becomes a
:class:`TaskFailedError` carrying the parsed result and the rejections parsed from the failure dump.
A successful task may still have a dump (rows loaded with warnings or ignored): its rejections are
returned on the result.

Starting a task is a non-idempotent POST: it is retried only on 429 (the server refused it before
doing anything), never on 5xx or timeouts, which would run the action twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ml_connector.anaplan.api import ModelScope
from ml_connector.anaplan.dumps import DumpFormatError, DumpParser
from ml_connector.anaplan.errors import (
    AnaplanError,
    InvalidRequestError,
    ModelBusyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
)
from ml_connector.anaplan.models import CANCELLED, ChunkInfo, Rejection, Task, TaskResult

log = logging.getLogger(__name__)

ActionKind = Literal["imports", "exports", "processes", "actions"]
_PREFIXES: dict[str, ActionKind] = {"112": "imports", "116": "exports", "117": "actions", "118": "processes"}
_LABELS: dict[ActionKind, str] = {"imports": "import", "exports": "export", "processes": "process", "actions": "action"}
DEFAULT_LOCALE = "en_US"


def kind_of(action_id: str) -> ActionKind:
    """The collection of an action id from its prefix: 112 imports, 116 exports, 117 actions, 118 processes."""
    kind = _PREFIXES.get(action_id[:3])
    if kind is None or len(action_id) != 12 or not action_id.isdigit():
        raise InvalidRequestError(
            f"{action_id!r} is not an Anaplan action id (12 digits starting 112, 116, 117 or 118)",
            hint="pass the action's id, or resolve it by name with the model's find_import/find_export/... helpers",
        )
    return kind


@dataclass(frozen=True)
class PollPolicy:
    """How to poll a task: ``initial`` seconds, growing by ``multiplier`` up to ``maximum``.

    The default follows Anaplan's guidance (no more than one poll every ~5 s once a task runs
    long); tests pass tiny values. ``timeout`` (seconds, None = wait forever) bounds the wait;
    ``max_failures`` consecutive failed polls (5xx, 429, 409, dropped connections, after the
    transport's own retries) are tolerated before giving up.
    """

    initial: float = 1.0
    multiplier: float = 1.5
    maximum: float = 10.0
    timeout: float | None = None
    max_failures: int = 10

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay
            delay = min(self.maximum, delay * self.multiplier)


@dataclass(frozen=True)
class MappingParameter:
    """Answer to an import's prompted dimension: ``entity_type`` = dimension name, ``entity_name`` = item name.

    ``import_id`` targets one import inside a process.
    """

    entity_type: str
    entity_name: str
    import_id: str | None = None

    def to_wire(self) -> dict[str, str]:
        wire = {"entityType": self.entity_type, "entityName": self.entity_name}
        if self.import_id:
            wire["importId"] = self.import_id
        return wire


MappingParameters = Mapping[str, str] | Sequence[MappingParameter]


@dataclass(frozen=True)
class TaskHandle:
    """A started task: which action (``kind``, ``action_id``) and its ``task_id``."""

    kind: ActionKind
    action_id: str
    task_id: str

    @property
    def label(self) -> str:
        return f"{_LABELS[self.kind]} {self.action_id} task {self.task_id}"


class TaskRunner:
    """Start, poll, cancel and read the results of one model's tasks."""

    def __init__(
        self,
        scope: ModelScope,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scope = scope
        self._sleep = sleep
        self._clock = clock

    def _path(self, handle: TaskHandle, *parts: str) -> str:
        return self.scope.path(handle.kind, handle.action_id, "tasks", handle.task_id, *parts)

    # ---------------------------------------------------------------- start / status / list

    async def start(
        self,
        action_id: str,
        *,
        kind: ActionKind | None = None,
        mapping_parameters: MappingParameters | None = None,
        locale: str = DEFAULT_LOCALE,
    ) -> TaskHandle:
        kind = kind or kind_of(action_id)
        body: dict[str, object] = {"localeName": locale}  # localeName must come before mappingParameters
        if mapping_parameters:
            if isinstance(mapping_parameters, Mapping):
                params = [MappingParameter(k, v) for k, v in mapping_parameters.items()]
            else:
                params = list(mapping_parameters)
            body["mappingParameters"] = [p.to_wire() for p in params]
        label = f"{_LABELS[kind]} {action_id}"
        payload = await self.scope.session.json(
            "POST", self.scope.path(kind, action_id, "tasks"), what=f"starting {label}", json=body
        )
        task = payload.get("task") or {}
        task_id = task.get("taskId") if isinstance(task, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise ServerError(f"Anaplan started {label} but returned no task id", where=f"POST .../{kind}/{action_id}")
        handle = TaskHandle(kind, action_id, task_id)
        log.info("started %s", handle.label)
        return handle

    async def status(self, handle: TaskHandle) -> Task:
        payload = await self.scope.session.json(
            "GET", self._path(handle), what=f"reading the status of {handle.label}", idempotent=True
        )
        raw = payload.get("task")
        if not isinstance(raw, dict):
            raise ServerError(f"Anaplan answered without a task while reading {handle.label}")
        return Task.model_validate({"taskId": handle.task_id, **raw})

    async def tasks(self, action_id: str, *, kind: ActionKind | None = None) -> list[Task]:
        """Tasks of an action (an unknown action answers an empty list, as in Anaplan)."""
        kind = kind or kind_of(action_id)
        items = await self.scope.session.collect(
            self.scope.path(kind, action_id, "tasks"), "tasks", what=f"listing the tasks of {_LABELS[kind]} {action_id}"
        )
        return [Task.model_validate(item) for item in items]

    # ---------------------------------------------------------------- poll

    async def wait(self, handle: TaskHandle, poll: PollPolicy | None = None) -> Task:
        """Poll until ``COMPLETE`` or ``CANCELLED``; transient poll failures are tolerated."""
        poll = poll or PollPolicy()
        started = self._clock()
        failures = 0
        last: Task | None = None
        delays = poll.delays()
        while True:
            try:
                task = await self.status(handle)
            except (ServerError, RateLimitedError, ModelBusyError) as exc:
                failures += 1
                if failures > poll.max_failures:
                    raise
                log.warning("polling %s failed (%d in a row), will retry: %s", handle.label, failures, exc)
            else:
                failures = 0
                last = task
                if task.done:
                    return task
                log.debug("%s: %s %s", handle.label, task.task_state, task.progress)
            delay = next(delays)
            if poll.timeout is not None and self._clock() - started + delay > poll.timeout:
                state = last.task_state if last else "unknown"
                raise TaskTimeoutError(
                    f"{handle.label} did not finish within {poll.timeout:g} s (last state {state})", task=last
                )
            await self._sleep(delay)

    # ---------------------------------------------------------------- cancel

    async def cancel(self, handle: TaskHandle, *, wait: bool = False, poll: PollPolicy | None = None) -> Task:
        """Ask Anaplan to cancel (``DELETE``); the task goes CANCELLING, then CANCELLED (rolled back).

        With ``wait`` poll until it is terminal (a task that finished first stays COMPLETE).
        """
        response = await self.scope.session.request("DELETE", self._path(handle), what=f"cancelling {handle.label}")
        task: Task | None = None
        try:
            raw = response.json().get("task")
            if isinstance(raw, dict):
                task = Task.model_validate({"taskId": handle.task_id, **raw})
        except (ValueError, AttributeError):
            task = None
        log.info("cancel requested for %s", handle.label)
        if wait:
            return await self.wait(handle, poll)
        return task or await self.status(handle)

    # ---------------------------------------------------------------- results and dumps

    async def finish(self, handle: TaskHandle, task: Task) -> TaskResult:
        """Turn a terminal task into its result: dumps parsed, failure and cancellation raised."""
        if task.task_state == CANCELLED:
            raise TaskCancelledError(f"{handle.label} was cancelled", task=task)
        result = task.result
        if result is None:
            log.warning("%s finished %s without a result", handle.label, task.task_state)
            result = TaskResult(successful=task.current_step != "Failed.", objectId=handle.action_id)
        result = await self._with_dumps(handle, result)
        if result.successful:
            return result
        rejections = result.all_rejections()
        raise TaskFailedError(
            _failure_message(handle, result, rejections), task=task, result=result, rejections=rejections
        )

    async def run(
        self,
        action_id: str,
        *,
        kind: ActionKind | None = None,
        mapping_parameters: MappingParameters | None = None,
        poll: PollPolicy | None = None,
        locale: str = DEFAULT_LOCALE,
        on_start: Callable[[TaskHandle], Awaitable[None] | None] | None = None,
        cancel_on_abort: bool = True,
    ) -> TaskResult:
        """Start the action, poll it to the end and return its result (raising on failure).

        ``on_start`` receives the handle as soon as the task exists (to record it). If the waiting
        coroutine is cancelled (shutdown), the Anaplan task is cancelled too unless ``cancel_on_abort``
        is false.
        """
        handle = await self.start(action_id, kind=kind, mapping_parameters=mapping_parameters, locale=locale)
        if on_start is not None:
            outcome = on_start(handle)
            if outcome is not None:
                await outcome
        try:
            task = await self.wait(handle, poll)
        except asyncio.CancelledError:
            if cancel_on_abort:
                await asyncio.shield(self._cancel_quietly(handle))
            raise
        return await self.finish(handle, task)

    async def _cancel_quietly(self, handle: TaskHandle) -> None:
        try:
            await self.cancel(handle)
        except AnaplanError as exc:
            log.warning("could not cancel %s: %s", handle.label, exc)

    async def dump(self, handle: TaskHandle, object_id: str | None = None) -> list[Rejection]:
        """Download and parse a failure dump: the task's own, or a process's nested ``object_id`` dump."""
        if object_id is None:
            base = self._path(handle, "dump")
            label = f"the failure dump of {handle.label}"
        else:
            base = self._path(handle, "dumps", object_id)
            label = f"the failure dump of {object_id} in {handle.label}"
        parser = DumpParser()
        rejections: list[Rejection] = []
        try:
            async for data in self._dump_bytes(base, label):
                rejections.extend(parser.feed(data))
            rejections.extend(parser.close())
        except DumpFormatError as exc:
            raise ServerError(f"{label} cannot be read: {exc}", where=f"GET {base}") from None
        return rejections

    async def _dump_bytes(self, base: str, label: str) -> AsyncIterator[bytes]:
        session = self.scope.session
        try:
            chunks = [
                ChunkInfo.model_validate(item)
                for item in await session.collect(base + "/chunks", "chunks", what=f"listing the chunks of {label}")
            ]
        except (NotFoundError, InvalidRequestError):
            chunks = None
        if chunks is None:  # no chunk listing: fall back to the whole dump
            response = await session.request("GET", base, what=f"downloading {label}", headers={"Accept": "text/plain"})
            yield response.content
            return
        for chunk in chunks:
            response = await session.request(
                "GET", f"{base}/chunks/{chunk.id}", what=f"downloading chunk {chunk.id} of {label}"
            )
            yield response.content

    async def _with_dumps(self, handle: TaskHandle, result: TaskResult) -> TaskResult:
        update: dict[str, object] = {}
        if result.nested_results:
            update["nested_results"] = [
                await self._nested_with_dump(handle, nested) for nested in result.nested_results
            ]
        if result.failure_dump_available and handle.kind != "processes":
            try:
                update["rejections"] = await self.dump(handle)
            except AnaplanError as exc:
                log.warning("could not read the failure dump of %s: %s", handle.label, exc)
                update["dump_error"] = exc.message
        return result.model_copy(update=update) if update else result

    async def _nested_with_dump(self, handle: TaskHandle, nested: TaskResult) -> TaskResult:
        if not nested.failure_dump_available or not nested.object_id:
            return nested
        try:
            return nested.model_copy(update={"rejections": await self.dump(handle, nested.object_id)})
        except AnaplanError as exc:
            log.warning("could not read the failure dump of %s in %s: %s", nested.object_id, handle.label, exc)
            return nested.model_copy(update={"dump_error": exc.message})


def _failure_message(handle: TaskHandle, result: TaskResult, rejections: list[Rejection]) -> str:
    name = f"{_LABELS[handle.kind]} {result.object_name!r} ({handle.action_id})" if result.object_name else handle.label
    text = f"{name} failed"
    summary = result.summary()
    if summary:
        text += f": {summary}"
    if rejections:
        first = rejections[0]
        where = f"row {first.row}" + (f", column {first.column!r}" if first.column else "")
        text += f"; {len(rejections)} row(s) rejected, first at {where}: {first.message}"
    elif result.dump_error or any(n.dump_error for n in result.nested_results):
        text += "; the failure dump could not be read"
    return text
