"""The pipeline's small parts, without I/O beyond temporary files: credentials, export parsing, member names,
period windows, the in-process model lock, progress rendering, stage timing."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ml_connector.net.redact import MASK, redact
from ml_connector.spec import PeriodRange, parse_connection
from ml_connector.sync.align import KnownMembers, display_names
from ml_connector.sync.credentials import (
    ENV_ANAPLAN_CREDENTIALS_DIR,
    ENV_INFOR_CREDENTIALS_FILE,
    load_credentials,
)
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.extract import period_span, window_periods
from ml_connector.sync.locks import InProcessLock
from ml_connector.sync.mapping import Member
from ml_connector.sync.progress import LogRenderer, Progress, ProgressEvent, TerminalRenderer
from ml_connector.sync.timing import StageClock
from ml_connector.sync.writeback import ExportFormatError, budget_line, export_rows, parse_period

IONAPI = {
    "ti": "ACME_TST",
    "cn": "MLConnector",
    "ci": "ACME_TST~client",
    "cs": "client-secret-value-1",
    "iu": "https://mingle.example.com",
    "pu": "https://mingle.example.com/ACME_TST/as/",
    "oa": "authorization.oauth2",
    "ot": "token.oauth2",
    "or": "revoke_token.oauth2",
    "saak": "ACME_TST#service",
    "sask": "service-secret-value-2",
}


def connection(method: str = "basic", **anaplan: Any) -> Any:
    return parse_connection(
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncConnection",
            "metadata": {"name": "acme"},
            "spec": {
                "infor": {"productLine": "M3", "credentialsSecretRef": {"name": "infor"}, "m3": {"company": "100"}},
                "anaplan": {
                    "workspace": "Finance",
                    "model": "FP&A",
                    "auth": {"method": method, "credentialsSecretRef": {"name": "anaplan"}},
                    **anaplan,
                },
                "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
            },
        }
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def secrets_dir(tmp_path: Path, anaplan: dict[str, str], ionapi: dict[str, str] | None = None) -> Path:
    root = tmp_path / "secrets"
    write(root / "infor" / "credentials.ionapi", json.dumps(ionapi or IONAPI))
    for key, value in anaplan.items():
        write(root / "anaplan" / key, value)
    return root


def test_basic_credentials_are_read_from_the_mounted_layout_and_registered(tmp_path: Path) -> None:
    root = secrets_dir(tmp_path, {"username": "integration@acme.example\n", "password": "pa55-word-XYZ\n"})
    creds = load_credentials(connection(), root, environ={})
    assert creds.infor.ti == "ACME_TST"
    assert creds.anaplan.method == "basic"
    assert creds.anaplan.username == "integration@acme.example"
    assert creds.anaplan.password is not None
    assert creds.anaplan.password.get_secret_value() == "pa55-word-XYZ"
    assert "pa55-word-XYZ" not in repr(creds)
    assert redact("user pa55-word-XYZ and service-secret-value-2") == f"user {MASK} and {MASK}"


def test_certificate_and_oauth_keys_with_either_spelling(tmp_path: Path) -> None:
    root = secrets_dir(tmp_path, {"certificate.pem": "CERT", "private-key.pem": "KEY-material-1"})
    creds = load_credentials(connection("certificate"), root, environ={})
    assert creds.anaplan.certificate == b"CERT"
    assert creds.anaplan.key_password is None
    root2 = secrets_dir(tmp_path / "o", {"client_id": "cid", "refresh_token": "refresh-token-value-3"})
    oauth = load_credentials(connection("oauth"), root2, environ={})
    assert oauth.anaplan.client_id == "cid"
    assert oauth.anaplan.client_secret is None
    assert oauth.anaplan.refresh_token is not None
    assert redact("refresh-token-value-3") == MASK


def test_missing_pieces_are_named_with_the_secret_key_and_path(tmp_path: Path) -> None:
    root = secrets_dir(tmp_path, {"username": "someone"})
    with pytest.raises(SyncConfigError, match=r"Secret 'anaplan'.*key\(s\) password missing in .*method basic needs"):
        load_credentials(connection(), root, environ={})
    with pytest.raises(SyncConfigError, match="ML_CONNECTOR_SECRETS_DIR"):
        load_credentials(connection(), None, environ={})
    bad = secrets_dir(tmp_path / "b", {"username": "u", "password": "p4ssw0rd"}, {"ti": "X"})
    with pytest.raises(SyncConfigError, match=r"Infor credentials \(Secret 'infor', key 'credentials.ionapi'\)") as e:
        load_credentials(connection(), bad, environ={})
    assert "required" in str(e.value) or "missing" in str(e.value)


def test_the_jobs_exact_mount_points_win(tmp_path: Path) -> None:
    root = secrets_dir(tmp_path, {"username": "u", "password": "p4ssw0rd-from-dir"})
    job = tmp_path / "job"
    write(job / "infor" / "credentials.ionapi", json.dumps({**IONAPI, "ti": "FROM_JOB"}))
    write(job / "anaplan" / "username", "job-user")
    write(job / "anaplan" / "password", "job-password-4")
    env = {
        ENV_INFOR_CREDENTIALS_FILE: str(job / "infor" / "credentials.ionapi"),
        ENV_ANAPLAN_CREDENTIALS_DIR: str(job / "anaplan"),
    }
    creds = load_credentials(connection(), root, environ=env)
    assert creds.infor.ti == "FROM_JOB"
    assert creds.anaplan.username == "job-user"


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_export_rows_survive_chunk_boundaries_anywhere() -> None:
    text = (
        'Version,Account,Cost Center,Period,Amount\r\nBudget,6100,"CC, ""10""",Jan 25,1200.5\r\n'
        "Budget,6200,CC20,2025-02,7\r\n"
    )
    data = text.encode()
    expected = [r async for r in export_rows(chunks(data), source="x")]
    assert [r.values["Cost Center"] for r in expected] == ['CC, "10"', "CC20"]
    for cut in range(1, len(data)):
        got = [r async for r in export_rows(chunks(data[:cut], data[cut:]), source="x")]
        assert got == expected, cut
    line = budget_line(expected[0], "Budget")
    assert (line.period, line.amount, line.currency) == ("2025-01", Decimal("1200.5"), "")


