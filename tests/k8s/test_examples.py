"""Every manifest in ``examples/`` on the real kube-apiserver, and the kind quickstart played on it end to end.

* Each example document is server-side applied for real, with strict field validation, into a namespace made
  from ``examples/namespace.yaml`` (Pod Security ``restricted`` enforced): Secrets, ServiceAccount, Deployment,
  Service and NetworkPolicy by the built-in schemas, SyncConnections and SyncRuns by our CRDs (structural schema,
  defaults, CEL). What was applied must come back unchanged (nothing pruned), with no warning. The pod a workload
  would start is created too (dry run), so Pod Security admission judges it as it would in kind.
* Argo CD ``Application`` documents are checked by shape only (the Argo CD CRDs are not installed here): known
  fields and sync options, waves, paths that exist in this repository, Helm values the chart accepts.
* The quickstart (docs/quickstart.md) on the test control plane, in the examples' own namespace: the namespace,
  ``helm install`` of the chart (the real Helm binary), the sandbox run from its Deployment's own arguments and
  mounted Secret, the example Secrets and SyncConnections, the operator under its ServiceAccount, the worker Jobs
  run by the kubelet stand-in; then the manual load and the write-back succeed and the data is where the
  quickstart says to look. Differences from kind, said plainly: no pods run here (the operator, the sandbox and
  the workers are local processes, not containers), there is no DNS or Service routing, so the SyncConnections get
  loopback URL overrides (``tenantUrl``/``tokenEndpoint``/``authUrl``/``apiUrl``) instead of the sandbox Service's
  name, and the dataset is smaller (1 000 GL postings instead of 4 000).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fnmatch
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest
from envtest import REPO, ControlPlane, free_port
from kubelet import EXECUTABLE, Kubelet
from manifests import (
    ApiServer,
    Doc,
    Refused,
    documents,
    helm_install,
    identity,
    in_namespace,
    pod_from_template,
    pod_security_warnings,
    render_chart,
)
from operator_harness import WORKER_ENV, deployment_command, service_account_token, start_operator, wait_for

from ml_connector.spec import GROUP, VERSION

pytestmark = pytest.mark.k8s

EXAMPLES = REPO / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.rglob("*.yaml"))
ARGO_GROUP = "argoproj.io/"


def example(name: str) -> list[Doc]:
    return documents(EXAMPLES / name)


def only(docs: list[Doc], kind: str) -> Doc:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def contained(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` lacks or changes what ``expected`` has (``actual`` may hold more: defaults)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected a mapping, found {actual!r}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{path}.{key}: missing (pruned?)")
            else:
                problems += contained(value, actual[key], f"{path}.{key}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {expected!r}, found {actual!r}"]
        return [problem for i, item in enumerate(expected) for problem in contained(item, actual[i], f"{path}[{i}]")]
    return [] if expected == actual else [f"{path}: expected {expected!r}, found {actual!r}"]


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[ApiServer]:
    with ApiServer(control_plane) as server:
        yield server


@pytest.fixture
def restricted_namespace(api: ApiServer) -> str:
    """A fresh namespace made from examples/namespace.yaml (renamed), Pod Security restricted enforced."""
    name = f"ex-{secrets.token_hex(3)}"
    answer = api.apply(in_namespace(only(example("namespace.yaml"), "Namespace"), name, api))
    assert answer.body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    return name


# --------------------------------------------------------------------------------------------------
# What the examples are


def test_the_examples_cover_every_product_line_write_back_and_gitops() -> None:
    names = {str(path.relative_to(EXAMPLES)) for path in EXAMPLE_FILES}
    assert names >= {
        "namespace.yaml",
        "sandbox.yaml",
        "secrets.yaml",
        "m3-syncconnection.yaml",
        "syteline-syncconnection.yaml",
        "fsm-syncconnection.yaml",
        "writeback-syncconnection.yaml",
        "syncrun-manual.yaml",
        "syncrun-writeback.yaml",
        "argocd/root-application.yaml",
        "argocd/apps/crds.yaml",
        "argocd/apps/operator.yaml",
        "argocd/apps/connections.yaml",
        "argocd/hooks/postsync-syncrun.yaml",
    }
    connections = [doc for path in EXAMPLE_FILES for doc in documents(path) if doc["kind"] == "SyncConnection"]
    assert {doc["spec"]["infor"]["productLine"] for doc in connections} >= {"M3", "SyteLine", "FSM"}
    assert any("writeback" in doc["spec"] for doc in connections)
    runs = [doc for path in EXAMPLE_FILES for doc in documents(path) if doc["kind"] == "SyncRun"]
    assert {doc["spec"].get("direction", "Load") for doc in runs} == {"Load", "WriteBack"}


# --------------------------------------------------------------------------------------------------
# Every manifest, accepted by the API server


@pytest.mark.parametrize(
    "path",
    [path for path in EXAMPLE_FILES if not all(doc["apiVersion"].startswith(ARGO_GROUP) for doc in documents(path))],
    ids=lambda path: str(path.relative_to(EXAMPLES)),
)
def test_every_example_is_accepted_by_the_api_server(path: Path, api: ApiServer, restricted_namespace: str) -> None:
    applied = 0
    for doc in documents(path):
        if doc["apiVersion"].startswith(ARGO_GROUP):
            continue  # checked by shape below: the Argo CD CRDs are not installed here
        moved = in_namespace(doc, restricted_namespace, api)
        if moved["kind"] == "Namespace":  # the fixture applied it (renamed): check it took every label
            stored_namespace = api.get("v1", "Namespace", restricted_namespace)
            assert stored_namespace is not None
            assert contained(moved["metadata"]["labels"], stored_namespace["metadata"]["labels"]) == []
            applied += 1
            continue
        answer = api.apply(moved)
        assert answer.warnings == [], f"{identity(moved)}: {answer.warnings}"
        stored = api.get(moved["apiVersion"], moved["kind"], moved["metadata"]["name"], restricted_namespace)
        assert stored is not None
        if "spec" in moved:
            problems = contained(moved["spec"], stored["spec"], "spec")
            assert not problems, f"{identity(moved)} was changed by the API server: {problems}"
        if moved["kind"] == "Secret":
            assert set(stored["data"]) == set(moved.get("stringData", {})) | set(moved.get("data", {}))
        if moved["kind"] in ("Deployment", "Job"):
            # The pod its controller would start, judged by Pod Security admission (enforce: restricted).
            pod = api.create(pod_from_template(moved, f"{moved['metadata']['name']}-probe"), dry_run=True)
            assert pod_security_warnings(pod.warnings) == []
        applied += 1
    assert applied > 0


def test_the_namespace_enforces_pod_security_restricted(api: ApiServer, restricted_namespace: str) -> None:
    """The control: the same admission refuses a pod that is only "baseline" (so the acceptances above mean it)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "baseline", "namespace": restricted_namespace},
        "spec": {"automountServiceAccountToken": False, "containers": [{"name": "c", "image": "busybox"}]},
    }
    api.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": restricted_namespace},
        }
    )
    with pytest.raises(Refused) as refused:
        api.create(pod, dry_run=True)
    assert refused.value.status == 403
    assert 'violates PodSecurity "restricted:latest"' in refused.value.reason
    for rule in ("allowPrivilegeEscalation != false", "runAsNonRoot != true", "seccompProfile"):
        assert rule in refused.value.reason


