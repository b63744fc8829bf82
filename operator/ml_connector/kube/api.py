"""The few Kubernetes API calls the operator and the worker make: JSON in, JSON out, one error type.

Built on the ``kubernetes`` client's configuration and connection pool (so in-cluster tokens,
kubeconfig files and their CAs work as everywhere else), but without its models: bodies are plain
dicts, sent as they are (server-side defaults, MicroTime precision and unknown fields survive). The
synchronous calls run in a pool of threads of their own.

Writes that must not overwrite someone else's newer state carry ``metadata.resourceVersion`` as a
precondition (:func:`merge_patch` + ``resource_version=``): a stale writer gets :class:`KubeError`
409 (``conflict``), re-reads and tries again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import os
import socket
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_connector.kube.events import Event
from ml_connector.net.redact import redact
from ml_connector.spec import GROUP, VERSION

__all__ = [
    "EVENTS",
    "JOBS",
    "LEASES",
    "SYNCCONNECTIONS",
    "SYNCRUNS",
    "KubeApi",
    "KubeError",
    "ResourceType",
    "merge_patch",
    "object_ref",
]

#: Concurrent API calls (threads, and connections in the pool).
WORKERS = 16
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")
_EVENT_MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class ResourceType:
    """A namespaced resource: where its objects live in the REST API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{root}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
            if subresource is not None:
                path += f"/{subresource}"
        return path


SYNCCONNECTIONS = ResourceType(GROUP, VERSION, "syncconnections", "SyncConnection")
SYNCRUNS = ResourceType(GROUP, VERSION, "syncruns", "SyncRun")
JOBS = ResourceType("batch", "v1", "jobs", "Job")
EVENTS = ResourceType("", "v1", "events", "Event")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")


