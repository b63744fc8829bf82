"""Property-based: the parsers of untrusted input, the ``.ionapi`` file and Anaplan's failure dumps.

* ``IonApiCredentials.parse`` on any text and any JSON document either returns credentials whose URLs follow
  the reference's composition rules, or raises :class:`IonApiFileError` naming the file (never another
  exception), and never quotes a secret value in its message.
* ``DumpParser`` gives the same rejections however the dump is cut into chunks (a chunk may end inside a
  line, a quoted field or a multi-byte character), and on bytes that are not a dump it returns rows or raises
  :class:`DumpFormatError`, nothing else.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ml_connector.anaplan.dumps import DumpFormatError, DumpParser
from ml_connector.infor import IonApiCredentials, IonApiFileError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
SOURCE = "/var/run/secrets/ml-connector/infor/credentials.ionapi"
KEYS = ["ti", "cn", "dt", "ci", "cs", "iu", "pu", "oa", "ot", "or", "ev", "v", "saak", "sask"]

urls = st.sampled_from(["https://mingle-ionapi.eu1.inforcloudsuite.com", "https://sso.example.com:443/T/as/",
                        "http://127.0.0.1:8080/", "ftp://x", "not a url", "https://", ""])  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# secrets are recognizable and long enough that finding one in a message cannot be a coincidence
secrets = st.text(min_size=4, max_size=20).map(lambda s: f"Zx9q-{s}-secret")


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly-plausible .ionapi documents: each key present or not, a good value or any JSON value."""
    good: dict[str, Any] = {
        "ti": "ACME_PRD", "cn": "app", "dt": "12", "ci": "ACME_PRD~abc", "cs": draw(secrets), "iu": draw(urls),
        "pu": draw(urls), "oa": "authorization.oauth2", "ot": "token.oauth2", "or": "revoke_token.oauth2",
        "ev": "U1", "v": "1.0", "saak": "ACME_PRD#sa", "sask": draw(secrets),
    }  # fmt: skip
    document: dict[str, Any] = {}
    for key in KEYS:
        choice = draw(st.sampled_from(["good", "good", "good", "absent", "other"]))
        if choice == "good":
            document[key] = good[key]
        elif choice == "other":
            document[key] = draw(json_values)
    for key, value in draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2)).items():
        document.setdefault(key, value)
    return document


def secrets_of(document: dict[str, Any]) -> list[str]:
    return [v for k, v in document.items() if k in ("cs", "sask") and isinstance(v, str) and v.startswith("Zx9q-")]


@FUZZ
@given(documents())
def test_any_ionapi_document_parses_or_is_refused_clearly(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    try:
        creds = IonApiCredentials.parse(text, source=SOURCE)
    except IonApiFileError as exc:
        error: IonApiFileError | None = exc
    else:
        error = None
    if error is not None:
        assert SOURCE in str(error)
        for secret in secrets_of(document):
            assert secret not in str(error)
            assert secret not in repr(error)
        return
    assert creds.tenant_url == document["iu"].strip().rstrip("/")
    assert creds.token_url.startswith(creds.pu)
    assert creds.pu.endswith("/")
    assert creds.token_url == creds.pu + document["ot"].strip()
    assert creds.api_base == f"{creds.tenant_url}/{document['ti'].strip()}"
    assert creds.grant_type == ("password" if "saak" in document and document.get("saak") else "client_credentials")
    for secret in secrets_of(document):
        assert secret not in repr(creds)
        assert secret not in str(creds)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        IonApiCredentials.parse(text, source=SOURCE)
    except IonApiFileError as exc:
        message = str(exc)
    else:
        return
    assert SOURCE in message


# ----------------------------------------------------------------------------------------------- failure dumps

cells = st.text(alphabet=st.sampled_from(list('ab,"\n\r é漢🙂;:')), max_size=8)


@st.composite
def dumps(draw: st.DrawFn) -> tuple[bytes, int]:
    """A well-formed dump (CSV, quoted where needed, with a BOM or not) and its number of rows."""
    columns = ["_Status_", "Account", "Cost Center", "Amount", "_Line_", "_Error_1_"]
    rows = draw(st.lists(st.tuples(st.sampled_from(["E", "W"]), cells, cells, cells, st.integers(2, 9999), cells),
                         max_size=12))  # fmt: skip
    out = io.StringIO(newline="")
    # RFC 4180 quoting: a field holding a line break is quoted (with "\n" line ends Python's writer would leave a
    # lone "\r" unquoted, which no dump holds: quote every text field then)
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    quoting = csv.QUOTE_MINIMAL if terminator == "\r\n" else csv.QUOTE_NONNUMERIC
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(row)
    bom = "\ufeff" if draw(st.booleans()) else ""
    return (bom + out.getvalue()).encode("utf-8"), len(rows)


def parse(data: bytes, cuts: list[int]) -> list[Any]:
    parser = DumpParser()
    found: list[Any] = []
    start = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        found += parser.feed(data[start:cut])
        start = cut
    found += parser.feed(data[start:])
    found += parser.close()
    return found


@FUZZ
@given(dumps(), st.lists(st.integers(min_value=0, max_value=4000), max_size=8))
def test_a_dump_parses_the_same_however_it_is_chunked(dump: tuple[bytes, int], cuts: list[int]) -> None:
    data, rows = dump
    whole = parse(data, [])
    assume(all(r.values.get("Account") is not None for r in whole))
    assert len(whole) == rows
    assert parse(data, cuts) == whole
    assert all(r.row >= 2 for r in whole)


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=4))
def test_bytes_that_are_not_a_dump_give_rows_or_a_dump_format_error(data: bytes, cuts: list[int]) -> None:
    try:
        rejections = parse(data, cuts)
    except DumpFormatError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert "not a CSV failure dump" in message
        return
    for rejection in rejections:
        assert rejection.message
        assert rejection.row >= 0
