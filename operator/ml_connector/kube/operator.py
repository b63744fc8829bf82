"""Run the operator: kopf settings, the handlers, and the metrics and health HTTP endpoints.

* kopf runs **standalone** (one replica, ``Recreate``: no peering objects, no peering RBAC), watches only
  the namespaces given (no namespace or CRD scanning, so namespaced Roles suffice), keeps its progress and
  diff-base in annotations under ``operator.ml-connector.com/`` and finalizes with
  ``ml-connector.com/finalizer``. The storage prefix is a sub-domain of the API group on purpose: kopf
  ignores every annotation under its own prefix when it decides whether an object changed, and the manual
  run annotation ``ml-connector.com/requested-at`` must count as a change.
* ``/metrics`` (prometheus-client text format) on ``metrics_port``, ``/healthz`` on ``health_port``:
  200 while the kopf tasks run and the event loop answers, 503 once they have stopped.
* Events come from the controller (:class:`~ml_connector.kube.api.KubeApi`), not from kopf's logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import REGISTRY

from ml_connector.kube.api import KubeApi
from ml_connector.kube.controller import Controller
from ml_connector.kube.defaults import WorkerDefaults
from ml_connector.kube.handlers import STORAGE_PREFIX, register
from ml_connector.metrics import Metrics
from ml_connector.spec import GROUP

__all__ = ["FINALIZER", "STORAGE_PREFIX", "OperatorOptions", "kopf_settings", "run_operator", "serve_endpoints"]

log = logging.getLogger(__name__)

FINALIZER = f"{GROUP}/finalizer"
ENV_RECONCILE_INTERVAL = "ML_CONNECTOR_RECONCILE_INTERVAL"


@dataclass(frozen=True)
class OperatorOptions:
    """How to run: which namespaces, which ports, how often to look at every connection."""

    namespaces: tuple[str, ...]
    metrics_port: int = 8080
    health_port: int = 8081
    host: str = "0.0.0.0"
    reconcile_interval: float = 30.0
    defaults: WorkerDefaults = field(default_factory=WorkerDefaults)
    kubeconfig: str | None = None

    def __post_init__(self) -> None:
        if not self.namespaces or any(not namespace for namespace in self.namespaces):
            raise ValueError("the operator needs at least one namespace to watch (--namespaces a,b)")
        if self.reconcile_interval <= 0:
            raise ValueError(f"reconcile interval must be positive, not {self.reconcile_interval}")


def kopf_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    settings.scanning.disabled = True
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration", v1=False
    )
    settings.posting.enabled = False  # our Events are posted deliberately by the controller
    settings.watching.server_timeout = 600  # re-list now and then, so a silently dead stream heals
    return settings


@contextlib.asynccontextmanager
async def serve_endpoints(
    metrics: Metrics, alive: asyncio.Event, *, host: str, metrics_port: int, health_port: int
) -> AsyncIterator[tuple[int, int]]:
    """Serve ``/metrics`` and ``/healthz`` (on one port if both are the same); yields the bound ports."""

    async def metrics_page(request: web.Request) -> web.Response:
        payload = generate_latest(metrics.registry) + generate_latest(REGISTRY)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        if alive.is_set():
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "stopped"}, status=503)

    apps: list[tuple[web.Application, int]] = []
    if metrics_port == health_port:
        app = web.Application()
        app.router.add_get("/metrics", metrics_page)
        app.router.add_get("/healthz", healthz)
        apps.append((app, metrics_port))
    else:
        metrics_app, health_app = web.Application(), web.Application()
        metrics_app.router.add_get("/metrics", metrics_page)
        health_app.router.add_get("/healthz", healthz)
        apps += [(metrics_app, metrics_port), (health_app, health_port)]
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    try:
        for app, port in apps:
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, host, port)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            ports.append(sockets[0].getsockname()[1] if sockets else port)
        yield (ports[0], ports[-1])
    finally:
        for runner in runners:
            await runner.cleanup()


async def run_operator(
    options: OperatorOptions,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    api: KubeApi | None = None,
) -> None:
    """Run until ``stop`` is set (or a signal stops kopf)."""
    client = api or KubeApi.from_environment(kubeconfig=options.kubeconfig, component="ml-connector-operator")
    metrics = Metrics()
    controller = Controller(client, metrics, options.defaults)
    registry = kopf.OperatorRegistry()
    register(registry, interval=options.reconcile_interval, configuration=client.api_client.configuration)
    alive = asyncio.Event()
    ready_flag = asyncio.Event()
    async with serve_endpoints(
        metrics, alive, host=options.host, metrics_port=options.metrics_port, health_port=options.health_port
    ) as ports:
        log.info(
            "operator watching %s; metrics on :%d/metrics, health on :%d/healthz",
            ",".join(options.namespaces),
            *ports,
        )
        alive.set()
        kopf_task = asyncio.create_task(
            kopf.operator(
                registry=registry,
                settings=kopf_settings(),
                standalone=True,
                clusterwide=False,
                namespaces=list(options.namespaces),
                memo=kopf.Memo(controller=controller),
                # kopf also stops on SIGTERM/SIGINT; an unused stop flag would hold its exit up for 5 s.
                stop_flag=stop,
                ready_flag=ready_flag,
            ),
            name="kopf",
        )
        relay: asyncio.Task[None] | None = None
        if ready is not None:
            relay = asyncio.create_task(_relay(ready_flag, ready), name="ready-relay")
        try:
            await kopf_task
        finally:
            alive.clear()
            if relay is not None:
                relay.cancel()
            if not kopf_task.done():
                kopf_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await kopf_task
            client.close()


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def parse_namespaces(text: str) -> tuple[str, ...]:
    """``a,b`` -> ``("a", "b")`` (blanks dropped)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def options_from(
    namespaces: Sequence[str],
    *,
    metrics_port: int,
    health_port: int,
    reconcile_interval: float | None = None,
    host: str = "0.0.0.0",
) -> OperatorOptions:
    interval = reconcile_interval
    if interval is None:
        interval = float(os.environ.get(ENV_RECONCILE_INTERVAL, "") or 30.0)
    return OperatorOptions(
        namespaces=tuple(namespaces),
        metrics_port=metrics_port,
        health_port=health_port,
        host=host,
        reconcile_interval=interval,
        defaults=WorkerDefaults.from_environ(),
    )
