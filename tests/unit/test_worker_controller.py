"""The operator's glue without kopf or an API server: the controller on an in-memory cluster, and the one place
that maps errors to kopf's (``handlers._boundary``)."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from ml_connector.kube.api import JOBS, SYNCCONNECTIONS, SYNCRUNS, KubeError, ResourceType, merge_patch
from ml_connector.kube.controller import (
    METRICS_RECORDED_ANNOTATION,
    Controller,
    InvalidObject,
    Reconciled,
    Retry,
    run_outcome,
)
from ml_connector.kube.defaults import WorkerDefaults
from ml_connector.kube.events import Event
from ml_connector.kube.handlers import IndexViews, _boundary
from ml_connector.kube.jobs import job_name
from ml_connector.kube.scheduling import manual_run_name
from ml_connector.metrics import Metrics
from ml_connector.spec import REQUESTED_AT_ANNOTATION, parse_run

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
NS = "finance"


class FakeCluster:
    """Objects by (plural, namespace, name) with resourceVersions; 409 on stale writes and on re-creation."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[tuple[str, Event]] = []
        self.version = 0
        self.calls: list[str] = []
        self.refuse_create: dict[str, KubeError] = {}

    def _bump(self, body: dict[str, Any]) -> None:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)

    async def get(self, kind: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {kind.plural}/{name}")
        found = self.objects.get((kind.plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create(self, kind: ResourceType, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.calls.append(f"create {kind.plural}/{name}")
        if kind.plural in self.refuse_create:
            raise self.refuse_create[kind.plural]
        if (kind.plural, namespace, name) in self.objects:
            raise KubeError(409, "AlreadyExists", f"{name} already exists", action="create")
        stored = copy.deepcopy(dict(body))
        stored["metadata"].update(
            namespace=namespace, uid=f"uid-{name}", generation=1, creationTimestamp=NOW.isoformat()
        )
        self._bump(stored)
        self.objects[(kind.plural, namespace, name)] = stored
        return copy.deepcopy(stored)

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
        self.calls.append(f"patch {kind.plural}/{name}" + (f"/{subresource}" if subresource else ""))
        stored = self.objects.get((kind.plural, namespace, name))
        if stored is None:
            raise KubeError(404, "NotFound", name, action="patch")
        if resource_version is not None and resource_version != stored["metadata"]["resourceVersion"]:
            raise KubeError(409, "Conflict", "the object has been modified", action="patch")
        _merge(stored, copy.deepcopy(dict(patch)))
        self._bump(stored)
        return copy.deepcopy(stored)

    async def delete(self, kind: ResourceType, namespace: str, name: str) -> bool:
        self.calls.append(f"delete {kind.plural}/{name}")
        return self.objects.pop((kind.plural, namespace, name), None) is not None

    async def post_event(self, involved: Mapping[str, Any], event: Event, *, now: dt.datetime | None = None) -> None:
        self.events.append((involved["metadata"]["name"], event))

    # -- helpers for tests --------------------------------------------------------------------------

    def put(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body["metadata"].setdefault("namespace", NS)
        body["metadata"].setdefault("uid", f"uid-{body['metadata']['name']}")
        body["metadata"].setdefault("generation", 1)
        body["metadata"].setdefault("creationTimestamp", NOW.isoformat())
        self._bump(body)
        self.objects[(plural, NS, body["metadata"]["name"])] = body
        return copy.deepcopy(body)

    def of(self, plural: str, name: str) -> dict[str, Any]:
        return self.objects[(plural, NS, name)]

    def reasons(self, name: str) -> list[str]:
        return [event.reason for involved, event in self.events if involved == name]


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


class StoreViews:
    """Views straight on the fake store (the operator's caches, never behind)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def connection(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.cluster.objects.get(("syncconnections", namespace, name))

    def runs(self, namespace: str, connection: str) -> Sequence[Mapping[str, Any]]:
        return [
            body
            for (plural, ns, _), body in self.cluster.objects.items()
            if plural == "syncruns" and ns == namespace and body["spec"]["connectionRef"]["name"] == connection
        ]

    def job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.cluster.objects.get(("jobs", namespace, name))


def connection_body(name: str = "acme", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ml-connector.com/v1alpha1",
        "kind": "SyncConnection",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "argo"}},
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


def run_body(name: str, connection: str = "acme", **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "ml-connector.com/v1alpha1",
        "kind": "SyncRun",
        "metadata": {"name": name},
        "spec": {"connectionRef": {"name": connection}},
    }
    if status:
        body["status"] = status
    return body


def job_status(*conditions: tuple[str, str, str], active: int = 0) -> dict[str, Any]:
    return {
        "startTime": "2026-03-02T09:30:00Z",
        "active": active,
        "conditions": [
            {
                "type": type_,
                "status": "True",
                "reason": reason,
                "message": message,
                "lastTransitionTime": "2026-03-02T09:31:00Z",
            }
            for type_, reason, message in conditions
        ],
    }


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


@pytest.fixture
def controller(cluster: FakeCluster) -> Controller:
    defaults = WorkerDefaults(image="registry.example/ml-connector:1.2", service_account="mlc-worker")
    return Controller(cluster, Metrics(CollectorRegistry()), defaults, clock=lambda: NOW)


def sample(target: Controller, metric: str, /, **labels: str) -> float:
    value = target.metrics.registry.get_sample_value(metric, labels)
    return value or 0.0


async def test_a_manual_request_creates_one_run_and_the_status_says_so(
    cluster: FakeCluster, controller: Controller
) -> None:
    body = connection_body()
    body["metadata"]["annotations"] = {REQUESTED_AT_ANNOTATION: "now-please"}
    cluster.put("syncconnections", body)
    views = StoreViews(cluster)

    outcome = await controller.reconcile_connection(cluster.of("syncconnections", "acme"), views)

    assert outcome == Reconciled()
    name = manual_run_name("acme", "now-please")
    run = cluster.of("syncruns", name)
    assert run["metadata"]["ownerReferences"][0]["uid"] == "uid-acme"
    assert "app.kubernetes.io/instance" not in run["metadata"]["labels"]
    status = cluster.of("syncconnections", "acme")["status"]
    assert status["lastHandledRequestAt"] == "now-please"
    assert status["active"] == [{"name": name, "uid": f"uid-{name}"}]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "Unknown", "Reconciling": "True"}
    assert cluster.reasons("acme") == ["RunCreated"]

    # The run's own handler creates its Job; failing that, the next look at the connection does.
    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), views)
    assert (JOBS.plural, NS, job_name(name)) in cluster.objects
    assert cluster.reasons("acme") == ["RunCreated"]

    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), views)  # the Job is seen
    cluster.calls.clear()
    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), views)
    assert not [call for call in cluster.calls if call.startswith(("create", "patch"))]  # level-based: no churn


async def test_the_job_is_built_with_the_installations_defaults(cluster: FakeCluster, controller: Controller) -> None:
    cluster.put("syncconnections", connection_body(jobTemplate={"backoffLimit": 0}))
    run = cluster.put("syncruns", run_body("acme-1"))

    await controller.reconcile_run(run, StoreViews(cluster))

    job = cluster.of("jobs", job_name("acme-1"))
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/ml-connector:1.2"
    assert pod["serviceAccountName"] == "mlc-worker"
    assert job["spec"]["backoffLimit"] == 0  # the connection's own value wins over the default
    status = cluster.of("syncruns", "acme-1")["status"]
    assert (status["phase"], status["jobName"]) == ("Pending", job_name("acme-1"))
    assert cluster.reasons("acme-1") == ["JobCreated"]


async def test_a_completed_job_finishes_the_run_counts_it_once_and_updates_the_connection(
    cluster: FakeCluster, controller: Controller
) -> None:
    cluster.put("syncconnections", connection_body())
    discovered = {"modelId": "M1", "imports": {"Load GL Actuals": "112"}}
    counts = {"extracted": 10, "loaded": 9, "rejected": 1, "skipped": 0}
    run = cluster.put(
        "syncruns",
        run_body(
            "acme-1",
            phase="Running",
            jobName="acme-1",
            startTime="2026-03-02T09:30:00Z",
            counts=counts,
            flowCounts={"gl_postings": counts},
            lockWaitSeconds=2.5,
            discovered=discovered,
        ),
    )
    job = cluster.put("jobs", {"metadata": {"name": "acme-1"}, "status": job_status(("Complete", "Done", ""))})
    views = StoreViews(cluster)

    await controller.observe_job(job | {"metadata": {**job["metadata"], "ownerReferences": [
        {"kind": "SyncRun", "name": "acme-1", "uid": run["metadata"]["uid"]}
    ]}}, views)  # fmt: skip

    finished = cluster.of("syncruns", "acme-1")
    assert finished["status"]["phase"] == "Succeeded"
    assert finished["metadata"]["annotations"][METRICS_RECORDED_ANNOTATION] == "true"
    labels = {"namespace": NS, "connection": "acme", "direction": "Load"}
    assert sample(controller, "ml_connector_runs_total", **labels, outcome="succeeded") == 1
    assert (
        sample(
            controller,
            "ml_connector_records_total",
            namespace=NS,
            connection="acme",
            flow="gl_postings",
            status="rejected",
        )
        == 1
    )
    assert sample(controller, "ml_connector_model_lock_wait_seconds_sum", namespace=NS, connection="acme") == 2.5
    connection = cluster.of("syncconnections", "acme")["status"]
    assert connection["lastSuccessfulRun"]["name"] == "acme-1"
    assert connection["discovered"]["modelId"] == "M1"
    assert sample(controller, "ml_connector_last_successful_run_timestamp_seconds", namespace=NS, connection="acme") > 0
    assert "RunSucceeded" in cluster.reasons("acme")

    await controller.reconcile_run(cluster.of("syncruns", "acme-1"), views)  # e.g. after an operator restart
    assert sample(controller, "ml_connector_runs_total", **labels, outcome="succeeded") == 1


async def test_a_failed_job_keeps_what_the_worker_reported(cluster: FakeCluster, controller: Controller) -> None:
    cluster.put("syncconnections", connection_body())
    error = "Infor credentials: Secret 'infor' with key 'credentials.ionapi' is missing in namespace finance"
    run = cluster.put("syncruns", run_body("acme-1", phase="Running", jobName="acme-1", error=error))
    job = {"metadata": {"name": "acme-1"}, "status": job_status(("Failed", "PodFailurePolicy", "exit code 2"))}

    await controller.reconcile_run(run, StoreViews(cluster), job=job)

    status = cluster.of("syncruns", "acme-1")["status"]
    assert status["phase"] == "Failed"
    assert status["message"].startswith(error)
    assert "retry cannot fix" in status["message"]
    assert {c["type"] for c in status["conditions"]} == {"Ready", "Stalled"}


async def test_a_stale_view_is_refused_and_the_decision_made_again(
    cluster: FakeCluster, controller: Controller
) -> None:
    cluster.put("syncconnections", connection_body())
    stale = cluster.put("syncruns", run_body("acme-1", phase="Running", jobName="acme-1"))
    # Meanwhile the worker reported that it waits for the model's Lease.
    cluster.of("syncruns", "acme-1")["status"]["phase"] = "WaitingForLock"
    cluster._bump(cluster.of("syncruns", "acme-1"))
    job = {"metadata": {"name": "acme-1"}, "status": job_status(active=1)}

    await controller.reconcile_run(stale, StoreViews(cluster), job=job)

    assert cluster.of("syncruns", "acme-1")["status"]["phase"] == "WaitingForLock"


async def test_a_run_of_a_missing_connection_waits_for_it(cluster: FakeCluster, controller: Controller) -> None:
    run = cluster.put("syncruns", run_body("ghost-1", connection="ghost"))

    with pytest.raises(Retry, match="waiting for SyncConnection ghost"):
        await controller.reconcile_run(run, StoreViews(cluster))

    assert cluster.of("syncruns", "ghost-1")["status"]["message"].startswith("waiting for SyncConnection ghost")
    assert ("jobs", NS, "ghost-1") not in cluster.objects


async def test_a_job_the_api_server_refuses_fails_the_run(cluster: FakeCluster, controller: Controller) -> None:
    cluster.put("syncconnections", connection_body())
    cluster.refuse_create["jobs"] = KubeError(422, "Invalid", "spec.template: bad resources", action="create")
    run = cluster.put("syncruns", run_body("acme-1"))

    await controller.reconcile_run(run, StoreViews(cluster))

    status = cluster.of("syncruns", "acme-1")["status"]
    assert status["phase"] == "Failed"
    assert "bad resources" in status["message"]
    assert "JobRefused" in cluster.reasons("acme-1")


async def test_history_limits_prune_only_runs_the_connection_created(
    cluster: FakeCluster, controller: Controller
) -> None:
    cluster.put("syncconnections", connection_body(successfulRunsHistoryLimit=1))
    owner = [
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncConnection",
            "name": "acme",
            "uid": "uid-acme",
            "controller": True,
        }
    ]
    for n, finished in enumerate(("2026-03-01T01:00:00Z", "2026-03-01T02:00:00Z", "2026-03-01T03:00:00Z")):
        body = run_body(f"acme-{n}", phase="Succeeded", completionTime=finished)
        if n < 2:
            body["metadata"]["ownerReferences"] = owner
        cluster.put("syncruns", body)

    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), StoreViews(cluster))

    remaining = sorted(name for plural, _, name in cluster.objects if plural == "syncruns")
    assert remaining == ["acme-1", "acme-2"]  # acme-0 pruned; acme-2 was applied by someone: kept
    assert cluster.of("syncconnections", "acme")["status"]["lastSuccessfulRun"]["name"] == "acme-2"


async def test_replace_stops_the_active_run_before_starting_the_new_one(
    cluster: FakeCluster, controller: Controller
) -> None:
    body = connection_body(concurrencyPolicy="Replace")
    body["metadata"]["annotations"] = {REQUESTED_AT_ANNOTATION: "again"}
    cluster.put("syncconnections", body)
    cluster.put("syncruns", run_body("acme-old", phase="Running", jobName="acme-old"))
    cluster.put("jobs", {"metadata": {"name": "acme-old"}, "status": job_status(active=1)})

    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), StoreViews(cluster))

    old = cluster.of("syncruns", "acme-old")["status"]
    assert old["phase"] == "Failed"
    assert "replaced by" in old["message"]
    assert ("jobs", NS, "acme-old") not in cluster.objects
    assert (SYNCRUNS.plural, NS, manual_run_name("acme", "again")) in cluster.objects
    assert "Replaced" in cluster.reasons("acme-old")


async def test_an_invalid_connection_is_stalled_with_the_reason(cluster: FakeCluster, controller: Controller) -> None:
    cluster.put("syncconnections", connection_body(timeZone="Mars/Olympus"))

    await controller.reconcile_connection(cluster.of("syncconnections", "acme"), StoreViews(cluster))

    conditions = {c["type"]: c for c in cluster.of(SYNCCONNECTIONS.plural, "acme")["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Stalled"]["reason"] == "InvalidSpec"
    assert "timeZone" in conditions["Stalled"]["message"]


def test_run_outcome_comes_from_the_status() -> None:
    run = parse_run(
        run_body(
            "acme-1",
            phase="Failed",
            startTime="2026-03-02T09:00:00Z",
            completionTime="2026-03-02T09:01:30Z",
            apiErrors={"anaplan": {"429": 3}},
        )
        | {"metadata": {"name": "acme-1", "namespace": NS}}
    )
    outcome = run_outcome(run)
    assert (outcome.succeeded, outcome.duration_seconds, outcome.connection) == (False, 90.0, "acme")
    assert outcome.api_errors == {"anaplan": {"429": 3}}


def test_merge_patch_removes_what_is_gone_and_keeps_what_is_equal() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "e": [1], "gone": True}
    new = {"a": 1, "b": {"c": 2, "d": 4}, "e": [1, 2]}
    assert merge_patch(old, new) == {"gone": None, "b": {"d": 4}, "e": [1, 2]}
    assert merge_patch(new, new) == {}


# --- handlers: the one boundary -----------------------------------------------------------------------


class Memo(dict[str, Any]):
    pass


@pytest.fixture
def memo(controller: Controller) -> Memo:
    return Memo(controller=controller)


async def test_boundary_counts_successes_by_result(memo: Memo, controller: Controller) -> None:
    async def scheduled(c: Controller) -> Reconciled:
        return Reconciled(dt.timedelta(minutes=5))

    await _boundary("syncconnection", memo, scheduled)
    assert (
        sample(controller, "controller_runtime_reconcile_total", controller="syncconnection", result="requeue_after")
        == 1
    )
    assert sample(controller, "controller_runtime_reconcile_time_seconds_count", controller="syncconnection") == 1


@pytest.mark.parametrize(
    ("error", "kopf_error", "delay", "terminal"),
    [
        (Retry("not yet", delay=15), kopf.TemporaryError, 15, False),
        (KubeError(503, "ServiceUnavailable", "etcd", action="x"), kopf.TemporaryError, 5, False),
        (KubeError(409, "Conflict", "stale", action="x"), kopf.TemporaryError, 5, False),
        (KubeError(403, "Forbidden", "rbac", action="x"), kopf.TemporaryError, 60, False),
        (RuntimeError("bug"), kopf.TemporaryError, 30, False),
        (InvalidObject("spec"), kopf.PermanentError, None, True),
    ],
)
async def test_boundary_maps_errors_for_kopf(
    memo: Memo,
    controller: Controller,
    error: Exception,
    kopf_error: type[Exception],
    delay: float | None,
    terminal: bool,
) -> None:
    async def failing(c: Controller) -> Reconciled:
        raise error

    with pytest.raises(kopf_error) as caught:
        await _boundary("syncrun", memo, failing)
    if delay is not None:
        assert isinstance(caught.value, kopf.TemporaryError)
        assert caught.value.delay == delay
    assert sample(controller, "controller_runtime_reconcile_errors_total", controller="syncrun") == 1
    assert sample(controller, "controller_runtime_terminal_reconcile_errors_total", controller="syncrun") == (
        1 if terminal else 0
    )


def test_index_views_read_the_kopf_indexes() -> None:
    class Index(dict[Any, Any]):
        pass

    job = {"metadata": {"name": "acme-1"}}
    views = IndexViews(
        Index({(NS, "acme"): [connection_body()]}),  # type: ignore[arg-type]
        Index({(NS, "acme"): [run_body("acme-1"), run_body("acme-2")]}),  # type: ignore[arg-type]
        Index({(NS, "acme-1"): [job]}),  # type: ignore[arg-type]
    )
    assert views.connection(NS, "acme") is not None
    assert views.connection(NS, "other") is None
    assert [run["metadata"]["name"] for run in views.runs(NS, "acme")] == ["acme-1", "acme-2"]
    assert views.job(NS, "acme-1") is job
