"""``ml-connector sandbox --json`` serves the Infor emulator too, with generated ``.ionapi`` files."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx


def test_sandbox_json_line_has_the_infor_tenants() -> None:
    command = [sys.executable, "-m", "ml_connector.cli", "sandbox", "--json", "--infor-postings", "2000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())["infor"]
        assert info["url"].startswith("http://127.0.0.1:")
        assert info["gl_postings"] == 2000
        tenants = info["tenants"]
        assert {p: t["tenant"] for p, t in tenants.items()} == {
            "M3": "NORTHWIND_M3_TST", "SyteLine": "NORTHWIND_CSI_TST", "FSM": "NORTHWIND_FSM_TST"}  # fmt: skip
        assert tenants["SyteLine"]["configs"] == [f"NORTHWIND_CSI_TST_{s}" for s in ("P10", "P20", "P30")]
        paths = [Path(t["ionapi"]) for t in tenants.values()]
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)
        doc = json.loads(Path(tenants["M3"]["ionapi"]).read_text())
        assert doc["iu"] == info["url"]
        with httpx.Client(timeout=10) as http:
            form = {"grant_type": "password", "username": doc["saak"], "password": doc["sask"]}
            token = http.post(doc["pu"] + doc["ot"], data=form, auth=(doc["ci"], doc["cs"])).json()["access_token"]
            r = http.get(f"{doc['iu']}/{doc['ti']}/M3/m3api-rest/v2/execute/CRS620MI/LstSuppliers;maxrecs=2",
                         headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert [rec["SUNO"] for rec in r.json()["results"][0]["records"]] == ["S00001", "S00002"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not any(p.exists() for p in paths)  # the temporary .ionapi files are gone
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
