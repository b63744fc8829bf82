"""Prometheus metrics, served by the operator only (Jobs are too short-lived to scrape).

Reconcile metrics use controller-runtime's names so existing dashboards and alerts apply; the rest
carry the ``ml_connector_`` prefix. Labels stay bounded: namespace, connection, direction, flow,
outcome, service and status code — never a run name or UID.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

RECONCILE_RESULTS = ("success", "error", "requeue", "requeue_after")
CONTROLLERS = ("syncconnection", "syncrun")
RUN_OUTCOMES = ("succeeded", "failed")
RECORD_STATUSES = ("extracted", "loaded", "rejected", "skipped")


@dataclass(frozen=True)
class RunOutcome:
    """What a finished SyncRun contributes to the metrics (taken from its status)."""

    namespace: str
    connection: str
    direction: str
    succeeded: bool
    duration_seconds: float | None = None
    finished_at: float | None = None
    records: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # flow -> status -> count
    lock_wait_seconds: float | None = None
    api_errors: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # service -> code -> count


class Metrics:
    """All metrics on one registry (a private one in tests, the default one in the operator)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.registry = r
        self.reconcile_total = Counter(
            "controller_runtime_reconcile_total",
            "Total number of reconciliations per controller.",
            ["controller", "result"],
            registry=r,
        )
        self.reconcile_errors_total = Counter(
            "controller_runtime_reconcile_errors_total",
            "Total number of reconciliation errors per controller.",
            ["controller"],
            registry=r,
        )
        self.terminal_reconcile_errors_total = Counter(
            "controller_runtime_terminal_reconcile_errors_total",
            "Total number of terminal (not retried) reconciliation errors per controller.",
            ["controller"],
            registry=r,
        )
        self.reconcile_time_seconds = Histogram(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller.",
            ["controller"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60),
            registry=r,
        )
        self.runs_total = Counter(
            "ml_connector_runs_total",
            "Finished SyncRuns by outcome.",
            ["namespace", "connection", "direction", "outcome"],
            registry=r,
        )
        self.run_duration_seconds = Histogram(
            "ml_connector_run_duration_seconds",
            "Duration of finished SyncRuns.",
            ["direction"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
            registry=r,
        )
        self.records_total = Counter(
            "ml_connector_records_total",
            "Records moved by finished SyncRuns, by flow and fate (extracted, loaded, rejected, skipped).",
            ["namespace", "connection", "flow", "status"],
            registry=r,
        )
        self.lock_wait_seconds = Histogram(
            "ml_connector_model_lock_wait_seconds",
            "Time runs waited for the Anaplan model Lease.",
            ["namespace", "connection"],
            buckets=(0.1, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.last_success_timestamp = Gauge(
            "ml_connector_last_successful_run_timestamp_seconds",
            "Unix time of the last successful run per connection (freshness of the Anaplan data).",
            ["namespace", "connection"],
            registry=r,
        )
        self.api_errors_total = Counter(
            "ml_connector_api_errors_total",
            "Error answers from Infor and Anaplan seen by runs, by service and HTTP status code.",
            ["service", "code"],
            registry=r,
        )
        self.active_runs = Gauge(
            "ml_connector_active_runs",
            "SyncRuns currently pending, waiting for a lock or running.",
            ["namespace"],
            registry=r,
        )
        self.connections = Gauge(
            "ml_connector_connections",
            "SyncConnections by readiness.",
            ["ready"],
            registry=r,
        )
        for controller in CONTROLLERS:
            for result in RECONCILE_RESULTS:
                self.reconcile_total.labels(controller, result).inc(0)
            self.reconcile_errors_total.labels(controller).inc(0)
            self.terminal_reconcile_errors_total.labels(controller).inc(0)

    def observe_reconcile(self, controller: str, result: str, seconds: float, *, terminal: bool = False) -> None:
        self.reconcile_total.labels(controller, result).inc()
        self.reconcile_time_seconds.labels(controller).observe(seconds)
        if result == "error":
            self.reconcile_errors_total.labels(controller).inc()
            if terminal:
                self.terminal_reconcile_errors_total.labels(controller).inc()

    def observe_run(self, outcome: RunOutcome) -> None:
        label = RUN_OUTCOMES[0] if outcome.succeeded else RUN_OUTCOMES[1]
        self.runs_total.labels(outcome.namespace, outcome.connection, outcome.direction, label).inc()
        if outcome.duration_seconds is not None:
            self.run_duration_seconds.labels(outcome.direction).observe(outcome.duration_seconds)
        for flow, counts in outcome.records.items():
            for status in RECORD_STATUSES:
                count = counts.get(status, 0)
                if count:
                    self.records_total.labels(outcome.namespace, outcome.connection, flow, status).inc(count)
        if outcome.lock_wait_seconds is not None:
            self.lock_wait_seconds.labels(outcome.namespace, outcome.connection).observe(outcome.lock_wait_seconds)
        for service, codes in outcome.api_errors.items():
            for code, count in codes.items():
                if count:
                    self.api_errors_total.labels(service, str(code)).inc(count)
        if outcome.succeeded and outcome.finished_at is not None:
            self.last_success_timestamp.labels(outcome.namespace, outcome.connection).set(outcome.finished_at)

    def forget_connection(self, namespace: str, connection: str) -> None:
        """Drop the per-connection series of a deleted SyncConnection (keeps cardinality bounded)."""
        for metric in (self.last_success_timestamp, self.lock_wait_seconds):
            with contextlib.suppress(KeyError):
                metric.remove(namespace, connection)
