"""``ml-connector sandbox`` reached under another name: ``--public-url-*``, ``--credentials-file``, ``--write-ionapi``.

The emulators listen on loopback but advertise the given base URLs (in the ``.ionapi`` files and the printed
details), accept the fixed credentials of the file and nothing else, and keep the written ``.ionapi`` files.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import yaml

from ml_connector.sandbox.credentials import CredentialsFileError, parse_credentials

ANAPLAN_PUBLIC = "http://ml-connector-sandbox.finance.svc:8080"
INFOR_PUBLIC = "http://ml-connector-sandbox.finance.svc:8081"
CREDENTIALS = {
    "anaplan": {"password": "fixed-anaplan-password"},
    "infor": {
        "M3": {
            "ci": "NORTHWIND_M3_TST~fixed-client",
            "cs": "fixed-client-secret",
            "saak": "NORTHWIND_M3_TST#fixed-service-account",
            "sask": "fixed-service-account-secret",
        }
    },
}


def sandbox(*args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ml_connector.cli", "sandbox", "--scale", "0", "--infor-postings", "144", *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_public_urls_fixed_credentials_and_kept_ionapi_files(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials.yaml"
    credentials.write_text(yaml.safe_dump(CREDENTIALS))
    ionapi_dir = tmp_path / "ionapi"
    proc = sandbox(
        "--json",
        f"--public-url-anaplan={ANAPLAN_PUBLIC}/",  # a trailing slash is dropped
        f"--public-url-infor={INFOR_PUBLIC}",
        f"--credentials-file={credentials}",
        f"--write-ionapi={ionapi_dir}",
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        anaplan, infor = info["anaplan"], info["infor"]
        assert anaplan["url"].startswith("http://127.0.0.1:")
        assert anaplan["public_url"] == ANAPLAN_PUBLIC
        assert anaplan["password"] == "fixed-anaplan-password"
        assert infor["url"].startswith("http://127.0.0.1:")
        assert infor["public_url"] == INFOR_PUBLIC

        m3 = Path(infor["tenants"]["M3"]["ionapi"])
        assert m3.parent == ionapi_dir
        assert stat.S_IMODE(m3.stat().st_mode) == 0o600
        doc = json.loads(m3.read_text())
        assert doc["iu"] == INFOR_PUBLIC
        assert doc["pu"] == f"{INFOR_PUBLIC}/NORTHWIND_M3_TST/as/"
        assert {key: doc[key] for key in ("ci", "cs", "saak", "sask")} == CREDENTIALS["infor"]["M3"]
        syteline = json.loads(Path(infor["tenants"]["SyteLine"]["ionapi"]).read_text())
        assert syteline["iu"] == INFOR_PUBLIC
        assert syteline["ci"].startswith("NORTHWIND_CSI_TST~")  # not in the file: random, as by default
        assert syteline["cs"] != CREDENTIALS["infor"]["M3"]["cs"]

        with httpx.Client(timeout=10) as http:
            # The listening URL serves what the public one names: the token endpoint takes the fixed keys ...
            token_url = f"{infor['url']}/NORTHWIND_M3_TST/as/token.oauth2"
            form = {"grant_type": "password", "username": doc["saak"], "password": doc["sask"]}
            granted = http.post(token_url, data=form, auth=(doc["ci"], doc["cs"]))
            assert granted.status_code == 200, granted.text
            # ... and nothing else.
            wrong = http.post(token_url, data=form, auth=(doc["ci"], "not-the-secret"))
            assert wrong.status_code == 401
            assert wrong.json()["error"] == "invalid_client"
            # Anaplan basic authentication with the fixed password; a wrong one is refused.
            ok = http.post(f"{anaplan['url']}/token/authenticate", auth=(anaplan["user"], "fixed-anaplan-password"))
            assert ok.status_code == 201
            refused = http.post(f"{anaplan['url']}/token/authenticate", auth=(anaplan["user"], "guess"))
            assert refused.status_code == 401
            # URLs the emulator builds from a request follow the name it was reached by (here: through a Service).
            behind_service = http.post(
                f"{anaplan['url']}/token/authenticate",
                auth=(anaplan["user"], "fixed-anaplan-password"),
                headers={"Host": urlsplit(ANAPLAN_PUBLIC).netloc},
            )
            assert behind_service.json()["meta"]["validationUrl"] == f"{ANAPLAN_PUBLIC}/token/validate"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert m3.exists()  # --write-ionapi files are kept
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_text_output_shows_the_public_urls(tmp_path: Path) -> None:
    proc = sandbox(f"--public-url-anaplan={ANAPLAN_PUBLIC}", f"--public-url-infor={INFOR_PUBLIC}")
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"Anaplan emulator: {ANAPLAN_PUBLIC} (listening on http://127.0.0.1:")
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[2].startswith(f"Infor ION API Gateway emulator: {INFOR_PUBLIC} (listening on http://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_options_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    bad_url = subprocess.run(
        [sys.executable, "-m", "ml_connector.cli", "sandbox", "--public-url-infor", "ftp://somewhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_url.returncode == 2
    assert "--public-url-infor" in bad_url.stderr
    assert "'ftp://somewhere' is not an http(s) base URL" in bad_url.stderr

    credentials = tmp_path / "credentials.yaml"
    credentials.write_text("infor:\n  Syteline:\n    ci: a\n    cs: very-secret-value\n    saak: b\n    sask: c\n")
    bad_file = subprocess.run(
        [sys.executable, "-m", "ml_connector.cli", "sandbox", f"--credentials-file={credentials}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad_file.returncode == 2
    assert "--credentials-file" in bad_file.stderr
    assert str(credentials) in bad_file.stderr
    assert "infor.Syteline" in bad_file.stderr
    assert "very-secret-value" not in bad_file.stderr


def test_credentials_file_errors_name_the_field_never_the_value() -> None:
    problems = []
    for text in (
        "anaplan:\n  password: ''\n",  # empty
        "anaplan:\n  password: hunter2-secret\n  user: someone\n",  # unknown field
        "infor:\n  M3:\n    ci: x\n    cs: hunter2-secret\n",  # saak, sask missing
        "anaplan: {password: hunter2-secret\n",  # broken YAML
        "- just a list\n",
    ):
        try:
            parse_credentials(text, "creds.yaml")
        except CredentialsFileError as exc:
            problems.append(str(exc))
        else:
            raise AssertionError(f"accepted: {text!r}")
    assert all(problem.startswith("creds.yaml: ") for problem in problems)
    assert not [problem for problem in problems if "hunter2" in problem]
    assert "anaplan.password" in problems[0]
    assert "anaplan.user: Extra inputs are not permitted" in problems[1]
    assert "infor.M3.saak: Field required" in problems[2]
    assert "infor.M3.sask: Field required" in problems[2]
    assert "not valid YAML" in problems[3]
    assert "line 2" in problems[3]
    assert "expected a mapping" in problems[4]


def test_a_partial_credentials_file_fixes_only_what_it_names() -> None:
    parsed = parse_credentials("infor:\n  FSM: {ci: c, cs: topsecretvalue, saak: a, sask: k}\n")
    assert parsed.anaplan_password is None
    assert set(parsed.infor) == {"FSM"}
    assert parsed.infor["FSM"].cs.get_secret_value() == "topsecretvalue"
    assert "topsecretvalue" not in repr(parsed)  # SecretStr: the repr hides it
