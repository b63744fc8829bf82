"""The worker: what a SyncRun's Job pod runs (``ml-connector worker --run <namespace>/<name>``).

1. Reads its SyncRun and the SyncConnection it names (the worker ServiceAccount may ``get`` both).
2. Reads the credentials from the files the Job mounts (paths in ``ML_CONNECTOR_*`` variables; never the
   API: the worker cannot read Secrets either) and opens the audit store the Job configures
   (``ML_CONNECTOR_AUDIT_DSN_FILE``, ``ML_CONNECTOR_AUDIT_SQLITE_PATH``, else a throw-away SQLite file).
3. Runs the pipeline (:func:`ml_connector.sync.pipeline.run_sync`) with :class:`LeaseModelLock`: the model's
   ``coordination.k8s.io`` Lease (:mod:`ml_connector.kube.lease`), taken around every Anaplan task and renewed
   meanwhile; while another run holds it the SyncRun shows ``WaitingForLock`` and who holds it.
4. Writes into the SyncRun status: ``Running``, counts (total and per flow), reconciliation, discovered
   Anaplan ids, lock wait, API error counts, a message; on failure ``error`` says what went wrong. The
   operator writes the terminal phase once the Job finished.

Exit codes: 0 success; :data:`~ml_connector.kube.jobs.CONFIG_ERROR_EXIT_CODE` (2) for what the user has to fix
(invalid spec, missing Secret or key, bad credentials, unknown Anaplan names: the Job's podFailurePolicy fails
at once, no retry); 1 for anything else (retried up to backoffLimit). No secret reaches a status, a log or
an exception: everything the worker writes passes :func:`~ml_connector.net.redact.redact`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from ml_connector.kube.api import SYNCCONNECTIONS, SYNCRUNS, KubeApi, KubeError, merge_patch
from ml_connector.kube.conditions import set_summary
from ml_connector.kube.events import Event
from ml_connector.kube.jobs import (
    CONFIG_ERROR_EXIT_CODE,
    ENV_ANAPLAN_CREDENTIALS_DIR,
    ENV_AUDIT_DSN_FILE,
    ENV_AUDIT_SQLITE_PATH,
    ENV_INFOR_CREDENTIALS_FILE,
)
from ml_connector.kube.lease import (
    ANNOTATION_MODEL,
    KubernetesLeaseBackend,
    LeaseBackend,
    LeaseRecord,
    lease_name_for_model,
)
from ml_connector.kube.lease import ModelLock as Lease
from ml_connector.net.redact import redact
from ml_connector.spec import (
    TERMINAL_PHASES,
    Condition,
    LockInfo,
    RunCounts,
    RunPhase,
    SpecError,
    SyncConnection,
    SyncRun,
    SyncRunStatus,
    parse_connection,
    parse_run,
)
from ml_connector.sync.errors import SyncConfigError, SyncError
from ml_connector.sync.locks import LockGrant, OnWait
from ml_connector.sync.progress import LogRenderer, Progress, ProgressEvent
from ml_connector.sync.result import RunResult

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "LeaseModelLock",
    "RunStatusWriter",
    "RunStopped",
    "WorkerConfigError",
    "WorkerSettings",
    "result_status",
    "run_worker",
    "self_check",
]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1

ENV_LEASE_DURATION = "ML_CONNECTOR_LEASE_DURATION_SECONDS"
ENV_LEASE_RENEW = "ML_CONNECTOR_LEASE_RENEW_SECONDS"
ENV_LEASE_RETRY = "ML_CONNECTOR_LEASE_RETRY_SECONDS"
ENV_TASK_POLL = "ML_CONNECTOR_TASK_POLL_SECONDS"
_PROGRESS_EVERY = 5.0  # seconds between two progress messages written into the status


class WorkerConfigError(Exception):
    """Something the user has to fix before the run can work; the message says what and where."""


class RunStopped(Exception):
    """The SyncRun finished while the worker was still at it (stopped by concurrencyPolicy Replace)."""


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise WorkerConfigError(f"{name}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise WorkerConfigError(f"{name}={text!r} must be positive")
    return value


@dataclasses.dataclass(frozen=True)
class WorkerSettings:
    """Tunables from the pod's environment (defaults suit production; tests shorten them)."""

    lease_duration: float = 60.0
    lease_renew: float = 15.0
    lease_retry: float = 10.0
    task_poll: float | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        env = os.environ if environ is None else environ
        duration = _float(env, ENV_LEASE_DURATION, 60.0)
        renew = _float(env, ENV_LEASE_RENEW, min(15.0, duration / 4))
        poll = env.get(ENV_TASK_POLL, "").strip()
        return cls(
            lease_duration=duration,
            lease_renew=renew,
            lease_retry=_float(env, ENV_LEASE_RETRY, 10.0),
            task_poll=_float(env, ENV_TASK_POLL, 1.0) if poll else None,
        )

    def lease(self, backend: LeaseBackend, namespace: str, name: str, holder: str, **kwargs: Any) -> Lease:
        """A Lease lock with these timings: renewed every ``lease_renew`` s, lost after 3 missed renewals."""
        deadline = min(self.lease_renew * 3, self.lease_duration * 0.75)
        return Lease(
            backend,
            namespace,
            name,
            holder,
            duration=max(1, round(self.lease_duration)),
            renew_every=min(self.lease_renew, deadline / 2),
            renew_deadline=deadline,
            retry_initial=min(1.0, self.lease_retry),
            retry_max=self.lease_retry,
            **kwargs,
        )


