"""Tokens, quotas and faults over real HTTP: expiry mid-extraction, 429 storms, 5xx, dropped connections,
malformed or wrong credentials, revoke on close; FSM reads; LN refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_infor_client_support import (
    FAST_RETRY,
    client_options,
    credentials,
    emulator,
    open_fsm,
    open_m3,
    open_syteline,
    projected,
    read_all,
)

from ml_connector.infor import (
    AuthenticationError,
    IonApiCredentials,
    IonApiFileError,
    M3Options,
    ProductLineNotSupportedError,
    UnsupportedEntityError,
    open_product_line,
)
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import Entity
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sandbox.infor import RunningInfor


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with emulator() as running:
        yield running


# -- tokens ------------------------------------------------------------------------------------


async def test_expired_token_mid_extraction_is_renewed_and_the_request_replayed(infor: RunningInfor) -> None:
    expected = infor.state.dataset.gl_count
    async with open_syteline(infor, page_size=20) as sl:
        count = 0
        async for _ in sl.read("gl_postings"):
            count += 1
            if count in (100, 400):
                infor.state.expire_tokens()  # the gateway now answers 401 to the current token
        tokens = sl.client.tokens  # type: ignore[attr-defined]
    assert count == expected
    assert infor.state.stats["401"] >= 2
    assert tokens.grants["password"] == 1
    assert tokens.grants["refresh_token"] >= 2  # re-authenticated with the refresh grant, no new password grant


async def test_short_lived_tokens_are_refreshed_before_they_expire() -> None:
    # 1 s tokens. 25 customers in pages of 2 = 13 calls; the rate limit (10/s, no burst) spaces them at
    # least 0.1 s apart, so the extraction outlives 80 % of the first token whatever the machine's speed.
    async with emulator(products=("M3",), token_lifetime=1.0) as infor:
        async with open_m3(infor, list_page_size=2, client=client_options(rate_limit=10.0, burst=1)) as m3:
            records, _ = await read_all(m3, "customers")
            tokens = m3.client.tokens  # type: ignore[attr-defined]
        assert len(records) == len(infor.state.dataset.customers) == 25
        assert tokens.grants["refresh_token"] >= 1  # renewed at ~80 % of the 1 s lifetime
        assert infor.state.stats["token.refresh"] == tokens.grants["refresh_token"]


async def test_revoke_on_close(infor: RunningInfor) -> None:
    m3 = open_m3(infor)
    await read_all(m3, "cost_centers")
    assert infor.state.tokens  # a live access token
    await m3.aclose()
    assert infor.state.stats["revoked"] == 1
    assert not infor.state.tokens  # the grant and its access tokens are gone


async def test_wrong_service_account_secret(infor: RunningInfor, tmp_path: Path) -> None:
    doc = json.loads(infor.ionapi("M3").read_text())
    secret = "wrong-secret-" + "x" * 20
    doc["sask"] = secret
    path = tmp_path / "wrong.ionapi"
    path.write_text(json.dumps(doc))
    async with open_product_line("M3", IonApiCredentials.load(path), M3Options(client=client_options())) as m3:
        with pytest.raises(AuthenticationError, match=r"service account key/secret \(saak/sask\) rejected") as info:
            await read_all(m3, "suppliers")
    assert secret not in str(info.value)
    assert doc["cs"] not in str(info.value)
    assert str(path) in str(info.value)


async def test_wrong_client_secret(infor: RunningInfor, tmp_path: Path) -> None:
    doc = json.loads(infor.ionapi("SyteLine").read_text())
    doc["cs"] = "not-the-client-secret-0000"
    path = tmp_path / "wrong.ionapi"
    path.write_text(json.dumps(doc))
    creds = IonApiCredentials.load(path)
    from test_infor_client_support import syteline_options

    async with open_product_line("SyteLine", creds, syteline_options(creds.ti)) as sl:
        with pytest.raises(AuthenticationError, match=r"client id/secret \(ci/cs\) rejected") as info:
            await read_all(sl, "suppliers")
    assert "not-the-client-secret-0000" not in str(info.value)
    assert doc["sask"] not in str(info.value)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda d: d.pop("pu"), "key 'pu': is missing"),
        (lambda d: d.update(iu="ftp://nowhere"), "key 'iu': is not an http(s) URL"),
        (lambda d: d.update(cs=""), "key 'cs': is empty"),
        (lambda d: d.pop("saak"), "key 'saak': is missing although 'sask' is present"),
    ],
)
async def test_malformed_ionapi_files_name_the_key_and_hide_secrets(
    infor: RunningInfor, tmp_path: Path, mangle: object, message: str
) -> None:
    doc = json.loads(infor.ionapi("M3").read_text())
    secrets = [doc["cs"], doc["sask"]]
    mangle(doc)  # type: ignore[operator]
    path = tmp_path / "bad.ionapi"
    path.write_text(json.dumps(doc, indent=2))
    with pytest.raises(IonApiFileError) as info:
        IonApiCredentials.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert all(s not in str(info.value) for s in secrets if s)


async def test_truncated_ionapi_file(infor: RunningInfor, tmp_path: Path) -> None:
    text = infor.ionapi("M3").read_text()
    path = tmp_path / "cut.ionapi"
    path.write_text(text[: len(text) // 2])
    with pytest.raises(IonApiFileError, match=r"is not valid JSON: .* at line \d+, column \d+") as info:
        IonApiCredentials.load(path)
    doc = json.loads(text)
    assert doc["cs"] not in str(info.value)
    assert doc["sask"] not in str(info.value)


# -- quotas and faults -------------------------------------------------------------------------


async def test_429_storm_without_retry_after_is_ridden_out(infor: RunningInfor) -> None:
    infor.state.set_quota(allow=3, interval=0.05, retry_after=False)
    async with open_m3(infor, list_page_size=5) as m3:
        records, _ = await read_all(m3, "customers")
        attempts = m3.client.attempts  # type: ignore[attr-defined]
    assert len(records) == len(infor.state.dataset.customers)
    assert infor.state.stats["429"] > 0
    assert attempts[429] == infor.state.stats["429"]


async def test_retry_after_is_honoured(infor: RunningInfor) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    infor.state.faults.add(FaultRule(kind="status", status=429, retry_after=0.03, path="/M3/", every=2, times=4))
    creds = credentials(infor, "M3")
    options = M3Options(company="100", list_page_size=5, client=client_options(retry=FAST_RETRY))
    async with open_product_line("M3", creds, options, sleep=sleep) as m3:
        records, _ = await read_all(m3, "customers")
    assert len(records) == len(infor.state.dataset.customers)
    assert waits == [0.03] * 4  # the server's hint, not the (much smaller) backoff


async def test_backoff_without_retry_after_grows_exponentially(infor: RunningInfor) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    infor.state.faults.add(FaultRule(kind="status", status=429, path="/M3/", times=4))
    policy = RetryPolicy(max_attempts=6, initial_wait=0.01, multiplier=2.0, max_wait=1.0, jitter=0.0)
    options = M3Options(company="100", client=client_options(retry=policy))
    async with open_product_line("M3", credentials(infor, "M3"), options, sleep=sleep) as m3:
        await read_all(m3, "cost_centers")
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.08])


async def test_5xx_and_dropped_connections_on_reads_are_retried(infor: RunningInfor) -> None:
    infor.state.faults.add(FaultRule(kind="status", status=503, path="/CSI/", every=3, times=5))
    infor.state.faults.add(FaultRule(kind="drop", path="/CSI/", every=4, times=3))
    infor.state.faults.add(FaultRule(kind="status", status=504, path="/CSI/", every=5, times=2))
    async with open_syteline(infor, page_size=25) as sl:
        records, _ = await read_all(sl, "supplier_invoices")
    assert projected("supplier_invoices", records) == projected(
        "supplier_invoices", infor.state.dataset.records("supplier_invoices")
    )
    assert sum(infor.state.faults.injected.values()) == 10


# -- FSM and LN --------------------------------------------------------------------------------


@pytest.mark.parametrize("entity", ["gl_postings", "suppliers", "supplier_invoices", "gl_accounts", "cost_centers"])
async def test_fsm_reads(infor: RunningInfor, entity: Entity) -> None:
    expected = list(infor.state.dataset.records(entity))
    async with open_fsm(infor, page_size=37) as fsm:
        records, errors = await read_all(fsm, entity)
    assert errors == []
    assert len(records) == len(expected)
    if entity == "suppliers":  # FSM's Vendor list carries no country or status
        assert {(r.supplier_id, r.name, r.currency) for r in records} == {  # type: ignore[attr-defined]
            (r.supplier_id, r.name, r.currency)
            for r in expected  # type: ignore[attr-defined]
        }
    else:
        assert projected(entity, records) == projected(entity, expected)


async def test_fsm_incremental_and_unsupported_entities(infor: RunningInfor) -> None:
    watermark = infor.state.dataset.max_stamp
    infor.state.data.update_posting("P30", 2026, 3, 1, amount="10.00")
    async with open_fsm(infor) as fsm:
        records, _ = await read_all(fsm, "gl_postings", changed_since=watermark)
        assert [(r.division, str(r.amount)) for r in records] == [("P30", "10.00")]  # type: ignore[attr-defined]
        with pytest.raises(UnsupportedEntityError, match="FSM does not support 'payments'; supported: cost_centers"):
            fsm.read("payments")
        with pytest.raises(UnsupportedEntityError, match="budget_lines"):
            await fsm.write_budget([], version="Budget")


async def test_ln_is_refused_with_what_is_missing(infor: RunningInfor) -> None:
    creds = credentials(infor, "M3")
    with pytest.raises(ProductLineNotSupportedError, match=r"LN .* is not supported yet") as info:
        open_product_line("LN", creds)
    assert "X-Infor-LnCompany" in str(info.value)
    assert creds.cs.get_secret_value() not in str(info.value)
