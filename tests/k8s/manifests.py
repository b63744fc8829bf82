"""Apply manifests to the test control plane the way ``kubectl apply --server-side`` and Argo CD do.

:class:`ApiServer` talks HTTP to the API server: it finds each kind's resource through discovery, applies
documents with server-side apply and ``fieldValidation=Strict`` (an unknown or duplicated field is an error, not
a silently dropped value), optionally as a dry run, and returns the API server's answer together with its
``Warning`` headers (Pod Security admission reports violations of workload templates there).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml
from envtest import REPO, ControlPlane

Doc = dict[str, Any]
FIELD_MANAGER = "ml-connector-tests"


def documents(path: Path) -> list[Doc]:
    """The YAML documents of ``path`` (empty ones skipped)."""
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def identity(doc: Doc) -> str:
    meta = doc.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {where}{meta.get('name')}"


class Refused(AssertionError):
    """The API server refused a document; the message has its status code and reason."""

    def __init__(self, doc: Doc, status: int, message: str) -> None:
        self.status = status
        self.reason = message
        super().__init__(f"{identity(doc)}: HTTP {status}: {message}")


@dataclass(frozen=True)
class Answer:
    body: Doc
    warnings: list[str]


@dataclass(frozen=True)
class Resource:
    plural: str
    namespaced: bool


class ApiServer:
    """An HTTP client on the test API server with a bearer token (the admin's unless another is given)."""

    def __init__(self, plane: ControlPlane, token: str | None = None) -> None:
        context = ssl.create_default_context(cafile=str(plane.ca_file))
        self.http = httpx.Client(
            base_url=plane.url,
            verify=context,
            headers={"Authorization": f"Bearer {token or plane.token}"},
            timeout=30,
        )
        self._resources: dict[tuple[str, str], Resource] = {}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery -------------------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> Resource:
        key = (api_version, kind)
        if key not in self._resources:
            base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
            response = self.http.get(base)
            if response.status_code == 404:
                raise LookupError(f"the API server does not serve {api_version} (no CRD installed for it)")
            response.raise_for_status()
            for item in response.json()["resources"]:
                if "/" not in item["name"]:
                    self._resources[(api_version, item["kind"])] = Resource(item["name"], item["namespaced"])
            if key not in self._resources:
                raise LookupError(f"the API server serves no kind {kind} in {api_version}")
        return self._resources[key]

    def collection(self, api_version: str, kind: str, namespace: str | None) -> str:
        resource = self.resource(api_version, kind)
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        if resource.namespaced:
            if not namespace:
                raise ValueError(f"{kind} is namespaced: a namespace is needed")
            return f"{base}/namespaces/{namespace}/{resource.plural}"
        return f"{base}/{resource.plural}"

    def path(self, doc: Doc) -> str:
        meta = doc["metadata"]
        return f"{self.collection(doc['apiVersion'], doc['kind'], meta.get('namespace'))}/{meta['name']}"

    # -- writes ----------------------------------------------------------------------------------------

    @staticmethod
    def _answer(doc: Doc, response: httpx.Response) -> Answer:
        if response.status_code >= 400:
            try:
                message = response.json().get("message", response.text)
            except json.JSONDecodeError:
                message = response.text
            raise Refused(doc, response.status_code, message)
        return Answer(response.json(), response.headers.get_list("warning"))

    def apply(self, doc: Doc, *, dry_run: bool = False) -> Answer:
        """Server-side apply (``kubectl apply --server-side --force-conflicts``), strict field validation."""
        params = {"fieldManager": FIELD_MANAGER, "fieldValidation": "Strict", "force": "true"}
        if dry_run:
            params["dryRun"] = "All"
        response = self.http.patch(
            self.path(doc),
            params=params,
            content=json.dumps(doc),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        return self._answer(doc, response)

    def create(self, doc: Doc, *, dry_run: bool = False) -> Answer:
        """POST ``doc`` (a create, as ``kubectl create``), strict field validation."""
        params = {"fieldValidation": "Strict"}
        if dry_run:
            params["dryRun"] = "All"
        collection = self.collection(doc["apiVersion"], doc["kind"], doc["metadata"].get("namespace"))
        return self._answer(doc, self.http.post(collection, params=params, json=doc))

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Doc | None:
        response = self.http.get(f"{self.collection(api_version, kind, namespace)}/{name}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        found: Doc = response.json()
        return found

    def post(self, path: str, body: Doc) -> Doc:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        answer: Doc = response.json()
        return answer


def in_namespace(doc: Doc, namespace: str, api: ApiServer) -> Doc:
    """A copy of ``doc`` moved to ``namespace`` (a Namespace document is renamed to it)."""
    moved = copy.deepcopy(doc)
    if moved["kind"] == "Namespace":
        moved["metadata"]["name"] = namespace
    elif api.resource(moved["apiVersion"], moved["kind"]).namespaced:
        moved["metadata"]["namespace"] = namespace
    return moved


def pod_security_warnings(warnings: list[str]) -> list[str]:
    return [warning for warning in warnings if "PodSecurity" in warning or "violate" in warning]


def pod_from_template(owner: Doc, name: str) -> Doc:
    """The Pod a workload's controller would create from ``owner``'s pod template (Deployment or Job)."""
    template = owner["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": owner["metadata"]["namespace"],
            "labels": dict((template.get("metadata") or {}).get("labels") or {}),
        },
        "spec": copy.deepcopy(template["spec"]),
    }


def _helm_module() -> ModuleType:
    """tests/chart/helm.py (the Helm binary built by scripts/helm.sh), loaded by path."""
    spec = importlib.util.spec_from_file_location("chart_helm", REPO / "tests" / "chart" / "helm.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render_chart(values: dict[str, Any], *, namespace: str, release: str) -> list[Doc]:
    """``helm template <release> charts/ml-connector -n <namespace> -f <values>``: the documents."""
    helm = _helm_module()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as handle:
        yaml.safe_dump(values, handle)
        handle.flush()
        result = helm.helm(
            "template", release, str(helm.CHART), "--namespace", namespace, "-f", handle.name, check=False
        )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def helm_install(release: str, *, namespace: str, values: dict[str, Any], kubeconfig: Path) -> str:
    """``helm install <release> charts/ml-connector -n <namespace> -f <values>`` on the test control plane."""
    helm = _helm_module()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", encoding="utf-8") as handle:
        yaml.safe_dump(values, handle)
        handle.flush()
        result = helm.helm(
            "install", release, str(helm.CHART), "--namespace", namespace, "-f", handle.name,
            "--kubeconfig", str(kubeconfig), check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"helm install failed:\n{result.stderr}")
    return str(result.stdout)
