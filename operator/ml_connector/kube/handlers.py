"""The kopf glue: the only module with kopf handlers. Thin on purpose.

Every handler turns kopf's kwargs into plain data at once and calls the :class:`~ml_connector.kube.
controller.Controller` (memo ``controller``); :func:`_boundary` records the reconcile metrics and maps
errors to kopf's ``TemporaryError`` / ``PermanentError`` in one place.

What triggers what (level-based: each call looks at the whole state):

* SyncConnection: created, changed (spec or annotations: ``ml-connector.com/requested-at``), resumed
  after an operator restart, and a timer every ``interval`` seconds -> ``reconcile_connection``;
  deleted -> its metric series are dropped (no finalizer of its own; the timer's is kopf's).
* SyncRun: created or resumed -> ``reconcile_run`` (create the Job).
* Job (ours, labelled ``ml-connector.com/run``): every watch event -> ``observe_job`` (mirror its state).
* Three indexes keep the watched objects in memory, so reconciles need no LIST calls.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import kopf

from ml_connector.kube.api import KubeError
from ml_connector.kube.controller import CONNECTIONS, RUNS, Controller, InvalidObject, Reconciled, Retry
from ml_connector.kube.naming import LABEL_RUN
from ml_connector.net.redact import redact
from ml_connector.spec import GROUP, VERSION

__all__ = ["STORAGE_PREFIX", "IndexViews", "login_with", "register"]

log = logging.getLogger(__name__)

#: kopf keeps its progress and diff base in annotations under this prefix (see kube/operator.py for why).
STORAGE_PREFIX = f"operator.{GROUP}"
_RETRYABLE_DELAY = 5.0
_OTHER_API_DELAY = 60.0
_UNEXPECTED_DELAY = 30.0


def _snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain, detached copy of a watched object without what the reconcilers never read (memory: the
    indexes hold one per object): ``managedFields`` and kopf's own annotations (its diff base repeats the spec)."""
    copied: dict[str, Any] = _plain(body)
    metadata = copied.get("metadata", {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if annotations:
        for key in [key for key in annotations if key.startswith(f"{STORAGE_PREFIX}/")]:
            del annotations[key]
    return copied


def _job_snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the reconcilers read of a Job: its identity, owner and status (not the pod template)."""
    metadata = body.get("metadata") or {}
    return {
        "metadata": {
            key: _plain(metadata[key]) for key in ("name", "namespace", "uid", "ownerReferences") if key in metadata
        },
        "status": _plain(body.get("status") or {}),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class IndexViews:
    """:class:`~ml_connector.kube.controller.Views` over the three kopf indexes."""

    def __init__(self, connections: kopf.Index[Any, Any], runs: kopf.Index[Any, Any], jobs: kopf.Index[Any, Any]):
        self._connections = connections
        self._runs = runs
        self._jobs = jobs

    @staticmethod
    def _one(index: kopf.Index[Any, Any], key: tuple[str, str]) -> Mapping[str, Any] | None:
        store = index.get(key)
        return next(iter(store), None) if store else None

    def connection(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._one(self._connections, (namespace, name))

    def runs(self, namespace: str, connection: str) -> Sequence[Mapping[str, Any]]:
        return list(self._runs.get((namespace, connection), ()))

    def job(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self._one(self._jobs, (namespace, name))


def _views(kwargs: Mapping[str, Any]) -> IndexViews:
    return IndexViews(kwargs["syncconnections_by_name"], kwargs["syncruns_by_connection"], kwargs["jobs_by_name"])


async def _boundary(controller_name: str, memo: Any, action: Callable[[Controller], Awaitable[Reconciled]]) -> None:
    """Run one reconcile: metrics, and errors as kopf understands them."""
    controller: Controller = memo["controller"]
    started = time.perf_counter()

    def observe(result: str, *, terminal: bool = False) -> None:
        controller.metrics.observe_reconcile(controller_name, result, time.perf_counter() - started, terminal=terminal)

    try:
        outcome = await action(controller)
    except asyncio.CancelledError:
        raise
    except Retry as exc:
        observe("error")
        raise kopf.TemporaryError(str(exc), delay=exc.delay) from None
    except InvalidObject as exc:
        observe("error", terminal=True)
        raise kopf.PermanentError(str(exc)) from None
    except KubeError as exc:
        observe("error")
        delay = _RETRYABLE_DELAY if exc.retryable or exc.conflict else _OTHER_API_DELAY
        raise kopf.TemporaryError(str(exc), delay=delay) from None
    except Exception as exc:
        observe("error")
        log.exception("%s reconcile failed unexpectedly", controller_name)
        raise kopf.TemporaryError(redact(f"unexpected {type(exc).__name__}: {exc}"), delay=_UNEXPECTED_DELAY) from None
    observe(outcome.result)


# --- indexes -------------------------------------------------------------------------------------


def syncconnections_by_name(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _snapshot(body)}


def syncruns_by_connection(body: kopf.Body, namespace: str | None, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    connection = (spec.get("connectionRef") or {}).get("name", "")
    return {(namespace, connection): _snapshot(body)}


def jobs_by_name(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _job_snapshot(body)}


# --- SyncConnection ------------------------------------------------------------------------------


async def connection_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    views = _views(kwargs)
    await _boundary(CONNECTIONS, memo, lambda c: c.reconcile_connection(_snapshot(body), views))


async def connection_timer(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    views = _views(kwargs)
    await _boundary(CONNECTIONS, memo, lambda c: c.reconcile_connection(_snapshot(body), views))


async def connection_deleted(namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    controller: Controller = memo["controller"]
    controller.forget_connection(namespace or "", name)


# --- SyncRun and Job -----------------------------------------------------------------------------


async def run_created(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    views = _views(kwargs)
    await _boundary(RUNS, memo, lambda c: c.reconcile_run(_snapshot(body), views))


async def job_event(body: kopf.Body, type: str | None, memo: kopf.Memo, **kwargs: Any) -> None:
    views = _views(kwargs)
    job = _job_snapshot(body)
    await _boundary(RUNS, memo, lambda c: c.observe_job(job, views, deleted=type == "DELETED"))


def login_with(configuration: Any) -> Callable[..., kopf.ConnectionInfo]:
    """A kopf login handler using the credentials of a ``kubernetes.client.Configuration`` (the same ones the
    controller's :class:`~ml_connector.kube.api.KubeApi` uses: in-cluster token or kubeconfig)."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
            "authorization"
        )
        scheme, _space, token = (header or "").rpartition(" ")
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            username=configuration.username or None,
            password=configuration.password or None,
            scheme=scheme or ("Bearer" if token else None),
            token=token or None,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
        )

    return login


def _spread(interval: float) -> Callable[..., float]:
    def initial_delay(**_: Any) -> float:
        return random.uniform(0.0, interval)

    return initial_delay


def register(registry: kopf.OperatorRegistry, *, interval: float, configuration: Any) -> None:
    """Wire the handlers into ``registry``: kopf logs in with ``configuration`` (a kubernetes client
    ``Configuration``) and the connection timer fires every ``interval`` seconds."""
    kopf.on.login(registry=registry, id="login")(login_with(configuration))
    connections = (GROUP, VERSION, "syncconnections")
    runs = (GROUP, VERSION, "syncruns")
    ours = {LABEL_RUN: kopf.PRESENT}
    kopf.index(*connections, registry=registry)(syncconnections_by_name)
    kopf.index(*runs, registry=registry)(syncruns_by_connection)
    kopf.index("batch", "v1", "jobs", labels=ours, registry=registry)(jobs_by_name)

    kopf.on.resume(*connections, registry=registry, id="reconcile-resumed")(connection_changed)
    kopf.on.create(*connections, registry=registry, id="reconcile-created")(connection_changed)
    kopf.on.update(*connections, registry=registry, id="reconcile-updated")(connection_changed)
    # idle: not while the object keeps changing (the change handlers reconcile then); the first tick at a random
    # point of the interval, so that the timers of many connections (after a restart, say) do not fire together.
    kopf.timer(
        *connections,
        registry=registry,
        id="reconcile-timer",
        interval=interval,
        idle=min(interval, 5.0),
        initial_delay=_spread(interval),
    )(connection_timer)
    kopf.on.delete(*connections, registry=registry, id="forget", optional=True)(connection_deleted)

    kopf.on.resume(*runs, registry=registry, id="reconcile-resumed")(run_created)
    kopf.on.create(*runs, registry=registry, id="reconcile-created")(run_created)
    kopf.on.event("batch", "v1", "jobs", labels=ours, registry=registry, id="observe")(job_event)
