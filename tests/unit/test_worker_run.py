"""The worker's glue without an API server: status writes, the Lease-backed model lock, settings, Job defaults."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from ml_connector.kube.api import KubeError, ResourceType
from ml_connector.kube.defaults import WorkerDefaults, WorkerDefaultsError
from ml_connector.kube.lease import LeaseConflict, LeaseRecord, lease_name_for_model
from ml_connector.kube.worker import (
    LeaseModelLock,
    RunStatusWriter,
    RunStopped,
    WorkerConfigError,
    WorkerSettings,
    _StatusHook,
    result_status,
)
from ml_connector.spec import Discovered, LockInfo, parse_connection, parse_run
from ml_connector.sync.progress import ProgressEvent
from ml_connector.sync.result import FlowResult, RunResult

NS = "finance"
NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


class FakeRuns:
    """``get`` and ``patch`` of one SyncRun, with resourceVersion preconditions."""

    def __init__(self, status: dict[str, Any] | None = None) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncRun",
            "metadata": {"name": "acme-1", "namespace": NS, "uid": "u1", "generation": 1, "resourceVersion": "1"},
            "spec": {"connectionRef": {"name": "acme"}},
            "status": status or {},
        }
        self.patches: list[Mapping[str, Any]] = []
        self.conflicts = 0

    async def get(self, kind: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.body)

    async def patch(
        self,
        kind: ResourceType,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        resource_version: str | None = None,
    ) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            self.body["metadata"]["resourceVersion"] = str(int(self.body["metadata"]["resourceVersion"]) + 1)
            raise KubeError(409, "Conflict", "modified", action="patch")
        assert subresource == "status"
        assert resource_version == self.body["metadata"]["resourceVersion"]
        self.patches.append(patch)
        _merge(self.body["status"], patch["status"])
        self.body["metadata"]["resourceVersion"] = str(int(self.body["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(self.body)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386, as the API server applies a merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def writer(runs: FakeRuns) -> RunStatusWriter:
    return RunStatusWriter(runs, NS, "acme-1", clock=lambda: NOW)  # type: ignore[arg-type]


async def test_the_worker_reports_waiting_and_running_with_the_lease() -> None:
    runs = FakeRuns({"phase": "Pending", "jobName": "acme-1"})
    status = writer(runs)

    await status.phase("WaitingForLock", "waiting for the model Lease L, held by finance/acme-0",
                       lock=LockInfo(lease="L", holder="finance/acme-0"))  # fmt: skip
    body = runs.body["status"]
    assert (body["phase"], body["lock"]) == ("WaitingForLock", {"lease": "L", "holder": "finance/acme-0"})
    assert body["startTime"] == "2026-03-02T09:30:00Z"
    assert {c["type"]: c["status"] for c in body["conditions"]} == {"Ready": "Unknown", "Reconciling": "True"}

    await status.phase("Running", "holding the model Lease L", lock=LockInfo(lease="L"))
    assert runs.body["status"]["lock"] == {"lease": "L"}
    assert runs.body["status"]["startTime"] == "2026-03-02T09:30:00Z"  # kept


async def test_status_writes_retry_on_conflict_and_never_touch_a_finished_run() -> None:
    runs = FakeRuns({"phase": "Running"})
    runs.conflicts = 2
    await writer(runs).message("uploading")
    assert runs.body["status"]["message"] == "uploading"

    stopped = FakeRuns({"phase": "Failed", "message": "stopped: replaced by acme-2"})
    with pytest.raises(RunStopped, match="already Failed"):
        await writer(stopped).message("still going")
    assert stopped.patches == []


def run_result(**changes: Any) -> RunResult:
    result = RunResult(
        run_id="finance/acme-1",
        connection="acme",
        direction="Load",
        status="Succeeded",
        flows=(
            FlowResult("gl_accounts", "gl_accounts", extracted=5, loaded=5),
            FlowResult("gl_postings", "gl_postings", extracted=10, replayed=2, loaded=9, rejected=2, skipped=1),
        ),
        discovered=Discovered(model_id="M1"),
        lock_wait_seconds=1.23456,
        api_errors={"anaplan": {"429": 2}},
        message="loaded 14 of 17 records",
    )
    return replace(result, **changes)


async def test_the_result_goes_into_the_status_and_a_failure_into_error() -> None:
    runs = FakeRuns({"phase": "Running"})
    await writer(runs).finished(run_result())
    status = runs.body["status"]
    assert status["counts"] == {"extracted": 17, "loaded": 14, "rejected": 2, "skipped": 1}
    assert status["flowCounts"]["gl_postings"] == {"extracted": 12, "loaded": 9, "rejected": 2, "skipped": 1}
    assert status["discovered"]["modelId"] == "M1"
    assert status["lockWaitSeconds"] == 1.235
    assert status["apiErrors"] == {"anaplan": {"429": 2}}
    assert status["message"] == "loaded 14 of 17 records"
    assert "error" not in status

    failed = result_status(None, error="Anaplan, while discovering: import 'Load X' not found")
    assert failed == {
        "error": "Anaplan, while discovering: import 'Load X' not found",
        "message": "Anaplan, while discovering: import 'Load X' not found",
    }


async def test_the_status_hook_writes_milestones_not_every_step() -> None:
    runs = FakeRuns({"phase": "Running"})
    hook = _StatusHook(writer(runs))
    await hook(ProgressEvent("step", "extracting", flow="gl_postings"))
    await hook(ProgressEvent("step", "uploading", flow="gl_postings"))  # within the throttle window: skipped
    await hook(ProgressEvent("lock", "waiting for the model lock held by x"))  # reported by the lock itself
    await hook(ProgressEvent("flow", "gl_postings: loaded 9", flow="gl_postings"))
    assert [patch["status"]["message"] for patch in runs.patches] == [
        "[gl_postings] extracting",
        "[gl_postings] gl_postings: loaded 9",
    ]


class FakeLeases:
    def __init__(self) -> None:
        self.items: dict[str, LeaseRecord] = {}
        self.version = 0

    def _stamp(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        return replace(record, resource_version=str(self.version))

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        return self.items.get(name)

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        if name in self.items:
            raise LeaseConflict("exists")
        self.items[name] = self._stamp(record)
        return self.items[name]

    async def replace(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        current = self.items.get(name)
        if current is None or current.resource_version != record.resource_version:
            raise LeaseConflict("conflict")
        self.items[name] = self._stamp(record)
        return self.items[name]


async def test_the_model_lock_is_the_models_lease_and_a_second_run_waits_for_it() -> None:
    leases = FakeLeases()
    settings = WorkerSettings(lease_duration=30, lease_renew=0.05, lease_retry=0.01)
    reported: list[tuple[str, str | None]] = []
    acquired: list[str] = []
    told: list[str] = []
    waiting = asyncio.Event()

    async def on_wait(lease: str, record: LeaseRecord) -> None:
        reported.append((lease, record.holder_name))
        waiting.set()

    async def on_acquired(lease: str, waited: float) -> None:
        acquired.append(lease)

    first = LeaseModelLock(leases, NS, holder="u-a", holder_name=f"{NS}/acme-a", settings=settings)
    second = LeaseModelLock(
        leases,
        NS,
        holder="u-b",
        holder_name=f"{NS}/acme-b",
        settings=settings,
        on_wait=on_wait,
        on_acquired=on_acquired,
    )
    name = lease_name_for_model("ABC123")
    async with asyncio.timeout(10):
        async with first.hold("ABC123") as held:
            assert held.waited == 0
            assert leases.items[name].holder == "u-a"
            assert leases.items[name].annotations["ml-connector.com/anaplan-model"] == "ABC123"

            async def pipeline_on_wait(holder: str) -> None:
                told.append(holder)

            waiter = asyncio.create_task(_hold(second, "ABC123", pipeline_on_wait))
            await waiting.wait()
            assert not waiter.done()
        grant = await waiter
    assert reported == [(name, f"{NS}/acme-a")]
    assert told == [f"{NS}/acme-a"]
    assert acquired == [name]
    assert grant.waited > 0
    assert leases.items[name].holder is None  # released after the block


async def _hold(lock: LeaseModelLock, model: str, on_wait: Any) -> Any:
    async with lock.hold(model, on_wait=on_wait) as grant:
        return grant


def test_worker_settings_from_the_environment() -> None:
    assert WorkerSettings.from_environ({}) == WorkerSettings(lease_duration=60, lease_renew=15, lease_retry=10)
    settings = WorkerSettings.from_environ(
        {
            "ML_CONNECTOR_LEASE_DURATION_SECONDS": "4",
            "ML_CONNECTOR_LEASE_RENEW_SECONDS": "0.5",
            "ML_CONNECTOR_TASK_POLL_SECONDS": "0.1",
        }
    )
    assert (settings.lease_duration, settings.lease_renew, settings.task_poll) == (4, 0.5, 0.1)
    lease = settings.lease(FakeLeases(), NS, "l", "h")
    assert lease.duration > lease.renew_deadline > lease.renew_every > 0
    with pytest.raises(WorkerConfigError, match="ML_CONNECTOR_LEASE_DURATION_SECONDS='soon' is not a number"):
        WorkerSettings.from_environ({"ML_CONNECTOR_LEASE_DURATION_SECONDS": "soon"})


def connection(**spec: Any) -> Any:
    return parse_connection(
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncConnection",
            "metadata": {"name": "acme", "namespace": NS, "uid": "c1"},
            "spec": {
                "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor"}, "m3": {"company": "100"}},
                "anaplan": {
                    "workspace": "W",
                    "model": "M",
                    "auth": {"method": "basic", "credentialsSecretRef": {"name": "ap"}},
                },
                "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
                **spec,
            },
        }
    )


CHART_ENV = {
    "ML_CONNECTOR_WORKER_IMAGE": "ghcr.io/ml-connector/ml-connector:0.1.0",
    "ML_CONNECTOR_WORKER_SERVICE_ACCOUNT": "mlc-ml-connector-worker",
    "ML_CONNECTOR_WORKER_RESOURCES": '{"limits":{"memory":"512Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}',
    "ML_CONNECTOR_WORKER_BACKOFF_LIMIT": "2",
    "ML_CONNECTOR_WORKER_ACTIVE_DEADLINE_SECONDS": "7200",
    "ML_CONNECTOR_WORKER_TTL_SECONDS_AFTER_FINISHED": "86400",
    "ML_CONNECTOR_WORKER_IMAGE_PULL_SECRETS": '[{"name":"regcred"}]',
    "ML_CONNECTOR_AUDIT_STORE": "sqlite",
    "ML_CONNECTOR_AUDIT_PVC": "mlc-ml-connector-audit",
}


def test_the_charts_worker_settings_fill_in_what_the_connection_leaves_at_the_default() -> None:
    defaults = WorkerDefaults.from_environ(CHART_ENV)
    run = parse_run(
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncRun",
            "metadata": {"name": "acme-1", "namespace": NS, "uid": "r1"},
            "spec": {"connectionRef": {"name": "acme"}},
        }
    )
    job = defaults.job_for(run, connection())
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/ml-connector/ml-connector:0.1.0"
    assert pod["serviceAccountName"] == "mlc-ml-connector-worker"
    assert container["resources"]["limits"] == {"memory": "512Mi"}
    assert job["spec"]["activeDeadlineSeconds"] == 7200
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert {"name": "audit-data", "persistentVolumeClaim": {"claimName": "mlc-ml-connector-audit"}} in pod["volumes"]

    own = connection(jobTemplate={"serviceAccountName": "team-worker", "activeDeadlineSeconds": 600},
                     audit={"sqlite": {"path": "/data/audit.db"}})  # fmt: skip
    custom = defaults.job_for(run, own)
    assert custom["spec"]["template"]["spec"]["serviceAccountName"] == "team-worker"
    assert custom["spec"]["activeDeadlineSeconds"] == 600
    assert {"name": "audit-data", "emptyDir": {}} in custom["spec"]["template"]["spec"]["volumes"]


def test_a_postgres_audit_store_is_referenced_never_read() -> None:
    defaults = WorkerDefaults.from_environ(
        {"ML_CONNECTOR_AUDIT_STORE": "postgres", "ML_CONNECTOR_AUDIT_DSN_SECRET": "audit-db/dsn"}
    )
    effective = defaults.effective(connection())
    assert effective.spec.audit is not None
    assert effective.spec.audit.postgres is not None
    assert (effective.spec.audit.postgres.dsn_secret_ref.name, effective.spec.audit.postgres.dsn_secret_ref.key) == (
        "audit-db",
        "dsn",
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ML_CONNECTOR_WORKER_BACKOFF_LIMIT": "two"}, "ML_CONNECTOR_WORKER_BACKOFF_LIMIT='two' is not a whole number"),
        ({"ML_CONNECTOR_WORKER_RESOURCES": "{"}, "ML_CONNECTOR_WORKER_RESOURCES is not valid JSON"),
        ({"ML_CONNECTOR_AUDIT_STORE": "mysql"}, "expected sqlite or postgres"),
        (
            {"ML_CONNECTOR_AUDIT_STORE": "postgres", "ML_CONNECTOR_AUDIT_DSN_SECRET": "db"},
            "expected <secret name>/<key>",
        ),
        ({"ML_CONNECTOR_WORKER_IMAGE_PULL_SECRETS": '{"name": "x"}'}, "must be a JSON list"),
    ],
)
def test_bad_chart_settings_are_named(environ: dict[str, str], message: str) -> None:
    with pytest.raises(WorkerDefaultsError, match=message.replace("(", r"\(").replace("{", r"\{")):
        WorkerDefaults.from_environ(environ)
