"""The Helm chart installed into the test control plane, its operator running under its RBAC, and that RBAC pinned.

* Every object ``helm template`` renders is server-side applied for real with strict field validation -- with the
  default values, and with every option on (ServiceMonitor, PrometheusRule, dashboard, NetworkPolicy, two watched
  namespaces), CRDs included. The ``monitoring.coreos.com`` kinds (ServiceMonitor, PodMonitor, PrometheusRule)
  cannot be: the prometheus-operator CRDs are not installed here, so they are checked by shape instead (selectors
  that match the chart's own Service and pods, named ports that exist, alerts and panels that only use metrics the
  operator exports). The operator's pod is judged by Pod Security admission (``restricted``) with a dry run.
* The operator and worker ServiceAccounts, with their own tokens, ask the API server what they may do
  (``SelfSubjectRulesReview`` and ``SelfSubjectAccessReview``, i.e. ``kubectl auth can-i --list`` / ``can-i``): in a
  watched namespace exactly what the code uses and nothing more (beyond what every authenticated user may do,
  measured with a ServiceAccount bound to nothing); nothing at all in other namespaces or cluster-wide; never Secrets.
* The operator, started with the rendered Deployment's arguments and environment and its ServiceAccount's token,
  reconciles the example SyncConnection without a single forbidden request.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from envtest import REPO, ControlPlane
from manifests import ApiServer, Doc, documents, in_namespace, pod_from_template, pod_security_warnings, render_chart
from operator_harness import deployment_command, service_account_token, start_operator, wait_for

from ml_connector.metrics import Metrics
from ml_connector.spec import GROUP, VERSION

pytestmark = pytest.mark.k8s

MONITORING = "monitoring.coreos.com/"
RELEASE = "mlc"
FULLNAME = f"{RELEASE}-ml-connector"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
EVERYTHING = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboard": {"enabled": True},
    },
    "networkPolicy": {"enabled": True},
}

Triple = tuple[str, str, str]  # (API group, resource[/subresource], verb)

#: What the operator does in each watched namespace (kube/handlers.py, kube/controller.py, kopf):
OPERATOR_NEEDS: set[Triple] = {
    # kopf watches (indexes) SyncConnections and SyncRuns, patches its annotations and finalizer on them;
    # the controller reads them.
    *((GROUP, "syncconnections", verb) for verb in ("get", "list", "watch", "patch")),
    *((GROUP, "syncruns", verb) for verb in ("get", "list", "watch", "patch")),
    # scheduled and requested runs are created; runs beyond the history limits are deleted
    (GROUP, "syncruns", "create"),
    (GROUP, "syncruns", "delete"),
    # status is written with JSON merge patches on the status subresource (never replaced)
    (GROUP, "syncconnections/status", "patch"),
    (GROUP, "syncruns/status", "patch"),
    # one Job per run (watched through a kopf index); deleted for concurrencyPolicy Replace
    *(("batch", "jobs", verb) for verb in ("get", "list", "watch", "create", "delete")),
    # Events are posted (core/v1, by the controller and by kopf), never updated
    ("", "events", "create"),
}
#: What a worker pod does in its namespace (kube/worker.py, kube/lease.py):
WORKER_NEEDS: set[Triple] = {
    (GROUP, "syncruns", "get"),  # its own SyncRun
    (GROUP, "syncconnections", "get"),  # the connection it runs
    (GROUP, "syncruns/status", "patch"),  # progress and results, resourceVersion-guarded
    # the model's Lease: read, create when missing, replace (PUT, resourceVersion-guarded) to take/renew/release
    *(("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")),
    ("", "events", "create"),  # WaitingForLock
}


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[ApiServer]:
    with ApiServer(control_plane) as server:
        yield server


def make_namespace(api: ApiServer, prefix: str, labels: dict[str, str] | None = None) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    api.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
    return name


def install(api: ApiServer, docs: list[Doc]) -> None:
    """Apply every rendered object that has a served kind; monitoring kinds are skipped (checked by shape)."""
    for doc in docs:
        if doc["apiVersion"].startswith(MONITORING):
            continue
        answer = api.apply(doc)
        assert answer.warnings == [], f"{doc['kind']} {doc['metadata']['name']}: {answer.warnings}"


def only(docs: list[Doc], kind: str, suffix: str = "") -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"expected one {kind} named *{suffix}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


# --------------------------------------------------------------------------------------------------
# Install


def test_the_default_chart_installs_and_its_operator_pod_is_restricted(api: ApiServer) -> None:
    namespace = make_namespace(api, "mlc-default", RESTRICTED)
    docs = render_chart({}, namespace=namespace, release=RELEASE)
    install(api, docs)
    deployment = only(docs, "Deployment")
    pod = api.create(pod_from_template(deployment, "operator-probe"), dry_run=True)
    assert pod_security_warnings(pod.warnings) == []
    assert not [doc for doc in docs if doc["kind"] in ("ClusterRole", "ClusterRoleBinding")]


@pytest.fixture
def installed(api: ApiServer) -> dict[str, Any]:
    """The chart with every option on, watching two namespaces; a third namespace it must not touch."""
    release = make_namespace(api, "mlc-system", RESTRICTED)
    watched = [make_namespace(api, "finance-a", RESTRICTED), make_namespace(api, "finance-b", RESTRICTED)]
    other = make_namespace(api, "other")
    values = {**EVERYTHING, "operator": {"watchNamespaces": watched}}
    docs = render_chart(values, namespace=release, release=RELEASE)
    install(api, docs)
    return {"release": release, "watched": watched, "other": other, "docs": docs}


def test_the_chart_with_every_option_installs(api: ApiServer, installed: dict[str, Any]) -> None:
    docs: list[Doc] = installed["docs"]
    kinds = sorted({doc["kind"] for doc in docs})
    assert kinds == sorted(
        {
            "ConfigMap",
            "CustomResourceDefinition",
            "Deployment",
            "NetworkPolicy",
            "PersistentVolumeClaim",
            "PrometheusRule",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        }
    )
    for doc in docs:
        if doc["apiVersion"].startswith(MONITORING):
            with pytest.raises(LookupError):  # said plainly: nothing serves these kinds here
                api.resource(doc["apiVersion"], doc["kind"])
            continue
        meta = doc["metadata"]
        assert api.get(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace")) is not None
    # a Role, a RoleBinding and a worker ServiceAccount in each watched namespace, none elsewhere
    for kind in ("Role", "RoleBinding"):
        assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == kind) == sorted(installed["watched"] * 2)
    assert {d["metadata"]["namespace"] for d in docs if d["kind"] == "ServiceAccount"} == {
        installed["release"],
        *installed["watched"],
    }
    crds = {d["metadata"]["name"] for d in docs if d["kind"] == "CustomResourceDefinition"}
    assert crds == {f"syncconnections.{GROUP}", f"syncruns.{GROUP}"}
    for name in crds:
        crd = api.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
        assert crd is not None
        established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert established["Established"] == "True"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


# --------------------------------------------------------------------------------------------------
# Monitoring kinds, by shape


def exported_metrics() -> set[str]:
    """Every series name the operator's registry exposes (histogram buckets, counters' _total...)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {
        family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes.get(family.type, ("",))
    }


