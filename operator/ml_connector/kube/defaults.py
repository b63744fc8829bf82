"""The installation's defaults for worker Jobs (the Helm chart's ``worker.*`` and ``audit.*`` values).

The chart passes them to the operator as environment variables (``templates/deployment.yaml``). A
SyncConnection's ``spec.jobTemplate`` wins wherever it differs from the schema's default; since the API
server fills those defaults in, a field still at its default counts as "not set" and takes the
installation's value. ``spec.audit`` unset takes the installation's audit store (a Secret *reference*
for PostgreSQL: the operator never reads a Secret).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ml_connector.kube.jobs import build_job
from ml_connector.spec import (
    AuditSpec,
    JobTemplate,
    PostgresAudit,
    ResourceRequirements,
    SecretKeyRef,
    SQLiteAudit,
    SyncConnection,
    SyncRun,
)

__all__ = ["DEFAULT_IMAGE", "WorkerDefaults", "WorkerDefaultsError"]

DEFAULT_IMAGE = "ghcr.io/ml-connector/ml-connector:latest"

ENV_IMAGE = "ML_CONNECTOR_WORKER_IMAGE"
ENV_SERVICE_ACCOUNT = "ML_CONNECTOR_WORKER_SERVICE_ACCOUNT"
ENV_RESOURCES = "ML_CONNECTOR_WORKER_RESOURCES"
ENV_BACKOFF_LIMIT = "ML_CONNECTOR_WORKER_BACKOFF_LIMIT"
ENV_ACTIVE_DEADLINE = "ML_CONNECTOR_WORKER_ACTIVE_DEADLINE_SECONDS"
ENV_TTL = "ML_CONNECTOR_WORKER_TTL_SECONDS_AFTER_FINISHED"
ENV_PULL_SECRETS = "ML_CONNECTOR_WORKER_IMAGE_PULL_SECRETS"
ENV_AUDIT_STORE = "ML_CONNECTOR_AUDIT_STORE"
ENV_AUDIT_PVC = "ML_CONNECTOR_AUDIT_PVC"
ENV_AUDIT_DSN_SECRET = "ML_CONNECTOR_AUDIT_DSN_SECRET"  # noqa: S105 - the name of a variable holding a reference

_SCHEMA = JobTemplate()


class WorkerDefaultsError(ValueError):
    """An operator environment variable that cannot be used; the message names it."""


def _int(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise WorkerDefaultsError(f"{name}={text!r} is not a whole number") from None
    if value < 0:
        raise WorkerDefaultsError(f"{name}={text!r} must not be negative")
    return value


def _json(environ: Mapping[str, str], name: str) -> Any:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise WorkerDefaultsError(f"{name} is not valid JSON: {exc}") from None


def _pull_secrets(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WorkerDefaultsError(f'{ENV_PULL_SECRETS} must be a JSON list such as [{{"name": "regcred"}}]')
    names = []
    for item in value:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name:
            raise WorkerDefaultsError(f'{ENV_PULL_SECRETS}: {item!r} is not a Secret name or {{"name": ...}}')
        names.append(name)
    return tuple(names)


def _audit(environ: Mapping[str, str]) -> AuditSpec | None:
    store = environ.get(ENV_AUDIT_STORE, "").strip()
    if not store:
        return None
    if store == "sqlite":
        claim = environ.get(ENV_AUDIT_PVC, "").strip() or None
        return AuditSpec(sqlite=SQLiteAudit(claim_name=claim))
    if store == "postgres":
        reference = environ.get(ENV_AUDIT_DSN_SECRET, "").strip()
        name, _, key = reference.partition("/")
        if not name or not key:
            raise WorkerDefaultsError(f"{ENV_AUDIT_DSN_SECRET}={reference!r}: expected <secret name>/<key>")
        return AuditSpec(postgres=PostgresAudit(dsn_secret_ref=SecretKeyRef(name=name, key=key)))
    raise WorkerDefaultsError(f"{ENV_AUDIT_STORE}={store!r}: expected sqlite or postgres")


@dataclass(frozen=True)
class WorkerDefaults:
    """Job settings of this installation; ``None`` keeps the SyncConnection's (schema) value."""

    image: str = DEFAULT_IMAGE
    service_account: str | None = None
    resources: ResourceRequirements | None = None
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    image_pull_secrets: tuple[str, ...] = ()
    audit: AuditSpec | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> WorkerDefaults:
        env = os.environ if environ is None else environ
        resources = _json(env, ENV_RESOURCES)
        try:
            parsed = ResourceRequirements.model_validate(resources) if resources else None
        except ValueError as exc:
            raise WorkerDefaultsError(f"{ENV_RESOURCES}: {exc}") from None
        return cls(
            image=env.get(ENV_IMAGE, "").strip() or DEFAULT_IMAGE,
            service_account=env.get(ENV_SERVICE_ACCOUNT, "").strip() or None,
            resources=parsed,
            backoff_limit=_int(env, ENV_BACKOFF_LIMIT),
            active_deadline_seconds=_int(env, ENV_ACTIVE_DEADLINE),
            ttl_seconds_after_finished=_int(env, ENV_TTL),
            image_pull_secrets=_pull_secrets(_json(env, ENV_PULL_SECRETS)),
            audit=_audit(env),
        )

    def effective(self, connection: SyncConnection) -> SyncConnection:
        """``connection`` with the installation's values wherever its jobTemplate / audit is at the default."""
        template = connection.spec.job_template
        update: dict[str, Any] = {}
        pairs: tuple[tuple[str, Any], ...] = (
            ("service_account_name", self.service_account),
            ("backoff_limit", self.backoff_limit),
            ("active_deadline_seconds", self.active_deadline_seconds),
            ("ttl_seconds_after_finished", self.ttl_seconds_after_finished),
        )
        for name, value in pairs:
            if value is not None and getattr(template, name) == getattr(_SCHEMA, name):
                update[name] = value
        if self.resources is not None and template.resources == _SCHEMA.resources:
            update["resources"] = self.resources
        spec_update: dict[str, Any] = {}
        if update:
            spec_update["job_template"] = template.model_copy(update=update)
        if connection.spec.audit is None and self.audit is not None:
            spec_update["audit"] = self.audit
        if not spec_update:
            return connection
        return connection.model_copy(update={"spec": connection.spec.model_copy(update=spec_update)})

    def job_for(self, run: SyncRun, connection: SyncConnection) -> dict[str, Any]:
        """The Job manifest of ``run`` (:func:`~ml_connector.kube.jobs.build_job` with these defaults)."""
        manifest = build_job(run, self.effective(connection), default_image=self.image)
        if self.image_pull_secrets:
            pod = manifest["spec"]["template"]["spec"]
            pod["imagePullSecrets"] = [{"name": name} for name in self.image_pull_secrets]
        return manifest
