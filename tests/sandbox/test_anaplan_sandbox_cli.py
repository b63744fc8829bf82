"""``ml-connector sandbox --json``: one JSON line once ready, serves until SIGTERM."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys

import httpx


def test_sandbox_command_prints_one_json_line_and_stops_on_sigterm() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_connector.cli", "sandbox", "--json", "--scale", "1", "--token-lifetime", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        a = info["anaplan"]
        assert {"url", "user", "password", "workspace", "model"} <= set(a)
        assert a["url"].startswith("http://127.0.0.1:")
        basic = base64.b64encode(f"{a['user']}:{a['password']}".encode()).decode()
        with httpx.Client(base_url=a["url"], timeout=10) as http:
            auth = http.post("/token/authenticate", headers={"Authorization": f"Basic {basic}"})
            assert auth.status_code == 201
            token = auth.json()["tokenInfo"]
            headers = {"Authorization": f"AnaplanAuthToken {token['tokenValue']}"}
            models = http.get(f"/2/0/workspaces/{a['workspace']}/models", headers=headers).json()["models"]
            assert [m["id"] for m in models] == [a["model"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read() == ""  # exactly one line
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