def test_an_invalid_syncconnection_is_refused_with_the_field_named(api: ApiServer, restricted_namespace: str) -> None:
    """The acceptances are not vacuous: the same path refuses an example with a typo and a broken rule."""
    connection = in_namespace(only(example("m3-syncconnection.yaml"), "SyncConnection"), restricted_namespace, api)
    typo = copy.deepcopy(connection)
    typo["spec"]["infor"]["pagesize"] = 10
    with pytest.raises(Refused) as refused:  # server-side apply (Argo CD, kubectl apply --server-side)
        api.apply(typo)
    assert ".spec.infor.pagesize: field not declared in schema" in refused.value.reason
    with pytest.raises(Refused) as refused:  # a create with strict validation (kubectl apply, kubectl create)
        api.create(typo)
    assert 'unknown field "spec.infor.pagesize"' in refused.value.reason
    no_m3 = copy.deepcopy(connection)
    del no_m3["spec"]["infor"]["m3"]
    with pytest.raises(Refused) as refused:
        api.apply(no_m3)
    assert "infor.m3 is required when productLine is M3" in refused.value.reason


# --------------------------------------------------------------------------------------------------
# Argo CD Applications, by shape

KNOWN_SYNC_OPTIONS = {
    "ServerSideApply=true",
    "SkipDryRunOnMissingResource=true",
    "CreateNamespace=true",
    "PruneLast=true",
    "ApplyOutOfSyncOnly=true",
    "RespectIgnoreDifferences=true",
}
APPLICATION_SPEC_FIELDS = {"project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences"}
SOURCE_FIELDS = {"repoURL", "targetRevision", "path", "helm", "directory"}


