"""kube.runs, kube.status and kube.conditions: run state machine, history, connection status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ml_connector.kube.conditions import find_condition, set_condition, set_summary
from ml_connector.kube.runs import JobView, RunAction, next_step, runs_to_prune, stopped_status, summarize_runs
from ml_connector.kube.scheduling import SchedulePlan
from ml_connector.kube.status import connection_status
from ml_connector.spec import API_VERSION, SyncConnection, SyncRun, parse_connection, parse_run

T0 = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.UTC)


def later(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def run(name: str = "acme-1", created: dt.datetime = T0, **status: Any) -> SyncRun:
    return parse_run(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncRun",
            "metadata": {
                "name": name,
                "namespace": "fin",
                "uid": f"uid-{name}",
                "generation": 1,
                "creationTimestamp": created.isoformat(),
            },
            "spec": {"connectionRef": {"name": "acme"}},
            "status": status,
        }
    )


def job(**status: Any) -> JobView:
    return JobView.from_manifest({"metadata": {"name": "acme-1"}, "status": status})


def conditions(step_status: Any) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in step_status.conditions}


def test_a_new_run_asks_for_its_job() -> None:
    step = next_step(run(), None, T0)
    assert step.action is RunAction.CREATE_JOB
    assert step.status.phase == "Pending"
    assert step.status.job_name == "acme-1"
    assert step.status.observed_generation == 1
    assert conditions(step.status) == {"Ready": ("Unknown", "Pending"), "Reconciling": ("True", "Pending")}


def test_pending_until_a_pod_is_active_then_running() -> None:
    pending = next_step(run(phase="Pending", jobName="acme-1"), job(), later(1))
    assert (pending.action, pending.status.phase) == (RunAction.WAIT, "Pending")
    assert pending.status.message == "waiting for a pod of Job acme-1"
    running = next_step(
        run(phase="Pending", jobName="acme-1"), job(active=1, startTime="2026-03-01T01:01:00Z"), later(2)
    )
    assert running.status.phase == "Running"
    assert running.status.start_time == later(1)
    assert conditions(running.status) == {"Ready": ("Unknown", "Running"), "Reconciling": ("True", "Running")}


def test_waiting_for_lock_reported_by_the_worker_is_kept() -> None:
    waiting = run(phase="WaitingForLock", jobName="acme-1", message="waiting for lock held by fin/acme-0")
    step = next_step(waiting, job(active=1), later(3))
    assert step.status.phase == "WaitingForLock"
    assert step.status.message == "waiting for lock held by fin/acme-0"
    assert conditions(step.status)["Reconciling"] == ("True", "WaitingForLock")


def test_retries_are_visible_while_pending() -> None:
    step = next_step(run(phase="Running", jobName="acme-1"), job(failed=1), later(4))
    assert step.status.phase == "Pending"
    assert step.status.message == "Job acme-1 is retrying after 1 failed attempt(s)"


def test_complete_job_succeeds_the_run() -> None:
    state = run(phase="Running", jobName="acme-1", counts={"extracted": 10, "loaded": 9, "rejected": 1})
    done = job(
        succeeded=1,
        startTime="2026-03-01T01:01:00Z",
        completionTime="2026-03-01T01:05:00Z",
        conditions=[
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True", "lastTransitionTime": "2026-03-01T01:05:00Z"},
        ],
    )
    step = next_step(state, done, later(6))
    assert step.action is RunAction.DONE
    assert step.status.phase == "Succeeded"
    assert step.status.completion_time == later(5)
    assert step.status.message == "extracted 10, loaded 9, rejected 1, skipped 0"
    assert conditions(step.status) == {"Ready": ("True", "Succeeded")}  # Reconciling removed
    assert [e.reason for e in step.events] == ["Succeeded"]
    # Terminal runs are left alone.
    assert next_step(run(**step.status.to_wire()), done, later(60)).status == step.status


def test_failures_map_to_clear_messages() -> None:
    cases = {
        "BackoffLimitExceeded": "the worker failed 3 time(s), reaching backoffLimit",
        "DeadlineExceeded": "the run took longer than activeDeadlineSeconds",
        "PodFailurePolicy": "the worker stopped on an error a retry cannot fix (exit code 2",
    }
    for reason, words in cases.items():
        failed = job(
            failed=3,
            conditions=[
                {"type": "FailureTarget", "status": "True", "reason": reason, "message": "details"},
                {"type": "Failed", "status": "True", "reason": reason, "message": "details"},
            ],
        )
        step = next_step(run(phase="Running", jobName="acme-1"), failed, later(7))
        assert step.status.phase == "Failed"
        assert step.status.message is not None
        assert step.status.message.startswith(words), step.status.message
        assert step.status.message.endswith(": details")
        assert conditions(step.status) == {"Ready": ("False", reason), "Stalled": ("True", reason)}
        assert [(e.type, e.reason) for e in step.events] == [("Warning", reason)]


def test_failure_target_is_already_a_failure() -> None:
    failing = job(conditions=[{"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded"}])
    assert next_step(run(phase="Running", jobName="acme-1"), failing, later(8)).status.phase == "Failed"


def test_a_job_that_vanished_fails_the_run() -> None:
    step = next_step(run(phase="Running", jobName="acme-1"), None, later(9))
    assert step.status.phase == "Failed"
    assert step.status.message == "Job acme-1 disappeared before the run finished"
    # ...but a Pending run whose Job is not visible yet just asks again (AlreadyExists is fine).
    assert next_step(run(phase="Pending", jobName="acme-1"), None, later(9)).action is RunAction.CREATE_JOB


def test_replaced_run() -> None:
    status = stopped_status(run(phase="Running"), later(10), replaced_by="acme-2")
    assert status.phase == "Failed"
    assert status.message == "stopped: replaced by acme-2 (concurrencyPolicy Replace)"
    assert conditions(status) == {"Ready": ("False", "Replaced"), "Stalled": ("True", "Replaced")}


def test_history_pruning_keeps_the_newest_of_each_kind() -> None:
    runs = [
        run("s1", completionTime=later(10).isoformat(), phase="Succeeded"),
        run("s2", completionTime=later(20).isoformat(), phase="Succeeded"),
        run("s3", completionTime=later(30).isoformat(), phase="Succeeded"),
        run("f1", completionTime=later(15).isoformat(), phase="Failed"),
        run("f2", completionTime=later(25).isoformat(), phase="Failed"),
        run("active", phase="Running"),
        run("new"),
    ]
    assert runs_to_prune(runs, successful_limit=2, failed_limit=1) == ["s1", "f1"]
    assert runs_to_prune(runs, successful_limit=0, failed_limit=0) == ["s1", "f1", "s2", "f2", "s3"]
    assert runs_to_prune(runs, successful_limit=10, failed_limit=10) == []


def test_summary_of_a_connections_runs() -> None:
    runs = [
        run("old-ok", created=later(0), completionTime=later(5).isoformat(), phase="Succeeded"),
        run("later-fail", created=later(10), completionTime=later(15).isoformat(), phase="Failed"),
        run("b-active", created=later(20), phase="Running"),
        run("a-active", created=later(20)),
    ]
    summary = summarize_runs(runs)
    assert [ref.name for ref in summary.active] == ["a-active", "b-active"]
    assert summary.last_successful is not None
    assert (summary.last_successful.name, summary.last_successful.time) == ("old-ok", later(5))
    assert summary.last_finished is not None
    assert summary.last_finished.metadata.name == "later-fail"


def connection() -> SyncConnection:
    return parse_connection(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncConnection",
            "metadata": {"name": "acme", "generation": 4},
            "spec": {
                "infor": {"productLine": "FSM", "credentialsSecretRef": {"name": "infor"}},
                "anaplan": {
                    "workspace": "W",
                    "model": "M",
                    "auth": {"method": "basic", "credentialsSecretRef": {"name": "a"}},
                },
                "flows": [{"entity": "payments", "importAction": "Load"}],
                "schedule": "0 * * * *",
            },
        }
    )


def test_connection_status_conditions() -> None:
    plan = SchedulePlan(next_schedule_time=later(60), last_schedule_time=T0)
    fresh = connection_status(connection(), plan, [], later(1))
    assert fresh.observed_generation == 4
    assert conditions(fresh) == {"Ready": ("True", "Scheduled")}
    assert fresh.conditions[0].message == "next run at 2026-03-01T02:00:00Z"
    assert fresh.next_schedule_time == later(60)

    busy = connection_status(connection(), plan, [run("acme-1", phase="Running")], later(2))
    assert conditions(busy) == {"Ready": ("Unknown", "RunActive"), "Reconciling": ("True", "RunActive")}
    assert [ref.name for ref in busy.active] == ["acme-1"]

    failed_run = run("acme-1", phase="Failed", message="bad credentials", completionTime=later(3).isoformat())
    failed = connection_status(connection(), plan, [failed_run], later(3))
    assert conditions(failed) == {"Ready": ("False", "RunFailed")}
    assert failed.conditions[0].message.startswith("acme-1 failed: bad credentials; next run at")
    assert failed.active == []

    broken = connection_status(connection(), SchedulePlan(error="cannot evaluate the schedule: x"), [], later(4))
    assert conditions(broken) == {"Ready": ("False", "InvalidSchedule"), "Stalled": ("True", "InvalidSchedule")}


def test_conditions_change_transition_time_only_with_status() -> None:
    first = set_condition([], "Ready", "True", "Scheduled", "next run at 1", now=T0, generation=1)
    same = set_condition(first, "Ready", "True", "Succeeded", "next run at 2", now=later(5), generation=2)
    assert same[0].last_transition_time == T0
    assert (same[0].reason, same[0].message, same[0].observed_generation) == ("Succeeded", "next run at 2", 2)
    flipped = set_condition(same, "Ready", "False", "RunFailed", "boom", now=later(9))
    assert flipped[0].last_transition_time == later(9)
    summary = set_summary(flipped, ready="Unknown", reason="RunActive", message="m", reconciling=True, now=later(10))
    assert [c.type for c in summary] == ["Ready", "Reconciling"]
    assert (
        find_condition(set_summary(summary, ready="True", reason="ok", message="", now=later(11)), "Reconciling")
        is None
    )
