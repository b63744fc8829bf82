"""``ml-connector operator``: reconcile SyncConnections and SyncRuns in the given namespaces.

The flags match the Helm chart's Deployment (``charts/ml-connector/templates/deployment.yaml``); the
worker Job defaults come from the ``ML_CONNECTOR_WORKER_*`` and ``ML_CONNECTOR_AUDIT_*`` variables it
sets (:mod:`ml_connector.kube.defaults`). Stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import asyncio
import logging

import click


@click.command("operator")
@click.option(
    "--namespaces",
    envvar="ML_CONNECTOR_NAMESPACES",
    required=True,
    help="Comma-separated namespaces to watch (the chart's operator.watchNamespaces).",
)
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="/metrics port.")
@click.option("--health-port", type=click.IntRange(0, 65535), default=8081, show_default=True, help="/healthz port.")
@click.option("--host", default="0.0.0.0", show_default=True, help="Address the endpoints listen on.")
@click.option(
    "--reconcile-interval",
    type=click.FloatRange(min=0.1),
    envvar="ML_CONNECTOR_RECONCILE_INTERVAL",
    default=30.0,
    show_default=True,
    help="Seconds between two looks at every SyncConnection (schedules, missed runs, history).",
)
def command(namespaces: str, metrics_port: int, health_port: int, host: str, reconcile_interval: float) -> None:
    """Run the operator (kopf, standalone): schedules, runs, Jobs, status, Events, metrics."""
    from ml_connector.kube.defaults import WorkerDefaultsError
    from ml_connector.kube.operator import options_from, parse_namespaces, run_operator

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # kopf reports every handler call at INFO; keep its per-object chatter out of normal logs.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    try:
        options = options_from(
            parse_namespaces(namespaces),
            metrics_port=metrics_port,
            health_port=health_port,
            reconcile_interval=reconcile_interval,
            host=host,
        )
    except (ValueError, WorkerDefaultsError) as exc:
        raise click.UsageError(str(exc)) from None
    asyncio.run(run_operator(options))