async def test_export_columns_must_be_the_expected_ones() -> None:
    with pytest.raises(ExportFormatError, match=r"missing Version; unexpected Scenario.*found Account, .*expected"):
        _ = [r async for r in export_rows(chunks(b"Account,Cost Center,Period,Scenario,Amount\n"), source="e")]
    with pytest.raises(ExportFormatError, match="empty"):
        _ = [r async for r in export_rows(chunks(b""), source="e")]


def test_bad_numbers_and_periods_are_row_errors() -> None:
    from ml_connector.sync.writeback import ExportRow

    row = ExportRow(
        3, {"Account": "6100", "Cost Center": "CC1", "Period": "Jan 25", "Version": "Budget", "Amount": "1x"}
    )
    with pytest.raises(ValueError, match="'1x' is not a number"):
        budget_line(row, "Budget")
    with pytest.raises(ValueError, match="not YYYY-MM"):
        parse_period("Q1 25")
    assert parse_period("Dec 2026") == parse_period("2026-12-31") == "2026-12"


def test_display_names_are_unique_where_anaplan_needs_it() -> None:
    names = display_names(
        {"CC1": "Maintenance", "CC2": "Maintenance", "CC3": "Finance", "CC4": ""}, [Member("X9", "Finance")]
    )
    assert names == {"CC1": "Maintenance (CC1)", "CC2": "Maintenance (CC2)", "CC3": "Finance (CC3)", "CC4": "CC4"}
    assert display_names({"A": "Cash"}, [Member("A", "Cash")]) == {"A": "Cash"}


