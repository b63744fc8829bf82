"""Asynchronous tasks (reference §5): one FIFO queue and one worker per model, so a model runs one task
at a time and the others wait in ``NOT_STARTED``.

A task spends ``config.task_duration`` (or a per-action duration, see :meth:`TaskEngine.slow`; inside
a process each nested action waits its own duration too) in ``IN_PROGRESS`` with rising progress, then
stages its changes in a worker thread (reading only), then applies them on the event loop. ``DELETE``
moves a running task to ``CANCELLING``; the worker notices at its next checkpoint, undoes whatever was
already applied, and ends in ``CANCELLED``: no partial data stays. :meth:`TaskEngine.pause` holds
running tasks (a test can keep the model busy).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from ml_connector.sandbox.anaplan import ids
from ml_connector.sandbox.anaplan.context import Context, model_routes, object_id
from ml_connector.sandbox.anaplan.csvio import split_lines
from ml_connector.sandbox.anaplan.exports import stage_action, stage_export
from ml_connector.sandbox.anaplan.http import ApiError, envelope, json_body, paged, sort_items
from ml_connector.sandbox.anaplan.imports import ActionOutcome, Apply, Cancelled, Undo, failed_result, stage_import
from ml_connector.sandbox.anaplan.state import ModelState, Task

log = logging.getLogger(__name__)

T = TypeVar("T")

KINDS = {"imports": ids.IMPORT, "exports": ids.EXPORT, "processes": ids.PROCESS, "actions": ids.ACTION}
TICK = 0.05


class TaskEngine:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._queues: dict[str, asyncio.Queue[Task]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._gate = asyncio.Event()
        self._gate.set()
        #: action id -> seconds a task of that action spends IN_PROGRESS before it runs
        self.durations: dict[int, float] = {}

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.ctx.config

    # -- test knobs -------------------------------------------------------------------------------

    def slow(self, action_id: int, seconds: float) -> None:
        self.durations[action_id] = seconds

    def pause(self) -> None:
        """Running tasks stay IN_PROGRESS (and the model busy) until :meth:`resume`."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    @property
    def paused(self) -> bool:
        return not self._gate.is_set()

    # -- queue ------------------------------------------------------------------------------------

    def submit(self, model: ModelState, task: Task) -> None:
        model.tasks.setdefault(task.action_id, {})[task.id] = task
        queue = self._queues.get(model.id)
        if queue is None:
            queue = self._queues[model.id] = asyncio.Queue()
        queue.put_nowait(task)
        worker = self._workers.get(model.id)
        if worker is None or worker.done():
            self._workers[model.id] = asyncio.create_task(self._worker(model, queue), name=f"anaplan-tasks-{model.id}")

    async def close(self) -> None:
        for model in self.ctx.state.models.values():
            if model.running is not None:
                model.running.cancel_event.set()  # let a staging thread stop early
        self._gate.set()
        for worker in self._workers.values():
            worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        self._workers.clear()

    def cancel(self, task: Task, user_email: str) -> None:
        if task.state == "NOT_STARTED":
            task.state = "CANCELLED"
            task.current_step = "Cancelled."
            task.cancelled_by = user_email
            task.cancel_event.set()
        elif task.state == "IN_PROGRESS":
            task.state = "CANCELLING"
            task.current_step = "Cancelling."
            task.cancelled_by = user_email
            task.cancel_event.set()

    async def _worker(self, model: ModelState, queue: asyncio.Queue[Task]) -> None:
        while True:
            task = await queue.get()
            if task.state != "NOT_STARTED":
                continue
            model.running = task
            try:
                await self._run(model, task)
            except Exception:  # a bug in the emulator must not kill the model's queue
                log.exception("task %s failed inside the emulator", task.id)
                task.result = failed_result(
                    task.action_id, model.action_name(task.action_id), "Internal error in the emulator", "internalError"
                )
                task.state, task.progress, task.current_step = "COMPLETE", 1.0, "Failed."
            finally:
                model.running = None

    async def _run(self, model: ModelState, task: Task) -> None:
        task.state = "IN_PROGRESS"
        task.start_time = self.config.now_ms()
        task.current_step = "Processing ..."
        duration = self.durations.get(task.action_id, self.config.task_duration)
        if not await self._spend(task, duration):
            return self._cancelled(task)
        loop = asyncio.get_running_loop()
        undos: list[Undo] = []

        def on_loop(fn: Callable[[], T]) -> T:
            async def call() -> T:
                return fn()

            return asyncio.run_coroutine_threadsafe(call(), loop).result()

        def apply_on_loop(apply: Apply) -> Undo:
            steps = apply()

            def step() -> Undo | None:
                try:
                    next(steps)
                except StopIteration as stop:
                    undo: Undo = stop.value
                    return undo
                return None

            while True:
                done = on_loop(step)
                if done is not None:
                    return done

        def progress(base: float, span: float) -> Callable[[float], None]:
            def set_progress(fraction: float) -> None:
                task.progress = round(min(0.99, base + span * fraction), 3)

            return set_progress

        def execute() -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
            if task.kind != "processes":
                outcome = self._stage(model, task, task.action_id, task.mapping_parameters, progress(0.5, 0.45))
                if task.cancel_event.is_set():
                    raise Cancelled
                if outcome.apply is not None and outcome.result.get("successful"):
                    undos.append(apply_on_loop(outcome.apply))
                return outcome.result, [("", outcome.dump)] if outcome.dump else []
            process = model.processes[task.action_id]
            nested: list[dict[str, Any]] = []
            dumps: list[tuple[str, bytes]] = []
            steps = max(len(process.action_ids), 1)
            for n, action_id in enumerate(process.action_ids):
                if not _wait(task, self.durations.get(action_id, 0.0)):
                    raise Cancelled
                params = _params_for(model, action_id, task.mapping_parameters)
                outcome = self._stage(model, task, action_id, params, progress(0.5 + 0.45 * n / steps, 0.45 / steps))
                if task.cancel_event.is_set():
                    raise Cancelled
                nested.append(outcome.result)
                if outcome.dump:
                    dumps.append((str(action_id), outcome.dump))
                if not outcome.result.get("successful"):
                    break  # a failed action ends the process; earlier actions stay applied
                if outcome.apply is not None:
                    undos.append(apply_on_loop(outcome.apply))
            result = {
                "successful": all(r.get("successful") for r in nested),
                "failureDumpAvailable": any(r.get("failureDumpAvailable") for r in nested),
                "objectId": str(process.id),
                "objectName": process.name,
                "nestedResults": nested,
            }
            return result, dumps

        try:
            result, dumps = await asyncio.to_thread(execute)
        except Cancelled:
            for undo in reversed(undos):
                undo()
            return self._cancelled(task)
        if task.cancel_event.is_set():  # cancelled while applying: roll back, nothing stays
            for undo in reversed(undos):
                undo()
            return self._cancelled(task)
        self._store_dumps(model, task, dumps)
        task.result = result
        task.progress = 1.0
        task.current_step = "Complete." if result.get("successful") else "Failed."
        task.state = "COMPLETE"
        return None

    def _stage(
        self,
        model: ModelState,
        task: Task,
        action_id: int,
        params: list[dict[str, Any]],
        progress: Callable[[float], None],
    ) -> ActionOutcome:
        if action_id in model.imports:
            return stage_import(model, model.imports[action_id], task.user_id, params, task.cancel_event, progress)
        if action_id in model.exports:
            return stage_export(model, model.exports[action_id], task.user_id, self.config)
        if action_id in model.actions:
            return stage_action(model, model.actions[action_id])
        return ActionOutcome(failed_result(action_id, "", f"Unknown action {action_id}", "actionNotFound"))

    async def _spend(self, task: Task, duration: float) -> bool:
        """Hold the task IN_PROGRESS for ``duration`` seconds (and while paused); False once cancelled."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            if task.cancel_event.is_set():
                return False
            elapsed = loop.time() - start
            if elapsed >= duration and self._gate.is_set():
                return True
            if duration > 0:
                task.progress = round(min(0.5, 0.5 * elapsed / duration), 3)
            await asyncio.sleep(TICK if not self._gate.is_set() else min(TICK, max(duration - elapsed, 0.001)))

    def _cancelled(self, task: Task) -> None:
        task.state = "CANCELLED"
        task.current_step = "Cancelled."
        task.result = None

    def _store_dumps(self, model: ModelState, task: Task, dumps: list[tuple[str, bytes]]) -> None:
        """A run replaces the previous dump of the same import for the same user (or removes it when clean)."""
        imports_run = (
            [task.action_id]
            if task.kind == "imports"
            else (model.processes[task.action_id].action_ids if task.kind == "processes" else [])
        )
        for import_id in imports_run:
            old = model.latest_dump.pop((task.user_id, import_id), None)
            if old is not None:
                model.dumps.pop((old, ""), None)
                model.dumps.pop((old, str(import_id)), None)
        for object_key, data in dumps:
            model.dumps[(task.id, object_key)] = data
            import_id = task.action_id if object_key == "" else int(object_key)
            model.latest_dump[(task.user_id, import_id)] = task.id


def _wait(task: Task, seconds: float) -> bool:
    """In the worker thread: wait ``seconds`` (a nested action's duration); False once cancelled."""
    return not task.cancel_event.wait(seconds) if seconds > 0 else not task.cancel_event.is_set()


def _params_for(model: ModelState, action_id: int, params: list[Any]) -> list[dict[str, Any]]:
    """Mapping parameters that concern one import of a process: those naming it, or a dimension of its module."""
    imp = model.imports.get(action_id)
    if imp is None or imp.import_type != "MODULE_DATA":
        return []
    module = model.modules[imp.target_id]
    out = []
    for p in params:
        if not isinstance(p, dict):
            continue
        if p.get("importId") not in (None, "", str(action_id), action_id):
            continue
        dim = model.dimension_by_key(str(p.get("entityType", "")))
        if p.get("importId") or (dim is not None and dim in module.dimensions):
            out.append({k: v for k, v in p.items() if k != "importId"})
    return out


def routes(ctx: Context) -> list[web.RouteDef]:
    cfg = ctx.config

    def registry(model: ModelState, kind: str) -> set[int]:
        registries: dict[str, Any] = {
            "imports": model.imports,
            "exports": model.exports,
            "processes": model.processes,
            "actions": model.actions,
        }
        return set(registries[kind])

    def kind_of(request: web.Request) -> str:
        kind = request.match_info["kind"]
        if kind not in KINDS:
            raise ApiError(404)
        return kind

    def find_task(request: web.Request) -> tuple[ModelState, Task]:
        _, model = ctx.model(request)
        kind_of(request)
        task = model.tasks.get(object_id(request, "action_id"), {}).get(request.match_info["task_id"])
        if task is None:
            raise ApiError(404)
        return model, task

    async def start(request: web.Request) -> web.Response:
        user, model = ctx.model(request)
        kind = kind_of(request)
        action_id = object_id(request, "action_id")
        if action_id not in registry(model, kind):
            raise ApiError(404)
        body = await json_body(request)
        if not isinstance(body, dict) or not body.get("localeName"):
            raise ApiError(400, "localeName is required")
        params = body.get("mappingParameters") or []
        if not isinstance(params, list):
            raise ApiError(400, "mappingParameters must be a list")
        task = Task(
            id=ids.upper_hex(),
            action_id=action_id,
            kind=kind,
            user_id=user.id,
            creation_time=cfg.now_ms(),
            locale=str(body["localeName"]),
            mapping_parameters=params,
        )
        if kind == "processes":
            unknown = _unmatched_params(model, model.processes[action_id].action_ids, params)
            if unknown:
                task.mapping_parameters = []
                task.state, task.progress, task.current_step = "COMPLETE", 1.0, "Failed."
                task.result = failed_result(
                    action_id, model.processes[action_id].name, unknown, "mappingParameterInvalid"
                )
                model.tasks.setdefault(action_id, {})[task.id] = task
                return envelope(cfg, f"/models/{model.id}/objects/task", task=task.summary())
        ctx.engine.submit(model, task)
        return envelope(cfg, f"/models/{model.id}/objects/task", task=task.summary())

    async def list_tasks(request: web.Request) -> web.Response:
        _, model = ctx.model(request)
        kind_of(request)
        tasks = [t.summary() for t in model.tasks.get(object_id(request, "action_id"), {}).values()]
        tasks = sort_items(request, tasks, None)
        return paged(request, cfg, f"/models/{model.id}/objects/task", "tasks", tasks)

    async def get_task(request: web.Request) -> web.Response:
        model, task = find_task(request)
        return envelope(cfg, f"/models/{model.id}/objects/task", task=task.to_json())

    async def cancel_task(request: web.Request) -> web.Response:
        user, _ = ctx.model(request)
        model, task = find_task(request)
        ctx.engine.cancel(task, user.email)
        return envelope(cfg, f"/models/{model.id}/objects/task", task=task.to_json())

    def dump_of(request: web.Request, nested: bool) -> bytes:
        model, task = find_task(request)
        key = request.match_info["object_id"] if nested else ""
        data = model.dumps.get((task.id, key))
        if data is None:
            raise ApiError(404, "No dump is available for this task")
        return data

    async def dump(request: web.Request) -> web.Response:
        data = dump_of(request, "object_id" in request.match_info)
        return web.Response(body=data, content_type="text/plain", charset="utf-8")

    async def dump_chunks(request: web.Request) -> web.Response:
        data = dump_of(request, "object_id" in request.match_info)
        model, _ = find_task(request)
        pieces = split_lines(data, cfg.dump_chunk_size)
        items = [{"id": str(i), "name": f"Chunk {i}"} for i in range(len(pieces))]
        return paged(request, cfg, f"/models/{model.id}/objects/chunk", "chunks", items)

    async def dump_chunk(request: web.Request) -> web.Response:
        data = dump_of(request, "object_id" in request.match_info)
        pieces = split_lines(data, cfg.dump_chunk_size)
        raw = request.match_info["chunk_id"]
        if not raw.isdigit() or int(raw) >= len(pieces):
            raise ApiError(404)
        return web.Response(body=pieces[int(raw)], content_type="text/plain", charset="utf-8")

    base = "/{kind}/{action_id}/tasks"
    out: list[web.RouteDef] = []
    for method, suffix, handler in [
        ("POST", base, start),
        ("GET", base, list_tasks),
        ("GET", base + "/{task_id}", get_task),
        ("DELETE", base + "/{task_id}", cancel_task),
        ("GET", base + "/{task_id}/dump", dump),
        ("GET", base + "/{task_id}/dump/chunks", dump_chunks),
        ("GET", base + "/{task_id}/dump/chunks/{chunk_id}", dump_chunk),
        ("GET", base + "/{task_id}/dumps/{object_id}", dump),
        ("GET", base + "/{task_id}/dumps/{object_id}/chunks", dump_chunks),
        ("GET", base + "/{task_id}/dumps/{object_id}/chunks/{chunk_id}", dump_chunk),
    ]:
        out += model_routes(method, suffix, handler)
    return out


def _unmatched_params(model: ModelState, action_ids: list[int], params: list[Any]) -> str:
    """A mapping parameter of a process that no module import of the process can use -> its error message."""
    for p in params:
        if not isinstance(p, dict):
            return f"Invalid mapping parameter: {p!r}"
        if p.get("importId"):
            if int(str(p["importId"])) not in action_ids:
                return f"Unknown importId in mappingParameters: {p['importId']}"
            continue
        entity = str(p.get("entityType", ""))
        if not any(_params_for(model, a, [p]) for a in action_ids):
            return f"Unknown dimension in mappingParameters: {entity}"
    return ""
