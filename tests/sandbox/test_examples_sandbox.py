"""The examples and the in-cluster sandbox fit together: what ``examples/sandbox.yaml`` runs accepts exactly the
credentials ``examples/secrets.yaml`` publishes, and every example SyncConnection passes ``ml-connector check``
against it (with loopback URL overrides: there is no cluster DNS here for the sandbox Service's name).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner

from ml_connector.cli import cli
from ml_connector.sandbox.anaplan.default_model import USER_EMAIL
from ml_connector.sandbox.credentials import parse_credentials
from ml_connector.sandbox.runtime import ThreadedServers
from ml_connector.sandbox.server import Sandbox, start_sandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONNECTION_FILES = (
    "m3-syncconnection.yaml",
    "syteline-syncconnection.yaml",
    "fsm-syncconnection.yaml",
    "writeback-syncconnection.yaml",
)


def docs(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((EXAMPLES / name).read_text()) if doc]


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs(name) if doc["kind"] == kind]
    return found


def deployment_args() -> dict[str, str]:
    container = one("sandbox.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "sandbox"
    return dict(arg.removeprefix("--").split("=", 1) for arg in container["args"][1:])


def secrets_by_name() -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc["stringData"] for doc in docs("secrets.yaml")}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """The sandbox as examples/sandbox.yaml starts it (its credentials and public URLs), small and on loopback."""
    args = deployment_args()
    credentials = parse_credentials(one("sandbox.yaml", "Secret")["stringData"]["credentials.yaml"], "sandbox.yaml")
    servers = ThreadedServers()
    running = servers.call(
        lambda: start_sandbox(
            scale=0,
            infor_postings=144,
            credentials=credentials,
            anaplan_public_url=args["public-url-anaplan"],
            infor_public_url=args["public-url-infor"],
        )
    )
    try:
        yield running
    finally:
        servers.call(running.close)
        servers.close()


def test_the_sandbox_deployment_advertises_its_service() -> None:
    args = deployment_args()
    service = one("sandbox.yaml", "Service")
    ports = {port["name"]: port for port in service["spec"]["ports"]}
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    for emulator in ("anaplan", "infor"):
        public = urlsplit(args[f"public-url-{emulator}"])
        assert public.hostname == host
        assert public.port == ports[emulator]["port"]
        assert int(args[f"port-{emulator}"]) == ports[emulator]["port"]  # targetPort names the container port
    assert args["credentials-file"].startswith(
        one("sandbox.yaml", "Deployment")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"]
    )


def test_the_example_secrets_are_what_the_sandbox_accepts(sandbox: Sandbox) -> None:
    assert sandbox.infor is not None
    published = secrets_by_name()
    by_tenant = {
        json.loads(data["credentials.ionapi"])["ti"]: json.loads(data["credentials.ionapi"])
        for data in published.values()
        if "credentials.ionapi" in data
    }
    assert len(by_tenant) == 3
    for product in ("M3", "SyteLine", "FSM"):
        written = json.loads(sandbox.infor.ionapi(product).read_text())  # type: ignore[arg-type]
        assert by_tenant[written["ti"]] == written, f"examples/secrets.yaml differs from the sandbox's {product} file"
    anaplan = published["anaplan-credentials"]
    assert anaplan == {"username": USER_EMAIL, "password": sandbox.anaplan.password}


def test_every_example_connection_refers_to_secrets_and_urls_that_exist() -> None:
    published = secrets_by_name()
    args = deployment_args()
    for name in CONNECTION_FILES:
        spec = one(name, "SyncConnection")["spec"]
        infor_ref = spec["infor"]["credentialsSecretRef"]
        assert infor_ref.get("key", "credentials.ionapi") in published[infor_ref["name"]], name
        assert {"username", "password"} <= set(published[spec["anaplan"]["auth"]["credentialsSecretRef"]["name"]])
        assert spec["anaplan"]["authUrl"] == args["public-url-anaplan"], name
        assert spec["anaplan"]["apiUrl"] == args["public-url-anaplan"] + "/2/0", name
        ionapi = json.loads(published[infor_ref["name"]][infor_ref.get("key", "credentials.ionapi")])
        assert ionapi["iu"] == args["public-url-infor"], name


@pytest.mark.parametrize("name", CONNECTION_FILES)
def test_every_example_connection_passes_check_against_the_sandbox(name: str, sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.infor is not None
    secrets_dir = tmp_path / "secrets"
    for secret, data in secrets_by_name().items():
        for key, value in data.items():
            (secrets_dir / secret).mkdir(parents=True, exist_ok=True)
            (secrets_dir / secret / key).write_text(value)
    connection = one(name, "SyncConnection")
    spec = connection["spec"]
    ionapi = json.loads(secrets_by_name()[spec["infor"]["credentialsSecretRef"]["name"]]["credentials.ionapi"])
    spec["infor"]["tenantUrl"] = sandbox.infor.url
    spec["infor"]["tokenEndpoint"] = f"{sandbox.infor.url}/{ionapi['ti']}/as/token.oauth2"
    spec["anaplan"]["authUrl"] = sandbox.anaplan.url
    spec["anaplan"]["apiUrl"] = f"{sandbox.anaplan.url}/2/0"
    path = tmp_path / name
    path.write_text(yaml.safe_dump(connection))
    result = CliRunner().invoke(cli, ["check", "-f", str(path), "--secrets-dir", str(secrets_dir)])
    assert result.exit_code == 0, result.output
    assert "All checks passed." in result.output
    assert " FAIL " not in result.output