def _conditions(
    status: SyncRunStatus, phase: RunPhase, message: str, now: dt.datetime, generation: int | None
) -> list[Condition]:
    return set_summary(
        status.conditions,
        ready="Unknown",
        reason=phase,
        message=message,
        reconciling=True,
        now=now,
        generation=generation,
    )


class RunStatusWriter:
    """Writes the worker's part of the SyncRun status: read, change, patch guarded by resourceVersion.

    Never writes over a finished run (raises :class:`RunStopped`); retries conflicts, and a few times when
    the API server is briefly unreachable.
    """

    def __init__(
        self, api: KubeApi, namespace: str, name: str, *, clock: Callable[[], dt.datetime] | None = None
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.last: SyncRun | None = None

    async def update(self, change: Callable[[SyncRun, dt.datetime], SyncRunStatus]) -> SyncRun:
        for attempt in range(6):
            try:
                body = await self.api.get(SYNCRUNS, self.namespace, self.name)
                if body is None:
                    raise RunStopped(f"SyncRun {self.namespace}/{self.name} no longer exists")
                run = parse_run(body, f"SyncRun {self.namespace}/{self.name}")
                if run.status.phase in TERMINAL_PHASES:
                    raise RunStopped(
                        f"SyncRun {self.namespace}/{self.name} is already {run.status.phase}: {run.status.message}"
                    )
                status = change(run, self.clock())
                if status != run.status:
                    patch = merge_patch(run.status.to_wire(), status.to_wire())
                    await self.api.patch(
                        SYNCRUNS,
                        self.namespace,
                        self.name,
                        {"status": patch},
                        subresource="status",
                        resource_version=(body.get("metadata") or {}).get("resourceVersion"),
                    )
                    run = run.model_copy(update={"status": status})
                self.last = run
                return run
            except KubeError as exc:
                if not (exc.conflict or exc.retryable) or attempt == 5:
                    raise
                await asyncio.sleep(0 if exc.conflict else min(2.0**attempt * 0.25, 4.0))
        raise AssertionError("unreachable")

    async def phase(self, phase: RunPhase, message: str, *, lock: LockInfo | None = None) -> SyncRun:
        def change(run: SyncRun, now: dt.datetime) -> SyncRunStatus:
            status = run.status
            update: dict[str, Any] = {
                "phase": phase,
                "message": message,
                "conditions": _conditions(status, phase, message, now, run.metadata.generation),
                "lock": lock if lock is not None else status.lock,
            }
            if status.start_time is None:
                update["start_time"] = now
            return status.model_copy(update=update)

        return await self.update(change)

    async def message(self, message: str) -> SyncRun:
        def change(run: SyncRun, now: dt.datetime) -> SyncRunStatus:
            phase = run.status.phase or "Running"
            conditions = _conditions(run.status, phase, message, now, run.metadata.generation)
            return run.status.model_copy(update={"message": message, "conditions": conditions})

        return await self.update(change)

    async def finished(self, result: RunResult | None, *, error: str | None = None) -> SyncRun:
        """The outcome (counts, reconciliation, ids, lock wait, API errors); ``error`` when it failed."""

        def change(run: SyncRun, now: dt.datetime) -> SyncRunStatus:
            update = result_status(result, error=error)
            phase = run.status.phase or "Running"
            message = update.get("message") or run.status.message or ""
            update["conditions"] = _conditions(run.status, phase, message, now, run.metadata.generation)
            return run.status.model_copy(update=update)

        return await self.update(change)


def result_status(result: RunResult | None, *, error: str | None = None) -> dict[str, Any]:
    """The SyncRunStatus fields a run result fills (model field names)."""
    update: dict[str, Any] = {}
    if result is not None:
        update["counts"] = result.counts()
        update["flow_counts"] = {
            flow.flow: RunCounts(
                extracted=flow.extracted + flow.replayed,
                loaded=flow.loaded,
                rejected=flow.rejected,
                skipped=flow.skipped,
            )
            for flow in result.flows
        }
        reconciliation = result.reconciliation_status()
        if reconciliation is not None:
            update["reconciliation"] = reconciliation
        if result.discovered is not None:
            update["discovered"] = result.discovered
        update["lock_wait_seconds"] = round(result.lock_wait_seconds, 3)
        update["api_errors"] = {service: dict(codes) for service, codes in result.api_errors.items()}
        if result.message:
            update["message"] = redact(result.message)[:4000]
    if error is not None:
        update["error"] = redact(error)[:4000]
        update["message"] = update["error"]
    return update


class LeaseModelLock:
    """:class:`ml_connector.sync.locks.ModelLock` on the model's Lease in the run's namespace.

    Holder identity: the SyncRun uid; its ``namespace/name`` is recorded on the Lease for people (and shown
    in ``WaitingForLock``). ``on_wait(lease, record)`` and ``on_acquired(lease, waited)`` let the worker
    report the phase.
    """

    def __init__(
        self,
        backend: LeaseBackend,
        namespace: str,
        *,
        holder: str,
        holder_name: str,
        settings: WorkerSettings,
        on_wait: Callable[[str, LeaseRecord], Awaitable[None]] | None = None,
        on_acquired: Callable[[str, float], Awaitable[None]] | None = None,
    ) -> None:
        self._backend = backend
        self.namespace = namespace
        self.holder = holder
        self.holder_name = holder_name
        self.settings = settings
        self._on_wait = on_wait
        self._on_acquired = on_acquired

    @contextlib.asynccontextmanager
    async def hold(self, model_id: str, *, on_wait: OnWait | None = None) -> AsyncIterator[LockGrant]:
        name = lease_name_for_model(model_id)
        lease = self.settings.lease(
            self._backend,
            self.namespace,
            name,
            self.holder,
            holder_name=self.holder_name,
            annotations={ANNOTATION_MODEL: model_id},
        )
        started = time.monotonic()
        waited = False

        async def waiting(record: LeaseRecord) -> None:
            nonlocal waited
            waited = True
            who = record.holder_name or record.holder or "another run"
            if self._on_wait is not None:
                await self._on_wait(name, record)
            if on_wait is not None:
                outcome = on_wait(who)
                if outcome is not None:
                    await outcome

        async with lease.held(on_wait=waiting):
            seconds = time.monotonic() - started
            if waited and self._on_acquired is not None:
                await self._on_acquired(name, seconds)
            yield LockGrant(model_id, self.holder, seconds if waited else 0.0)


# --------------------------------------------------------------------------------------------------


def _audit_location(environ: Mapping[str, str], connection: SyncConnection) -> str:
    """The audit store URL the Job configured (a DSN is a secret: it is registered for redaction)."""
    if environ.get(ENV_AUDIT_DSN_FILE):
        from ml_connector.sync.credentials import load_audit_dsn

        dsn = load_audit_dsn(connection, environ=environ)
        if dsn is None:
            raise WorkerConfigError(
                f"{ENV_AUDIT_DSN_FILE} is set but spec.audit.postgres is not: the Job and the connection disagree"
            )
        return dsn
    if environ.get(ENV_AUDIT_SQLITE_PATH):
        return environ[ENV_AUDIT_SQLITE_PATH]
    base = environ.get("TMPDIR") or tempfile.gettempdir()
    return str(Path(base) / "ml-connector-audit.sqlite3")


def _check_mounts(environ: Mapping[str, str], connection: SyncConnection, namespace: str) -> None:
    """Name the Secret and key when a mounted credential is missing (the Job mounts them ``optional``)."""
    infor_file = environ.get(ENV_INFOR_CREDENTIALS_FILE)
    ref = connection.spec.infor.credentials_secret_ref
    if infor_file and not Path(infor_file).is_file():
        raise WorkerConfigError(
            f"Infor credentials: Secret {ref.name!r} with key {ref.key!r} (spec.infor.credentialsSecretRef) is"
            f" missing in namespace {namespace}: nothing is mounted at {infor_file}. Create the Secret from the"
            " tenant's .ionapi file (kubectl create secret generic ... --from-file=...)."
        )
    anaplan_dir = environ.get(ENV_ANAPLAN_CREDENTIALS_DIR)
    secret = connection.spec.anaplan.auth.credentials_secret_ref.name
    if anaplan_dir and (not Path(anaplan_dir).is_dir() or not any(Path(anaplan_dir).iterdir())):
        raise WorkerConfigError(
            f"Anaplan credentials: Secret {secret!r} (spec.anaplan.auth.credentialsSecretRef) is missing or empty"
            f" in namespace {namespace}: nothing is mounted at {anaplan_dir}."
        )


class _StatusHook:
    """Progress milestones -> a throttled status message (the pipeline keeps going if a write fails)."""

    def __init__(self, writer: RunStatusWriter) -> None:
        self._writer = writer
        self._last = 0.0

    async def __call__(self, event: ProgressEvent) -> None:
        if event.kind not in ("step", "flow"):
            return  # "lock" is reported by LeaseModelLock with the Lease's name; run/done by the worker
        now = time.monotonic()
        if event.kind == "step" and now - self._last < _PROGRESS_EVERY:
            return
        self._last = now
        where = f"[{event.flow}] " if event.flow else ""
        await self._writer.message(redact(f"{where}{event.message}")[:1000])


def _tuning(settings: WorkerSettings) -> Any:
    from ml_connector.sync.options import Tuning

    if settings.task_poll is None:
        return None
    from ml_connector.anaplan import PollPolicy

    return Tuning(poll=PollPolicy(initial=settings.task_poll, maximum=max(settings.task_poll, 5.0)))


async def run_worker(
    namespace: str,
    name: str,
    *,
    api: KubeApi,
    environ: Mapping[str, str] | None = None,
    settings: WorkerSettings | None = None,
) -> int:
    """Run the SyncRun ``namespace/name`` once; returns the process exit code (see the module docstring)."""
    env = os.environ if environ is None else environ
    writer = RunStatusWriter(api, namespace, name)
    result: RunResult | None = None
    try:
        tunables = settings or WorkerSettings.from_environ(env)
        run_body = await api.get(SYNCRUNS, namespace, name)
        if run_body is None:
            raise WorkerConfigError(f"SyncRun {namespace}/{name} not found")
        run = parse_run(run_body, f"SyncRun {namespace}/{name}")
        if run.status.phase in TERMINAL_PHASES:
            log.info("SyncRun %s/%s is already %s; nothing to do", namespace, name, run.status.phase)
            return EXIT_OK
        wanted = run.spec.connection_ref.name
        connection_body = await api.get(SYNCCONNECTIONS, namespace, wanted)
        if connection_body is None:
            raise WorkerConfigError(f"SyncConnection {wanted} (spec.connectionRef of {name}) not found in {namespace}")
        connection = parse_connection(connection_body, f"SyncConnection {namespace}/{wanted}")
        await writer.phase("Running", f"worker started ({run.spec.direction})")
        _check_mounts(env, connection, namespace)

        from ml_connector.audit import create_store
        from ml_connector.sync.credentials import load_credentials
        from ml_connector.sync.pipeline import run_sync

        credentials = load_credentials(connection, environ=env)
        audit_url = _audit_location(env, connection)
        lock = LeaseModelLock(
            KubernetesLeaseBackend(api.api_client),
            namespace,
            holder=run.metadata.uid or f"{namespace}/{name}",
            holder_name=f"{namespace}/{name}",
            settings=tunables,
            on_wait=lambda lease, record: _waiting(writer, api, run_body, lease, record),
            on_acquired=lambda lease, waited: _acquired(writer, lease, waited),
        )
        progress = Progress(LogRenderer(), hooks=[_StatusHook(writer)], run_id=f"{namespace}/{name}")
        async with create_store(audit_url) as store:
            result = await run_sync(
                connection,
                direction=run.spec.direction,
                flows=list(run.spec.flows) or None,
                dry_run=run.spec.dry_run,
                run_id=f"{namespace}/{name}",
                replay_of=f"{namespace}/{run.spec.replay_of}" if run.spec.replay_of else None,
                period=run.spec.period,
                credentials=credentials,
                audit=store,
                lock=lock,
                progress=progress,
                tuning=_tuning(tunables),
            )
        if not result.succeeded:
            await writer.finished(result, error=result.message or "the run did not succeed")
            return EXIT_FAILED
        await writer.finished(result)
        log.info("SyncRun %s/%s done: %s", namespace, name, result.message)
        return EXIT_OK
    except (WorkerConfigError, SpecError, SyncConfigError) as exc:
        partial = exc.result if isinstance(exc, SyncError) else result
        return await _fail(writer, partial, str(exc), CONFIG_ERROR_EXIT_CODE)
    except RunStopped as exc:
        log.warning("%s", exc)
        return EXIT_FAILED
    except KubeError as exc:
        if exc.forbidden or exc.status == 401:
            # The worker's ServiceAccount or its RBAC is wrong: retrying the same pod cannot help.
            message = f"the worker's ServiceAccount is not allowed to do this (check its Role): {exc}"
            return await _fail(writer, result, message, CONFIG_ERROR_EXIT_CODE)
        log.exception("SyncRun %s/%s failed", namespace, name)
        return await _fail(writer, result, str(exc), EXIT_FAILED)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        partial = exc.result if isinstance(exc, SyncError) else result
        log.exception("SyncRun %s/%s failed", namespace, name)
        return await _fail(writer, partial, f"{type(exc).__name__}: {exc}", EXIT_FAILED)


async def _fail(writer: RunStatusWriter, result: RunResult | None, message: str, code: int) -> int:
    message = redact(message)
    log.error("%s", message)
    try:
        await writer.finished(result, error=message)
    except (KubeError, RunStopped) as exc:
        log.warning("could not report the failure in the SyncRun status: %s", exc)
    return code


async def _waiting(
    writer: RunStatusWriter, api: KubeApi, run_body: Mapping[str, Any], lease: str, record: LeaseRecord
) -> None:
    who = record.holder_name or record.holder or "another run"
    message = f"waiting for the model Lease {lease}, held by {who}"
    await writer.phase("WaitingForLock", message, lock=LockInfo(lease=lease, holder=who))
    try:
        await api.post_event(run_body, Event("Normal", "WaitingForLock", message))
    except KubeError as exc:
        log.warning("could not record the WaitingForLock event: %s", exc)


async def _acquired(writer: RunStatusWriter, lease: str, waited: float) -> None:
    await writer.phase("Running", f"holding the model Lease {lease} (waited {waited:.1f}s)", lock=LockInfo(lease=lease))


# --------------------------------------------------------------------------------------------------


def self_check(environ: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Offline readiness check of the image: ``(facts, problems)``. Imports every module a run needs, checks
    the configured files are readable and the temp directory writable; no network."""
    import importlib

    from ml_connector import __version__

    env = os.environ if environ is None else environ
    facts = [f"ml-connector {__version__}"]
    problems: list[str] = []
    modules = (
        "ml_connector.sync.pipeline",
        "ml_connector.sync.credentials",
        "ml_connector.infor",
        "ml_connector.anaplan",
        "ml_connector.audit.sqlite",
        "ml_connector.kube.lease",
        "ml_connector.kube.api",
        "kubernetes",
        "httpx",
    )
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            problems.append(f"cannot import {module}: {type(exc).__name__}: {exc}")
    try:
        importlib.import_module("ml_connector.audit.postgres")
        importlib.import_module("psycopg")
        facts.append("PostgreSQL audit store: available")
    except Exception:
        facts.append("PostgreSQL audit store: driver not installed (SQLite only)")
    try:
        WorkerSettings.from_environ(env)
    except WorkerConfigError as exc:
        problems.append(str(exc))
    for variable, kind in (
        (ENV_INFOR_CREDENTIALS_FILE, "file"),
        (ENV_ANAPLAN_CREDENTIALS_DIR, "dir"),
        (ENV_AUDIT_DSN_FILE, "file"),
    ):
        value = env.get(variable)
        if not value:
            continue
        path = Path(value)
        ok = path.is_file() and os.access(path, os.R_OK) if kind == "file" else path.is_dir()
        (facts if ok else problems).append(
            f"{variable}={value}: {'readable' if ok else 'missing or unreadable'} (contents not read)"
        )
    sqlite_path = env.get(ENV_AUDIT_SQLITE_PATH)
    if sqlite_path:
        directory = Path(sqlite_path).parent
        ok = directory.is_dir() and os.access(directory, os.W_OK)
        (facts if ok else problems).append(
            f"{ENV_AUDIT_SQLITE_PATH}: directory {directory} {'writable' if ok else 'not writable'}"
        )
    temp = env.get("TMPDIR") or tempfile.gettempdir()
    try:
        with tempfile.NamedTemporaryFile(dir=temp, prefix="ml-connector-self-check-"):
            pass
        facts.append(f"temporary directory {temp}: writable")
    except OSError as exc:
        problems.append(f"temporary directory {temp} is not writable: {exc}")
    return facts, problems
