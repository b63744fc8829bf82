"""``ml-connector demo`` as a user runs it (a subprocess), then ``ml-connector audit`` on what it left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "ml_connector.cli"]


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ML_CONNECTOR_AUDIT", None)
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_demo_runs_end_to_end_and_its_audit_answers(tmp_path: Path) -> None:
    audit = tmp_path / "audit.sqlite3"
    demo = cli("demo", "--audit", str(audit), cwd=tmp_path)

    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    # alignment visibly added the members the model lacked, before loading
    assert "Dimension alignment" in out
    assert "missing in Anaplan" in out
    assert re.search(r"cost_centers: \d+ added", out)
    assert re.search(r"suppliers: \d+ added", out)
    # every flow loaded; the two broken records were rejected with the dump's reason, traced to their records
    for flow in ("supplier_invoices", "payments", "gl_postings"):
        assert re.search(rf"^\s+{flow}\s+Load ", out, re.M), flow
    assert "Item not located in Cost Centers list: CC1999" in out
    assert "Item not located in Suppliers list: S99999" in out
    # reconciliation per flow and per account/period, balanced; write-back; where the audit is
    assert "Reconciliation" in out
    assert "Differences per account and period" in out
    assert "OFF by" not in out
    assert re.search(r"\d+ row\(s\) exported: \d+ added, \d+ updated, \d+ unchanged, 0 failed", out)
    assert f"Audit database: {audit}" in out
    assert "Exit code 0" in out
    assert "password" not in out.lower()

    run_id = re.search(r"--run (\S+) --failed", out)
    assert run_id is not None
    failed = cli("audit", "--audit", str(audit), "--run", run_id.group(1), "--failed", cwd=tmp_path)
    assert failed.returncode == 0, failed.stderr
    assert "CC1999" in failed.stdout
    assert "S99999" in failed.stdout
    key = re.search(r"--key (\S+)", out)
    assert key is not None
    history = cli("audit", "--audit", str(audit), "--key", key.group(1), cwd=tmp_path)
    assert history.returncode == 0
    assert "rejected" in history.stdout
    assert "extracted" in history.stdout
    runs = cli("audit", "--audit", str(audit), "--runs", cwd=tmp_path)
    assert runs.stdout.count("succeeded") == 2  # the load and the write-back
