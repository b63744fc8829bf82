"""The SyncConnection status from the schedule plan and the connection's runs (pure).

Conditions (kstatus): ``Stalled=True`` (and ``Ready=False``) when the schedule or time zone cannot be
evaluated; ``Reconciling=True`` (``Ready=Unknown``) while a run is active; otherwise ``Ready`` follows
the last finished run (``False`` with its message when it failed; the next run retries, so that is
not Stalled), or is ``True`` with the next schedule time when nothing has run yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from ml_connector.kube.conditions import set_summary
from ml_connector.kube.runs import summarize_runs
from ml_connector.kube.scheduling import SchedulePlan
from ml_connector.spec import SyncConnection, SyncConnectionStatus, SyncRun

__all__ = ["connection_status"]


def _when(plan: SchedulePlan, connection: SyncConnection) -> str:
    if connection.spec.schedule is None:
        return "manual runs only"
    if connection.spec.suspend:
        return "suspended"
    if plan.next_schedule_time is None:
        return "no further scheduled run"
    return f"next run at {plan.next_schedule_time.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def connection_status(
    connection: SyncConnection, plan: SchedulePlan, runs: Sequence[SyncRun], now: dt.datetime
) -> SyncConnectionStatus:
    """The new status of ``connection`` after acting on ``plan``, given its runs (as listed)."""
    status = connection.status
    generation = connection.metadata.generation
    summary = summarize_runs(runs)
    when = _when(plan, connection)
    if plan.error is not None:
        conditions = set_summary(
            status.conditions,
            ready="False",
            reason="InvalidSchedule",
            message=plan.error,
            stalled=True,
            now=now,
            generation=generation,
        )
    elif summary.active:
        names = ", ".join(ref.name for ref in summary.active)
        conditions = set_summary(
            status.conditions,
            ready="Unknown",
            reason="RunActive",
            message=f"running {names}",
            reconciling=True,
            now=now,
            generation=generation,
        )
    elif summary.last_finished is not None and summary.last_finished.status.phase == "Failed":
        last = summary.last_finished
        conditions = set_summary(
            status.conditions,
            ready="False",
            reason="RunFailed",
            message=f"{last.metadata.name} failed: {last.status.message or 'see its status'}; {when}",
            now=now,
            generation=generation,
        )
    else:
        reason = "Succeeded" if summary.last_successful is not None else "Scheduled"
        conditions = set_summary(
            status.conditions, ready="True", reason=reason, message=when, now=now, generation=generation
        )
    return status.model_copy(
        update={
            "observed_generation": generation,
            "conditions": conditions,
            "last_schedule_time": plan.last_schedule_time,
            "next_schedule_time": plan.next_schedule_time,
            "last_handled_request_at": plan.last_handled_request_at,
            "last_successful_run": summary.last_successful or status.last_successful_run,
            "active": list(summary.active),
        }
    )
