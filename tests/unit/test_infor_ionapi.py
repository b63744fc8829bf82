"""The .ionapi credentials file: parsing, validation errors that name the key, no secret in any message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ml_connector.infor import IonApiCredentials, IonApiFileError
from ml_connector.net.redact import SECRETS

CS = "cs-Very-Secret-Client-Secret-0123"
SASK = "sask-Very-Secret-Service-Key-4567"


def document(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "ti": "ACME_TST",
        "cn": "FinanceConnector",
        "dt": "12",
        "ci": "ACME_TST~OzdgeZ5XD9",
        "cs": CS,
        "iu": "https://mingle-ionapi.eu1.inforcloudsuite.com/",
        "pu": "https://mingle-sso.eu1.inforcloudsuite.com:443/ACME_TST/as/",
        "oa": "authorization.oauth2",
        "ot": "token.oauth2",
        "or": "revoke_token.oauth2",
        "ev": "V1480769020",
        "v": "1.0",
        "saak": "ACME_TST#FMuw2CLqvumK",
        "sask": SASK,
    }
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def parse(doc: dict[str, Any] | str, **kwargs: Any) -> IonApiCredentials:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    return IonApiCredentials.parse(text, source="/secrets/acme.ionapi", **kwargs)


def assert_no_secret(message: str) -> None:
    assert CS not in message
    assert SASK not in message


def test_valid_file_derives_urls_and_grant() -> None:
    creds = parse(document())
    assert creds.api_base == "https://mingle-ionapi.eu1.inforcloudsuite.com/ACME_TST"
    assert creds.token_url == "https://mingle-sso.eu1.inforcloudsuite.com:443/ACME_TST/as/token.oauth2"
    assert creds.revoke_url == "https://mingle-sso.eu1.inforcloudsuite.com:443/ACME_TST/as/revoke_token.oauth2"
    assert creds.grant_type == "password"
    assert creds.cs.get_secret_value() == CS
    assert creds.sask is not None
    assert creds.sask.get_secret_value() == SASK
    assert (creds.cn, creds.dt, creds.ev, creds.v) == ("FinanceConnector", "12", "V1480769020", "1.0")


def test_secrets_are_registered_and_never_shown() -> None:
    creds = parse(document())
    assert SECRETS.redact(f"x {CS} y {SASK}") == "x *** y ***"
    for text in (repr(creds), str(creds), creds.model_dump_json()):
        assert_no_secret(text)


def test_defaults_for_optional_paths_and_unknown_keys_tolerated() -> None:
    creds = parse(document(oa=..., **{"or": ...}, extra_key="whatever"))
    assert creds.revoke_url.endswith("/ACME_TST/as/revoke_token.oauth2")
    assert creds.oa == "authorization.oauth2"


def test_pu_without_trailing_slash_still_composes() -> None:
    creds = parse(document(pu="https://sso.example.com/ACME_TST/as"))
    assert creds.token_url == "https://sso.example.com/ACME_TST/as/token.oauth2"


def test_overrides_of_tenant_url_and_token_endpoint() -> None:
    creds = parse(
        document(),
        tenant_url="https://proxy.example.com/ion/",
        token_endpoint="https://sso.example.com/x/as/token.oauth2",
    )
    assert creds.api_base == "https://proxy.example.com/ion/ACME_TST"
    assert creds.token_url == "https://sso.example.com/x/as/token.oauth2"
    assert creds.revoke_url == "https://sso.example.com/x/as/revoke_token.oauth2"
    later = parse(document()).with_overrides(tenant_url="https://other.example.com")
    assert later.api_base == "https://other.example.com/ACME_TST"


def test_client_credentials_when_no_service_account() -> None:
    creds = parse(document(saak=..., sask=...))
    assert creds.grant_type == "client_credentials"


@pytest.mark.parametrize("key", ["ti", "ci", "cs", "iu", "pu", "ot"])
def test_missing_required_key_is_named(key: str) -> None:
    with pytest.raises(IonApiFileError) as info:
        parse(document(**{key: ...}))
    assert info.value.key == key
    assert f"key {key!r}" in str(info.value)
    assert "/secrets/acme.ionapi" in str(info.value)
    assert "missing" in str(info.value)
    assert_no_secret(str(info.value))


def test_all_missing_keys_are_listed() -> None:
    with pytest.raises(IonApiFileError, match=r"key 'ci': is missing \(also missing: 'cs', 'pu'\)"):
        parse(document(ci=..., cs=..., pu=...))


@pytest.mark.parametrize("key", ["cs", "sask", "ci", "ti"])
def test_empty_value_is_named(key: str) -> None:
    with pytest.raises(IonApiFileError, match=f"key '{key}': is empty"):
        parse(document(**{key: "   "}))


@pytest.mark.parametrize("key", ["iu", "pu"])
def test_not_a_url(key: str) -> None:
    with pytest.raises(IonApiFileError, match=f"key '{key}': is not an http\\(s\\) URL"):
        parse(document(**{key: "mingle-ionapi.example.com"}))


def test_wrong_type_never_echoes_the_value() -> None:
    secret_number = 918273645546372819
    with pytest.raises(IonApiFileError) as info:
        parse(document(cs=secret_number))
    assert "key 'cs': must be a string, found a number" in str(info.value)
    assert str(secret_number) not in str(info.value)


def test_sask_without_saak_and_vice_versa() -> None:
    with pytest.raises(IonApiFileError, match="key 'saak': is missing although 'sask' is present"):
        parse(document(saak=...))
    with pytest.raises(IonApiFileError, match="key 'sask': is missing although 'saak' is present") as info:
        parse(document(sask=...))
    assert_no_secret(str(info.value))


def test_not_json_gives_line_and_column_without_content() -> None:
    text = json.dumps(document(), indent=2).replace('"cs": ', '"cs" ')
    with pytest.raises(IonApiFileError) as info:
        parse(text)
    message = str(info.value)
    assert "is not valid JSON: Expecting ':' delimiter at line 6, column" in message
    assert_no_secret(message)


def test_truncated_file() -> None:
    text = json.dumps(document())[:60]
    with pytest.raises(IonApiFileError, match="is not valid JSON") as info:
        parse(text)
    assert_no_secret(str(info.value))


@pytest.mark.parametrize(
    ("text", "found"), [("[]", "an array"), ('"x"', "a string"), ("42", "a number"), ("null", "null")]
)
def test_not_an_object(text: str, found: str) -> None:
    with pytest.raises(IonApiFileError, match=f"must contain a JSON object, found {found}"):
        parse(text)


def test_empty_file() -> None:
    with pytest.raises(IonApiFileError, match="is empty"):
        parse("  \n")


def test_bad_override_is_named() -> None:
    with pytest.raises(IonApiFileError, match="'token endpoint override': is not an http"):
        parse(document(), token_endpoint="sso.example.com/token")


def test_load_from_file_and_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "tenant.ionapi"
    path.write_text(json.dumps(document()), encoding="utf-8")
    assert IonApiCredentials.load(path).source == str(path)
    with pytest.raises(IonApiFileError, match="file not found"):
        IonApiCredentials.load(tmp_path / "absent.ionapi")
    with pytest.raises(IonApiFileError, match="is a directory"):
        IonApiCredentials.load(tmp_path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IonApiFileError, match="not UTF-8"):
        IonApiCredentials.load(path)
