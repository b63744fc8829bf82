"""The operator under test, set up as a cluster would run it: the chart's RBAC, its ServiceAccount, its flags.

:func:`start_environment` on a running test control plane:

* renders the Helm chart for a release namespace watching one namespace and applies its ServiceAccounts,
  Roles and RoleBindings (so every API call of the operator and the worker goes through the chart's RBAC);
* starts the emulators (Infor + Anaplan, small dataset) in a background event loop and stores their
  credentials as Secrets (the generated ``.ionapi`` file; Anaplan user and password);
* starts ``ml-connector operator`` as a subprocess with the Deployment's own arguments and environment
  (free ports instead of 8080/8081) and a kubeconfig holding a token of the operator's ServiceAccount;
* starts the kubelet stand-in (:mod:`kubelet`) for the watched namespace.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import kubernetes
from envtest import ControlPlane, free_port
from kubelet import EXECUTABLE, Kubelet

from ml_connector.infor import IonApiCredentials
from ml_connector.sandbox.runtime import ThreadedServers
from ml_connector.sandbox.server import Sandbox, start_sandbox
from ml_connector.spec import GROUP, VERSION

T = TypeVar("T")
CHART_TESTS = Path(__file__).resolve().parents[1] / "chart"
RELEASE = "mlc"
FULLNAME = f"{RELEASE}-ml-connector"
INFOR_SECRET = "infor-credentials"
ANAPLAN_SECRET = "anaplan-credentials"
#: Short Lease and polling settings for the workers (the kubelet stand-in adds them to the pod environment).
WORKER_ENV = {
    "ML_CONNECTOR_LEASE_DURATION_SECONDS": "4",
    "ML_CONNECTOR_LEASE_RENEW_SECONDS": "0.5",
    "ML_CONNECTOR_LEASE_RETRY_SECONDS": "0.3",
    "ML_CONNECTOR_TASK_POLL_SECONDS": "0.1",
}


def render_chart(release_namespace: str, watched: list[str]) -> list[dict[str, Any]]:
    if str(CHART_TESTS) not in sys.path:
        sys.path.append(str(CHART_TESTS))
    from helm import render  # tests/chart/helm.py

    return render(
        f"operator.watchNamespaces={{{','.join(watched)}}}",
        "image.tag=test",
        namespace=release_namespace,
        release=RELEASE,
    )


def apply_rbac(api: kubernetes.client.ApiClient, documents: list[dict[str, Any]]) -> None:
    core = kubernetes.client.CoreV1Api(api)
    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    for document in documents:
        namespace = document["metadata"].get("namespace")
        kind = document["kind"]
        if kind == "ServiceAccount":
            core.create_namespaced_service_account(namespace, document)
        elif kind == "Role":
            rbac.create_namespaced_role(namespace, document)
        elif kind == "RoleBinding":
            rbac.create_namespaced_role_binding(namespace, document)
        elif kind in ("ClusterRole", "ClusterRoleBinding"):
            raise AssertionError(f"the chart renders a {kind}; the operator is meant to need namespaced RBAC only")


def service_account_token(api: kubernetes.client.ApiClient, namespace: str, name: str) -> str:
    core = kubernetes.client.CoreV1Api(api)
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}}
    token: str = core.create_namespaced_service_account_token(name, namespace, request).status.token
    return token


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last!r}")


@dataclass
class OperatorProcess:
    popen: subprocess.Popen[bytes]
    log: Path
    metrics_url: str
    health_url: str

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


def deployment_command(documents: list[dict[str, Any]]) -> tuple[list[str], dict[str, str]]:
    """The operator container's arguments and environment as the chart renders them."""
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item["value"] for item in container.get("env") or []}
    return list(container["args"]), env


