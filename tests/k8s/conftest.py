"""Session fixtures: a real etcd + kube-apiserver with the CRDs from ``crds/`` applied.

The binaries come from ``scripts/envtest.sh``; when they are missing every test here FAILS with a
message naming that script (it does not skip). Select or deselect these tests with ``-m k8s``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from envtest import CRD_DIR, ControlPlane, ControlPlaneError, start_control_plane

CRD_TIMEOUT = 60.0


def apply_crds(api: kubernetes.client.ApiClient, directory: Path = CRD_DIR) -> list[str]:
    """Create every CRD in ``directory`` and wait until the API server serves them."""
    extensions = kubernetes.client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(directory.glob("*.yaml")):
        body: dict[str, Any] = yaml.safe_load(path.read_text())
        extensions.create_custom_resource_definition(body=body)
        names.append(body["metadata"]["name"])
    deadline = time.monotonic() + CRD_TIMEOUT
    for name in names:
        while True:
            crd = extensions.read_custom_resource_definition(name)
            conditions = {c.type: c for c in (crd.status.conditions or [])}
            established = conditions.get("Established")
            if established is not None and established.status == "True":
                break
            problem = conditions.get("NamesAccepted") or conditions.get("NonStructuralSchema")
            if time.monotonic() > deadline:
                raise AssertionError(f"CRD {name} not established: {problem.message if problem else conditions}")
            time.sleep(0.1)
    return names


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    problem = None
    try:
        plane = start_control_plane(tmp_path_factory.mktemp("control-plane"))
    except ControlPlaneError as exc:
        problem = str(exc)
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    try:
        with kubernetes.config.new_client_from_config(config_file=str(plane.kubeconfig)) as api:
            apply_crds(api)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def k8s_api(control_plane: ControlPlane) -> Iterator[kubernetes.client.ApiClient]:
    """An admin client (system:masters) on the test control plane."""
    with kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig)) as api:
        yield api


@pytest.fixture
def namespace(k8s_api: kubernetes.client.ApiClient) -> str:
    """A fresh namespace per test (never deleted: there is no namespace controller)."""
    name = f"t-{secrets.token_hex(4)}"
    kubernetes.client.CoreV1Api(k8s_api).create_namespace(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name
