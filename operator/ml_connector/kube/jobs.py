"""The Job that runs one SyncRun: a pure manifest builder.

One Job per SyncRun, named after it (deterministic: creating it twice is an AlreadyExists), owned by it
(Job -> SyncRun -> SyncConnection, so deleting the connection collects everything). The pod runs
``ml-connector worker --run <namespace>/<name>`` with:

* Secrets mounted as read-only files (never environment variables); the worker finds them through the
  ``ML_CONNECTOR_*`` variables below, which hold paths, not secrets. The volumes are ``optional``: a missing
  Secret or key would otherwise keep the pod in ContainerCreating until the deadline; this way the worker
  starts, names the missing Secret and key in the SyncRun status and exits with the configuration-error code;
* a Pod Security Standards "restricted" security context: non-root numeric uid, RuntimeDefault seccomp,
  all capabilities dropped, no privilege escalation, read-only root filesystem with an emptyDir ``/tmp``;
* ``restartPolicy: Never``, ``backoffLimit``, ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``,
  ``podReplacementPolicy: Failed`` (no two pods of one run overlap) and a ``podFailurePolicy``: the
  worker's configuration-error exit code fails the Job at once, evictions (``DisruptionTarget``) do
  not count against ``backoffLimit``;
* our own labels only (nothing copied from the parents, so GitOps tracking labels stay off).
"""

from __future__ import annotations

import posixpath
from typing import Any

from ml_connector.kube.naming import bounded_name, child_labels
from ml_connector.spec import API_VERSION, SyncConnection, SyncRun

__all__ = [
    "ANAPLAN_CREDENTIALS_DIR",
    "CONFIG_ERROR_EXIT_CODE",
    "ENV_ANAPLAN_CREDENTIALS_DIR",
    "ENV_AUDIT_DSN_FILE",
    "ENV_AUDIT_SQLITE_PATH",
    "ENV_INFOR_CREDENTIALS_FILE",
    "INFOR_CREDENTIALS_FILE",
    "WORKER_CONTAINER",
    "WORKER_UID",
    "build_job",
    "job_name",
    "worker_command",
]

WORKER_CONTAINER = "worker"
#: The image's numeric non-root user (``USER 65532`` in the Dockerfile): kubelet can verify runAsNonRoot.
WORKER_UID = 65532
#: The worker exits with this code on an error that a retry cannot fix (invalid spec, bad credentials).
CONFIG_ERROR_EXIT_CODE = 2

SECRETS_ROOT = "/var/run/secrets/ml-connector"
INFOR_CREDENTIALS_FILE = f"{SECRETS_ROOT}/infor/credentials.ionapi"
ANAPLAN_CREDENTIALS_DIR = f"{SECRETS_ROOT}/anaplan"
AUDIT_DSN_FILE = f"{SECRETS_ROOT}/audit/dsn"

ENV_INFOR_CREDENTIALS_FILE = "ML_CONNECTOR_INFOR_CREDENTIALS_FILE"
ENV_ANAPLAN_CREDENTIALS_DIR = "ML_CONNECTOR_ANAPLAN_CREDENTIALS_DIR"
ENV_AUDIT_DSN_FILE = "ML_CONNECTOR_AUDIT_DSN_FILE"
ENV_AUDIT_SQLITE_PATH = "ML_CONNECTOR_AUDIT_SQLITE_PATH"

#: The only writable place in the container (an emptyDir): the root filesystem is read-only.
TMP_DIR = "/tmp"  # noqa: S108 - a private emptyDir, not a shared /tmp
_SECRET_MODE = 0o440  # owner and fsGroup may read; with fsGroup the worker's group owns the files


def job_name(run_name: str) -> str:
    """The Job of a SyncRun: its name, shortened with a hash when longer than 63 characters."""
    return bounded_name(run_name)


def worker_command(namespace: str, run_name: str) -> list[str]:
    return ["ml-connector", "worker", "--run", f"{namespace}/{run_name}"]


