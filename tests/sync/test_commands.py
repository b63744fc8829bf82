"""The ``check``, ``sync``, ``replay`` and ``audit`` commands against the demo environment (emulators on a
background loop, commands through click as a user types them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ml_connector.cli import cli
from ml_connector.commands.demo import DemoEnvironment, start_demo
from ml_connector.sandbox.runtime import ThreadedServers
from ml_connector.sync.errors import CONFIG_ERROR_EXIT_CODE


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoEnvironment]:
    servers = ThreadedServers()
    manager = start_demo(tmp_path / "demo", postings=300, audit_path=tmp_path / "audit.sqlite3")
    environment = servers.call(manager.__aenter__)
    try:
        yield environment
    finally:
        servers.call(lambda: manager.__aexit__(None, None, None))
        servers.close()


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_check_sync_replay_and_audit_commands(demo: DemoEnvironment, tmp_path: Path) -> None:
    files = demo.files
    common = ["-f", str(files.connection_file), "--secrets-dir", str(files.secrets_dir)]
    fast = ["--poll-interval", "0.02"]

    check = invoke("check", *common)
    assert check.exit_code == 0, check.output
    assert "ok    flow gl_postings: import 'Load GL Actuals'" in check.output
    assert "ok    Infor GL accounts" in check.output
    assert "All checks passed." in check.output

    dry = invoke("sync", *common, *fast, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    report = json.loads(dry.output[dry.output.index("{") :])
    assert report["dryRun"]
    assert report["status"] == "Succeeded"
    assert report["counts"]["loaded"] == 0

    load = invoke("sync", *common, *fast)
    assert load.exit_code == 0, load.output
    assert "Load " in load.output
    assert "Item not located in Cost Centers list: CC1999" in load.output
    run_id = load.output.split("Load ", 1)[1].split(" ", 1)[0]

    replay = invoke("replay", "--run", run_id, "--only-failed", *common, *fast)
    assert replay.exit_code == 0, replay.output
    assert "Replay " in replay.output
    assert "replayed" in replay.output

    writeback = invoke("sync", *common, *fast, "--direction", "writeback")
    assert writeback.exit_code == 0
    assert "unchanged" in writeback.output

    failed = invoke("audit", "--audit", str(files.audit_path), "--run", run_id, "--failed")
    assert failed.exit_code == 0
    assert "CC1999" in failed.output
    runs = invoke("audit", "--audit", str(files.audit_path), "--runs", "--json")
    assert {r["direction"] for r in json.loads(runs.output)} == {"Load", "WriteBack"}


def test_configuration_errors_exit_with_the_config_code(demo: DemoEnvironment, tmp_path: Path) -> None:
    files = demo.files
    missing = invoke("sync", "-f", str(files.connection_file), "--secrets-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == CONFIG_ERROR_EXIT_CODE
    assert "configuration error" in missing.output
    assert "Secret 'infor-credentials' not found" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(files.connection_file.read_text().replace("productLine: M3", "productLine: M4"))
    invalid = invoke("sync", "-f", str(bad), "--secrets-dir", str(files.secrets_dir))
    assert invalid.exit_code == CONFIG_ERROR_EXIT_CODE
    assert "spec.infor.productLine" in invalid.output
    unknown = invoke("audit", "--audit", str(tmp_path / "none.sqlite3"), "--runs")
    assert unknown.exit_code == CONFIG_ERROR_EXIT_CODE
    assert "no audit database" in unknown.output
