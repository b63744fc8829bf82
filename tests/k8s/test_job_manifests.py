"""The run and Job manifests on a real API server: accepted, owned, and Pod Security "restricted"."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import kubernetes
import pytest

from ml_connector.kube.jobs import build_job
from ml_connector.kube.scheduling import PlannedRun, run_manifest, scheduled_run_name
from ml_connector.spec import GROUP, VERSION, parse_connection, parse_run

pytestmark = pytest.mark.k8s

CONNECTION: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "SyncConnection",
    "metadata": {"name": "acme", "labels": {"app.kubernetes.io/instance": "argo-app"}},
    "spec": {
        "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor-ionapi"}, "m3": {"company": "100"}},
        "anaplan": {
            "workspace": "W",
            "model": "M",
            "auth": {"method": "basic", "credentialsSecretRef": {"name": "ap"}},
        },
        "flows": [{"entity": "gl_postings", "importAction": "Load GL"}],
        "schedule": "0 * * * *",
        "audit": {"postgres": {"dsnSecretRef": {"name": "audit-db", "key": "dsn"}}},
    },
}


def test_connection_run_and_job_chain(k8s_api: kubernetes.client.ApiClient, namespace: str) -> None:
    objects = kubernetes.client.CustomObjectsApi(k8s_api)
    core = kubernetes.client.CoreV1Api(k8s_api)
    batch = kubernetes.client.BatchV1Api(k8s_api)
    # Pods in this namespace must satisfy the "restricted" Pod Security Standard, enforced by admission.
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "ml-connector-worker"}})

    stored = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "syncconnections", CONNECTION)
    connection = parse_connection(stored)
    scheduled = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.UTC)
    planned = PlannedRun(scheduled_run_name("acme", scheduled), "Scheduled", scheduled)
    run_body = run_manifest(connection, planned)
    created_run = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "syncruns", run_body, field_validation="Strict"
    )
    # Deterministic names: creating the same run again is an AlreadyExists, i.e. "already done".
    with pytest.raises(kubernetes.client.ApiException) as caught:
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "syncruns", run_body)
    assert caught.value.status == 409
    run = parse_run(created_run)
    assert run.spec.trigger == "Scheduled"
    assert run.spec.scheduled_time == scheduled
    assert "app.kubernetes.io/instance" not in (created_run["metadata"].get("labels") or {})

    job_body = build_job(run, connection, default_image="registry.example/ml-connector:test")
    job = batch.create_namespaced_job(namespace, job_body, field_validation="Strict", _preload_content=False)
    created_job = json.loads(job.data)
    assert created_job["metadata"]["name"] == run.metadata.name
    owner = created_job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("SyncRun", run.metadata.uid, True)
    assert created_job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    assert created_job["spec"]["podReplacementPolicy"] == "Failed"

    # No kubelet or Job controller here: create the pod the Job controller would, to let admission
    # check the template against Pod Security "restricted" for real.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{run.metadata.name}-pod", "labels": job_body["spec"]["template"]["metadata"]["labels"]},
        "spec": job_body["spec"]["template"]["spec"],
    }
    created_pod = json.loads(core.create_namespaced_pod(namespace, pod, _preload_content=False).data)
    assert created_pod["spec"]["securityContext"]["runAsNonRoot"] is True
    insecure = json.loads(json.dumps(pod))
    insecure["metadata"]["name"] = "insecure"
    insecure["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_pod(namespace, insecure, _preload_content=False)
    assert refused.value.status == 403
    assert "restricted" in json.loads(refused.value.body)["message"]
