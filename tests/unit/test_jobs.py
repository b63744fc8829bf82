"""kube.jobs: the worker Job manifest."""

from __future__ import annotations

from typing import Any

import pytest

from ml_connector.kube.jobs import CONFIG_ERROR_EXIT_CODE, WORKER_UID, build_job, job_name
from ml_connector.spec import API_VERSION, SyncConnection, SyncRun, parse_connection, parse_run


def connection(**spec: Any) -> SyncConnection:
    document: dict[str, Any] = {
        "infor": {
            "productLine": "M3",
            "credentialsSecretRef": {"name": "infor", "key": "t.ionapi"},
            "m3": {"company": "1"},
        },
        "anaplan": {
            "workspace": "W",
            "model": "M",
            "auth": {"method": "oauth", "credentialsSecretRef": {"name": "ap"}},
        },
        "flows": [{"entity": "payments", "importAction": "Load"}],
    }
    document.update(spec)
    return parse_connection(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncConnection",
            "metadata": {
                "name": "acme",
                "namespace": "fin",
                "uid": "c-1",
                "labels": {"app.kubernetes.io/instance": "argo", "team": "fpa"},
            },
            "spec": document,
        }
    )


def run(name: str = "acme-29538780") -> SyncRun:
    return parse_run(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncRun",
            "metadata": {"name": name, "namespace": "fin", "uid": "r-1", "labels": {"app.kubernetes.io/instance": "x"}},
            "spec": {"connectionRef": {"name": "acme"}},
        }
    )


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def test_job_is_named_and_owned_by_its_run() -> None:
    job = build_job(run(), connection(), default_image="ghcr.io/acme/ml-connector:1.0")
    assert job["metadata"]["name"] == "acme-29538780"
    assert job["metadata"]["namespace"] == "fin"
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": API_VERSION,
            "kind": "SyncRun",
            "name": "acme-29538780",
            "uid": "r-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert build_job(run(), connection(), default_image="x") == build_job(run(), connection(), default_image="x")


def test_no_labels_are_copied_from_the_parents() -> None:
    job = build_job(run(), connection(), default_image="img")
    expected = {
        "app.kubernetes.io/name": "ml-connector",
        "app.kubernetes.io/managed-by": "ml-connector",
        "app.kubernetes.io/component": "worker",
        "ml-connector.com/connection": "acme",
        "ml-connector.com/run": "acme-29538780",
    }
    assert job["metadata"]["labels"] == expected
    assert job["spec"]["template"]["metadata"]["labels"] == expected


def test_worker_command_and_image() -> None:
    job = build_job(run(), connection(), default_image="img:1")
    container = pod(job)["containers"][0]
    assert container["name"] == "worker"
    assert container["command"] == ["ml-connector", "worker", "--run", "fin/acme-29538780"]
    assert container["image"] == "img:1"
    custom = build_job(
        run(), connection(jobTemplate={"image": "mine:2", "imagePullPolicy": "Always"}), default_image="img:1"
    )
    assert pod(custom)["containers"][0]["image"] == "mine:2"
    assert pod(custom)["containers"][0]["imagePullPolicy"] == "Always"


def test_secrets_are_read_only_files_never_environment() -> None:
    job = build_job(
        run(),
        connection(audit={"postgres": {"dsnSecretRef": {"name": "audit-db", "key": "uri"}}}),
        default_image="img",
    )
    spec = pod(job)
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert volumes["infor-credentials"]["secret"] == {
        "secretName": "infor",
        "defaultMode": 0o440,
        "optional": True,
        "items": [{"key": "t.ionapi", "path": "credentials.ionapi"}],
    }
    assert volumes["anaplan-credentials"]["secret"]["secretName"] == "ap"
    assert volumes["audit-dsn"]["secret"]["items"] == [{"key": "uri", "path": "dsn"}]
    container = spec["containers"][0]
    mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
    for name in ("infor-credentials", "anaplan-credentials", "audit-dsn"):
        assert mounts[name]["readOnly"] is True
    assert mounts["tmp"] == {"name": "tmp", "mountPath": "/tmp", "readOnly": False}
    env = {item["name"]: item for item in container["env"]}
    assert all("value" in item and "valueFrom" not in item for item in env.values())
    assert (
        env["ML_CONNECTOR_INFOR_CREDENTIALS_FILE"]["value"] == "/var/run/secrets/ml-connector/infor/credentials.ionapi"
    )
    assert env["ML_CONNECTOR_AUDIT_DSN_FILE"]["value"] == "/var/run/secrets/ml-connector/audit/dsn"
    assert "envFrom" not in container


