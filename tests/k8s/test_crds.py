"""The generated CRDs on a real kube-apiserver: defaults, validation messages, status, printer columns."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
from pydantic import ValidationError

from ml_connector.spec import GROUP, VERSION, SyncConnectionSpec, SyncRunSpec, describe_errors

pytestmark = pytest.mark.k8s

Doc = dict[str, Any]


def connection(name: str = "acme") -> Doc:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncConnection",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "finance"}},
        "spec": {
            "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor-ionapi"}, "m3": {"company": "100"}},
            "anaplan": {
                "workspace": "FP&A",
                "model": "Actuals",
                "auth": {"method": "basic", "credentialsSecretRef": {"name": "anaplan"}},
            },
            "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
            "schedule": "0 2 * * *",
            "timeZone": "Europe/Berlin",
        },
    }


def run(name: str = "acme-manual", connection_name: str = "acme") -> Doc:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SyncRun",
        "metadata": {"name": name},
        "spec": {"connectionRef": {"name": connection_name}, "flows": ["gl_postings"]},
    }


class Cluster:
    def __init__(self, api: kubernetes.client.ApiClient, namespace: str) -> None:
        self.objects = kubernetes.client.CustomObjectsApi(api)
        self.api = api
        self.namespace = namespace

    def create(self, plural: str, body: Doc) -> Doc:
        created: Doc = self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body, field_validation="Strict"
        )
        return created

    def refused(self, plural: str, body: Doc) -> str:
        with pytest.raises(kubernetes.client.ApiException) as caught:
            self.create(plural, body)
        assert caught.value.status in (400, 422), caught.value.body
        message: str = json.loads(caught.value.body)["message"]
        return message


@pytest.fixture
def cluster(k8s_api: kubernetes.client.ApiClient, namespace: str) -> Cluster:
    return Cluster(k8s_api, namespace)


def test_crds_are_established_with_names_and_columns(k8s_api: kubernetes.client.ApiClient) -> None:
    extensions = kubernetes.client.ApiextensionsV1Api(k8s_api)
    crd = extensions.read_custom_resource_definition(f"syncconnections.{GROUP}")
    assert crd.spec.names.short_names == ["syncconn"]
    assert crd.spec.names.categories == ["ml-connector"]
    version = crd.spec.versions[0]
    assert version.subresources.status is not None
    assert [c.name for c in version.additional_printer_columns] == [
        "Ready",
        "Status",
        "Schedule",
        "Suspended",
        "Last Success",
        "Age",
    ]
    run_crd = extensions.read_custom_resource_definition(f"syncruns.{GROUP}")
    assert [c.name for c in run_crd.spec.versions[0].additional_printer_columns] == [
        "Connection",
        "Direction",
        "Phase",
        "Loaded",
        "Rejected",
        "Age",
    ]


def test_server_applies_the_same_defaults_as_the_models(cluster: Cluster) -> None:
    created = cluster.create("syncconnections", connection())
    spec = created["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["suspend"] is False
    assert spec["successfulRunsHistoryLimit"] == 3
    assert spec["failedRunsHistoryLimit"] == 1
    assert spec["infor"]["credentialsSecretRef"]["key"] == "credentials.ionapi"
    assert spec["infor"]["m3"]["costCenterDimension"] == 2
    assert spec["infor"]["rateLimit"] == {"requestsPerSecond": 10, "burst": 10}
    assert spec["mappings"] == {
        "accounts": {"list": "GL Accounts"},
        "costCenters": {"list": "Cost Centers"},
        "missingMembers": "Add",
    }
    assert spec["jobTemplate"]["backoffLimit"] == 2
    assert spec["flows"][0]["overlap"] == "1h"
    # What the server stored means exactly what the models make of the manifest the user wrote.
    assert SyncConnectionSpec.model_validate(spec) == SyncConnectionSpec.model_validate(connection()["spec"])


def test_syncrun_defaults(cluster: Cluster) -> None:
    created = cluster.create("syncruns", run())
    assert created["spec"]["direction"] == "Load"
    assert created["spec"]["dryRun"] is False
    assert created["spec"]["trigger"] == "Manual"
    assert SyncRunSpec.model_validate(created["spec"]) == SyncRunSpec.model_validate(run()["spec"])


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()

# (what is wrong, mutation, field path the server names, words of the message)
INVALID_CONNECTIONS = [
    (
        "bad enum",
        _set("spec.concurrencyPolicy", "Sometimes"),
        "spec.concurrencyPolicy",
        'Unsupported value: "Sometimes"',
    ),
    ("missing required", _set("spec.anaplan", _DELETE), "spec.anaplan", "Required value"),
    (
        "CEL: M3 needs m3",
        _set("spec.infor.m3", _DELETE),
        "spec.infor.m3",
        "infor.m3 is required when productLine is M3",
    ),
    (
        "CEL: periodTo needs periodFrom",
        _set("spec.flows.0.periodTo", "2026-03"),
        "spec.flows[0].periodTo",
        "periodTo requires periodFrom",
    ),
    (
        "CEL: writeback target must match the product line",
        _set(
            "spec.writeback",
            {"exportAction": "Budget export", "target": {"syteline": {"config": "PLANT1"}}},
        ),
        "spec.writeback.target",
        "writeback.target.m3 is required when infor.productLine is M3",
    ),
    (
        "CEL: exactly one writeback target",
        _set("spec.writeback", {"exportAction": "Budget export", "target": {}}),
        "spec.writeback.target",
        "exactly one of m3 or syteline",
    ),
    (
        "missing exportAction",
        _set("spec.writeback", {"target": {"m3": {"division": "AAA", "budgetNumber": "1", "budgetVersion": "FC"}}}),
        "spec.writeback.exportAction",
        "Required value",
    ),
    (
        "bad Secret name",
        _set("spec.infor.credentialsSecretRef.name", "Infor_Creds"),
        "spec.infor.credentialsSecretRef.name",
        "should match",
    ),
    ("bad period", _set("spec.flows.0.periodFrom", "2026-13"), "spec.flows[0].periodFrom", "should match"),
    (
        "negative history",
        _set("spec.failedRunsHistoryLimit", -1),
        "spec.failedRunsHistoryLimit",
        "should be greater than or equal to 0",
    ),
    ("schedule shape", _set("spec.schedule", "every day"), "spec.schedule", "should match"),
    (
        "duplicate flow",
        _set("spec.flows", [{"entity": "payments", "importAction": "a"}, {"entity": "payments", "importAction": "b"}]),
        "spec.flows[1]",
        "Duplicate value",
    ),
    ("unknown field", _set("spec.bogus", True), "spec.bogus", "unknown field"),
    ("unknown time zone", _set("spec.timeZone", "Mars/Olympus_Mons"), "spec.timeZone", "IANA time zone name"),
]


@pytest.mark.parametrize(
    ("case", "mutate", "field", "words"), INVALID_CONNECTIONS, ids=[c[0] for c in INVALID_CONNECTIONS]
)
def test_invalid_connection_is_refused_naming_the_field(
    cluster: Cluster, case: str, mutate: Callable[[Doc], None], field: str, words: str
) -> None:
    doc = copy.deepcopy(connection())
    mutate(doc)
    message = cluster.refused("syncconnections", doc)
    assert field in message, message
    assert words in message, message
    assert "no such key" not in message, message  # a CEL rule must not trip over an absent field
    # The CLI's validation (pydantic) refuses the same manifest too.
    with pytest.raises(ValidationError) as caught:
        SyncConnectionSpec.model_validate(doc["spec"])
    assert describe_errors(caught.value)


def test_invalid_syncrun_is_refused(cluster: Cluster) -> None:
    doc = run()
    doc["spec"]["direction"] = "WriteBack"
    message = cluster.refused("syncruns", doc)
    assert "spec.flows" in message
    assert "cannot be set for direction WriteBack" in message
    doc = run()
    doc["spec"]["period"] = {"from": "2026-05", "to": "2026-01"}
    message = cluster.refused("syncruns", doc)
    assert "spec.period.to" in message
    assert "period.from must not be after period.to" in message


def test_syncrun_spec_is_immutable(cluster: Cluster) -> None:
    created = cluster.create("syncruns", run("acme-immutable"))
    with pytest.raises(kubernetes.client.ApiException) as caught:
        cluster.objects.patch_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "syncruns", "acme-immutable", {"spec": {"dryRun": True}}
        )
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert "spec" in message
    assert "SyncRun spec is immutable" in message
    # Metadata may still change (labels, annotations, finalizers).
    patched = cluster.objects.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "syncruns", "acme-immutable", {"metadata": {"labels": {"kept": "yes"}}}
    )
    assert patched["spec"] == created["spec"]
    assert patched["metadata"]["labels"] == {"kept": "yes"}


def test_status_subresource(cluster: Cluster) -> None:
    created = cluster.create("syncruns", run("acme-status"))
    generation = created["metadata"]["generation"]
    status = {
        "phase": "Succeeded",
        "jobName": "acme-status",
        "counts": {"extracted": 10, "loaded": 9, "rejected": 1},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Succeeded", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ],
    }
    patched = cluster.objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, cluster.namespace, "syncruns", "acme-status", {"status": status}
    )
    assert patched["status"]["phase"] == "Succeeded"
    assert patched["status"]["counts"] == {"extracted": 10, "loaded": 9, "rejected": 1, "skipped": 0}
    assert patched["metadata"]["generation"] == generation  # status writes do not bump the generation
    # Through the main resource, status is ignored; through /status, spec is ignored.
    cluster.objects.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "syncruns", "acme-status", {"status": {"phase": "Failed"}}
    )
    again = cluster.objects.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "syncruns", "acme-status")
    assert again["status"]["phase"] == "Succeeded"
    with pytest.raises(kubernetes.client.ApiException) as caught:
        cluster.objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, cluster.namespace, "syncruns", "acme-status", {"status": {"phase": "Exploded"}}
        )
    assert "status.phase" in json.loads(caught.value.body)["message"]


def test_printer_columns_in_table_output(cluster: Cluster) -> None:
    cluster.create("syncruns", run("acme-table"))
    cluster.objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        cluster.namespace,
        "syncruns",
        "acme-table",
        {"status": {"phase": "Running", "counts": {"loaded": 42, "rejected": 3}}},
    )
    response = cluster.api.call_api(
        *cluster.api.param_serialize(
            "GET",
            f"/apis/{GROUP}/{VERSION}/namespaces/{cluster.namespace}/syncruns",
            header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
            auth_settings=["BearerToken"],
        )
    )
    response.read()
    table = json.loads(response.data)
    assert [c["name"] for c in table["columnDefinitions"]][:7] == [
        "Name",
        "Connection",
        "Direction",
        "Phase",
        "Loaded",
        "Rejected",
        "Age",
    ]
    assert table["rows"][0]["cells"][:6] == ["acme-table", "acme", "Load", "Running", 42, 3]