def start_operator(
    args: list[str],
    env: dict[str, str],
    kubeconfig: Path,
    log: Path,
    *,
    interval: float = 1.0,
    extra_env: dict[str, str] | None = None,
) -> OperatorProcess:
    metrics_port, health_port = free_port(), free_port()
    argv = []
    for arg in args:
        if arg.startswith("--metrics-port="):
            arg = f"--metrics-port={metrics_port}"
        elif arg.startswith("--health-port="):
            arg = f"--health-port={health_port}"
        argv.append(arg)
    argv += ["--host=127.0.0.1", f"--reconcile-interval={interval}"]
    process_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(log.parent),
        "KUBECONFIG": str(kubeconfig),
        "PYTHONUNBUFFERED": "1",
        **env,
        **(extra_env or {}),
    }
    with log.open("wb") as handle:
        popen = subprocess.Popen([str(EXECUTABLE), *argv], env=process_env, stdout=handle, stderr=subprocess.STDOUT)
    process = OperatorProcess(
        popen, log, f"http://127.0.0.1:{metrics_port}/metrics", f"http://127.0.0.1:{health_port}/healthz"
    )

    def healthy() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"the operator exited with {popen.returncode}:\n{process.tail()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(process.health_url, timeout=2).status_code == 200
        return False

    wait_for(healthy, timeout=60, what="the operator's /healthz")
    return process