def referenced_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\b((?:ml_connector|controller_runtime)_[a-z_]+)", expression))


def test_servicemonitor_and_podmonitor_select_the_operator_by_shape() -> None:
    """Shape only (no prometheus-operator CRDs here): selectors and ports that match the chart's own objects."""
    docs = render_chart(EVERYTHING, namespace="finance", release=RELEASE)
    service = only(docs, "Service", "-metrics")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])

    docs = render_chart({"metrics": {"podMonitor": {"enabled": True}}}, namespace="finance", release=RELEASE)
    deployment = only(docs, "Deployment")
    pod_monitor = only(docs, "PodMonitor")
    template = deployment["spec"]["template"]
    assert pod_monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    container_ports = {port["name"] for c in template["spec"]["containers"] for port in c.get("ports", [])}
    assert {endpoint["port"] for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]} <= container_ports


def test_prometheusrule_and_dashboard_use_only_exported_metrics_by_shape() -> None:
    docs = render_chart(EVERYTHING, namespace="finance", release=RELEASE)
    exported = exported_metrics()
    rule = only(docs, "PrometheusRule")
    service = only(docs, "Service", "-metrics")
    alerts = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    assert alerts
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"]
        unknown = referenced_metrics(alert["expr"]) - exported
        assert not unknown, f"{alert['alert']} uses metrics the operator does not export: {unknown}"
        # a ServiceMonitor's targets get job=<Service name>: the alerts must select that job
        for job in re.findall(r'job="([^"]+)"', alert["expr"]):
            assert job == service["metadata"]["name"], alert["alert"]
    dashboard = json.loads(only(docs, "ConfigMap")["data"]["ml-connector.json"])
    expressions = " ".join(target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []))
    assert referenced_metrics(expressions)
    assert referenced_metrics(expressions) <= exported, referenced_metrics(expressions) - exported


