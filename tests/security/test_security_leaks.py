"""No secret in anything a run leaves behind, on the paths where secrets usually leak: authentication failures.

Each scenario makes a run fail on credentials (a wrong password or secret, 401 storms, an auth server that
echoes the credentials it got back in its error body) with credentials that carry the suite's canary, then
searches every artifact for it: the exception (text, repr, traceback, causes), the run result and its report,
the SyncRun status the worker would write, progress events, every log record at DEBUG, and every row of the
audit database (SQLite, and PostgreSQL for one scenario) plus the database file itself.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from reliability_env import AUDIT_POLICY, Env, make_env, snapshot

from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.kube.worker import result_status
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sync.credentials import load_credentials
from ml_connector.sync.progress import Progress
from ml_connector.sync.report import render

ANAPLAN_SECRET = "anaplan-credentials"
INFOR_SECRET = "infor-credentials"


def wrong_anaplan_password(env: Env, canary: Any) -> None:
    (env.demo.files.secrets_dir / ANAPLAN_SECRET / "password").write_text(canary.secret("wrong-password"))


def wrong_infor_secret(env: Env, canary: Any) -> None:
    path = env.demo.files.secrets_dir / INFOR_SECRET / "credentials.ionapi"
    document = json.loads(path.read_text())
    document["sask"] = canary.secret("wrong-sask")
    path.write_text(json.dumps(document))


def anaplan_401_storm(env: Env, canary: Any) -> None:
    env.anaplan_faults.add(FaultRule(status=401, path="/2/0/workspaces/", times=1_000))


def infor_401_storm(env: Env, canary: Any) -> None:
    env.infor_faults.add(FaultRule(status=401, path="/M3/", times=1_000))


def anaplan_echoes_the_basic_header(env: Env, canary: Any) -> None:
    """The auth service answers 401 with the Authorization header it received in its message."""
    basic = base64.b64encode(f"{env.anaplan.user}:{env.anaplan.password}".encode()).decode()
    body = {"status": "FAILURE_BAD_CREDENTIAL", "statusMessage": f"Bad credentials in header 'Basic {basic}'"}
    env.anaplan_faults.add(FaultRule(status=401, path="/token/authenticate", body=body, times=1_000))


def infor_echoes_the_form(env: Env, canary: Any) -> None:
    """The token endpoint answers 400 quoting the form it got, service-account secret and client secret included."""
    document = json.loads((env.demo.files.secrets_dir / INFOR_SECRET / "credentials.ionapi").read_text())
    body = {
        "error": "invalid_request",
        "error_description": f"cannot parse grant_type=password&username={document['saak']}&password="
        f"{document['sask']}&client_secret={quote(document['cs'])}",
    }
    env.infor_faults.add(FaultRule(status=400, path="/as/token", body=body, times=1_000))


def anaplan_auth_unreachable(env: Env, canary: Any) -> None:
    env.anaplan_faults.add(FaultRule(kind="drop", path="/token/authenticate", times=1_000))


SCENARIOS: dict[str, Callable[[Env, Any], None]] = {
    "wrong Anaplan password": wrong_anaplan_password,
    "wrong Infor service-account secret": wrong_infor_secret,
    "401 storm from the Anaplan API": anaplan_401_storm,
    "401 storm from the Infor API": infor_401_storm,
    "Anaplan auth echoes the Basic header": anaplan_echoes_the_basic_header,
    "Infor token endpoint echoes the form": infor_echoes_the_form,
    "Anaplan auth service unreachable": anaplan_auth_unreachable,
}


def exception_texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception(exc)), repr(exc)]
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(vars(current))]
        current = current.__cause__ or current.__context__
    return texts


def sqlite_rows(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for table in tables for row in conn.execute(f"SELECT * FROM {table}"))  # noqa: S608


def database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


async def fail_and_collect(env: Env, progress: Progress) -> tuple[BaseException, dict[str, str]]:
    credentials = load_credentials(env.connection, env.demo.files.secrets_dir)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - which error depends on the scenario; all must be clean
        await env.run(credentials=credentials, progress=progress)
    exc = caught.value
    artifacts = {f"exception text {n}": text for n, text in enumerate(exception_texts(exc))}
    result = getattr(exc, "result", None)
    if result is not None:
        artifacts["run result"] = json.dumps(result.to_dict(), default=str)
        artifacts["run report"] = render(result)
    artifacts["SyncRun status"] = json.dumps(result_status(result, error=str(exc)), default=str)
    artifacts["progress events"] = "\n".join(repr(event) for event in progress.events)
    for run in await env.store.list_runs():
        artifacts[f"audit run {run.run_id}"] = repr(run)
    return exc, artifacts


@pytest.mark.parametrize("scenario", SCENARIOS, ids=list(SCENARIOS))
async def test_an_authentication_failure_leaks_no_secret(
    env: Env, canary: Any, scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    SCENARIOS[scenario](env, canary)
    before = snapshot(env)

    exc, artifacts = await fail_and_collect(env, Progress())

    assert snapshot(env) == before  # and nothing happened to the model
    await env.store.close()  # everything written
    audit = Path(env.tmp / "audit.sqlite3")
    artifacts["audit rows"] = sqlite_rows(audit)
    artifacts["log records"] = caplog.text
    for where, text in artifacts.items():
        canary.assert_absent(text, where)
    assert not canary.found(database_bytes(audit)), "the canary is in the audit database file"
    assert str(exc)  # the failure says something


async def test_postgres_audit_rows_hold_no_secret(tmp_path: Path, postgres_dsn: str, canary: Any) -> None:
    schema = f"sec_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{postgres_dsn}?options={quote(f'-csearch_path={schema}')}"
    store = PostgresAuditStore(dsn, policy=AUDIT_POLICY)
    async for env in make_env(tmp_path, store=store):
        result = await env.run()  # a good run first: payloads, reasons, reconciliation
        assert result.succeeded
        anaplan_401_storm(env, canary)
        wrong_infor_secret(env, canary)
        _, artifacts = await fail_and_collect(env, Progress())
        for where, text in artifacts.items():
            canary.assert_absent(text, where)
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        assert "audit_events" in tables
        for table in tables:
            rows = conn.execute(f"SELECT * FROM {schema}.{table}").fetchall()  # noqa: S608
            canary.assert_absent("\n".join(repr(r) for r in rows), f"PostgreSQL table {table}")
