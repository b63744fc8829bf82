"""Bad input (issue 7): each case ends with a clear error that says what is wrong and where, no crash, and
nothing lost (what could not be loaded is audited rejected with its reason, and a later run loads it once the
input is fixed). Credentials in these tests carry the suite's canary: no message may show them."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import psycopg
import pytest
import yaml
from click.testing import CliRunner
from reliability_env import (
    AUDIT_POLICY,
    Env,
    Hooked,
    aggregate,
    assert_accounted,
    assert_end_state,
    current_postings,
    gl_cells,
    list_items,
    make_env,
    snapshot,
    tuning,
)

from ml_connector.anaplan import AnaplanError
from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.audit.store import RunStatus
from ml_connector.commands.demo import UNKNOWN_COST_CENTER
from ml_connector.infor import ExtractionError
from ml_connector.kube.jobs import CONFIG_ERROR_EXIT_CODE
from ml_connector.records import Record
from ml_connector.spec import SyncConnection, parse_connection
from ml_connector.sync.credentials import load_credentials
from ml_connector.sync.csvfile import clean_text
from ml_connector.sync.errors import SyncConfigError, SyncError
from ml_connector.sync.writeback import ExportFormatError

INFOR_SECRET = "infor-credentials"
ANAPLAN_SECRET = "anaplan-credentials"


def connection(method: str = "basic") -> SyncConnection:
    return parse_connection(
        {
            "apiVersion": "ml-connector.com/v1alpha1",
            "kind": "SyncConnection",
            "metadata": {"name": "acme", "namespace": "finance"},
            "spec": {
                "infor": {
                    "productLine": "M3",
                    "credentialsSecretRef": {"name": INFOR_SECRET, "key": "credentials.ionapi"},
                    "m3": {"company": "100"},
                },
                "anaplan": {
                    "workspace": "Finance",
                    "model": "FP&A",
                    "auth": {"method": method, "credentialsSecretRef": {"name": ANAPLAN_SECRET}},
                },
                "flows": [{"entity": "gl_postings", "importAction": "Load GL Actuals"}],
            },
        }
    )


def ionapi(canary: Any) -> dict[str, Any]:
    return {
        "ti": "ACME_PRD",
        "cn": "ml-connector",
        "ci": "ACME_PRD~client",
        "cs": canary.secret("client-secret"),
        "iu": "https://mingle-ionapi.eu1.inforcloudsuite.com",
        "pu": "https://mingle-sso.eu1.inforcloudsuite.com:443/ACME_PRD/as/",
        "oa": "authorization.oauth2",
        "ot": "token.oauth2",
        "or": "revoke_token.oauth2",
        "saak": "ACME_PRD#service-account",
        "sask": canary.secret("service-secret"),
    }


def write_secrets(root: Path, ionapi_bytes: bytes | None, anaplan: dict[str, bytes] | None) -> None:
    if ionapi_bytes is not None:
        (root / INFOR_SECRET).mkdir(parents=True, exist_ok=True)
        (root / INFOR_SECRET / "credentials.ionapi").write_bytes(ionapi_bytes)
    if anaplan is not None:
        (root / ANAPLAN_SECRET).mkdir(parents=True, exist_ok=True)
        for key, value in anaplan.items():
            (root / ANAPLAN_SECRET / key).write_bytes(value)


def without(document: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in keys}


# ----------------------------------------------------------------------------------------------- .ionapi files

IONAPI_CASES: dict[str, tuple[Callable[[dict[str, Any]], bytes], str]] = {
    "empty file": (lambda d: b"", "is empty"),
    "not JSON": (lambda d: b'{"ti": "ACME_PRD", "cs": ', "is not valid JSON"),
    "a JSON array": (lambda d: json.dumps([d]).encode(), "must contain a JSON object, found an array"),
    "no client secret": (lambda d: json.dumps(without(d, "cs")).encode(), "key 'cs'"),
    "no token endpoint parts": (lambda d: json.dumps(without(d, "pu", "ot")).encode(), "also missing: 'ot'"),
    "a number for the client id": (lambda d: json.dumps({**d, "ci": 42}).encode(), "must be a string, found a number"),
    "a blank tenant": (lambda d: json.dumps({**d, "ti": "  "}).encode(), "key 'ti'"),
    "a gateway URL that is not http(s)": (lambda d: json.dumps({**d, "iu": "ftp://x"}).encode(), "not an http(s) URL"),
    "half a service-account pair": (lambda d: json.dumps(without(d, "sask")).encode(), "'saak' is present"),
    "UTF-16 instead of UTF-8": (lambda d: json.dumps(d).encode("utf-16"), "not UTF-8"),
    "a null secret": (lambda d: json.dumps({**d, "cs": None}).encode(), "key 'cs'"),
}


@pytest.mark.parametrize("case", IONAPI_CASES, ids=list(IONAPI_CASES))
def test_a_malformed_or_incomplete_ionapi_file_is_refused_naming_secret_key_and_file(
    case: str, tmp_path: Path, canary: Any
) -> None:
    document = ionapi(canary)
    make, expected = IONAPI_CASES[case]
    write_secrets(tmp_path, make(document), {"username": b"integration@acme.com", "password": b"x-password"})

    with pytest.raises(SyncConfigError) as caught:
        load_credentials(connection(), tmp_path)

    message = str(caught.value)
    assert expected in message
    assert f"Secret {INFOR_SECRET!r}" in message
    assert "'credentials.ionapi'" in message
    assert str(tmp_path / INFOR_SECRET / "credentials.ionapi") in message
    for secret in (document["cs"], document["sask"]):
        assert secret not in message
    canary.assert_absent(message, "the error")


def test_an_ionapi_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / INFOR_SECRET / "credentials.ionapi").mkdir(parents=True)
    write_secrets(tmp_path, None, {"username": b"u", "password": b"p-password"})
    with pytest.raises(SyncConfigError, match="is a directory"):
        load_credentials(connection(), tmp_path)


# ----------------------------------------------------------------------------------------------- Secrets and keys

MISSING_CASES: dict[str, tuple[str, dict[str, bytes] | None, bool, str]] = {
    # case: (method, Anaplan Secret files (None: no Secret), Infor Secret present, expected fragment)
    "no Infor Secret": ("basic", {"username": b"u", "password": b"p"}, False, f"Secret {INFOR_SECRET!r}"),
    "no Anaplan Secret": ("basic", None, True, f"Secret {ANAPLAN_SECRET!r} not found"),
    "no password key": ("basic", {"username": b"u"}, True, "key(s) password missing"),
    "an empty password": ("basic", {"username": b"u", "password": b"\n"}, True, "password is empty"),
    "an empty user name": ("basic", {"username": b" \n", "password": b"p-password"}, True, "username is empty"),
    "no private key": ("certificate", {"certificate.pem": b"-----"}, True, "private-key.pem missing"),
    "no refresh token": ("oauth", {"client-id": b"abc"}, True, "refresh-token or refresh_token missing"),
    "a password that is not UTF-8": ("basic", {"username": b"u", "password": b"\xff\xfe\xfa"}, True, "not UTF-8"),
}


@pytest.mark.parametrize("case", MISSING_CASES, ids=list(MISSING_CASES))
def test_missing_secrets_and_keys_are_named(case: str, tmp_path: Path, canary: Any) -> None:
    method, anaplan, infor, expected = MISSING_CASES[case]
    write_secrets(tmp_path, json.dumps(ionapi(canary)).encode() if infor else None, anaplan)

    with pytest.raises(SyncConfigError) as caught:
        load_credentials(connection(method), tmp_path)

    message = str(caught.value)
    assert expected in message
    assert str(tmp_path) in message  # where it looked
    canary.assert_absent(message, "the error")


def test_without_a_secrets_directory_the_error_says_how_to_provide_one(canary: Any) -> None:
    with pytest.raises(SyncConfigError, match="ML_CONNECTOR_SECRETS_DIR"):
        load_credentials(connection(), None, environ={})


# ----------------------------------------------------------------------------------------------- wrong credentials


async def test_a_wrong_anaplan_password_fails_clearly_changes_nothing_and_shows_no_secret(
    env: Env, canary: Any
) -> None:
    wrong = canary.secret("wrong-anaplan-password")
    (env.demo.files.secrets_dir / ANAPLAN_SECRET / "password").write_text(wrong)
    before = snapshot(env)

    with pytest.raises(SyncConfigError) as caught:
        await env.run(credentials=load_credentials(env.connection, env.demo.files.secrets_dir))

    message = str(caught.value)
    assert "Anaplan" in message
    assert "credential" in message.lower() or "authenticat" in message.lower()
    assert snapshot(env) == before
    run = (await env.store.list_runs())[0]
    assert run.status is RunStatus.FAILED
    for text in (message, run.error or "", json.dumps(run.reconciliation, default=str)):
        assert wrong not in text
        canary.assert_absent(text, "the run's error")


@pytest.mark.parametrize("key", ["sask", "cs"], ids=["wrong-service-account-secret", "wrong-client-secret"])
async def test_wrong_infor_credentials_fail_clearly_change_nothing_and_show_no_secret(
    env: Env, canary: Any, key: str
) -> None:
    path = env.demo.files.secrets_dir / INFOR_SECRET / "credentials.ionapi"
    document = json.loads(path.read_text())
    document[key] = canary.secret(f"wrong-{key}")
    path.write_text(json.dumps(document))
    before = snapshot(env)

    with pytest.raises(SyncConfigError) as caught:
        await env.run(credentials=load_credentials(env.connection, env.demo.files.secrets_dir))

    message = str(caught.value)
    assert "Infor" in message or "ION API" in message
    assert "token" in message.lower()
    assert snapshot(env) == before
    run = (await env.store.list_runs())[0]
    assert run.status is RunStatus.FAILED
    for text in (message, run.error or ""):
        assert document[key] not in text
        canary.assert_absent(text, "the run's error")


def test_the_cli_exits_with_the_configuration_code_and_a_clear_message_on_a_wrong_password(
    tmp_path: Path, canary: Any
) -> None:
    from ml_connector.cli import cli

    secrets = tmp_path / "secrets"
    write_secrets(secrets, json.dumps(ionapi(canary)).encode(), {"username": b"u", "password": b""})
    manifest = tmp_path / "connection.yaml"
    manifest.write_text(yaml.safe_dump(connection().model_dump(mode="json", by_alias=True, exclude_none=True)))

    result = CliRunner().invoke(
        cli,
        ["sync", "-f", str(manifest), "--secrets-dir", str(secrets), "--audit", str(tmp_path / "a.sqlite3")],
        env={"ML_CONNECTOR_SECRETS_DIR": ""},
    )

    assert result.exit_code == CONFIG_ERROR_EXIT_CODE, result.output
    assert "configuration error" in result.output
    assert f"Secret {ANAPLAN_SECRET!r}" in result.output
    assert "password is empty" in result.output
    canary.assert_absent(result.output, "the CLI output")


# ----------------------------------------------------------------------------------------------- unmapped members


def add_posting_override(env: Env, *, account: str | None = None, cost_center: str | None = None) -> Record:
    """Book one existing GL posting on an account or cost center that exists neither in Infor nor in Anaplan
    (straight into the emulator's late-change overlay, as the demo does for its broken records)."""
    from ml_connector.sandbox.dataset import posting_record

    data = env.infor.data
    dataset = env.infor.dataset
    taken = set(data.posting_overrides)
    seg, journal = next(
        (seg, j)
        for seg in dataset.segments
        for j in range(1, seg.journals + 1)
        if (seg.plant.code, seg.year, j, 1) not in taken
        and not dataset.is_invoice(seg, j)
        and not dataset.is_payment(seg, j)
    )
    posting = data.posting(seg, journal, 1)
    changes: dict[str, Any] = {"changed": data.next_stamp()}
    if account is not None:
        changes["account"] = account
    if cost_center is not None:
        changes["cost_center"] = cost_center
    broken = posting._replace(**changes)
    key = (broken.division, broken.year, broken.journal, broken.line)
    data.posting_overrides[key] = broken
    data.changed_postings.add(key)
    data.version += 1
    return posting_record(broken)


async def test_postings_on_unmapped_accounts_and_cost_centers_are_rejected_with_the_member_named(env: Env) -> None:
    on_account = add_posting_override(env, account="9999")
    on_center = add_posting_override(env, cost_center="CC0000")

    result = await env.run()

    assert result.succeeded, result.problems
    gl = result.flow("gl_postings")
    assert gl is not None
    reasons = {r.natural_key: r.reason for r in gl.rejections}
    assert "Item not located in GL Accounts list: 9999" in reasons[on_account.natural_key]
    assert "Item not located in Cost Centers list: CC0000" in reasons[on_center.natural_key]
    assert UNKNOWN_COST_CENTER in " ".join(reasons.values())  # the demo's own broken posting too
    assert gl.rejected == 3
    await assert_accounted(env, result)
    unknown = {"9999", "CC0000", UNKNOWN_COST_CENTER}
    expected = {k: v for k, v in aggregate(current_postings(env)).items() if not unknown & {k[0], k[1]}}
    assert gl_cells(env.model) == expected  # everything else loaded
    assert result.alignment is not None
    unmapped = {d.dimension: set(d.unknown) for d in result.alignment.dimensions}
    assert "9999" in unmapped["account"]
    assert "CC0000" in unmapped["cost_center"]


# ----------------------------------------------------------------------------------------------- malformed source rows

GL_FIELDS = {"EGACDT": 5, "EGAIT1": 6, "EGACAM": 8, "EGVTXT": 14}
MALFORMED: list[tuple[str, str, str]] = [
    # (field, value the source sends, what the rejection must say)
    ("EGACAM", "12,50", "field EGACAM='12,50' not a decimal number"),
    ("EGACDT", "20251340", "field EGACDT='20251340' not a valid calendar date"),
    ("EGAIT1", "", "field EGAIT1='' empty key field"),
    ("EGACAM", "1E+400", "amount out of range"),
    ("EGACAM", "99999999999999999999999999999999.99", "amount out of range"),
    ("EGACAM", "NaN", "not a finite"),
    ("EGVTXT", "bad \ud800 text", "text is not valid Unicode"),
]


def rewrite_fgledg(
    targets: dict[tuple[str, str, str, str], tuple[int, str]],
) -> Callable[[httpx.Request, bytes], bytes | None]:
    """Rewrite rows of the EXPORTMI FGLEDG answers: (division, year, journal, line) -> (field index, value)."""

    def rewrite(request: httpx.Request, body: bytes) -> bytes | None:
        query = parse_qs(request.url.query.decode())
        select = query.get("QERY", [""])[0]
        if "FGLEDG" not in select or "EGVTXT" not in select:
            return None
        separator = query["SEPC"][0]
        document = json.loads(body)
        changed = False
        for record in document["results"][0]["records"]:
            parts = record["REPL"].split(separator)
            key = tuple(p.strip() for p in parts[1:5])
            if key in targets:
                index, value = targets[key]  # type: ignore[index]
                parts[index] = value
                record["REPL"] = separator.join(parts)
                changed = True
        return json.dumps(document).encode() if changed else None

    return rewrite


async def test_malformed_records_from_infor_are_rejected_with_field_and_value_and_the_rest_loads(env: Env) -> None:
    postings = [p for p in current_postings(env) if p.cost_center != UNKNOWN_COST_CENTER]  # type: ignore[attr-defined]
    chosen = postings[20 : 20 + len(MALFORMED)]
    targets = {
        (p.division, str(p.year), p.journal, str(p.line)): (GL_FIELDS[field], value)  # type: ignore[attr-defined]
        for p, (field, value, _) in zip(chosen, MALFORMED, strict=True)
    }
    hooked = Hooked(lambda r: "EXPORTMI" in r.url.path, rewrite=rewrite_fgledg(targets))

    result = await env.run(tuning=tuning(infor_transport=hooked))

    assert result.succeeded, result.problems
    assert hooked.rewritten >= 1
    gl = result.flow("gl_postings")
    assert gl is not None
    reasons = {r.natural_key: r.reason for r in gl.rejections}
    for posting, (_, _, expected) in zip(chosen, MALFORMED, strict=True):
        reason = reasons[posting.natural_key]
        assert reason.startswith("source row could not be read: gl_postings"), reason
        assert expected in reason, (expected, reason)
    assert gl.rejected == len(MALFORMED) + 1  # and the demo's posting on an unknown cost center
    await assert_accounted(env, result)
    events = {e.natural_key: e async for e in env.store.failed(result.run_id, flow="gl_postings")}
    for posting, (field, _, _) in zip(chosen, MALFORMED, strict=True):
        stored = events[posting.natural_key]  # found in the audit trail under its key, field and value named
        assert stored.reason is not None
        assert f"field {field}" in stored.reason or "field amount" in stored.reason or "field text" in stored.reason
    bad = {p.natural_key for p in chosen}
    wanted = aggregate(p for p in postings if p.natural_key not in bad)
    assert gl_cells(env.model) == wanted  # every other posting loaded

    for posting in chosen:  # someone fixes the rows in Infor: they get new change stamps, and read well
        env.infor.data.update_posting(posting.division, posting.year, posting.journal, posting.line, text="fixed")  # type: ignore[attr-defined]
    fixed = await env.run()
    assert fixed.succeeded, fixed.problems
    await assert_accounted(env, fixed)
    assert_end_state(env)  # nothing was lost: every posting is in Anaplan now


async def test_text_postgresql_cannot_hold_is_audited_without_failing_the_store(
    tmp_path: Path, postgres_dsn: str
) -> None:
    """NUL characters and invalid Unicode from the source reach the audit trail (the rejected rows, their reasons,
    the payloads of loaded records); PostgreSQL text holds neither, so they are stored as U+FFFD, never as a
    failed write that would stop the run."""
    schema = f"bad_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    store = PostgresAuditStore(f"{postgres_dsn}?options={quote(f'-csearch_path={schema}')}", policy=AUDIT_POLICY)
    async for env in make_env(tmp_path, store=store):
        postings = [p for p in current_postings(env) if p.cost_center != UNKNOWN_COST_CENTER]  # type: ignore[attr-defined]
        nul_text, bad_text, nul_key = postings[5:8]
        targets = {
            (p.division, str(p.year), p.journal, str(p.line)): change  # type: ignore[attr-defined]
            for p, change in (
                (nul_text, (GL_FIELDS["EGVTXT"], "a NUL \x00 inside")),  # loads: CSV drops it, the payload keeps it
                (bad_text, (GL_FIELDS["EGVTXT"], "lone \udc80 surrogate")),
                (nul_key, (GL_FIELDS["EGAIT1"], "61\x0000")),  # cleaned, it would be account 6100's cell
            )
        }
        hooked = Hooked(lambda r: "EXPORTMI" in r.url.path, rewrite=rewrite_fgledg(targets))

        result = await env.run(tuning=tuning(infor_transport=hooked))

        assert result.succeeded, result.problems
        gl = result.flow("gl_postings")
        assert gl is not None
        reasons = {r.natural_key: r.reason for r in gl.rejections}
        assert "not valid Unicode" in reasons[bad_text.natural_key]
        assert "field account='61\\x0000' holds a control character" in reasons[nul_key.natural_key]
        assert nul_text.natural_key not in reasons
        await assert_accounted(env, result)
        history = await env.store.history(nul_text.natural_key)
        payload = next(e.payload for e in history if e.payload)
        assert payload["text"] == "a NUL \ufffd inside"
        again = await env.run()
        assert again.succeeded


async def test_a_malformed_cursor_key_stops_the_extraction_with_a_clear_error(env: Env) -> None:
    posting = current_postings(env)[30]
    key = (posting.division, str(posting.year), posting.journal, str(posting.line))  # type: ignore[attr-defined]
    hooked = Hooked(lambda r: "EXPORTMI" in r.url.path, rewrite=rewrite_fgledg({key: (3, "")}))  # EGJRNO empty
    before = gl_cells(env.model)

    with pytest.raises(ExtractionError) as caught:
        await env.run(tuning=tuning(infor_transport=hooked))

    assert "FGLEDG" in str(caught.value)
    assert "not in key order" in str(caught.value)
    assert gl_cells(env.model) == before  # nothing half-loaded
    run = (await env.store.list_runs())[0]
    assert run.status is RunStatus.FAILED
    assert await env.store.get_watermark(run.connection, "gl_postings") is None


# ----------------------------------------------------------------------------------------------- formula injection

INJECTIONS = [
    '=HYPERLINK("http://evil.example","click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    'comma, "quotes" and a\nline break',
]


async def test_csv_and_formula_injection_in_text_fields_is_neutralized(env: Env) -> None:
    """Account names from Infor that a spreadsheet would run as formulas, or that break naive CSV: the members
    alignment adds carry them quoted-prefixed (``'=...``), with commas and quotes intact and line breaks flattened."""
    missing = [a for i, a in enumerate(env.infor.dataset.accounts) if i % 10 == 3]  # the ones alignment will add
    names = {}
    for n, account in enumerate(missing):
        names[account.code] = f"{INJECTIONS[n % len(INJECTIONS)]} #{n}"
        env.infor.data.update_account(account.code, name=names[account.code])

    result = await env.run()

    assert result.succeeded, result.problems
    members = {m.code: m.name for m in env.model.list_by_key("GL Accounts").members.values()}
    for code, name in names.items():
        stored = members[code]
        # exactly what the file carried, parsed back (the emulator drops a tab, as a spreadsheet would)
        assert stored.replace("\t", "") == clean_text(name).replace("\t", ""), (name, stored)
        assert stored[0] not in "=+-@\t\r", stored
        assert "\n" not in stored
        if name[0] in "=+-@":
            assert stored == "'" + name
    if any('"quotes"' in name for name in names.values()):
        assert any('comma, "quotes" and a line break' in m for m in members.values())
    assert_end_state(env)


# ----------------------------------------------------------------------------------------------- Anaplan's side


async def test_an_export_with_unexpected_columns_is_refused_and_nothing_is_written_back(env: Env) -> None:
    def add_column(request: httpx.Request, body: bytes) -> bytes:
        lines = body.decode().splitlines(keepends=True)
        return "".join(
            (line.rstrip("\r\n") + (",Comment" if n == 0 else ",x") + "\r\n") if line.strip() else line
            for n, line in enumerate(lines)
        ).encode()

    def export_chunk(request: httpx.Request) -> bool:
        return request.method == "GET" and "/files/" in request.url.path and "/chunks/" in request.url.path

    exported = Hooked(export_chunk, rewrite=add_column)
    budgets = copy.deepcopy(env.infor.m3_budget_lines)

    with pytest.raises(SyncConfigError) as caught:
        await env.run(direction="WriteBack", tuning=tuning(anaplan_transport=exported))

    message = str(caught.value)
    assert isinstance(caught.value.__cause__, ExportFormatError)
    assert "unexpected Comment" in message
    assert "export 'Approved Budget'" in message
    run = (await env.store.list_runs())[0]
    assert run.status is RunStatus.FAILED
    assert "unexpected Comment" in (run.error or "")
    assert env.infor.m3_budget_lines == budgets  # nothing posted to Infor


CORRUPT_DUMPS = {
    "no line numbers": b"\x1f\x8b\x08\x00garbage\nmore,rows\nand,more\n",
    "not CSV at all": b'field,"open quote\rnever closed\n' + bytes(range(256)),
}


@pytest.mark.parametrize("dump", CORRUPT_DUMPS, ids=list(CORRUPT_DUMPS))
async def test_a_corrupt_failure_dump_marks_no_record_loaded_and_the_next_run_sends_them_again(
    env: Env, dump: str
) -> None:
    hooked = Hooked(
        lambda r: r.method == "GET" and "/dump" in r.url.path and "/chunks/" in r.url.path,
        rewrite=lambda request, body: CORRUPT_DUMPS[dump],
    )

    with pytest.raises(SyncError) as caught:
        await env.run(tuning=tuning(anaplan_transport=hooked))

    result = caught.value.result
    assert result is not None
    assert hooked.rewritten >= 1
    assert "failure dump" in result.message
    assert "sent again" in result.message
    for flow in ("supplier_invoices", "gl_postings"):  # the flows whose imports had a dump
        r = result.flow(flow)
        assert r is not None
        assert r.loaded == 0  # none of their records is called loaded on the strength of an unreadable dump
        assert r.rejected == r.extracted
    await assert_accounted(env, result)
    assert await env.store.get_watermark(result.connection, "supplier_invoices") is None

    again = await env.run()  # nothing was lost: everything is sent again and ends where it must
    assert again.succeeded, again.problems
    inv = again.flow("supplier_invoices")
    assert inv is not None
    assert (inv.loaded, inv.rejected) == (35, 1)
    await assert_accounted(env, again)
    assert_end_state(env)


async def test_a_gzip_chunk_that_does_not_decompress_fails_the_upload_clearly(env: Env) -> None:
    garbage = b"\x1f\x8b\x08\x00 this is not gzip data"

    def corrupt(request: httpx.Request, n: int) -> None:
        if n == 2:
            request.stream = httpx.ByteStream(garbage)
            request.headers["Content-Length"] = str(len(garbage))

    hooked = Hooked(lambda r: r.method == "PUT" and "/chunks/" in r.url.path, corrupt)
    before = gl_cells(env.model), list_items(env.model, "Supplier Invoices")

    with pytest.raises((SyncConfigError, AnaplanError)) as caught:
        await env.run(tuning=tuning(anaplan_transport=hooked))

    message = str(caught.value)
    assert "not valid gzip" in message
    assert "chunk" in message
    assert "/files/" in message  # which file
    assert (gl_cells(env.model), list_items(env.model, "Supplier Invoices")) == before  # no import ran on it
    run = (await env.store.list_runs())[0]
    assert run.status is RunStatus.FAILED

    again = await env.run()
    assert again.succeeded
    assert_end_state(env)


def test_the_decimal_bound_is_what_a_double_holds_to_the_cent() -> None:
    from ml_connector.sync.extract import MAX_AMOUNT

    cents = int(MAX_AMOUNT * 100)
    assert float(cents) == cents
    assert float(cents + 1) != cents + 1  # one cent more and a double cannot tell them apart
