"""The operator on the real kube-apiserver, under the chart's RBAC, with workers run by the kubelet stand-in.

One operator process (``ml-connector operator``, the Deployment's own flags and environment, the operator
ServiceAccount's token) watches one namespace for the whole module; each test uses its own connection.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import kubernetes
import pytest
from envtest import ControlPlane
from operator_harness import Environment, https_client, start_environment

from ml_connector.kube.controller import METRICS_RECORDED_ANNOTATION
from ml_connector.kube.jobs import CONFIG_ERROR_EXIT_CODE, job_name
from ml_connector.kube.lease import lease_name_for_model
from ml_connector.kube.scheduling import manual_run_name
from ml_connector.spec import REQUESTED_AT_ANNOTATION

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def env(
    control_plane: ControlPlane, k8s_api: kubernetes.client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Environment]:
    with start_environment(control_plane, k8s_api, tmp_path_factory.mktemp("operator")) as environment:
        yield environment


def conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (body.get("status") or {}).get("conditions") or []}


def gl_actuals(env: Environment) -> tuple[int, Decimal]:
    """What the Anaplan emulator's ``GL Actuals`` module holds: (postings, total amount)."""

    async def read() -> tuple[int, Decimal]:
        module = env.sandbox.anaplan.seeded.model.module_by_key("GL Actuals")
        amount, postings = module.line_item("Amount"), module.line_item("Postings")
        total = sum((Decimal(str(value)) for value in module.cells[amount.id].values()), Decimal(0))
        return int(sum(module.cells[postings.id].values())), total

    return env.servers.call(read)


WRITEBACK = {
    "exportAction": "Approved Budget",
    "target": {"m3": {"division": "P10", "budgetNumber": "900", "budgetVersion": "ANP"}},
}


def lease_name(env: Environment) -> str:
    return lease_name_for_model(env.sandbox.anaplan.model)


def lease_holder(env: Environment) -> str | None:
    """The holder of the model's Lease (a SyncRun uid), if any."""
    try:
        lease = kubernetes.client.CoordinationV1Api(env.api).read_namespaced_lease(lease_name(env), env.namespace)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    holder: str | None = lease.spec.holder_identity
    return holder


