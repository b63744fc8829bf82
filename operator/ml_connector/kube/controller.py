"""The reconcilers: SyncConnection -> SyncRuns, SyncRun -> Job, Job state -> SyncRun phase. No kopf here.

Level-based: every call looks at the whole current state (the object, its runs and Jobs from the
operator's caches) and does what is missing, so it can be called any number of times, from any trigger
(a watch event, the connection timer, an operator restart). The decisions are the pure functions of
:mod:`~ml_connector.kube.scheduling`, :mod:`~ml_connector.kube.runs` and
:mod:`~ml_connector.kube.status`; this module only reads the caches, calls the API and records Events
and metrics:

* names are deterministic, so creating a run or a Job twice is an AlreadyExists, i.e. "already done";
* status writes carry the ``resourceVersion`` they were computed from: a stale decision is refused
  (409), the object is read again and the decision made anew;
* the operator writes only ``status`` and its own annotation (``ml-connector.com/metrics-recorded``,
  which keeps a finished run from being counted twice across restarts), never ``spec``, and gives
  children only its own labels;
* only runs the connection created (its owner reference) are pruned by the history limits, never a
  SyncRun someone applied (with GitOps it would come straight back);
* the operator reads no Secret: a missing one is reported by the worker, which fails its Job with the
  configuration-error exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ml_connector.kube.api import JOBS, SYNCCONNECTIONS, SYNCRUNS, KubeError, ResourceType, merge_patch
from ml_connector.kube.conditions import READY, find_condition, set_summary
from ml_connector.kube.defaults import WorkerDefaults
from ml_connector.kube.events import Event
from ml_connector.kube.jobs import job_name
from ml_connector.kube.runs import JobView, RunAction, next_step, runs_to_prune, stopped_status, summarize_runs
from ml_connector.kube.scheduling import plan_for, run_manifest
from ml_connector.kube.status import connection_status
from ml_connector.metrics import Metrics, RunOutcome
from ml_connector.spec import (
    GROUP,
    TERMINAL_PHASES,
    Discovered,
    SpecError,
    SyncConnectionStatus,
    SyncRun,
    SyncRunStatus,
    parse_connection,
    parse_run,
)

__all__ = [
    "CONNECTIONS",
    "METRICS_RECORDED_ANNOTATION",
    "RUNS",
    "Cluster",
    "Controller",
    "InvalidObject",
    "Reconciled",
    "Retry",
    "Views",
    "run_outcome",
]

log = logging.getLogger(__name__)

#: Set on a finished SyncRun once its outcome is in the metrics (a restarted operator does not count it again).
METRICS_RECORDED_ANNOTATION = f"{GROUP}/metrics-recorded"
#: ``controller`` label values of the reconcile metrics (controller-runtime's vocabulary).
CONNECTIONS = "syncconnection"
RUNS = "syncrun"

_CONFLICT_ATTEMPTS = 3
_MISSING_CONNECTION_DELAY = 15.0
_EVENT_DEDUPE_SECONDS = 600.0


class Retry(Exception):
    """Not possible yet (a missing SyncConnection, repeated conflicts): try again after ``delay`` seconds."""

    def __init__(self, message: str, *, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class InvalidObject(Exception):
    """The object cannot be acted on until someone changes it (the status says why)."""


class Cluster(Protocol):
    """The API calls the reconcilers make (:class:`~ml_connector.kube.api.KubeApi`; a fake in unit tests)."""

    async def get(self, kind: ResourceType, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, kind: ResourceType, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    async def patch(
        self,
        kind: ResourceType,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]: ...

    async def delete(self, kind: ResourceType, namespace: str, name: str) -> bool: ...

    async def post_event(
        self, involved: Mapping[str, Any], event: Event, *, now: dt.datetime | None = None
    ) -> None: ...


class Views(Protocol):
    """The operator's caches of watched objects (kopf indexes), possibly a moment behind the API server."""

    def connection(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...

    def runs(self, namespace: str, connection: str) -> Sequence[Mapping[str, Any]]:
        """SyncRuns whose ``spec.connectionRef`` names the connection."""
        ...

    def job(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class Reconciled:
    """The outcome of one reconcile: when to look again (None: on the next change)."""

    requeue_after: dt.timedelta | None = None

    @property
    def result(self) -> str:
        """controller-runtime's ``result`` label."""
        return "requeue_after" if self.requeue_after is not None else "success"


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta: Mapping[str, Any] = body.get("metadata") or {}
    return meta


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(body)
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _owned_by(run: SyncRun, uid: str | None) -> bool:
    refs = run.metadata.model_extra.get("ownerReferences") if run.metadata.model_extra else None
    return uid is not None and any(ref.get("uid") == uid and ref.get("controller") for ref in refs or [])


def run_outcome(run: SyncRun) -> RunOutcome:
    """What a finished run contributes to the metrics, from its status."""
    status = run.status
    duration = None
    if status.start_time is not None and status.completion_time is not None:
        duration = max(0.0, (status.completion_time - status.start_time).total_seconds())
    records = {flow: counts.to_wire() for flow, counts in status.flow_counts.items()}
    if not records and status.counts is not None:
        records = {"all": status.counts.to_wire()}
    return RunOutcome(
        namespace=run.metadata.namespace or "",
        connection=run.spec.connection_ref.name,
        direction=run.spec.direction,
        succeeded=status.phase == "Succeeded",
        duration_seconds=duration,
        finished_at=status.completion_time.timestamp() if status.completion_time else None,
        records=records,
        lock_wait_seconds=status.lock_wait_seconds,
        api_errors=status.api_errors,
    )


class KeyedLocks:
    """One :class:`asyncio.Lock` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class EventRecorder:
    """Posts Events, skipping one identical to what was posted on the same object within ``window`` seconds
    (the connection timer re-derives the same facts on every tick). Best effort: failures are logged."""

    def __init__(self, cluster: Cluster, *, window: float = _EVENT_DEDUPE_SECONDS) -> None:
        self._cluster = cluster
        self._window = window
        self._posted: dict[tuple[str, str, str, str, str], float] = {}

    async def record(self, involved: Mapping[str, Any], event: Event, *, now: dt.datetime) -> None:
        meta = _meta(involved)
        key = (
            str(meta.get("uid") or meta.get("name")),
            str(involved.get("kind")),
            event.type,
            event.reason,
            event.message,
        )
        seen = time.monotonic()
        last = self._posted.get(key)
        if last is not None and seen - last < self._window:
            return
        self._posted[key] = seen
        if len(self._posted) > 10_000:
            self._posted = {k: t for k, t in self._posted.items() if seen - t < self._window}
        try:
            await self._cluster.post_event(involved, event, now=now)
        except KubeError as exc:
            log.warning("could not record event %s on %s: %s", event.reason, meta.get("name"), exc)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Controller:
    """Reconciles SyncConnections and SyncRuns; see the module docstring."""

    cluster: Cluster
    metrics: Metrics
    defaults: WorkerDefaults = field(default_factory=WorkerDefaults)
    clock: Callable[[], dt.datetime] = _utcnow
    _connection_locks: KeyedLocks = field(default_factory=KeyedLocks, init=False)
    _run_locks: KeyedLocks = field(default_factory=KeyedLocks, init=False)
    _ready: dict[tuple[str, str], str] = field(default_factory=dict, init=False)
    _active: dict[tuple[str, str], int] = field(default_factory=dict, init=False)
    _events: EventRecorder = field(init=False)

    def __post_init__(self) -> None:
        self._events = EventRecorder(self.cluster)

    # ---------------------------------------------------------------------------------------------
    # SyncConnection

    async def reconcile_connection(self, body: Mapping[str, Any], views: Views) -> Reconciled:
        """Sweep the connection's active runs, start due runs, prune history, write the status."""
        namespace, name = _key(body)
        current: Mapping[str, Any] | None = body
        async with self._connection_locks.hold((namespace, name)):
            for _ in range(_CONFLICT_ATTEMPTS):
                if current is None or _meta(current).get("deletionTimestamp"):
                    return Reconciled()
                try:
                    return await self._reconcile_connection(current, views)
                except KubeError as exc:
                    if not exc.conflict:
                        raise
                current = await self.cluster.get(SYNCCONNECTIONS, namespace, name)
        raise Retry(f"SyncConnection {namespace}/{name} kept changing while being reconciled", delay=1)

    async def reconcile_connection_named(self, namespace: str, name: str, views: Views) -> Reconciled:
        body = views.connection(namespace, name) or await self.cluster.get(SYNCCONNECTIONS, namespace, name)
        if body is None:
            return Reconciled()
        return await self.reconcile_connection(body, views)

    async def _reconcile_connection(self, body: Mapping[str, Any], views: Views) -> Reconciled:
        namespace, name = _key(body)
        now = self.clock()
        try:
            connection = parse_connection(body, f"SyncConnection {namespace}/{name}")
        except SpecError as exc:
            await self._connection_invalid(body, exc, now)
            return Reconciled()

        runs = await self._sweep_runs(namespace, name, views)
        # Plan with the runs active now (the status' list may be a reconcile behind, e.g. after a restart).
        observed = connection.status.model_copy(update={"active": list(summarize_runs(runs).active)})
        plan = plan_for(connection.model_copy(update={"status": observed}), now)
        by_name = {run.metadata.name: run for run in runs}

        created = [planned.name for planned in plan.create]
        for stopped in plan.stop:
            run = by_name.get(stopped)
            if run is not None:
                by_name[stopped] = await self._stop_run(run, replaced_by=", ".join(created) or "a new run")
        for planned in plan.create:
            manifest = run_manifest(connection, planned)
            try:
                stored = await self.cluster.create(SYNCRUNS, namespace, manifest)
            except KubeError as exc:
                if not exc.already_exists:
                    raise
                continue
            by_name[planned.name] = parse_run(stored)
            how = "by the schedule" if planned.trigger == "Scheduled" else f"on request ({planned.requested_at})"
            await self._events.record(
                body, Event("Normal", "RunCreated", f"created SyncRun {planned.name} {how}"), now=now
            )

        owned = [run for run in by_name.values() if _owned_by(run, connection.metadata.uid)]
        spec = connection.spec
        for doomed in runs_to_prune(
            owned, successful_limit=spec.successful_runs_history_limit, failed_limit=spec.failed_runs_history_limit
        ):
            await self.cluster.delete(SYNCRUNS, namespace, doomed)
            del by_name[doomed]

        remaining = list(by_name.values())
        status = connection_status(connection, plan, remaining, now)
        discovered = _latest_discovered(remaining)
        if discovered is not None:
            status = status.model_copy(update={"discovered": discovered})
        await self._write_connection_status(body, connection.status, status)
        for event in plan.events:
            await self._events.record(body, event, now=now)
        self._observe_connection(namespace, name, status, remaining)
        return Reconciled(plan.requeue_after)

    async def _sweep_runs(self, namespace: str, connection: str, views: Views) -> list[SyncRun]:
        """The connection's runs, the active ones brought up to date with their Jobs first."""
        runs = []
        for body in views.runs(namespace, connection):
            try:
                run = parse_run(body)
            except SpecError:
                continue
            if run.status.phase not in TERMINAL_PHASES:
                async with self._run_locks.hold(_key(body)):
                    latest, _ = await self._reconcile_run(body, views)
                if latest is None:
                    continue
                run = latest
            runs.append(run)
        return runs

    async def _connection_invalid(self, body: Mapping[str, Any], error: SpecError, now: dt.datetime) -> None:
        message = "; ".join(error.problems)
        current = SyncConnectionStatus.model_validate(body.get("status") or {})
        generation = _meta(body).get("generation")
        status = current.model_copy(
            update={
                "observed_generation": generation,
                "conditions": set_summary(
                    current.conditions,
                    ready="False",
                    reason="InvalidSpec",
                    message=message,
                    stalled=True,
                    now=now,
                    generation=generation,
                ),
            }
        )
        await self._write_connection_status(body, current, status)
        await self._events.record(body, Event("Warning", "InvalidSpec", message), now=now)

    async def _write_connection_status(
        self, body: Mapping[str, Any], old: SyncConnectionStatus, new: SyncConnectionStatus
    ) -> None:
        if new == old:
            return
        namespace, name = _key(body)
        patch = merge_patch(old.to_wire(), new.to_wire())
        if patch:
            await self.cluster.patch(
                SYNCCONNECTIONS,
                namespace,
                name,
                {"status": patch},
                subresource="status",
                resource_version=_meta(body).get("resourceVersion"),
            )

    def _observe_connection(
        self, namespace: str, name: str, status: SyncConnectionStatus, runs: Sequence[SyncRun]
    ) -> None:
        ready = find_condition(status.conditions, READY)
        self._ready[(namespace, name)] = ready.status if ready is not None else "Unknown"
        self._active[(namespace, name)] = len(status.active)
        if status.last_successful_run is not None:
            self.metrics.last_success_timestamp.labels(namespace, name).set(status.last_successful_run.time.timestamp())
        self._publish_gauges()

    def _publish_gauges(self) -> None:
        for value in ("True", "False", "Unknown"):
            self.metrics.connections.labels(value).set(sum(1 for ready in self._ready.values() if ready == value))
        per_namespace: dict[str, int] = {}
        for (namespace, _), count in self._active.items():
            per_namespace[namespace] = per_namespace.get(namespace, 0) + count
        for namespace, count in per_namespace.items():
            self.metrics.active_runs.labels(namespace).set(count)

    def forget_connection(self, namespace: str, name: str) -> None:
        """A deleted connection: drop its per-connection series."""
        self._ready.pop((namespace, name), None)
        self._active.pop((namespace, name), None)
        self.metrics.forget_connection(namespace, name)
        self._publish_gauges()

    # ---------------------------------------------------------------------------------------------
    # SyncRun

    async def reconcile_run(
        self, body: Mapping[str, Any], views: Views, *, job: Mapping[str, Any] | object | None = ...
    ) -> Reconciled:
        """Create the run's Job if missing, mirror the Job's state into the run's status.

        ``job`` is the Job as just seen in a watch event (``None``: it was deleted); by default the cache's.
        When the run has just finished, the connection is reconciled too (active runs, last success).
        """
        async with self._run_locks.hold(_key(body)):
            latest, finished = await self._reconcile_run(body, views, job)
        if finished and latest is not None:
            await self.reconcile_connection_named(
                latest.metadata.namespace or "", latest.spec.connection_ref.name, views
            )
        return Reconciled()

    async def observe_job(self, job: Mapping[str, Any], views: Views, *, deleted: bool = False) -> Reconciled:
        """A Job of ours changed (or was deleted): bring its SyncRun up to date."""
        namespace, _ = _key(job)
        owner = next((ref for ref in _meta(job).get("ownerReferences") or [] if ref.get("kind") == "SyncRun"), None)
        if owner is None:
            return Reconciled()
        body = await self.cluster.get(SYNCRUNS, namespace, str(owner.get("name")))
        if body is None or _meta(body).get("uid") != owner.get("uid"):
            return Reconciled()
        return await self.reconcile_run(body, views, job=None if deleted else job)

    async def _reconcile_run(
        self, body: Mapping[str, Any], views: Views, job: Mapping[str, Any] | object | None = ...
    ) -> tuple[SyncRun | None, bool]:
        namespace, name = _key(body)
        current: Mapping[str, Any] | None = body
        for _ in range(_CONFLICT_ATTEMPTS):
            if current is None:
                return None, False
            try:
                return await self._reconcile_run_once(current, views, job)
            except KubeError as exc:
                if not exc.conflict:
                    raise
            current = await self.cluster.get(SYNCRUNS, namespace, name)
        raise Retry(f"SyncRun {namespace}/{name} kept changing while being reconciled", delay=1)

    async def _reconcile_run_once(
        self, body: Mapping[str, Any], views: Views, job: Mapping[str, Any] | object | None
    ) -> tuple[SyncRun | None, bool]:
        namespace, name = _key(body)
        now = self.clock()
        try:
            run = parse_run(body, f"SyncRun {namespace}/{name}")
        except SpecError as exc:
            raise InvalidObject(str(exc)) from None
        if run.status.phase in TERMINAL_PHASES:
            await self._record_finished(body, run)
            return run, False

        job_body = await self._job_of(run, views, job)
        step = next_step(run, JobView.from_manifest(job_body) if job_body else None, now)
        if step.status.phase in TERMINAL_PHASES:
            # The worker wrote its counts or its error just before exiting: decide on the freshest status.
            fresh = await self.cluster.get(SYNCRUNS, namespace, name)
            if fresh is None:
                return None, False
            if _meta(fresh).get("resourceVersion") != _meta(body).get("resourceVersion"):
                body, run = fresh, parse_run(fresh, f"SyncRun {namespace}/{name}")
                if run.status.phase in TERMINAL_PHASES:
                    await self._record_finished(body, run)
                    return run, False
                step = next_step(run, JobView.from_manifest(job_body) if job_body else None, now)

        status = step.status
        events = list(step.events)
        if step.action is RunAction.CREATE_JOB:
            status, created = await self._create_job(body, run, status, views, now)
            events.extend(created)
        if status != run.status:
            body = await self._write_run_status(body, run.status, status)
            run = run.model_copy(update={"status": status})
        for event in events:
            await self._events.record(body, event, now=now)
        if status.phase not in TERMINAL_PHASES:
            return run, False
        await self._announce_finished(run, now)
        await self._record_finished(body, run)
        return run, True

    async def _job_of(
        self, run: SyncRun, views: Views, job: Mapping[str, Any] | object | None
    ) -> Mapping[str, Any] | None:
        namespace = run.metadata.namespace or ""
        name = run.status.job_name or job_name(run.metadata.name)
        if job is not ...:
            return job if isinstance(job, Mapping) else None
        cached = views.job(namespace, name)
        if cached is None and run.status.phase not in (None, "Pending"):
            # The cache may lag a Job created a moment ago: ask before declaring it lost.
            return await self.cluster.get(JOBS, namespace, name)
        return cached

    async def _create_job(
        self, body: Mapping[str, Any], run: SyncRun, status: SyncRunStatus, views: Views, now: dt.datetime
    ) -> tuple[SyncRunStatus, list[Event]]:
        namespace = run.metadata.namespace or ""
        wanted = run.spec.connection_ref.name
        connection_body = views.connection(namespace, wanted) or await self.cluster.get(
            SYNCCONNECTIONS, namespace, wanted
        )
        if connection_body is None:
            message = f"waiting for SyncConnection {wanted} (spec.connectionRef) to exist in namespace {namespace}"
            waiting = _with_message(status, message, now, run.metadata.generation)
            if waiting != run.status:
                await self._write_run_status(body, run.status, waiting)
            raise Retry(message, delay=_MISSING_CONNECTION_DELAY)
        try:
            connection = parse_connection(connection_body, f"SyncConnection {namespace}/{wanted}")
        except SpecError as exc:
            return _failed(status, f"cannot start: {exc}", "InvalidConnection", now, run.metadata.generation), [
                Event("Warning", "InvalidConnection", str(exc))
            ]
        manifest = self.defaults.job_for(run, connection)
        try:
            job = await self.cluster.create(JOBS, namespace, manifest)
        except KubeError as exc:
            if exc.already_exists:
                return status, []
            if exc.invalid:
                message = f"the API server refused Job {manifest['metadata']['name']}: {exc.message}"
                return _failed(status, message, "JobRefused", now, run.metadata.generation), [
                    Event("Warning", "JobRefused", message)
                ]
            raise
        # Straight to what the new Job means for the run ("waiting for a pod"): one status write, not two.
        status = next_step(run.model_copy(update={"status": status}), JobView.from_manifest(job), now).status
        return status, [Event("Normal", "JobCreated", f"created Job {manifest['metadata']['name']}")]

    async def _write_run_status(
        self, body: Mapping[str, Any], old: SyncRunStatus, new: SyncRunStatus
    ) -> Mapping[str, Any]:
        namespace, name = _key(body)
        patch = merge_patch(old.to_wire(), new.to_wire())
        if not patch:
            return body
        return await self.cluster.patch(
            SYNCRUNS,
            namespace,
            name,
            {"status": patch},
            subresource="status",
            resource_version=_meta(body).get("resourceVersion"),
        )

    async def _stop_run(self, run: SyncRun, *, replaced_by: str) -> SyncRun:
        """concurrencyPolicy Replace: delete the active run's Job and mark the run Failed (Replaced)."""
        namespace, name = run.metadata.namespace or "", run.metadata.name
        async with self._run_locks.hold((namespace, name)):
            for _ in range(_CONFLICT_ATTEMPTS):
                body = await self.cluster.get(SYNCRUNS, namespace, name)
                if body is None:
                    return run
                current = parse_run(body, f"SyncRun {namespace}/{name}")
                if current.status.phase in TERMINAL_PHASES:
                    return current
                await self.cluster.delete(JOBS, namespace, current.status.job_name or job_name(name))
                now = self.clock()
                status = stopped_status(current, now, replaced_by=replaced_by)
                try:
                    written = await self._write_run_status(body, current.status, status)
                except KubeError as exc:
                    if exc.conflict:
                        continue
                    raise
                stopped = current.model_copy(update={"status": status})
                await self._events.record(written, Event("Warning", "Replaced", status.message or ""), now=now)
                await self._record_finished(written, stopped)
                return stopped
        raise Retry(f"SyncRun {namespace}/{name} kept changing while being stopped", delay=1)

    async def _announce_finished(self, run: SyncRun, now: dt.datetime) -> None:
        """The run's outcome as an Event on its connection, where people look."""
        namespace = run.metadata.namespace or ""
        involved = {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "SyncConnection",
            "metadata": {"name": run.spec.connection_ref.name, "namespace": namespace},
        }
        if run.status.phase == "Succeeded":
            event = Event("Normal", "RunSucceeded", f"{run.metadata.name}: {run.status.message or 'succeeded'}")
        else:
            event = Event("Warning", "RunFailed", f"{run.metadata.name}: {run.status.message or 'failed'}")
        await self._events.record(involved, event, now=now)

    async def _record_finished(self, body: Mapping[str, Any], run: SyncRun) -> None:
        """Count a finished run in the metrics once (the annotation survives operator restarts)."""
        if run.metadata.annotations.get(METRICS_RECORDED_ANNOTATION):
            return
        namespace, name = _key(body)
        try:
            await self.cluster.patch(
                SYNCRUNS, namespace, name, {"metadata": {"annotations": {METRICS_RECORDED_ANNOTATION: "true"}}}
            )
        except KubeError as exc:
            if exc.not_found:
                return
            raise
        self.metrics.observe_run(run_outcome(run))


def _latest_discovered(runs: Sequence[SyncRun]) -> Discovered | None:
    succeeded = [run for run in runs if run.status.phase == "Succeeded" and run.status.discovered is not None]
    if not succeeded:
        return None
    latest = max(succeeded, key=lambda run: run.status.completion_time or dt.datetime.min.replace(tzinfo=dt.UTC))
    return latest.status.discovered


def _with_message(status: SyncRunStatus, message: str, now: dt.datetime, generation: int | None) -> SyncRunStatus:
    conditions = set_summary(
        status.conditions,
        ready="Unknown",
        reason="Pending",
        message=message,
        reconciling=True,
        now=now,
        generation=generation,
    )
    return status.model_copy(update={"phase": "Pending", "message": message, "conditions": conditions})


def _failed(
    status: SyncRunStatus, message: str, reason: str, now: dt.datetime, generation: int | None
) -> SyncRunStatus:
    conditions = set_summary(
        status.conditions, ready="False", reason=reason, message=message, stalled=True, now=now, generation=generation
    )
    return status.model_copy(
        update={
            "phase": "Failed",
            "message": message,
            "conditions": conditions,
            "completion_time": now,
            "observed_generation": generation,
        }
    )