@dataclass
class Environment:
    plane: ControlPlane
    api: kubernetes.client.ApiClient
    release_namespace: str
    namespace: str
    other_namespace: str
    chart: list[dict[str, Any]]
    operator_token: str
    operator: OperatorProcess
    kubelet: Kubelet
    sandbox: Sandbox
    servers: ThreadedServers
    workdir: Path
    operator_command: tuple[list[str], dict[str, str], Path]
    _objects: kubernetes.client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(self.api)

    def restart_operator(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Stop the operator, run ``meanwhile`` while it is down, start a new operator process."""
        self.operator.stop()
        if meanwhile is not None:
            meanwhile()
        args, env, kubeconfig = self.operator_command
        log = self.workdir / f"operator-{secrets.token_hex(2)}.log"
        self.operator = start_operator(args, env, kubeconfig, log)

    # -- objects -------------------------------------------------------------------------------

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = self._objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return created

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._objects.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> None:
        self._objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, body)

    def runs_of(self, connection: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = self._objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "syncruns"
        )["items"]
        return [run for run in runs if run["spec"]["connectionRef"]["name"] == connection]

    def job(self, name: str) -> dict[str, Any] | None:
        batch = kubernetes.client.BatchV1Api(self.api)
        try:
            response = batch.read_namespaced_job(name, self.namespace, _preload_content=False)
        except kubernetes.client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        job: dict[str, Any] = json.loads(response.data)
        return job

    def events(self, name: str) -> list[dict[str, Any]]:
        core = kubernetes.client.CoreV1Api(self.api)
        response = core.list_namespaced_event(self.namespace, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return [event for event in items if event["involvedObject"]["name"] == name]

    def connection(self, name: str, **spec: Any) -> dict[str, Any]:
        """A SyncConnection on the emulators: M3, GL postings, accounts and cost centers aligned first."""
        assert self.sandbox.infor is not None
        ionapi = IonApiCredentials.load(self.sandbox.infor.ionapi("M3"))
        anaplan = self.sandbox.anaplan
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SyncConnection",
            # an Argo CD tracking label: it must not reach the runs and Jobs
            "metadata": {"name": name, "labels": {"app.kubernetes.io/instance": "argo-app"}},
            "spec": {
                "infor": {
                    "productLine": "M3",
                    "credentialsSecretRef": {"name": INFOR_SECRET},
                    "tenantUrl": ionapi.tenant_url,
                    "tokenEndpoint": ionapi.token_url,
                    "m3": {"company": self.sandbox.infor.state.dataset.company},
                    "rateLimit": {"requestsPerSecond": 0},
                },
                "anaplan": {
                    "workspace": anaplan.seeded.model.workspace.name,
                    "model": anaplan.seeded.model.name,
                    "auth": {"method": "basic", "credentialsSecretRef": {"name": ANAPLAN_SECRET}},
                    "authUrl": anaplan.url,
                    "apiUrl": anaplan.url.rstrip("/") + "/2/0",
                },
                "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
                "mappings": {
                    "accounts": {"list": "GL Accounts", "importAction": "Load GL Accounts"},
                    "costCenters": {"list": "Cost Centers", "importAction": "Load Cost Centers"},
                },
                **spec,
            },
        }
        return body

    def run(self, name: str, connection: str, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "SyncRun",
            "metadata": {"name": name},
            "spec": {"connectionRef": {"name": connection}, **spec},
        }

    # -- waiting -------------------------------------------------------------------------------

    def diagnostics(self, job: str | None = None) -> str:
        parts = [f"operator log:\n{self.operator.tail()}"]
        if job:
            parts.append(f"worker log:\n{self.kubelet.logs(self.namespace, job)[-4000:]}")
        if self.kubelet.errors:
            parts.append(f"kubelet errors: {self.kubelet.errors[-5:]}")
        return "\n".join(parts)

    def wait(self, probe: Callable[[], T | None], *, what: str, timeout: float = 90.0, job: str | None = None) -> T:
        try:
            return wait_for(probe, timeout=timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics(job)}") from None

    def wait_run_phase(self, name: str, phases: tuple[str, ...], *, timeout: float = 90.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            run = self.get("syncruns", name)
            if run is not None and (run.get("status") or {}).get("phase") in phases:
                return run
            return None

        return self.wait(probe, what=f"SyncRun {name} in phase {'/'.join(phases)}", timeout=timeout, job=name)


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {key: base64.b64encode(value).decode() for key, value in data.items()},
    }


@contextlib.contextmanager
def start_environment(
    plane: ControlPlane, api: kubernetes.client.ApiClient, workdir: Path, *, interval: float = 1.0
) -> Iterator[Environment]:
    core = kubernetes.client.CoreV1Api(api)
    suffix = secrets.token_hex(3)
    release_namespace, namespace, other = f"mlc-system-{suffix}", f"finance-{suffix}", f"other-{suffix}"
    for name in (release_namespace, namespace, other):
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    chart = render_chart(release_namespace, [namespace])
    apply_rbac(api, [doc for doc in chart if doc["kind"] in ("ServiceAccount", "Role", "RoleBinding")])
    token = service_account_token(api, release_namespace, f"{FULLNAME}-operator")
    kubeconfig = plane.kubeconfig_for("operator", token, workdir / "operator.kubeconfig")

    servers = ThreadedServers()
    stack = contextlib.ExitStack()
    try:
        sandbox = servers.call(lambda: start_sandbox(scale=0, infor_postings=144))
        stack.callback(lambda: (servers.call(sandbox.close), servers.close()))
        assert sandbox.infor is not None
        core.create_namespaced_secret(
            namespace, _secret(INFOR_SECRET, {"credentials.ionapi": sandbox.infor.ionapi("M3").read_bytes()})
        )
        anaplan = sandbox.anaplan
        core.create_namespaced_secret(
            namespace,
            _secret(ANAPLAN_SECRET, {"username": anaplan.user.encode(), "password": anaplan.password.encode()}),
        )
        args, env = deployment_command(chart)
        operator = start_operator(args, env, kubeconfig, workdir / "operator.log", interval=interval)
        kubelet = stack.enter_context(
            Kubelet(plane.kubeconfig, plane, [namespace], workdir / "kubelet", extra_env=WORKER_ENV)
        )
        environment = Environment(
            plane,
            api,
            release_namespace,
            namespace,
            other,
            chart,
            token,
            operator,
            kubelet,
            sandbox,
            servers,
            workdir,
            (args, env, kubeconfig),
        )
        stack.callback(lambda: environment.operator.stop())
        yield environment
    finally:
        stack.close()


def https_client(plane: ControlPlane, token: str) -> httpx.Client:
    """An HTTP client on the API server authenticating with ``token`` (to check what RBAC allows)."""
    context = ssl.create_default_context(cafile=str(plane.ca_file))
    return httpx.Client(base_url=plane.url, verify=context, headers={"Authorization": f"Bearer {token}"}, timeout=10)