# --------------------------------------------------------------------------------------------------
# RBAC, asked with each ServiceAccount's own token


def triples(review: Doc) -> set[Triple]:
    found: set[Triple] = set()
    for rule in review["status"].get("resourceRules") or []:
        assert not rule.get("resourceNames"), rule
        for group in rule.get("apiGroups") or [""]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    found.add((group, resource, verb))
    return found


def rules(plane: ControlPlane, token: str, namespace: str) -> set[Triple]:
    """``kubectl auth can-i --list -n <namespace>`` as the token's owner."""
    with ApiServer(plane, token) as server:
        review = server.post(
            "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectRulesReview",
                "spec": {"namespace": namespace},
            },
        )
    assert not review["status"].get("incomplete"), review["status"]
    return triples(review)


def can(plane: ControlPlane, token: str, verb: str, resource: str, namespace: str | None = None) -> bool:
    """``kubectl auth can-i <verb> <resource> [-n <namespace>]`` as the token's owner (resource: group/res[/sub])."""
    group, _, rest = resource.rpartition(":")
    name, _, subresource = rest.partition("/")
    attributes = {"verb": verb, "group": group, "resource": name}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    with ApiServer(plane, token) as server:
        review = server.post(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
        )
    return bool(review["status"]["allowed"])


def test_each_serviceaccount_may_do_exactly_what_its_code_needs(
    control_plane: ControlPlane, k8s_api: kubernetes.client.ApiClient, api: ApiServer, installed: dict[str, Any]
) -> None:
    release, (ns_a, ns_b), other = installed["release"], installed["watched"], installed["other"]
    api.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "nobody", "namespace": release}})
    nobody = service_account_token(k8s_api, release, "nobody")
    operator = service_account_token(k8s_api, release, f"{FULLNAME}-operator")
    worker_a = service_account_token(k8s_api, ns_a, f"{FULLNAME}-worker")

    for namespace in (ns_a, ns_b, release, other):
        everyone = rules(control_plane, nobody, namespace)  # what any authenticated user may do
        granted = rules(control_plane, operator, namespace) - everyone
        expected = OPERATOR_NEEDS if namespace in (ns_a, ns_b) else set()
        assert granted == expected, (
            f"operator in {namespace}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"
        )
        granted = rules(control_plane, worker_a, namespace) - everyone
        expected = WORKER_NEEDS if namespace == ns_a else set()
        assert granted == expected, (
            f"worker of {ns_a} in {namespace}: extra {sorted(granted - expected)}, missing {sorted(expected - granted)}"
        )

    # kubectl auth can-i, the questions that matter, one by one
    sr = f"{GROUP}:syncruns"
    for namespace in (ns_a, ns_b):
        assert can(control_plane, operator, "create", "batch:jobs", namespace)
        assert can(control_plane, operator, "patch", f"{sr}/status", namespace)
        assert can(control_plane, operator, "create", ":events", namespace)
        assert can(control_plane, operator, "create", sr, namespace)
    for namespace in (ns_a, ns_b, release, other):
        assert not can(control_plane, operator, "get", ":secrets", namespace)
        assert not can(control_plane, operator, "list", ":secrets", namespace)
        assert not can(control_plane, worker_a, "get", ":secrets", namespace)
        assert not can(control_plane, operator, "create", "rbac.authorization.k8s.io:rolebindings", namespace)
        assert not can(control_plane, operator, "create", ":pods", namespace)
    assert not can(control_plane, operator, "create", "batch:jobs", other)
    assert not can(control_plane, operator, "patch", f"{sr}/status", other)
    assert not can(control_plane, operator, "create", "batch:jobs", release)  # the release namespace is not watched
    assert not can(control_plane, worker_a, "create", "batch:jobs", ns_a)
    assert not can(control_plane, worker_a, "delete", sr, ns_a)
    assert not can(control_plane, worker_a, "patch", f"{sr}/status", ns_b)  # only its own namespace
    assert can(control_plane, worker_a, "update", "coordination.k8s.io:leases", ns_a)
    # nothing cluster-wide: no namespace or CRD scanning, no cluster-scoped list of our kinds
    for token in (operator, worker_a):
        assert not can(control_plane, token, "list", ":namespaces")
        assert not can(control_plane, token, "list", "apiextensions.k8s.io:customresourcedefinitions")
        assert not can(control_plane, token, "list", sr)
        assert not can(control_plane, token, "create", "rbac.authorization.k8s.io:clusterrolebindings")


