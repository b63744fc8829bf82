from __future__ import annotations

from prometheus_client import generate_latest

from ml_connector.metrics import Metrics, RunOutcome


def sample(metrics: Metrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_reconcile_results_are_preinitialised_like_controller_runtime() -> None:
    metrics = Metrics()
    for result in ("success", "error", "requeue", "requeue_after"):
        assert sample(metrics, "controller_runtime_reconcile_total", {"controller": "syncrun", "result": result}) == 0
    metrics.observe_reconcile("syncrun", "error", 0.2, terminal=True)
    assert sample(metrics, "controller_runtime_reconcile_errors_total", {"controller": "syncrun"}) == 1
    assert sample(metrics, "controller_runtime_terminal_reconcile_errors_total", {"controller": "syncrun"}) == 1
    assert sample(metrics, "controller_runtime_reconcile_time_seconds_count", {"controller": "syncrun"}) == 1


def test_run_outcome_feeds_runs_records_lock_waits_errors_and_freshness() -> None:
    metrics = Metrics()
    metrics.observe_run(
        RunOutcome(
            namespace="finance",
            connection="m3",
            direction="Load",
            succeeded=True,
            duration_seconds=42.0,
            finished_at=1_800_000_000.0,
            records={"gl_postings": {"extracted": 10, "loaded": 8, "rejected": 1, "skipped": 1}},
            lock_wait_seconds=3.0,
            api_errors={"anaplan": {"429": 4}, "infor": {"503": 1}},
        )
    )
    labels = {"namespace": "finance", "connection": "m3"}
    assert sample(metrics, "ml_connector_runs_total", {**labels, "direction": "Load", "outcome": "succeeded"}) == 1
    flow = {**labels, "flow": "gl_postings"}
    assert sample(metrics, "ml_connector_records_total", {**flow, "status": "loaded"}) == 8
    assert sample(metrics, "ml_connector_records_total", {**flow, "status": "rejected"}) == 1
    assert sample(metrics, "ml_connector_model_lock_wait_seconds_sum", labels) == 3.0
    assert sample(metrics, "ml_connector_api_errors_total", {"service": "anaplan", "code": "429"}) == 4
    assert sample(metrics, "ml_connector_last_successful_run_timestamp_seconds", labels) == 1_800_000_000.0

    metrics.forget_connection("finance", "m3")
    assert sample(metrics, "ml_connector_last_successful_run_timestamp_seconds", labels) is None
    assert b"ml_connector_runs_total" in generate_latest(metrics.registry)


def test_failed_run_does_not_move_freshness() -> None:
    metrics = Metrics()
    metrics.observe_run(
        RunOutcome(namespace="finance", connection="m3", direction="Load", succeeded=False, finished_at=5.0)
    )
    labels = {"namespace": "finance", "connection": "m3"}
    assert sample(metrics, "ml_connector_last_successful_run_timestamp_seconds", labels) is None
    assert sample(metrics, "ml_connector_runs_total", {**labels, "direction": "Load", "outcome": "failed"}) == 1
