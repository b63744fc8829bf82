"""The life of a SyncRun: run + Job state -> next action + status (pure, injected clock).

``Pending`` (no Job yet, or no pod running) -> ``Running`` (the Job has an active pod) ->
``Succeeded`` / ``Failed`` (the Job's ``Complete`` / ``Failed`` condition, or the early
``SuccessCriteriaMet`` / ``FailureTarget``). ``WaitingForLock`` is reported by the worker itself
(it waits for the model's Lease) and kept while the Job runs. The operator owns the terminal phases; the
worker writes counts, reconciliation and messages.

Conditions follow kstatus: Reconciling=True while Pending / WaitingForLock / Running, Ready=True on
success, Ready=False + Stalled=True on failure.

Also here: which finished runs to delete (history limits, oldest first, as CronJob does) and the
summary of a connection's runs (active ones, last success).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ml_connector.kube.conditions import set_summary
from ml_connector.kube.events import Event
from ml_connector.kube.jobs import CONFIG_ERROR_EXIT_CODE, job_name
from ml_connector.spec import TERMINAL_PHASES, ConditionStatus, LastRun, RunPhase, RunRef, SyncRun, SyncRunStatus

__all__ = [
    "JobCondition",
    "JobView",
    "RunAction",
    "RunStep",
    "RunsSummary",
    "next_step",
    "runs_to_prune",
    "stopped_status",
    "summarize_runs",
]


def _time(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class JobCondition:
    status: str
    reason: str
    message: str
    last_transition_time: dt.datetime | None


@dataclass(frozen=True)
class JobView:
    """What the run cares about in a ``batch/v1`` Job."""

    name: str
    active: int = 0
    ready: int = 0
    succeeded: int = 0
    failed: int = 0
    start_time: dt.datetime | None = None
    completion_time: dt.datetime | None = None
    conditions: Mapping[str, JobCondition] | None = None

    @classmethod
    def from_manifest(cls, job: Mapping[str, Any]) -> JobView:
        """From a Job as the API returns it (a JSON mapping)."""
        status = job.get("status") or {}
        conditions = {
            item["type"]: JobCondition(
                status=item.get("status", "Unknown"),
                reason=item.get("reason") or "",
                message=item.get("message") or "",
                last_transition_time=_time(item.get("lastTransitionTime")),
            )
            for item in status.get("conditions") or []
        }
        return cls(
            name=job["metadata"]["name"],
            active=status.get("active") or 0,
            ready=status.get("ready") or 0,
            succeeded=status.get("succeeded") or 0,
            failed=status.get("failed") or 0,
            start_time=_time(status.get("startTime")),
            completion_time=_time(status.get("completionTime")),
            conditions=conditions,
        )

    def condition(self, *types: str) -> JobCondition | None:
        for type_ in types:
            found = (self.conditions or {}).get(type_)
            if found is not None and found.status == "True":
                return found
        return None


class RunAction(Enum):
    CREATE_JOB = "CreateJob"
    """Create the Job (build it with :func:`ml_connector.kube.jobs.build_job`); AlreadyExists is fine."""
    WAIT = "Wait"
    """Nothing to do until the Job or the worker changes something."""
    DONE = "Done"
    """The run is over."""


@dataclass(frozen=True)
class RunStep:
    action: RunAction
    status: SyncRunStatus
    events: tuple[Event, ...] = ()


_FAILURE_REASONS = {
    "BackoffLimitExceeded": "the worker failed {failed} time(s), reaching backoffLimit",
    "DeadlineExceeded": "the run took longer than activeDeadlineSeconds",
    "PodFailurePolicy": (
        f"the worker stopped on an error a retry cannot fix (exit code {CONFIG_ERROR_EXIT_CODE}: "
        "configuration or credentials); see its log"
    ),
}


def _failure_message(job: JobView, condition: JobCondition, reported: str | None = None) -> str:
    """Why the Job failed; what the worker itself reported (``status.error``) is more useful than its exit code."""
    template = _FAILURE_REASONS.get(condition.reason)
    summary = template.format(failed=job.failed) if template else f"Job {job.name} failed ({condition.reason})"
    if reported:
        return f"{reported} ({summary.removesuffix('; see its log')})"
    return f"{summary}: {condition.message}" if condition.message else summary


def _summary(counts: SyncRunStatus) -> str:
    if counts.counts is None:
        return "run succeeded"
    c = counts.counts
    return f"extracted {c.extracted}, loaded {c.loaded}, rejected {c.rejected}, skipped {c.skipped}"


def next_step(run: SyncRun, job: JobView | None, now: dt.datetime) -> RunStep:
    """What to do for ``run`` given its Job (None if there is none) at ``now``; returns the new status."""
    status = run.status
    generation = run.metadata.generation
    if status.phase in TERMINAL_PHASES:
        return RunStep(RunAction.DONE, status)
    name = status.job_name or job_name(run.metadata.name)

    if job is None:
        if status.phase in (None, "Pending"):
            message = f"creating Job {name}"
            return RunStep(
                RunAction.CREATE_JOB,
                _update(status, now, generation, phase="Pending", job_name=name, message=message, ready="Unknown"),
            )
        message = f"Job {name} disappeared before the run finished"
        failed = _update(
            status, now, generation, phase="Failed", message=message, ready="False", reason="JobLost", completion=now
        )
        return RunStep(RunAction.DONE, failed, (Event("Warning", "JobLost", message),))

    start = status.start_time or job.start_time
    done = job.condition("Complete", "SuccessCriteriaMet")
    if done is not None:
        finished = job.completion_time or done.last_transition_time or now
        succeeded = _update(
            status,
            now,
            generation,
            phase="Succeeded",
            job_name=name,
            message=_summary(status),
            ready="True",
            reason="Succeeded",
            start=start,
            completion=finished,
        )
        return RunStep(RunAction.DONE, succeeded, (Event("Normal", "Succeeded", _summary(status)),))
    failure = job.condition("Failed", "FailureTarget")
    if failure is not None:
        message = _failure_message(job, failure, status.error)
        failed = _update(
            status,
            now,
            generation,
            phase="Failed",
            job_name=name,
            message=message,
            ready="False",
            reason=failure.reason or "Failed",
            start=start,
            completion=failure.last_transition_time or now,
        )
        return RunStep(RunAction.DONE, failed, (Event("Warning", failure.reason or "Failed", message),))

    phase: RunPhase
    if status.phase in ("Running", "WaitingForLock") and job.active:
        phase = status.phase
        message = status.message or f"Job {name} is running"
    elif job.active:
        phase, message = "Running", f"Job {name} is running"
    else:
        phase = "Pending"
        message = (
            f"Job {name} is retrying after {job.failed} failed attempt(s)"
            if job.failed
            else f"waiting for a pod of Job {name}"
        )
    return RunStep(
        RunAction.WAIT,
        _update(status, now, generation, phase=phase, job_name=name, message=message, ready="Unknown", start=start),
    )


def _update(
    status: SyncRunStatus,
    now: dt.datetime,
    generation: int | None,
    *,
    phase: RunPhase,
    message: str,
    ready: ConditionStatus,
    reason: str | None = None,
    job_name: str | None = None,
    start: dt.datetime | None = None,
    completion: dt.datetime | None = None,
) -> SyncRunStatus:
    terminal = phase in TERMINAL_PHASES
    conditions = set_summary(
        status.conditions,
        ready=ready,
        reason=reason or phase,
        message=message,
        reconciling=not terminal,
        stalled=phase == "Failed",
        now=now,
        generation=generation,
    )
    update: dict[str, Any] = {
        "phase": phase,
        "message": message,
        "conditions": conditions,
        "observed_generation": generation,
    }
    if job_name is not None:
        update["job_name"] = job_name
    if start is not None:
        update["start_time"] = start
    if completion is not None:
        update["completion_time"] = completion
    return status.model_copy(update=update)


def stopped_status(run: SyncRun, now: dt.datetime, *, replaced_by: str) -> SyncRunStatus:
    """The status of an active run stopped for ``replaced_by`` (concurrencyPolicy Replace)."""
    message = f"stopped: replaced by {replaced_by} (concurrencyPolicy Replace)"
    return _update(
        run.status,
        now,
        run.metadata.generation,
        phase="Failed",
        message=message,
        ready="False",
        reason="Replaced",
        completion=now,
    )


# --------------------------------------------------------------------------------------------------
# A connection's runs


def _finished_at(run: SyncRun) -> dt.datetime:
    moment = run.status.completion_time or run.status.start_time or run.metadata.creation_timestamp
    return moment or dt.datetime.min.replace(tzinfo=dt.UTC)


def runs_to_prune(runs: Sequence[SyncRun], *, successful_limit: int, failed_limit: int) -> list[str]:
    """Names of finished runs beyond the history limits, oldest first (active runs are never pruned)."""
    doomed: list[SyncRun] = []
    for phase, limit in (("Succeeded", successful_limit), ("Failed", failed_limit)):
        finished = sorted((run for run in runs if run.status.phase == phase), key=_finished_at, reverse=True)
        doomed.extend(finished[limit:])
    return [run.metadata.name for run in sorted(doomed, key=_finished_at)]


@dataclass(frozen=True)
class RunsSummary:
    active: tuple[RunRef, ...]
    last_successful: LastRun | None
    last_finished: SyncRun | None


def summarize_runs(runs: Sequence[SyncRun]) -> RunsSummary:
    """Active runs (oldest first), the last success and the last finished run of one connection."""
    active = sorted(
        (run for run in runs if run.status.phase not in TERMINAL_PHASES),
        key=lambda run: (run.metadata.creation_timestamp or dt.datetime.min.replace(tzinfo=dt.UTC), run.metadata.name),
    )
    finished = sorted((run for run in runs if run.status.phase in TERMINAL_PHASES), key=_finished_at)
    successes = [run for run in finished if run.status.phase == "Succeeded"]
    last_success = successes[-1] if successes else None
    return RunsSummary(
        active=tuple(RunRef(name=run.metadata.name, uid=run.metadata.uid) for run in active),
        last_successful=(
            LastRun(name=last_success.metadata.name, time=_finished_at(last_success)) if last_success else None
        ),
        last_finished=finished[-1] if finished else None,
    )
