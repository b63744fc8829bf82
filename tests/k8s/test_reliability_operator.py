"""Reliability and security on the test control plane (issue 7): the operator under the chart's RBAC, workers
run by the kubelet stand-in, both emulators.

* ten SyncRuns of ten connections on one Anaplan model at once: none fails, the model's Lease serializes them,
  the model ends up holding the source exactly once;
* a worker killed during an import: its Lease expires, the next run completes, nothing is doubled;
* the operator restarted while a run is in progress: the run completes once, with one Job;
* what the operator and the worker may not do (other namespaces, Secrets they do not mount) is refused;
* a run that fails on a wrong password leaves the canary secret in no status, event or log.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import kubernetes
import pytest
from envtest import ControlPlane
from operator_harness import (
    ANAPLAN_SECRET,
    FULLNAME,
    Environment,
    https_client,
    service_account_token,
    start_environment,
)

from ml_connector.kube.jobs import job_name
from ml_connector.kube.lease import lease_name_for_model

pytestmark = pytest.mark.k8s


@pytest.fixture(scope="module")
def env(
    control_plane: ControlPlane, k8s_api: kubernetes.client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Environment]:
    with start_environment(control_plane, k8s_api, tmp_path_factory.mktemp("reliability")) as environment:
        yield environment


def model_holds_the_source_once(env: Environment) -> None:
    """``GL Actuals`` holds every posting of the source exactly once, with the source's total per cell."""
    from ml_connector.sandbox.dataset import posting_record

    async def read() -> tuple[dict[tuple[str, str, str], tuple[Decimal, int]], dict[tuple[str, str, str], Any]]:
        model = env.sandbox.anaplan.seeded.model
        module = model.module_by_key("GL Actuals")
        accounts, centers, time = module.dimensions
        periods = {m.id: a for a, m in time.aliases.items() if len(a) == 7 and a[4] == "-"}
        amount, postings = module.line_item("Amount"), module.line_item("Postings")
        cells = {
            (accounts.members[a].code, centers.members[c].code, periods[t]): (
                Decimal(str(value)).quantize(Decimal("0.01")),
                int(module.cells[postings.id].get((a, c, t), 0)),
            )
            for (a, c, t), value in module.cells[amount.id].items()
        }
        assert env.sandbox.infor is not None
        state = env.sandbox.infor.state
        source: dict[tuple[str, str, str], Any] = {}
        for seg in state.dataset.segments:
            for p in state.data.gl_segment(seg):
                r = posting_record(p)
                cell = source.setdefault((r.account, r.cost_center, r.period), [Decimal(0), 0])
                cell[0] += r.amount
                cell[1] += 1
        return cells, {k: (v[0].quantize(Decimal("0.01")), v[1]) for k, v in source.items()}

    cells, source = env.servers.call(read)
    assert cells == source


def balanced(run: dict[str, Any]) -> None:
    status = run["status"]
    for flow, counts in status["flowCounts"].items():
        assert counts["extracted"] == counts["loaded"] + counts["rejected"] + counts["skipped"], (flow, counts)
    assert status["reconciliation"]["balanced"] is True


def lease(env: Environment) -> Any:
    name = lease_name_for_model(env.sandbox.anaplan.model)
    return kubernetes.client.CoordinationV1Api(env.api).read_namespaced_lease(name, env.namespace)


def pause(env: Environment) -> None:
    async def call() -> None:
        env.sandbox.anaplan.emulator.engine.pause()

    env.servers.call(call)


def resume(env: Environment) -> None:
    async def call() -> None:
        env.sandbox.anaplan.emulator.engine.resume()

    env.servers.call(call)


def test_ten_syncruns_on_one_model_all_succeed_one_after_the_other(env: Environment) -> None:
    names = [f"ten-{n}" for n in range(10)]
    for name in names:
        env.create("syncconnections", env.connection(name))
    for name in names:  # all at once
        env.create("syncruns", env.run(f"{name}-run", name))

    runs = [env.wait_run_phase(f"{name}-run", ("Succeeded", "Failed"), timeout=300) for name in names]

    failed = [(r["metadata"]["name"], r["status"].get("message")) for r in runs if r["status"]["phase"] != "Succeeded"]
    assert failed == []  # no run fails because another holds the model
    for run in runs:
        balanced(run)
    assert sum(1 for run in runs if run["status"].get("lockWaitSeconds", 0) > 0) >= 1  # they did queue
    assert lease(env).spec.lease_transitions >= 9  # one holder after the other
    model_holds_the_source_once(env)  # ten full loads, and every posting counted once


def test_a_worker_killed_during_an_import_loses_the_lease_and_the_next_run_doubles_nothing(env: Environment) -> None:
    env.create("syncconnections", env.connection("killed", jobTemplate={"backoffLimit": 0}))
    pause(env)  # the run's first import stays IN_PROGRESS
    try:
        env.create("syncruns", env.run("killed-a", "killed"))

        def holding() -> bool:
            run = env.get("syncruns", "killed-a") or {}
            return bool(run) and lease(env).spec.holder_identity == run["metadata"]["uid"]

        env.wait(holding, what="killed-a holding the model Lease during its import", job="killed-a")
        assert env.kubelet.kill(env.namespace, job_name("killed-a"))
    finally:
        resume(env)  # the import the dead worker started finishes on the server anyway
    assert env.wait_run_phase("killed-a", ("Failed", "Succeeded"))["status"]["phase"] == "Failed"

    env.create("syncruns", env.run("killed-b", "killed"))
    run = env.wait_run_phase("killed-b", ("Succeeded", "Failed"), timeout=120)

    assert run["status"]["phase"] == "Succeeded", env.diagnostics("killed-b")
    balanced(run)
    assert run["status"]["counts"]["loaded"] > 0
    model_holds_the_source_once(env)


