"""kube.scheduling: due runs as the CronJob controller decides them, with an injected clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ml_connector.kube.scheduling import (
    MAX_MISSED,
    PlannedRun,
    due_runs,
    manual_run_name,
    next_schedule_time,
    plan_for,
    run_manifest,
    scheduled_run_name,
)
from ml_connector.spec import RunRef, SyncConnection, SyncConnectionSpec, SyncConnectionStatus, parse_connection

CREATED = dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def spec(**overrides: Any) -> SyncConnectionSpec:
    document: dict[str, Any] = {
        "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor"}, "m3": {"company": "100"}},
        "anaplan": {"workspace": "W", "model": "M", "auth": {"method": "basic", "credentialsSecretRef": {"name": "a"}}},
        "flows": [{"entity": "gl_postings", "importAction": "Load"}],
        "schedule": "0 * * * *",
    }
    document.update(overrides)
    return SyncConnectionSpec.model_validate(document)


def status(**fields: Any) -> SyncConnectionStatus:
    return SyncConnectionStatus.model_validate(fields)


def active(*names: str) -> list[RunRef]:
    return [RunRef(name=name) for name in names]


def test_nothing_due_before_the_first_schedule_time() -> None:
    plan = due_runs(spec(), status(), at("2026-03-01T00:30:00+00:00"), name="acme", created=CREATED)
    assert plan.create == ()
    assert plan.next_schedule_time == at("2026-03-01T01:00:00+00:00")
    assert plan.requeue_after == dt.timedelta(minutes=30)
    assert plan.last_schedule_time is None
    assert plan.events == ()


def test_a_due_time_creates_one_run_named_after_it() -> None:
    now = at("2026-03-01T01:00:07+00:00")
    plan = due_runs(spec(), status(), now, name="acme", created=CREATED)
    scheduled = at("2026-03-01T01:00:00+00:00")
    assert plan.create == (PlannedRun(f"acme-{int(scheduled.timestamp()) // 60}", "Scheduled", scheduled),)
    assert plan.last_schedule_time == scheduled
    assert plan.next_schedule_time == at("2026-03-01T02:00:00+00:00")
    # The same decision again (status written) creates nothing new.
    again = due_runs(spec(), status(lastScheduleTime=scheduled), now, name="acme", created=CREATED)
    assert again.create == ()


def test_missed_runs_after_downtime_collapse_into_the_most_recent() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    now = at("2026-03-01T05:10:00+00:00")  # 02:00, 03:00, 04:00, 05:00 missed
    plan = due_runs(spec(), status(lastScheduleTime=last), now, name="acme", created=CREATED)
    assert [run.scheduled_time for run in plan.create] == [at("2026-03-01T05:00:00+00:00")]
    assert [(e.type, e.reason) for e in plan.events] == [("Normal", "MissedSchedules")]
    assert "4 scheduled runs were missed" in plan.events[0].message


def test_more_than_100_missed_runs_start_one_and_warn() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    now = last + dt.timedelta(hours=MAX_MISSED + 30, minutes=5)
    plan = due_runs(spec(), status(lastScheduleTime=last), now, name="acme", created=CREATED)
    assert [run.scheduled_time for run in plan.create] == [now.replace(minute=0)]
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "TooManyMissedTimes")]
    assert "startingDeadlineSeconds" in plan.events[0].message


def test_starting_deadline_bounds_the_missed_window() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    connection = spec(startingDeadlineSeconds=600)
    # 5 hours down, but only the last 10 minutes count: 05:00 is 10 min late -> still started.
    plan = due_runs(connection, status(lastScheduleTime=last), at("2026-03-01T05:09:00+00:00"), name="acme")
    assert [run.scheduled_time for run in plan.create] == [at("2026-03-01T05:00:00+00:00")]
    assert plan.events == ()  # only one time fell within the window
    # 15 minutes late: outside the deadline, nothing runs until 06:00.
    late = due_runs(connection, status(lastScheduleTime=last), at("2026-03-01T05:15:00+00:00"), name="acme")
    assert late.create == ()
    assert late.next_schedule_time == at("2026-03-01T06:00:00+00:00")
    # Without a deadline the late run still starts (CronJob behaviour).
    assert due_runs(spec(), status(lastScheduleTime=last), at("2026-03-01T05:15:00+00:00"), name="acme").create


def test_suspend_stops_scheduled_runs_but_not_manual_requests() -> None:
    connection = spec(suspend=True)
    now = at("2026-03-01T05:00:00+00:00")
    plan = due_runs(connection, status(), now, name="acme", created=CREATED)
    assert plan.create == ()
    assert plan.next_schedule_time is None
    assert plan.requeue_after is None
    assert next_schedule_time(connection, now) is None
    manual = due_runs(connection, status(), now, name="acme", created=CREATED, requested_at="2026-03-01T04:59:00Z")
    assert [(run.trigger, run.requested_at) for run in manual.create] == [("Manual", "2026-03-01T04:59:00Z")]
    assert manual.last_handled_request_at == "2026-03-01T04:59:00Z"


def test_resuming_after_suspend_starts_the_most_recent_missed_time() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    plan = due_runs(spec(), status(lastScheduleTime=last), at("2026-03-01T03:30:00+00:00"), name="acme")
    assert [run.scheduled_time for run in plan.create] == [at("2026-03-01T03:00:00+00:00")]


def test_forbid_skips_while_a_run_is_active_and_starts_late_after() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    busy = status(lastScheduleTime=last, active=active("acme-older"))
    plan = due_runs(spec(), busy, at("2026-03-01T02:00:05+00:00"), name="acme")
    assert plan.create == ()
    assert plan.last_schedule_time == last  # not advanced: the time stays missed
    assert [(e.reason, "acme-older" in e.message) for e in plan.events] == [("RunAlreadyActive", True)]
    # The active run finishes at 02:20: the missed 02:00 run starts then (no deadline set).
    after = due_runs(spec(), status(lastScheduleTime=last), at("2026-03-01T02:20:00+00:00"), name="acme")
    assert [run.scheduled_time for run in after.create] == [at("2026-03-01T02:00:00+00:00")]


def test_allow_runs_alongside_and_replace_stops_the_active_ones() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    busy = status(lastScheduleTime=last, active=active("acme-a", "acme-b"))
    now = at("2026-03-01T02:00:05+00:00")
    allow = due_runs(spec(concurrencyPolicy="Allow"), busy, now, name="acme")
    assert len(allow.create) == 1
    assert allow.stop == ()
    replace = due_runs(spec(concurrencyPolicy="Replace"), busy, now, name="acme")
    assert len(replace.create) == 1
    assert replace.stop == ("acme-a", "acme-b")


def test_a_run_already_created_is_not_created_again() -> None:
    last = at("2026-03-01T01:00:00+00:00")
    scheduled = at("2026-03-01T02:00:00+00:00")
    name = scheduled_run_name("acme", scheduled)
    plan = due_runs(
        spec(), status(lastScheduleTime=last, active=active(name)), at("2026-03-01T02:00:30+00:00"), name="acme"
    )
    assert plan.create == ()
    assert plan.last_schedule_time == scheduled
    assert plan.events == ()


def test_manual_request_is_handled_once_per_token() -> None:
    now = at("2026-03-01T00:10:00+00:00")
    first = due_runs(spec(), status(), now, name="acme", created=CREATED, requested_at="t1")
    assert first.create == (PlannedRun(manual_run_name("acme", "t1"), "Manual", requested_at="t1"),)
    handled = status(lastHandledRequestAt="t1")
    assert due_runs(spec(), handled, now, name="acme", created=CREATED, requested_at="t1").create == ()
    second = due_runs(spec(), handled, now, name="acme", created=CREATED, requested_at="t2")
    assert [run.name for run in second.create] == [manual_run_name("acme", "t2")]
    assert manual_run_name("acme", "t1") != manual_run_name("acme", "t2")


def test_manual_request_waits_under_forbid() -> None:
    busy = status(active=active("acme-1"))
    now = at("2026-03-01T00:10:00+00:00")
    plan = due_runs(spec(), busy, now, name="acme", created=CREATED, requested_at="t1")
    assert plan.create == ()
    assert plan.last_handled_request_at is None  # still pending
    assert [e.reason for e in plan.events] == ["RunRequestDeferred"]
    replace = due_runs(spec(concurrencyPolicy="Replace"), busy, now, name="acme", created=CREATED, requested_at="t1")
    assert [run.trigger for run in replace.create] == ["Manual"]
    assert replace.stop == ("acme-1",)


def test_scheduled_and_manual_at_once_under_forbid_runs_the_scheduled_one_first() -> None:
    now = at("2026-03-01T01:00:05+00:00")
    plan = due_runs(spec(), status(), now, name="acme", created=CREATED, requested_at="t1")
    assert [run.trigger for run in plan.create] == ["Scheduled"]
    assert plan.last_handled_request_at is None


def test_manual_only_connection() -> None:
    connection = spec(schedule=None)
    plan = due_runs(connection, status(), at("2026-03-01T05:00:00+00:00"), name="acme", created=CREATED)
    assert plan.create == ()
    assert plan.next_schedule_time is None
    assert plan.error is None


def test_invalid_schedule_is_reported_not_raised() -> None:
    # Bypass validation: an object stored before a stricter operator version, say.
    broken = spec().model_copy(update={"schedule": "0 25 * * *"})
    plan = due_runs(broken, status(), at("2026-03-01T05:00:00+00:00"), name="acme", created=CREATED, requested_at="t")
    assert plan.error is not None
    assert "hour field: 25 is out of range" in plan.error
    assert [e.reason for e in plan.events] == ["InvalidSchedule"]
    assert [run.trigger for run in plan.create] == ["Manual"]  # manual runs still work


def test_schedule_follows_the_time_zone_across_dst() -> None:
    connection = spec(schedule="30 2 * * *", timeZone="Europe/Berlin")
    last = at("2026-03-28T02:30:00+01:00")
    plan = due_runs(connection, status(lastScheduleTime=last), at("2026-03-29T01:00:01+00:00"), name="acme")
    assert [run.scheduled_time for run in plan.create] == [at("2026-03-29T03:00:00+02:00")]
    assert plan.next_schedule_time == at("2026-03-30T02:30:00+02:00")


def test_run_names_are_deterministic_and_bounded() -> None:
    scheduled = at("2026-03-01T01:00:00+00:00")
    assert scheduled_run_name("acme", scheduled) == "acme-29538780"
    long = "a" * 60
    name = scheduled_run_name(long, scheduled)
    assert len(name) == 63
    assert name.endswith("-29538780")
    assert name == scheduled_run_name(long, scheduled)
    assert name != scheduled_run_name("a" * 59 + "b", scheduled)
    assert len(manual_run_name("x" * 253, "token")) <= 63


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        due_runs(spec(), status(), dt.datetime(2026, 3, 1), name="acme")


def connection_resource(**meta: Any) -> SyncConnection:
    document = {
        "apiVersion": "ml-connector.com/v1alpha1",
        "kind": "SyncConnection",
        "metadata": {
            "name": "acme",
            "namespace": "finance",
            "uid": "c-uid",
            "creationTimestamp": "2026-03-01T00:00:00Z",
            "labels": {"app.kubernetes.io/instance": "argo-app"},
            **meta,
        },
        "spec": spec().to_wire(),
    }
    return parse_connection(document)


def test_plan_for_reads_metadata() -> None:
    connection = connection_resource(annotations={"ml-connector.com/requested-at": "now-please"})
    plan = plan_for(connection, at("2026-03-01T00:20:00+00:00"))
    assert [run.trigger for run in plan.create] == ["Manual"]


def test_run_manifest_is_owned_and_carries_only_our_labels() -> None:
    connection = connection_resource()
    scheduled = at("2026-03-01T01:00:00+00:00")
    manifest = run_manifest(connection, PlannedRun("acme-29538780", "Scheduled", scheduled))
    assert manifest["metadata"]["name"] == "acme-29538780"
    assert manifest["metadata"]["namespace"] == "finance"
    assert manifest["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncConnection",
            "name": "acme",
            "uid": "c-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert "app.kubernetes.io/instance" not in manifest["metadata"]["labels"]
    assert manifest["metadata"]["labels"]["ml-connector.com/connection"] == "acme"
    assert manifest["spec"] == {
        "connectionRef": {"name": "acme"},
        "direction": "Load",
        "trigger": "Scheduled",
        "scheduledTime": "2026-03-01T01:00:00Z",
    }
    manual = run_manifest(connection, PlannedRun("acme-manual-x", "Manual", requested_at="tok"))
    assert manual["metadata"]["annotations"] == {"ml-connector.com/requested-at": "tok"}