# --------------------------------------------------------------------------------------------------
# The operator, running under that RBAC


def test_the_operator_runs_under_its_rbac_and_reconciles_an_example(
    control_plane: ControlPlane,
    k8s_api: kubernetes.client.ApiClient,
    api: ApiServer,
    installed: dict[str, Any],
    tmp_path: Path,
) -> None:
    ns_a = installed["watched"][0]
    args, env = deployment_command(installed["docs"])
    token = service_account_token(k8s_api, installed["release"], f"{FULLNAME}-operator")
    kubeconfig = control_plane.kubeconfig_for("operator", token, tmp_path / "operator.kubeconfig")
    operator = start_operator(args, env, kubeconfig, tmp_path / "operator.log")
    with contextlib.ExitStack() as stack:
        stack.callback(operator.stop)
        connection = only(documents(REPO / "examples" / "m3-syncconnection.yaml"), "SyncConnection")
        api.apply(in_namespace(connection, ns_a, api))
        objects = kubernetes.client.CustomObjectsApi(k8s_api)
        name = connection["metadata"]["name"]

        def reconciled() -> Doc | None:
            body: Doc = objects.get_namespaced_custom_object(GROUP, VERSION, ns_a, "syncconnections", name)
            status = body.get("status") or {}
            ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get("Ready")
            done = status.get("observedGeneration") == body["metadata"]["generation"] and ready == "True"
            return body if done and status.get("nextScheduleTime") else None

        try:
            body = wait_for(reconciled, timeout=60, what=f"SyncConnection {ns_a}/{name} reconciled")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\noperator log:\n{operator.tail()}") from None
        assert body["status"]["nextScheduleTime"].endswith(":00:00Z")  # "0 * * * *": on the hour
        # the finalizer that makes deletion wait for the operator (docs/gitops.md: why connections sync last)
        assert "ml-connector.com/finalizer" in body["metadata"]["finalizers"]
        log = operator.log.read_text(errors="replace")
        assert "403" not in log, operator.tail()
        assert "Forbidden" not in log.replace("FieldValueForbidden", ""), operator.tail()