def applications() -> dict[str, Doc]:
    apps = [doc for path in EXAMPLE_FILES for doc in documents(path) if doc["apiVersion"].startswith(ARGO_GROUP)]
    return {doc["metadata"]["name"]: doc for doc in apps}


def brace_glob(pattern: str) -> list[str]:
    """Argo CD's include pattern ``{a,b}`` as the list of globs it stands for."""
    match = re.fullmatch(r"\{(.*)\}", pattern)
    return match.group(1).split(",") if match else [pattern]


def test_argocd_applications_have_the_documented_shape() -> None:
    """Shape only (no Argo CD CRD here): fields, waves, sync options, and sources that exist in this repository."""
    apps = applications()
    assert set(apps) == {"ml-connector-root", "ml-connector-crds", "ml-connector", "ml-connector-connections"}
    for name, app in apps.items():
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application"), name
        assert app["metadata"]["namespace"] == "argocd", name
        spec = app["spec"]
        assert set(spec) <= APPLICATION_SPEC_FIELDS, f"{name}: unknown fields {set(spec) - APPLICATION_SPEC_FIELDS}"
        assert spec["project"] == "default"
        assert ("source" in spec) != ("sources" in spec), f"{name}: exactly one of source and sources"
        assert spec["destination"]["server"] == "https://kubernetes.default.svc"
        options = set(spec.get("syncPolicy", {}).get("syncOptions", []))
        assert options <= KNOWN_SYNC_OPTIONS, f"{name}: unknown sync options {options - KNOWN_SYNC_OPTIONS}"
        for source in spec.get("sources") or [spec["source"]]:
            assert set(source) <= SOURCE_FIELDS, f"{name}: unknown source fields {set(source) - SOURCE_FIELDS}"
            assert source["repoURL"].startswith("https://")
            assert source["targetRevision"]
            directory = REPO / source["path"]
            assert directory.is_dir(), f"{name}: source path {source['path']} does not exist in this repository"
            include = (source.get("directory") or {}).get("include")
            if include:
                files = {p.name for p in directory.iterdir()}
                for glob in brace_glob(include):
                    assert fnmatch.filter(files, glob), f"{name}: include {glob} matches no file in {source['path']}"

    waves = {
        name: int(app["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
        for name, app in apps.items()
    }
    assert (waves["ml-connector-crds"], waves["ml-connector"], waves["ml-connector-connections"]) == (-1, 0, 1)
    for name in ("ml-connector-crds", "ml-connector", "ml-connector-connections"):
        assert "ServerSideApply=true" in apps[name]["spec"]["syncPolicy"]["syncOptions"], name
    # The parent syncs exactly the three children; the CRDs are never pruned nor cascade-deleted.
    root = apps["ml-connector-root"]["spec"]["source"]
    children = {doc["metadata"]["name"] for doc in documents_in(REPO / root["path"])}
    assert children == {"ml-connector-crds", "ml-connector", "ml-connector-connections"}
    crds = apps["ml-connector-crds"]
    assert crds["spec"]["source"]["path"] == "crds"
    assert crds["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "finalizers" not in crds["metadata"]
    assert {p.name for p in (REPO / "crds").glob("*.yaml")} == {
        "ml-connector.com_syncconnections.yaml",
        "ml-connector.com_syncruns.yaml",
    }
    # The operator app: the chart without its CRD templates, in a namespace labelled like examples/namespace.yaml.
    operator = apps["ml-connector"]["spec"]
    namespace_labels = only(example("namespace.yaml"), "Namespace")["metadata"]["labels"]
    managed = operator["syncPolicy"]["managedNamespaceMetadata"]["labels"]
    assert managed["pod-security.kubernetes.io/enforce"] == namespace_labels["pod-security.kubernetes.io/enforce"]
    assert operator["destination"]["namespace"] == only(example("namespace.yaml"), "Namespace")["metadata"]["name"]
    values = operator["source"]["helm"]["valuesObject"]
    rendered = render_chart(values, namespace=operator["destination"]["namespace"], release="ml-connector")
    kinds = {doc["kind"] for doc in rendered}
    assert "CustomResourceDefinition" not in kinds
    assert "Deployment" in kinds
    # The connections app syncs the sandbox, the Secrets, connections, and a PostSync hook running one of them.
    sources = apps["ml-connector-connections"]["spec"]["sources"]
    globs = brace_glob(sources[0]["directory"]["include"])
    included = [
        path
        for path in sorted((REPO / sources[0]["path"]).glob("*.yaml"))
        if any(fnmatch.fnmatch(path.name, g) for g in globs)
    ]
    synced = [doc for path in included for doc in documents(path)]
    assert {"Deployment", "Secret", "SyncConnection"} <= {doc["kind"] for doc in synced}
    hooks = documents_in(REPO / sources[1]["path"])
    assert [doc["kind"] for doc in hooks] == ["SyncRun"]
    annotations = hooks[0]["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "PostSync"
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"
    assert hooks[0]["spec"]["connectionRef"]["name"] in {
        d["metadata"]["name"] for d in synced if d["kind"] == "SyncConnection"
    }


def documents_in(directory: Path) -> list[Doc]:
    return [doc for path in sorted(directory.glob("*.yaml")) for doc in documents(path)]


# --------------------------------------------------------------------------------------------------
# The quickstart, end to end on the test control plane

POSTINGS = "1000"


@contextlib.contextmanager
def sandbox_from_deployment(api: ApiServer, namespace: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """Run the sandbox as the Deployment's pod would: its container's arguments, its mounted Secret.

    Only the listening address and ports (free loopback ports) and the dataset size change; the Secret volume is
    materialized from the API server as the kubelet would. Yields the (Anaplan, Infor) base URLs.
    """
    deployment = only(example("sandbox.yaml"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    local: dict[str, Path] = {}
    for volume in pod["volumes"]:
        directory = workdir / "volumes" / volume["name"]
        directory.mkdir(parents=True)
        if "secret" in volume:
            secret = api.get("v1", "Secret", volume["secret"]["secretName"], namespace)
            assert secret is not None, f"the sandbox's Secret {volume['secret']['secretName']} was not applied"
            for key, value in secret["data"].items():
                target = directory / key
                target.write_bytes(base64.b64decode(value))
                target.chmod(volume["secret"]["defaultMode"])
        local[mounts[volume["name"]]] = directory
    anaplan_port, infor_port = free_port(), free_port()
    args = []
    for arg in container["args"]:
        option, _, value = arg.partition("=")
        if option == "--host":
            arg = "--host=127.0.0.1"
        elif option == "--port-anaplan":
            arg = f"--port-anaplan={anaplan_port}"
        elif option == "--port-infor":
            arg = f"--port-infor={infor_port}"
        elif option == "--infor-postings":
            arg = f"--infor-postings={POSTINGS}"
        else:
            for mount_path, directory in local.items():
                if value.startswith(mount_path + "/"):
                    arg = f"{option}={directory}{value[len(mount_path) :]}"
        args.append(arg)
    log = workdir / "sandbox.log"
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [str(EXECUTABLE), *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(local["/tmp"])},
        )
    anaplan, infor = f"http://127.0.0.1:{anaplan_port}", f"http://127.0.0.1:{infor_port}"
    probe = container["readinessProbe"]["httpGet"]["path"]

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the sandbox exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            return all(
                httpx.get(url, timeout=2).status_code == 200
                for url in (anaplan + probe, f"{infor}/_sandbox/infor/stats")
            )
        return False

    try:
        wait_for(ready, timeout=60, what="the sandbox's readiness probe")
        yield anaplan, infor
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def pointed_at(connection: Doc, anaplan: str, infor: str, tenant: str) -> Doc:
    """The example SyncConnection with loopback URL overrides (no cluster DNS for the Service name here)."""
    moved = copy.deepcopy(connection)
    moved["spec"]["infor"]["tenantUrl"] = infor
    moved["spec"]["infor"]["tokenEndpoint"] = f"{infor}/{tenant}/as/token.oauth2"
    moved["spec"]["anaplan"]["authUrl"] = anaplan
    moved["spec"]["anaplan"]["apiUrl"] = f"{anaplan}/2/0"
    return moved


def fixed_secret_values() -> list[str]:
    """Every credential value the examples publish (they are not canary-marked, so look for them by value)."""
    values = []
    for doc in example("secrets.yaml"):
        for key, value in doc["stringData"].items():
            if key == "credentials.ionapi":
                ionapi = json.loads(value)
                values += [ionapi["cs"], ionapi["sask"]]
            elif key == "password":
                values.append(value)
    return values


def test_the_quickstart_loads_and_writes_back_on_the_test_control_plane(
    control_plane: ControlPlane, k8s_api: kubernetes.client.ApiClient, tmp_path: Path
) -> None:
    api = ApiServer(control_plane)
    objects = kubernetes.client.CustomObjectsApi(k8s_api)
    namespace_doc = only(example("namespace.yaml"), "Namespace")
    namespace = namespace_doc["metadata"]["name"]  # the examples' own namespace, as in docs/quickstart.md
    stack = contextlib.ExitStack()
    with stack:
        stack.callback(api.close)
        # kubectl apply -f examples/namespace.yaml
        api.apply(namespace_doc)
        # helm install ml-connector charts/ml-connector -n ml-connector \
        #   --set image.repository=localhost/ml-connector,image.tag=0.1.0,image.pullPolicy=Never
        # (crds.install=false only because the session fixture already installed the same CRDs from crds/)
        values = {
            "image": {"repository": "localhost/ml-connector", "tag": "0.1.0", "pullPolicy": "Never"},
            "crds": {"install": False},
        }
        notes = helm_install("ml-connector", namespace=namespace, values=values, kubeconfig=control_plane.kubeconfig)
        assert "STATUS: deployed" in notes
        chart = render_chart(values, namespace=namespace, release="ml-connector")
        for doc in chart:
            meta = doc["metadata"]
            assert api.get(doc["apiVersion"], doc["kind"], meta["name"], meta.get("namespace")) is not None, identity(
                doc
            )
        operator_deployment = only(chart, "Deployment")
        probe = api.create(pod_from_template(operator_deployment, "operator-probe"), dry_run=True)
        assert pod_security_warnings(probe.warnings) == []
        # kubectl apply -f examples/sandbox.yaml -f examples/secrets.yaml
        for name in ("sandbox.yaml", "secrets.yaml"):
            for doc in example(name):
                assert doc["metadata"]["namespace"] == namespace
                assert api.apply(doc).warnings == [], identity(doc)
        anaplan, infor = stack.enter_context(sandbox_from_deployment(api, namespace, tmp_path / "sandbox"))
        # kubectl apply -f examples/m3-syncconnection.yaml -f examples/writeback-syncconnection.yaml
        ionapis = {
            doc["metadata"]["name"]: json.loads(doc["stringData"]["credentials.ionapi"])
            for doc in example("secrets.yaml")
            if "credentials.ionapi" in doc["stringData"]
        }
        connections = {}
        for name in ("m3-syncconnection.yaml", "writeback-syncconnection.yaml"):
            connection = only(example(name), "SyncConnection")
            tenant = ionapis[connection["spec"]["infor"]["credentialsSecretRef"]["name"]]["ti"]
            api.apply(pointed_at(connection, anaplan, infor, tenant))
            connections[connection["metadata"]["name"]] = connection
        # The operator (the Deployment's arguments and environment, its ServiceAccount's token) and the kubelet.
        args, env = deployment_command(chart)
        account = operator_deployment["spec"]["template"]["spec"]["serviceAccountName"]
        token = service_account_token(k8s_api, namespace, account)
        kubeconfig = control_plane.kubeconfig_for("operator", token, tmp_path / "operator.kubeconfig")
        operator = start_operator(args, env, kubeconfig, tmp_path / "operator.log")
        stack.callback(operator.stop)
        kubelet = stack.enter_context(
            Kubelet(control_plane.kubeconfig, control_plane, [namespace], tmp_path / "kubelet", extra_env=WORKER_ENV)
        )

        def get(plural: str, name: str) -> Doc | None:
            with contextlib.suppress(kubernetes.client.ApiException):
                found: Doc = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
                return found
            return None

        def condition(body: Doc | None, type_: str) -> str | None:
            for item in ((body or {}).get("status") or {}).get("conditions") or []:
                if item["type"] == type_:
                    return str(item["status"])
            return None

        def diagnostics(job: str | None = None) -> str:
            worker = f"\nworker log:\n{kubelet.logs(namespace, job)[-3000:]}" if job else ""
            return f"operator log:\n{operator.tail()}{worker}\nkubelet errors: {kubelet.errors[-3:]}"

        def wait_phase(name: str) -> Doc:
            def finished() -> Doc | None:
                run = get("syncruns", name)
                return run if ((run or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

            try:
                run = wait_for(finished, timeout=120, what=f"SyncRun {name} to finish")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{diagnostics(name)}") from None
            assert run["status"]["phase"] == "Succeeded", (
                f"{run['status']}\n{diagnostics(run['status'].get('jobName'))}"
            )
            return run

        # kubectl wait syncconnection --all --for=condition=Ready
        for name in connections:
            wait_for(lambda n=name: condition(get("syncconnections", n), "Ready") == "True", what=f"{name} Ready")

        # kubectl apply -f examples/syncrun-manual.yaml; kubectl wait ... --for=jsonpath='{.status.phase}'=Succeeded
        manual = only(example("syncrun-manual.yaml"), "SyncRun")
        api.apply(manual)
        run = wait_phase(manual["metadata"]["name"])
        assert condition(run, "Ready") == "True"
        counts = run["status"]["counts"]
        assert counts["loaded"] > 0, counts
        assert counts["rejected"] == 0, counts
        # The Job the operator made passes Pod Security restricted too.
        job = kubernetes.client.BatchV1Api(k8s_api).read_namespaced_job(run["status"]["jobName"], namespace)
        job_doc = k8s_api.sanitize_for_serialization(job)
        job_doc.update({"apiVersion": "batch/v1", "kind": "Job"})
        assert (
            pod_security_warnings(api.create(pod_from_template(job_doc, "worker-probe"), dry_run=True).warnings) == []
        )

        # Data landed: curl <sandbox>/_sandbox/anaplan/state (docs/quickstart.md, through a port-forward there).
        state = httpx.get(f"{anaplan}/_sandbox/anaplan/state", timeout=10).json()
        model = next(m for m in state["models"] if m["name"] == "FP&A Actuals")
        flows = run["status"]["flowCounts"]
        assert model["lists"]["Supplier Invoices"] == flows["supplier_invoices"]["loaded"] > 0
        assert model["lists"]["Payments"] == flows["payments"]["loaded"] > 0
        assert model["modules"]["GL Actuals"]["Amount"] > 0

        # kubectl apply -f examples/syncrun-writeback.yaml
        writeback = only(example("syncrun-writeback.yaml"), "SyncRun")
        api.apply(writeback)
        written = wait_phase(writeback["metadata"]["name"])
        target = connections["m3-budget-writeback"]["spec"]["writeback"]["target"]["m3"]
        budgets = httpx.get(
            f"{infor}/_sandbox/infor/budgets",
            params={
                "tenant": ionapis["infor-m3-ionapi"]["ti"],
                "DIVI": target["division"],
                "BUNO": target["budgetNumber"],
                "BVER": target["budgetVersion"],
            },
            timeout=10,
        ).json()["rows"]
        assert len(budgets) == written["status"]["counts"]["loaded"] > 0

        # The published sandbox credentials never show up in what the operator and the workers wrote.
        leaks = fixed_secret_values()
        texts = {"operator log": operator.log.read_text(errors="replace")}
        texts.update({str(path): path.read_text(errors="replace") for path in (tmp_path / "kubelet").rglob("log.txt")})
        texts["statuses"] = json.dumps(
            [get("syncruns", n) for n in (manual["metadata"]["name"], "m3-budget-writeback-now")]
        )
        texts["events"] = json.dumps(
            k8s_api.sanitize_for_serialization(kubernetes.client.CoreV1Api(k8s_api).list_namespaced_event(namespace))
        )
        for where, text in texts.items():
            assert not [value for value in leaks if value in text], f"a sandbox credential appears in {where}"
