"""The canary itself: the emulators hand it out in every credential, it is recognized in the forms a secret
leaks in, and the suite-wide watch (``tests/conftest.py``) fails a session in which it shows up."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from ml_connector.sandbox.canary import ENV_CANARY
from ml_connector.sandbox.server import start_sandbox

TESTS = Path(__file__).resolve().parents[1]


async def test_every_credential_the_emulators_hand_out_carries_the_canary(canary: Any) -> None:
    async with await start_sandbox(scale=0, infor_postings=200) as sandbox:
        assert sandbox.infor is not None
        document = json.loads(sandbox.infor.ionapi("M3").read_text())
        assert document["cs"].startswith(canary.value)
        assert document["sask"].startswith(canary.value)
        assert not document["ci"].startswith(canary.value)  # identifiers are not secrets
        assert sandbox.anaplan.password.startswith(canary.value)
        async with httpx.AsyncClient() as http:
            form = {"grant_type": "password", "username": document["saak"], "password": document["sask"]}
            issued = (
                await http.post(document["pu"] + document["ot"], data=form, auth=(document["ci"], document["cs"]))
            ).json()
            assert issued["access_token"].startswith(canary.value)
            assert issued["refresh_token"].startswith(canary.value)
            auth = await http.post(
                sandbox.anaplan.url + "/token/authenticate", auth=(sandbox.anaplan.user, sandbox.anaplan.password)
            )
            assert auth.json()["tokenInfo"]["tokenValue"].startswith(canary.value)


def test_the_canary_is_recognized_as_is_escaped_and_base64_encoded_at_any_offset(canary: Any) -> None:
    secret = canary.secret("password")
    for prefix in ("", "u:", "us:", "use:"):
        header = base64.b64encode(f"{prefix}{secret}".encode()).decode()
        assert canary.found(f"Authorization: Basic {header}")
        assert canary.found(base64.urlsafe_b64encode(f"{prefix}{secret}".encode()))
    assert canary.found(json.dumps({"password": secret}))
    assert canary.found("password=" + quote(secret))
    assert canary.found(f"...{secret[: len(canary.value)]}")  # a truncated secret still carries it
    assert not canary.found("nothing to see " + canary.value[:-1])
    assert "<CANARY>" in canary.excerpt(f"x {secret} y")


def test_the_watch_fails_a_session_that_leaks_and_says_where(canary: Any) -> None:
    """An inner pytest session with the suite's plugin: one test leaks through each channel, one does not."""
    work = Path(tempfile.mkdtemp(prefix="canary-watch-"))  # outside this session's temp dir, which is scanned
    try:
        (work / "test_inner.py").write_text(
            "import logging, os, pytest\n"
            f"SECRET = os.environ[{ENV_CANARY!r}] + 'inner-secret'\n"
            "def test_debug_log():\n"
            "    logging.getLogger('ml_connector.inner').debug('token %s', SECRET)\n"
            "def test_exception_text():\n"
            "    with pytest.raises(ValueError):\n"
            "        raise ValueError(f'bad password {SECRET}')\n"
            "def test_stdout():\n"
            "    print('Authorization:', SECRET)\n"
            "def test_log_file(tmp_path):\n"
            "    (tmp_path / 'worker.log').write_text(SECRET)\n"
            "def test_clean():\n"
            "    logging.getLogger('ml_connector.inner').warning('nothing secret here')\n"
        )
        environ = {**os.environ, "PYTHONPATH": str(TESTS), ENV_CANARY: canary.value}
        command = [
            sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-q",
            "--rootdir", str(work), "--basetemp", str(work / "tmp"), str(work / "test_inner.py"),
        ]  # fmt: skip
        inner = subprocess.run(command, cwd=work, env=environ, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    output = inner.stdout + inner.stderr
    canary.assert_absent(output, "the inner session's report")  # it shows <CANARY>, never the value
    assert inner.returncode == 1, output
    assert "5 passed" in output  # every test passed: the session fails on the canary alone
    assert "canary secret" in output
    assert "test_debug_log: log record of ml_connector.inner (DEBUG)" in output
    assert "test_exception_text: the text of a ValueError caught by pytest.raises" in output
    assert "test_stdout: captured stdout call" in output
    assert "log file test_log_file0/worker.log" in output
    assert "test_clean" not in output.split("canary secret", 1)[1]