def _secret_volume(name: str, secret: str, items: list[dict[str, str]] | None = None) -> dict[str, Any]:
    # optional: the worker reports a missing Secret or key itself (clear message, fast failure), see above.
    source: dict[str, Any] = {"secretName": secret, "defaultMode": _SECRET_MODE, "optional": True}
    if items:
        source["items"] = items
    return {"name": name, "secret": source}


def _mount(name: str, path: str, read_only: bool = True) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def build_job(run: SyncRun, connection: SyncConnection, *, default_image: str) -> dict[str, Any]:
    """The Job manifest for ``run`` of ``connection``; ``default_image`` unless the jobTemplate names one."""
    meta = run.metadata
    if meta.namespace is None or meta.uid is None:
        raise ValueError(f"SyncRun {meta.name} has no namespace or uid; read it from the API server first")
    spec = connection.spec
    template = spec.job_template
    name = job_name(meta.name)
    labels = child_labels(connection.metadata.name, meta.name)

    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {}},
        _secret_volume(
            "infor-credentials",
            spec.infor.credentials_secret_ref.name,
            [{"key": spec.infor.credentials_secret_ref.key, "path": posixpath.basename(INFOR_CREDENTIALS_FILE)}],
        ),
        _secret_volume("anaplan-credentials", spec.anaplan.auth.credentials_secret_ref.name),
    ]
    mounts = [
        _mount("tmp", TMP_DIR, read_only=False),
        _mount("infor-credentials", posixpath.dirname(INFOR_CREDENTIALS_FILE)),
        _mount("anaplan-credentials", ANAPLAN_CREDENTIALS_DIR),
    ]
    env = [
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": ENV_INFOR_CREDENTIALS_FILE, "value": INFOR_CREDENTIALS_FILE},
        {"name": ENV_ANAPLAN_CREDENTIALS_DIR, "value": ANAPLAN_CREDENTIALS_DIR},
    ]
    audit = spec.audit
    if audit is not None and audit.postgres is not None:
        ref = audit.postgres.dsn_secret_ref
        volumes.append(
            _secret_volume("audit-dsn", ref.name, [{"key": ref.key, "path": posixpath.basename(AUDIT_DSN_FILE)}])
        )
        mounts.append(_mount("audit-dsn", posixpath.dirname(AUDIT_DSN_FILE)))
        env.append({"name": ENV_AUDIT_DSN_FILE, "value": AUDIT_DSN_FILE})
    elif audit is not None and audit.sqlite is not None:
        sqlite = audit.sqlite
        claim = {"persistentVolumeClaim": {"claimName": sqlite.claim_name}} if sqlite.claim_name else {"emptyDir": {}}
        volumes.append({"name": "audit-data", **claim})
        mounts.append(_mount("audit-data", posixpath.dirname(sqlite.path), read_only=False))
        env.append({"name": ENV_AUDIT_SQLITE_PATH, "value": sqlite.path})

    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": template.image or default_image,
        "command": worker_command(meta.namespace, meta.name),
        "env": env,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if template.image_pull_policy:
        container["imagePullPolicy"] = template.image_pull_policy
    resources = {key: dict(value) for key, value in template.resources.to_wire().items() if value}
    if resources:
        container["resources"] = resources

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": template.service_account_name,
        # The worker talks to the API server: it takes the model's Lease and writes its SyncRun status.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    if template.tolerations:
        pod_spec["tolerations"] = [toleration.to_wire() for toleration in template.tolerations]

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "SyncRun",
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "backoffLimit": template.backoff_limit,
            "activeDeadlineSeconds": template.active_deadline_seconds,
            "ttlSecondsAfterFinished": template.ttl_seconds_after_finished,
            "podReplacementPolicy": "Failed",
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": WORKER_CONTAINER,
                            "operator": "In",
                            "values": [CONFIG_ERROR_EXIT_CODE],
                        },
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