def test_sqlite_audit_store_on_a_claim() -> None:
    job = build_job(run(), connection(audit={"sqlite": {"claimName": "audit"}}), default_image="img")
    volumes = {volume["name"]: volume for volume in pod(job)["volumes"]}
    assert volumes["audit-data"] == {"name": "audit-data", "persistentVolumeClaim": {"claimName": "audit"}}
    mounts = {mount["name"]: mount for mount in pod(job)["containers"][0]["volumeMounts"]}
    assert mounts["audit-data"]["mountPath"] == "/var/lib/ml-connector"


def test_restricted_security_context() -> None:
    spec = pod(build_job(run(), connection(), default_image="img"))
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_UID,
        "fsGroup": WORKER_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    context = spec["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    allowed = {
        "emptyDir",
        "secret",
        "persistentVolumeClaim",
        "configMap",
        "projected",
        "csi",
        "downwardAPI",
        "ephemeral",
    }
    for volume in spec["volumes"]:
        assert set(volume) - {"name"} <= allowed
    assert spec["restartPolicy"] == "Never"
    assert "hostNetwork" not in spec


def test_job_limits_and_failure_policy() -> None:
    template = {"backoffLimit": 4, "activeDeadlineSeconds": 900, "ttlSecondsAfterFinished": 60}
    job_spec = build_job(run(), connection(jobTemplate=template), default_image="img")["spec"]
    assert job_spec["backoffLimit"] == 4
    assert job_spec["activeDeadlineSeconds"] == 900
    assert job_spec["ttlSecondsAfterFinished"] == 60
    assert job_spec["podReplacementPolicy"] == "Failed"
    assert job_spec["podFailurePolicy"]["rules"] == [
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": "worker", "operator": "In", "values": [CONFIG_ERROR_EXIT_CODE]},
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    defaults = build_job(run(), connection(), default_image="img")["spec"]
    assert (defaults["backoffLimit"], defaults["activeDeadlineSeconds"], defaults["ttlSecondsAfterFinished"]) == (
        2,
        3600,
        86400,
    )


def test_scheduling_and_resources_overrides() -> None:
    template = {
        "serviceAccountName": "sync-worker",
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": 1073741824}},
    }
    spec = pod(build_job(run(), connection(jobTemplate=template), default_image="img"))
    assert spec["serviceAccountName"] == "sync-worker"
    assert spec["nodeSelector"] == {"pool": "batch"}
    assert spec["tolerations"] == [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}]
    assert spec["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": 1073741824},
    }
    assert "resources" not in pod(build_job(run(), connection(), default_image="img"))["containers"][0]


def test_long_run_names_give_bounded_job_names() -> None:
    long = "r" * 100
    assert job_name("short") == "short"
    assert len(job_name(long)) <= 63
    assert job_name(long) == job_name(long)
    assert job_name(long) != job_name("r" * 99 + "s")


def test_a_run_not_read_from_the_server_is_refused() -> None:
    unsaved = parse_run(
        {
            "apiVersion": API_VERSION,
            "kind": "SyncRun",
            "metadata": {"name": "x"},
            "spec": {"connectionRef": {"name": "acme"}},
        }
    )
    with pytest.raises(ValueError, match="no namespace or uid"):
        build_job(unsaved, connection(), default_image="img")