class KubeError(Exception):
    """An API call that failed: the HTTP status, the API's reason and message, and what was attempted."""

    def __init__(self, status: int, reason: str, message: str, *, action: str) -> None:
        self.status = status
        self.reason = reason
        self.message = redact(message)
        self.action = action
        super().__init__(f"{action}: {status} {reason}: {self.message}")

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def conflict(self) -> bool:
        """A stale write (resourceVersion precondition failed)."""
        return self.status == 409 and self.reason != "AlreadyExists"

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def invalid(self) -> bool:
        """The request itself is wrong (422 Invalid, 400 BadRequest): retrying the same body cannot help."""
        return self.status in (400, 422)

    @property
    def retryable(self) -> bool:
        """The API server was unavailable or busy (no answer, 429, 5xx)."""
        return self.status == 0 or self.status == 429 or self.status >= 500


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) turning ``old`` into ``new``: removed keys become ``None``."""
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def object_ref(body: Mapping[str, Any]) -> dict[str, str]:
    """An ``involvedObject`` / ``ObjectReference`` for ``body``."""
    meta = body.get("metadata") or {}
    ref = {
        "apiVersion": str(body.get("apiVersion", "")),
        "kind": str(body.get("kind", "")),
        "name": str(meta.get("name", "")),
        "namespace": str(meta.get("namespace", "")),
    }
    if meta.get("uid"):
        ref["uid"] = str(meta["uid"])
    if meta.get("resourceVersion"):
        ref["resourceVersion"] = str(meta["resourceVersion"])
    return ref


class KubeApi:
    """Async JSON calls on a configured ``kubernetes.client.ApiClient``."""

    def __init__(
        self, api_client: Any, *, timeout: float = 30.0, component: str = "ml-connector", workers: int = WORKERS
    ) -> None:
        self.api_client = api_client
        self.timeout = timeout
        self.component = component
        self.instance = socket.gethostname()
        # Own threads (the calls block on the network): the loop's default pool is a few threads only.
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")

    @classmethod
    def from_environment(cls, *, kubeconfig: str | None = None, component: str = "ml-connector") -> KubeApi:
        """In-cluster credentials inside a pod, else ``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``."""
        import kubernetes

        loaders: Any = kubernetes.config  # untyped package
        configuration = kubernetes.client.Configuration()
        configuration.connection_pool_maxsize = WORKERS
        if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.exists():
            loaders.load_incluster_config(client_configuration=configuration)
        else:
            loaders.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return cls(kubernetes.client.ApiClient(configuration), component=component)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    # -- raw -----------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, str] | None,
        content_type: str,
        action: str,
    ) -> dict[str, Any]:
        import urllib3.exceptions

        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        _, url, headers, _, _ = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            query_params=list(query.items()) if query else None,
            header_params=headers,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api_client.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self.timeout
            )
            data = response.read()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(0, "Unreachable", f"{type(exc).__name__}: {exc}", action=action) from None
        status = int(response.status)
        document: Any = None
        if data:
            try:
                document = json.loads(data)
            except ValueError:
                document = None
        if status >= 400:
            reason, message = str(response.reason or ""), ""
            if isinstance(document, dict):
                reason = str(document.get("reason") or reason)
                message = str(document.get("message") or "")
            raise KubeError(status, reason, message or bytes(data or b"").decode(errors="replace")[:500], action=action)
        return document if isinstance(document, dict) else {}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        action: str | None = None,
    ) -> dict[str, Any]:
        """One call; raises :class:`KubeError` (status 0 when the API server could not be reached)."""
        call = functools.partial(self._call, method, path, body, query, content_type, action or f"{method} {path}")
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # -- objects -------------------------------------------------------------------------------

    async def get(self, kind: ResourceType, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return await self.request(
                "GET", kind.path(namespace, name), action=f"reading {kind.kind} {namespace}/{name}"
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise

    async def list(
        self, kind: ResourceType, namespace: str, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        query = {"labelSelector": label_selector} if label_selector else None
        document = await self.request(
            "GET", kind.path(namespace), query=query, action=f"listing {kind.plural} in {namespace}"
        )
        items: list[dict[str, Any]] = document.get("items") or []
        return items

    async def create(self, kind: ResourceType, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name") or (body.get("metadata") or {}).get("generateName", "")
        return await self.request(
            "POST",
            kind.path(namespace),
            body=dict(body),
            query={"fieldValidation": "Strict"},
            action=f"creating {kind.kind} {namespace}/{name}",
        )

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
        """A JSON merge patch; with ``resource_version`` it applies only to that version (else 409 Conflict)."""
        body = dict(patch)
        if resource_version is not None:
            body["metadata"] = {**dict(body.get("metadata") or {}), "resourceVersion": resource_version}
        where = f"{kind.kind} {namespace}/{name}" + (f" {subresource}" if subresource else "")
        return await self.request(
            "PATCH",
            kind.path(namespace, name, subresource),
            body=body,
            content_type="application/merge-patch+json",
            action=f"patching {where}",
        )

    async def delete(self, kind: ResourceType, namespace: str, name: str) -> bool:
        """Delete (dependents in the background); False if it was already gone."""
        try:
            await self.request(
                "DELETE",
                kind.path(namespace, name),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
                action=f"deleting {kind.kind} {namespace}/{name}",
            )
        except KubeError as exc:
            if exc.not_found:
                return False
            raise
        return True

    async def post_event(self, involved: Mapping[str, Any], event: Event, *, now: dt.datetime | None = None) -> None:
        """Record ``event`` on the object ``involved`` (a body or an :func:`object_ref`)."""
        ref = object_ref(involved) if "metadata" in involved else dict(involved)
        moment = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = ref["namespace"]
        message = redact(event.message)
        if len(message) > _EVENT_MESSAGE_LIMIT:
            message = message[: _EVENT_MESSAGE_LIMIT - 3] + "..."
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref['name']}.", "namespace": namespace},
            "involvedObject": ref,
            "type": event.type,
            "reason": event.reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": moment,
            "lastTimestamp": moment,
            "count": 1,
        }
        await self.request(
            "POST", EVENTS.path(namespace), body=body, action=f"recording event {event.reason} on {ref['name']}"
        )