def wait_idle(env: Environment) -> None:
    """No run of the namespace is active and the model runs no task (tests that pause the emulator's tasks)."""

    async def busy() -> bool:
        return bool(env.sandbox.anaplan.seeded.model.busy)

    def idle() -> bool:
        runs = kubernetes.client.CustomObjectsApi(env.api).list_namespaced_custom_object(
            "ml-connector.com", "v1alpha1", env.namespace, "syncruns"
        )["items"]
        active = [run for run in runs if (run.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        return not active and not env.servers.call(busy)

    env.wait(idle, what="no active run and an idle model")


def counted(env: Environment, run: str) -> str:
    """The run's metrics-recorded annotation, once the operator has counted it."""

    def probe() -> str | None:
        annotations = ((env.get("syncruns", run) or {}).get("metadata") or {}).get("annotations") or {}
        value: str | None = annotations.get(METRICS_RECORDED_ANNOTATION)
        return value

    return env.wait(probe, what=f"{run} counted in the metrics")


def request_run(env: Environment, connection: str, token: str) -> str:
    env.patch("syncconnections", connection, {"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}})
    return manual_run_name(connection, token)


def succeeded(env: Environment, name: str) -> dict[str, Any]:
    run = env.wait_run_phase(name, ("Succeeded", "Failed"))
    assert run["status"]["phase"] == "Succeeded", f"{run['status']}\n{env.diagnostics(name)}"
    return run


def test_manual_run_by_annotation_loads_the_model(env: Environment) -> None:
    created = env.create("syncconnections", env.connection("manual"))
    name = request_run(env, "manual", "2026-03-01T10:00:00Z")

    run = succeeded(env, name)
    status = run["status"]
    assert status["counts"]["extracted"] > 0
    assert status["counts"]["loaded"] > 0
    gl_count = env.sandbox.infor.state.dataset.gl_count
    assert status["flowCounts"]["gl_postings"]["loaded"] == gl_count
    assert status["counts"]["loaded"] == sum(flow["loaded"] for flow in status["flowCounts"].values())
    assert status["reconciliation"]["balanced"] is True
    assert status["discovered"]["modelId"] == env.sandbox.anaplan.model
    assert conditions(run)["Ready"]["status"] == "True"
    assert status["completionTime"] >= status["startTime"]
    # deterministic name, owned by the connection, none of its labels copied
    assert run["metadata"]["ownerReferences"][0]["uid"] == created["metadata"]["uid"]
    assert "app.kubernetes.io/instance" not in run["metadata"].get("labels", {})

    job = env.job(job_name(name))
    assert job is not None
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "SyncRun",
        name,
        run["metadata"]["uid"],
        True,
    )
    assert "app.kubernetes.io/instance" not in job["metadata"].get("labels", {})
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["ml-connector", "worker", "--run", f"{env.namespace}/{name}"]
    assert container["image"] == "ghcr.io/ml-connector/ml-connector:test"  # the chart's worker image
    assert pod["serviceAccountName"] == "mlc-ml-connector-worker"  # the chart's worker ServiceAccount
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "audit-data", "persistentVolumeClaim": {"claimName": "mlc-ml-connector-audit"}} in pod["volumes"]

    def ready() -> dict[str, Any] | None:
        body = env.get("syncconnections", "manual")
        assert body is not None
        status = body.get("status") or {}
        done = conditions(body).get("Ready", {}).get("status") == "True" and not status.get("active")
        return body if done and (status.get("lastSuccessfulRun") or {}).get("name") == name else None

    connection = env.wait(ready, what="the connection Ready with its last successful run")
    status = connection["status"]
    assert status["observedGeneration"] == connection["metadata"]["generation"]
    assert status["lastHandledRequestAt"] == "2026-03-01T10:00:00Z"
    assert status["discovered"]["modelId"] == env.sandbox.anaplan.model
    assert status["discovered"]["imports"]["Load GL Actuals"]
    assert "Reconciling" not in conditions(connection)
    assert "Stalled" not in conditions(connection)

    reasons = {event["reason"] for event in env.events("manual")}
    assert {"RunCreated", "RunSucceeded"} <= reasons
    assert "JobCreated" in {event["reason"] for event in env.events(name)}
    assert counted(env, name) == "true"

    postings, _ = gl_actuals(env)
    assert postings == gl_count


def test_an_applied_syncrun_runs_the_same_way(env: Environment) -> None:
    env.create("syncconnections", env.connection("applied"))
    env.create("syncruns", env.run("applied-by-hand", "applied"))

    run = succeeded(env, "applied-by-hand")
    assert run["status"]["counts"]["loaded"] > 0
    assert "ownerReferences" not in run["metadata"]  # a user's object: the operator adds no owner
    job = env.job(job_name("applied-by-hand"))
    assert job is not None
    assert job["metadata"]["ownerReferences"][0]["uid"] == run["metadata"]["uid"]
    env.wait(
        lambda: ((env.get("syncconnections", "applied") or {}).get("status") or {}).get("lastSuccessfulRun"),
        what="the connection's lastSuccessfulRun",
    )


def test_two_runs_on_one_model_wait_for_the_lease_and_both_succeed(env: Environment) -> None:
    engine = env.sandbox.anaplan.emulator.engine

    async def pause() -> None:
        engine.pause()  # the first import stays IN_PROGRESS: its run holds the model's Lease meanwhile

    async def resume() -> None:
        engine.resume()

    env.create("syncconnections", env.connection("pair", writeback=WRITEBACK))
    wait_idle(env)
    env.servers.call(pause)
    try:
        # A load whose first import stays in progress, holding the model's Lease; then a budget write-back on
        # the same model: it reaches the Lease at once (a load would first be held up reading the lists,
        # which Anaplan refuses while the model runs a task).
        env.create("syncruns", env.run("pair-a", "pair"))
        env.wait(lambda: lease_holder(env) is not None, what="pair-a holding the Lease", job="pair-a")
        env.create("syncruns", env.run("pair-b", "pair", direction="WriteBack"))

        def one_waits() -> dict[str, Any] | None:
            for name in ("pair-a", "pair-b"):
                run = env.get("syncruns", name) or {}
                if (run.get("status") or {}).get("phase") == "WaitingForLock":
                    return run
            return None

        waiting = env.wait(one_waits, what="one run WaitingForLock")
    finally:
        env.servers.call(resume)
    status = waiting["status"]
    other = "pair-a" if waiting["metadata"]["name"] == "pair-b" else "pair-b"
    assert status["lock"]["holder"] == f"{env.namespace}/{other}"
    assert status["lock"]["lease"].startswith("ml-connector-model-")
    assert status["message"].startswith("waiting for the model Lease")
    finished = [succeeded(env, name) for name in ("pair-a", "pair-b")]
    assert finished[0]["status"]["counts"]["loaded"] > 0  # the load
    waited = next(run for run in finished if run["metadata"]["name"] == waiting["metadata"]["name"])
    assert waited["status"]["lockWaitSeconds"] > 0
    assert "WaitingForLock" in {event["reason"] for event in env.events(waiting["metadata"]["name"])}


def test_a_missing_secret_fails_the_run_at_once_and_names_secret_and_key(env: Environment) -> None:
    body = env.connection("nosecret")
    body["spec"]["infor"]["credentialsSecretRef"] = {"name": "missing-ionapi", "key": "tenant.ionapi"}
    env.create("syncconnections", body)
    name = request_run(env, "nosecret", "first")

    run = env.wait_run_phase(name, ("Succeeded", "Failed"))
    status = run["status"]
    assert status["phase"] == "Failed", status
    assert "missing-ionapi" in status["message"]
    assert "tenant.ionapi" in status["message"]
    assert status["error"] in status["message"]
    assert conditions(run)["Stalled"]["status"] == "True"
    job = env.job(job_name(name))
    assert job is not None
    failed = {c["type"]: c for c in job["status"]["conditions"]}["Failed"]
    assert failed["reason"] == "PodFailurePolicy"  # no retries: the configuration-error exit code
    pods = env.kubelet.pods(env.namespace, job_name(name))
    assert [pod.exit_code for pod in pods] == [CONFIG_ERROR_EXIT_CODE]

    def not_ready() -> dict[str, Any] | None:
        ready = conditions(env.get("syncconnections", "nosecret") or {}).get("Ready", {})
        return ready if ready.get("status") == "False" else None

    ready = env.wait(not_ready, what="the connection Ready=False")
    assert ready["reason"] == "RunFailed"
    assert "missing-ionapi" in ready["message"]
    assert "RunFailed" in {event["reason"] for event in env.events("nosecret")}


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def test_metrics_and_health_endpoints(env: Environment) -> None:
    env.create("syncconnections", env.connection("metered"))
    name = request_run(env, "metered", "go")
    run = succeeded(env, name)
    counted(env, name)
    samples = metric_samples(httpx.get(env.operator.metrics_url, timeout=10).text)

    def value(name: str, **labels: str) -> float:
        return samples.get((name, frozenset(labels.items())), 0.0)

    ns = env.namespace
    assert value("controller_runtime_reconcile_total", controller="syncconnection", result="success") > 0
    assert value("controller_runtime_reconcile_total", controller="syncrun", result="success") > 0
    assert (
        "controller_runtime_reconcile_total",
        frozenset({("controller", "syncrun"), ("result", "error")}),
    ) in samples
    assert value("controller_runtime_reconcile_time_seconds_count", controller="syncconnection") > 0
    outcome = {"namespace": ns, "connection": "metered", "direction": "Load"}
    assert value("ml_connector_runs_total", **outcome, outcome="succeeded") == 1
    loaded = run["status"]["flowCounts"]["gl_postings"]["loaded"]
    assert (
        value("ml_connector_records_total", namespace=ns, connection="metered", flow="gl_postings", status="loaded")
        == loaded
    )
    finished = value("ml_connector_last_successful_run_timestamp_seconds", namespace=ns, connection="metered")
    assert finished > 1.7e9
    assert value("ml_connector_model_lock_wait_seconds_count", namespace=ns, connection="metered") == 1
    assert value("process_resident_memory_bytes") > 0

    health = httpx.get(env.operator.health_url, timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}


def test_suspend_stops_scheduled_runs_and_resuming_starts_the_missed_one(env: Environment) -> None:
    env.create("syncconnections", env.connection("sched", schedule="*/5 * * * *", suspend=True))
    # As after an operator outage: the last scheduled run was an hour ago (12 schedule times missed since).
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:00Z")
    objects = kubernetes.client.CustomObjectsApi(env.api)

    def suspended() -> dict[str, Any] | None:
        body = env.get("syncconnections", "sched") or {}
        return body if conditions(body).get("Ready", {}).get("message") == "suspended" else None

    env.wait(suspended, what="the connection evaluated as suspended")
    objects.patch_namespaced_custom_object_status(
        "ml-connector.com",
        "v1alpha1",
        env.namespace,
        "syncconnections",
        "sched",
        {"status": {"lastScheduleTime": hour_ago}},
    )
    time.sleep(2.0)  # two ticks of the operator's 1 s timer: nothing may start while suspended
    body = env.get("syncconnections", "sched")
    assert body is not None
    assert env.runs_of("sched") == []
    assert "nextScheduleTime" not in body["status"]
    assert body["status"]["lastScheduleTime"] == hour_ago

    env.patch("syncconnections", "sched", {"spec": {"suspend": False}})
    runs = env.wait(lambda: env.runs_of("sched"), what="the missed scheduled run")
    assert len(runs) == 1
    run = runs[0]
    assert run["spec"]["trigger"] == "Scheduled"
    scheduled = run["spec"]["scheduledTime"]
    assert scheduled[14:16] in {f"{m:02d}" for m in range(0, 60, 5)}
    assert scheduled.endswith(":00Z")
    resumed = env.wait(
        lambda: (env.get("syncconnections", "sched") or {}).get("status", {}).get("nextScheduleTime"),
        what="nextScheduleTime after resuming",
    )
    assert resumed > scheduled
    assert "MissedSchedules" in {event["reason"] for event in env.events("sched")}
    succeeded(env, run["metadata"]["name"])


def test_the_operator_runs_with_the_charts_least_privilege(env: Environment) -> None:
    ns, other = env.namespace, env.other_namespace
    with https_client(env.plane, env.operator_token) as operator:
        assert operator.get(f"/api/v1/namespaces/{ns}/secrets").status_code == 403
        assert operator.get(f"/api/v1/namespaces/{ns}/secrets/infor-credentials").status_code == 403
        assert operator.get(f"/apis/ml-connector.com/v1alpha1/namespaces/{ns}/syncconnections").status_code == 200
        assert operator.get(f"/apis/ml-connector.com/v1alpha1/namespaces/{other}/syncconnections").status_code == 403
        assert operator.get(f"/apis/batch/v1/namespaces/{other}/jobs").status_code == 403
        assert operator.get("/apis/ml-connector.com/v1alpha1/syncconnections").status_code == 403  # cluster-wide
    from operator_harness import FULLNAME, service_account_token

    worker_token = service_account_token(env.api, ns, f"{FULLNAME}-worker")
    with https_client(env.plane, worker_token) as worker:
        assert worker.get(f"/api/v1/namespaces/{ns}/secrets/infor-credentials").status_code == 403
        assert worker.get(f"/apis/ml-connector.com/v1alpha1/namespaces/{ns}/syncconnections/manual").status_code in (
            200,
            404,
        )
        assert (
            worker.get(f"/apis/ml-connector.com/v1alpha1/namespaces/{ns}/syncconnections").status_code == 403
        )  # get only


def test_a_worker_that_dies_loses_the_lease_and_the_next_run_takes_over(env: Environment) -> None:
    engine = env.sandbox.anaplan.emulator.engine

    async def pause() -> None:
        engine.pause()

    async def resume() -> None:
        engine.resume()

    # the killed run is not retried (a retry would hold the Lease again: the holder is the run's uid)
    env.create("syncconnections", env.connection("crash", writeback=WRITEBACK, jobTemplate={"backoffLimit": 0}))
    wait_idle(env)
    env.servers.call(pause)
    try:
        env.create("syncruns", env.run("crash-a", "crash"))

        def held_by_a() -> bool:
            run = env.get("syncruns", "crash-a") or {}
            return bool(run) and lease_holder(env) == run["metadata"]["uid"]

        env.wait(held_by_a, what="crash-a holding the model Lease", job="crash-a")
        env.create("syncruns", env.run("crash-b", "crash", direction="WriteBack"))
        waiting = env.wait_run_phase("crash-b", ("WaitingForLock",))
        assert waiting["status"]["lock"]["holder"] == f"{env.namespace}/crash-a"
        assert env.kubelet.kill(env.namespace, job_name("crash-a"))
    finally:
        env.servers.call(resume)

    crashed = env.wait_run_phase("crash-a", ("Failed", "Succeeded"))
    assert crashed["status"]["phase"] == "Failed"
    assert "backoffLimit" in crashed["status"]["message"]
    took_over = succeeded(env, "crash-b")
    assert took_over["status"]["lockWaitSeconds"] > 0
    lease = kubernetes.client.CoordinationV1Api(env.api).read_namespaced_lease(lease_name(env), env.namespace)
    assert lease.spec.lease_transitions >= 1


def test_after_a_restart_the_operator_honours_what_happened_meanwhile_and_counts_nothing_twice(
    env: Environment,
) -> None:
    env.create("syncconnections", env.connection("restart"))
    first = request_run(env, "restart", "before")
    succeeded(env, first)
    counted(env, first)
    second = manual_run_name("restart", "while-down")
    env.restart_operator(meanwhile=lambda: request_run(env, "restart", "while-down"))

    succeeded(env, second)
    counted(env, second)
    samples = metric_samples(httpx.get(env.operator.metrics_url, timeout=10).text)
    runs = {"namespace": env.namespace, "connection": "restart", "direction": "Load", "outcome": "succeeded"}
    assert samples[("ml_connector_runs_total", frozenset(runs.items()))] == 1  # the first was counted before
    # every connection's freshness is known again from its status
    manual = {"namespace": env.namespace, "connection": "manual"}
    assert samples[("ml_connector_last_successful_run_timestamp_seconds", frozenset(manual.items()))] > 1.7e9
