"""When a SyncConnection runs: a pure function of spec, status and an injected clock.

:func:`due_runs` mirrors the Kubernetes CronJob controller (``mostRecentScheduleTime`` and
``syncCronJob``):

* the schedule times missed since ``status.lastScheduleTime`` (or the creation time), counted no
  further back than ``startingDeadlineSeconds``, collapse into **one** run for the most recent of
  them (more than 100 missed also raises a ``TooManyMissedTimes`` warning); a time missed by more
  than ``startingDeadlineSeconds`` is skipped;
* ``suspend`` stops scheduled runs (runs already started go on);
* ``concurrencyPolicy``: ``Forbid`` creates nothing while a run is active and leaves
  ``lastScheduleTime`` alone, so the missed time is started late once the active run is done (within
  the deadline); ``Allow`` runs alongside; ``Replace`` asks to stop the active runs first;
* a manual run is requested with the annotation ``ml-connector.com/requested-at=<token>``; each new
  token starts one run (echoed into ``status.lastHandledRequestAt``, as Flux's ``requestedAt``). It is
  honoured while suspended (like ``kubectl create job --from=cronjob``) and, under ``Forbid``, waits
  until no run is active.

Run names are deterministic, so creating one twice is a harmless AlreadyExists: ``<connection>-<unix
minutes of the scheduled time>`` (CronJob's form) and ``<connection>-manual-<hash of the token>``,
both at most 63 characters (a hash of the connection name replaces its tail when too long).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from ml_connector.cron import CronError, CronSchedule, load_zone, parse_cron
from ml_connector.kube.events import Event
from ml_connector.kube.naming import bounded_name, child_labels, short_hash
from ml_connector.spec import (
    API_VERSION,
    REQUESTED_AT_ANNOTATION,
    SyncConnection,
    SyncConnectionSpec,
    SyncConnectionStatus,
)

__all__ = [
    "MAX_MISSED",
    "PlannedRun",
    "SchedulePlan",
    "due_runs",
    "manual_run_name",
    "next_schedule_time",
    "plan_for",
    "run_manifest",
    "scheduled_run_name",
]

#: CronJob's limit: past this many missed times, warn (the clock or the deadline is probably wrong).
MAX_MISSED = 100


@dataclass(frozen=True)
class PlannedRun:
    """A SyncRun to create."""

    name: str
    trigger: Literal["Scheduled", "Manual"]
    scheduled_time: dt.datetime | None = None
    requested_at: str | None = None


@dataclass(frozen=True)
class SchedulePlan:
    """What to do now, and what to write into the status."""

    create: tuple[PlannedRun, ...] = ()
    #: Active runs to stop before the new one starts (concurrencyPolicy Replace).
    stop: tuple[str, ...] = ()
    last_schedule_time: dt.datetime | None = None
    next_schedule_time: dt.datetime | None = None
    last_handled_request_at: str | None = None
    #: Reconcile again after this long (until the next schedule time), if anything is scheduled.
    requeue_after: dt.timedelta | None = None
    events: tuple[Event, ...] = field(default_factory=tuple)
    #: Why the schedule cannot be evaluated (invalid cron or time zone): the connection is Stalled.
    error: str | None = None


def scheduled_run_name(connection: str, scheduled: dt.datetime) -> str:
    """``<connection>-<unix minutes>``, as CronJob names its Jobs."""
    minutes = int(_utc(scheduled).timestamp()) // 60
    return bounded_name(connection, str(minutes))


def manual_run_name(connection: str, token: str) -> str:
    """``<connection>-manual-<hash of the requested-at token>``."""
    return bounded_name(connection, f"manual-{short_hash(token, 10)}")


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; the clock must give aware datetimes")
    return moment.astimezone(dt.UTC)


def _schedule(spec: SyncConnectionSpec) -> tuple[CronSchedule, ZoneInfo] | None:
    if spec.schedule is None:
        return None
    return parse_cron(spec.schedule), load_zone(spec.time_zone)


def next_schedule_time(spec: SyncConnectionSpec, now: dt.datetime) -> dt.datetime | None:
    """The next scheduled time after ``now``; None when unscheduled or suspended."""
    parsed = _schedule(spec)
    if parsed is None or spec.suspend:
        return None
    schedule, zone = parsed
    return schedule.next_after(_utc(now), zone)


def due_runs(
    spec: SyncConnectionSpec,
    status: SyncConnectionStatus,
    now: dt.datetime,
    *,
    name: str,
    created: dt.datetime | None = None,
    requested_at: str | None = None,
) -> SchedulePlan:
    """Decide which runs to create at ``now`` for the connection ``name`` (see the module docstring).

    ``created`` is the connection's creation time (the start of the first schedule window);
    ``requested_at`` the value of its ``ml-connector.com/requested-at`` annotation, if any.
    """
    now = _utc(now)
    active = [ref.name for ref in status.active]
    events: list[Event] = []
    create: list[PlannedRun] = []
    stop: list[str] = []
    last_schedule = status.last_schedule_time
    next_time: dt.datetime | None = None
    error: str | None = None

    try:
        parsed = _schedule(spec)
    except CronError as exc:
        parsed, error = None, f"cannot evaluate the schedule: {exc}"
        events.append(Event("Warning", "InvalidSchedule", error))

    if parsed is not None and not spec.suspend:
        schedule, zone = parsed
        earliest = _utc(last_schedule or created or now)
        deadline = spec.starting_deadline_seconds
        if deadline is not None:
            earliest = max(earliest, now - dt.timedelta(seconds=deadline))
        missed = schedule.between(earliest, now, zone, limit=MAX_MISSED + 1)
        if missed:
            most_recent = missed[-1]
            if len(missed) > MAX_MISSED:
                most_recent = schedule.latest_at_or_before(now, zone) or most_recent
                events.append(
                    Event(
                        "Warning",
                        "TooManyMissedTimes",
                        f"more than {MAX_MISSED} scheduled runs were missed since {earliest.isoformat()}; "
                        f"starting only the most recent ({most_recent.isoformat()}). "
                        "Set or decrease spec.startingDeadlineSeconds, or check the clock.",
                    )
                )
            elif len(missed) > 1:
                events.append(
                    Event(
                        "Normal",
                        "MissedSchedules",
                        f"{len(missed)} scheduled runs were missed; starting only the most recent "
                        f"({most_recent.isoformat()})",
                    )
                )
            run_name = scheduled_run_name(name, most_recent)
            if deadline is not None and most_recent + dt.timedelta(seconds=deadline) < now:
                events.append(
                    Event(
                        "Warning",
                        "MissedStartingDeadline",
                        f"the run scheduled at {most_recent.isoformat()} is more than "
                        f"{deadline}s late (startingDeadlineSeconds); skipped",
                    )
                )
            elif run_name in active:
                last_schedule = most_recent  # created before; the status update was lost
            elif spec.concurrency_policy == "Forbid" and active:
                events.append(
                    Event(
                        "Normal",
                        "RunAlreadyActive",
                        f"not starting the run scheduled at {most_recent.isoformat()}: {', '.join(active)} "
                        "still active (concurrencyPolicy Forbid)",
                    )
                )
            else:
                if spec.concurrency_policy == "Replace":
                    stop.extend(active)
                create.append(PlannedRun(run_name, "Scheduled", scheduled_time=most_recent))
                last_schedule = most_recent
        next_time = schedule.next_after(now, zone)

    handled = status.last_handled_request_at
    if requested_at and requested_at != handled:
        run_name = manual_run_name(name, requested_at)
        busy = [run for run in [*active, *(planned.name for planned in create)] if run not in stop]
        if run_name in busy:
            handled = requested_at
        elif spec.concurrency_policy == "Forbid" and busy:
            events.append(
                Event(
                    "Normal",
                    "RunRequestDeferred",
                    f"manual run requested at {requested_at} waits for {', '.join(busy)} (concurrencyPolicy Forbid)",
                )
            )
        else:
            if spec.concurrency_policy == "Replace":
                stop.extend(run for run in active if run not in stop)
            create.append(PlannedRun(run_name, "Manual", requested_at=requested_at))
            handled = requested_at

    return SchedulePlan(
        create=tuple(create),
        stop=tuple(stop),
        last_schedule_time=last_schedule,
        next_schedule_time=next_time,
        last_handled_request_at=handled,
        requeue_after=(next_time - now) if next_time is not None else None,
        events=tuple(events),
        error=error,
    )


def plan_for(connection: SyncConnection, now: dt.datetime) -> SchedulePlan:
    """:func:`due_runs` for a whole SyncConnection resource."""
    meta = connection.metadata
    return due_runs(
        connection.spec,
        connection.status,
        now,
        name=meta.name,
        created=meta.creation_timestamp,
        requested_at=meta.annotations.get(REQUESTED_AT_ANNOTATION),
    )


def run_manifest(connection: SyncConnection, planned: PlannedRun, *, direction: str = "Load") -> dict[str, Any]:
    """The SyncRun for ``planned``, owned by the connection (no labels copied from it)."""
    meta = connection.metadata
    if meta.uid is None:
        raise ValueError(f"SyncConnection {meta.name} has no uid; read it from the API server first")
    spec: dict[str, Any] = {"connectionRef": {"name": meta.name}, "direction": direction, "trigger": planned.trigger}
    if planned.scheduled_time is not None:
        spec["scheduledTime"] = _utc(planned.scheduled_time).strftime("%Y-%m-%dT%H:%M:%SZ")
    annotations = {REQUESTED_AT_ANNOTATION: planned.requested_at} if planned.requested_at else {}
    metadata: dict[str, Any] = {
        "name": planned.name,
        "labels": child_labels(meta.name),
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "SyncConnection",
                "name": meta.name,
                "uid": meta.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if meta.namespace:
        metadata["namespace"] = meta.namespace
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": API_VERSION, "kind": "SyncRun", "metadata": metadata, "spec": spec}
