"""The Helm chart lints, renders, and carries the security and GitOps properties users rely on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from helm import CHART, ROOT, RenderError, helm, render

EVERYTHING = (
    "metrics.serviceMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.dashboard.enabled=true",
    "networkPolicy.enabled=true",
)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_lint_strict() -> None:
    result = helm("lint", "--strict", str(CHART), check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_render_kinds() -> None:
    kinds = sorted(d["kind"] for d in render())
    assert kinds == sorted(
        [
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "PersistentVolumeClaim",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
        ]
    )


def test_everything_enabled_renders_monitoring_and_network_policies() -> None:
    docs = render(*EVERYTHING)
    assert len(by_kind(docs, "ServiceMonitor")) == 1
    rules = by_kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "MLConnectorOperatorDown",
        "MLConnectorRunFailed",
        "MLConnectorStaleData",
        "MLConnectorLockWaitHigh",
    }
    dashboard = by_kind(docs, "ConfigMap")[0]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert len(by_kind(docs, "NetworkPolicy")) == 2


def test_dashboard_shows_what_operators_watch() -> None:
    docs = render("metrics.dashboard.enabled=true")
    dashboard = yaml.safe_load(by_kind(docs, "ConfigMap")[0]["data"]["ml-connector.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in (
        "ml_connector_runs_total",
        "ml_connector_records_total",
        "ml_connector_last_successful_run_timestamp_seconds",
        "ml_connector_model_lock_wait_seconds_bucket",
        "ml_connector_api_errors_total",
    ):
        assert metric in exprs


def test_operator_pod_meets_pod_security_restricted() -> None:
    deployment = by_kind(render(), "Deployment")[0]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "readinessProbe" in container
    assert container["resources"]["requests"]
    assert not any(v.get("hostPath") for v in pod.get("volumes", []))


def test_rbac_is_namespaced_and_never_reads_secrets() -> None:
    docs = render("operator.watchNamespaces={finance,planning}")
    assert not by_kind(docs, "ClusterRole")
    assert not by_kind(docs, "ClusterRoleBinding")
    roles = by_kind(docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == {"finance", "planning"}
    for role in roles:
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
            assert "*" not in rule["verbs"]
            assert "*" not in rule["resources"]
    worker_rules = next(r for r in roles if r["metadata"]["name"].endswith("-worker"))["rules"]
    lease_rule = next(r for r in worker_rules if "leases" in r["resources"])
    assert set(lease_rule["verbs"]) == {"get", "create", "update"}


def test_crds_are_kept_on_uninstall_and_can_be_left_out() -> None:
    crds = by_kind(render(), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {"syncconnections.ml-connector.com", "syncruns.ml-connector.com"}
    assert all(c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for c in crds)
    assert not by_kind(render("crds.install=false"), "CustomResourceDefinition")


def test_chart_crds_match_the_generated_crds() -> None:
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        copy = CHART / "files" / "crds" / path.name
        assert copy.exists(), f"charts/ml-connector/files/crds/{path.name} is missing: run `ml-connector crds`"
        assert copy.read_text() == path.read_text(), (
            f"charts/ml-connector/files/crds/{path.name} is out of date: run `ml-connector crds`"
        )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (("audit.store=mysql",), "audit.store"),
        (("metrics.serviceMonitor.enabled=true", "metrics.podMonitor.enabled=true"), "not both"),
        (("audit.store=postgres",), "dsnSecretRef"),
        (("operator.logLevel=LOUD",), "logLevel"),
    ],
)
def test_bad_values_are_refused_with_a_message(values: tuple[str, ...], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(*values)


def test_postgres_audit_points_the_operator_at_the_dsn_secret() -> None:
    docs = render("audit.store=postgres", "audit.postgres.dsnSecretRef.name=audit-db")
    assert not by_kind(docs, "PersistentVolumeClaim")
    env = {
        e["name"]: e.get("value")
        for e in by_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["ML_CONNECTOR_AUDIT_DSN_SECRET"] == "audit-db/dsn"