def test_the_operator_restarted_during_a_run_completes_it_once(env: Environment) -> None:
    env.create("syncconnections", env.connection("restarted"))
    pause(env)
    try:
        env.create("syncruns", env.run("restarted-a", "restarted"))
        env.wait_run_phase("restarted-a", ("Running", "WaitingForLock"))
        env.restart_operator()
    finally:
        resume(env)

    run = env.wait_run_phase("restarted-a", ("Succeeded", "Failed"), timeout=120)

    assert run["status"]["phase"] == "Succeeded", env.diagnostics("restarted-a")
    balanced(run)
    jobs = kubernetes.client.BatchV1Api(env.api).list_namespaced_job(env.namespace).items
    assert [j.metadata.name for j in jobs if j.metadata.name.startswith(job_name("restarted-a"))] == [
        job_name("restarted-a")
    ]  # one Job: the new operator adopted the run, it did not start it again
    assert len(env.kubelet.pods(env.namespace, job_name("restarted-a"))) == 1
    model_holds_the_source_once(env)


REFUSED = [
    # (who, method, path with {ns} = watched namespace, {other} = another namespace)
    ("operator", "GET", "/api/v1/namespaces/{ns}/secrets"),
    ("operator", "GET", "/api/v1/namespaces/{ns}/secrets/" + ANAPLAN_SECRET),
    ("operator", "GET", "/api/v1/namespaces/{other}/configmaps"),
    ("operator", "GET", "/apis/ml-connector.com/v1alpha1/namespaces/{other}/syncruns"),
    ("operator", "POST", "/apis/batch/v1/namespaces/{other}/jobs"),
    ("operator", "GET", "/api/v1/pods"),
    ("operator", "POST", "/api/v1/namespaces/{ns}/pods"),
    ("operator", "DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/syncruns.ml-connector.com"),
    ("worker", "GET", "/api/v1/namespaces/{ns}/secrets"),
    ("worker", "GET", "/api/v1/namespaces/{ns}/secrets/" + ANAPLAN_SECRET),
    ("worker", "GET", "/apis/ml-connector.com/v1alpha1/namespaces/{other}/syncruns"),
    ("worker", "POST", "/apis/batch/v1/namespaces/{ns}/jobs"),
    ("worker", "DELETE", "/apis/ml-connector.com/v1alpha1/namespaces/{ns}/syncconnections/anything"),
    ("worker", "GET", "/apis/coordination.k8s.io/v1/namespaces/{other}/leases"),
]


@pytest.mark.parametrize(("who", "method", "path"), REFUSED, ids=[f"{w} {m} {p}" for w, m, p in REFUSED])
def test_the_operator_and_the_worker_are_refused_what_they_should_not_do(
    env: Environment, who: str, method: str, path: str
) -> None:
    token = (
        env.operator_token if who == "operator" else service_account_token(env.api, env.namespace, f"{FULLNAME}-worker")
    )
    url = path.format(ns=env.namespace, other=env.other_namespace)
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}} if method == "POST" else None
    with https_client(env.plane, token) as client:
        response = client.request(method, url, json=body)
    assert response.status_code == 403, (who, method, url, response.status_code, response.text[:200])


def test_a_wrong_password_leaves_the_canary_in_no_status_event_or_log(env: Environment, canary: Any) -> None:
    core = kubernetes.client.CoreV1Api(env.api)
    secret = "wrong-anaplan-credentials"
    wrong = canary.secret("wrong-password")
    core.create_namespaced_secret(
        env.namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret},
            "data": {
                "username": base64.b64encode(env.sandbox.anaplan.user.encode()).decode(),
                "password": base64.b64encode(wrong.encode()).decode(),
            },
        },
    )
    body = env.connection("wrongpw")
    body["spec"]["anaplan"]["auth"]["credentialsSecretRef"] = {"name": secret}
    env.create("syncconnections", body)
    env.create("syncruns", env.run("wrongpw-run", "wrongpw"))

    run = env.wait_run_phase("wrongpw-run", ("Succeeded", "Failed"))

    assert run["status"]["phase"] == "Failed"
    assert "Anaplan" in run["status"]["message"]
    connection = env.get("syncconnections", "wrongpw")
    events = core.list_namespaced_event(env.namespace, _preload_content=False).data.decode()
    for where, text in {
        "the SyncRun": repr(run),
        "the SyncConnection": repr(connection),
        "the namespace's Events": events,
        "the worker's log": env.kubelet.logs(env.namespace, job_name("wrongpw-run")),
        "the operator's log": env.operator.tail(10_000),
    }.items():
        assert wrong not in text
        canary.assert_absent(text, where)