def test_known_members_check_only_the_columns_the_model_resolves() -> None:
    class State:
        def __init__(self, dimension: str, target: set[str], source: set[str], policy: str) -> None:
            self.dimension, self.list_name, self.policy = dimension, f"{dimension} list", policy
            self.target = [Member(c) for c in target]
            self.source = dict.fromkeys(source)
            self.failed: dict[str, str] = {}

    known = KnownMembers([State("cost_center", {"CC1"}, {"CC2"}, "Add"), State("account", {"6100"}, set(), "Stop")])  # type: ignore[list-item]
    assert known.reasons("gl_actuals", {"Account": "6100", "Cost Center": "CC2"}) == []  # CC2 will be added
    reasons = known.reasons("gl_actuals", {"Account": "6200", "Cost Center": "CC9"})
    assert sorted(reasons) == [
        "Item not located in account list list: 6200 (account unknown)",
        "Item not located in cost_center list list: CC9 (cost center unknown)",
    ]
    assert known.reasons("payments", {"Account": "6200"}) == []  # payments have no account dimension


def test_period_windows() -> None:
    today = dt.date(2026, 3, 15)
    assert window_periods(None, None, None, today=today) is None
    assert window_periods(None, None, 3, today=today) == ("2026-01", "2026-02", "2026-03")
    assert window_periods("2025-11", None, None, today=today) == ("2025-11", "2025-12", "2026-01", "2026-02", "2026-03")
    override = PeriodRange.model_validate({"from": "2024-12", "to": "2025-01"})
    assert window_periods("2025-11", None, None, today=today, override=override) == ("2024-12", "2025-01")
    with pytest.raises(SyncConfigError, match="empty"):
        period_span("2025-02", "2025-01")


async def test_the_in_process_lock_serializes_and_reports_the_holder() -> None:
    lock = InProcessLock("run-a")
    other = lock.for_holder("run-b")
    waited: list[str] = []
    order: list[str] = []

    async def second() -> None:
        async with other.hold("M1", on_wait=waited.append) as grant:
            order.append("b")
            assert grant.waited >= 0

    async with lock.hold("M1") as grant:
        assert lock.holder_of("M1") == "run-a"
        assert grant.holder == "run-a"
        task = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        order.append("a")
        async with other.hold("M2"):  # another model is free
            pass
    await task
    assert order == ["a", "b"]
    assert waited == ["run-a"]
    assert lock.holder_of("M1") is None


async def test_progress_renders_bars_on_a_terminal_and_log_lines_otherwise(caplog: pytest.LogCaptureFixture) -> None:
    screen = io.StringIO()
    seen: list[ProgressEvent] = []

    def broken_hook(event: ProgressEvent) -> None:
        raise RuntimeError("status patch failed")

    progress = Progress(TerminalRenderer(screen, refresh=0.0), hooks=[seen.append, broken_hook])
    await progress.started("r1", "load run r1")
    progress.total("gl", "rows", 4)
    for _ in range(4):
        progress.advance("gl", "rows")
    await progress.waiting_for_lock("run-b", flow="gl")
    await progress.finished("done")
    out = screen.getvalue()
    assert "[########################] 100% 4/4" in out
    assert "waiting for the model lock held by run-b" in out
    assert [e.kind for e in seen] == ["run", "lock", "done"]
    caplog.set_level(logging.INFO, logger="ml_connector.sync.progress")
    logs = Progress(LogRenderer(interval=0.0))
    await logs.step("uploading", flow="gl", stage="upload", chunks=3)
    logs.advance("gl", "rows", 10)
    text = caplog.text
    assert "event=step flow=gl stage=upload chunks=3 message='uploading'" in text
    assert "event=progress flow=gl stage=rows count=10" in text


def test_stage_clock_charges_time_to_the_innermost_stage() -> None:
    now = [0.0]
    clock = StageClock(lambda: now[0])
    with clock.stage("upload"):
        now[0] += 1
        with clock.stage("transform"):
            now[0] += 2
        now[0] += 3
    now[0] += 4
    seconds = clock.snapshot()
    assert seconds == {"other": 4.0, "upload": 4.0, "transform": 2.0}
    assert sum(StageClock.shares(seconds).values()) == pytest.approx(1.0)


def test_the_local_example_connection_is_valid() -> None:
    from ml_connector.spec import load_connection

    example = load_connection(Path(__file__).parents[2] / "examples" / "connection-local.yaml")
    assert [f.entity for f in example.spec.flows] == ["supplier_invoices", "payments", "gl_postings"]
    assert example.spec.anaplan.api_url == "http://127.0.0.1:8910/2/0"
    assert example.spec.writeback is not None
    assert example.spec.writeback.target.m3 is not None
