"""The Anaplan client's authentication against the emulator over loopback HTTP.

Basic and certificate (generated key pair, v1 and v2 payloads) authentication, the OAuth device grant
with rotating refresh tokens, token expiry in the middle of an upload (401 -> one re-authentication
-> replay) and the proactive ``/token/refresh`` keep-alive.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ml_connector.anaplan import (
    AnaplanClient,
    AuthenticationError,
    BasicAuth,
    CertificateAuth,
    NotFoundError,
    OAuthAuth,
    PollPolicy,
    poll_device_token,
    request_device_code,
)
from ml_connector.net import RetryPolicy
from ml_connector.sandbox.anaplan import EmulatorConfig
from ml_connector.sandbox.anaplan.default_model import DEVICE_CLIENT_ID, GL_ACTUALS_HEADERS, OUTSIDER_EMAIL
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sandbox.server import AnaplanHandle, start_anaplan

TINY = RetryPolicy(max_attempts=4, initial_wait=0.005, max_wait=0.02, total_budget=10.0)
POLL = PollPolicy(initial=0.01, multiplier=1.5, maximum=0.05, timeout=30)


@pytest.fixture
async def anaplan() -> AsyncIterator[AnaplanHandle]:
    handle = await start_anaplan(config=EmulatorConfig(), scale=1)
    try:
        yield handle
    finally:
        await handle.server.stop()


def connect(a: AnaplanHandle, auth: BasicAuth | CertificateAuth | OAuthAuth) -> AnaplanClient:
    return AnaplanClient(auth, api_url=f"{a.url}/2/0", retry=TINY, rate_limit=0, poll=POLL)


def basic(a: AnaplanHandle, **kwargs: object) -> BasicAuth:
    return BasicAuth(a.user, a.password, auth_url=a.url, retry=TINY, **kwargs)


def gl_rows(count: int) -> list[bytes]:
    accounts = [f"{6000 + 10 * i}" for i in range(10)]
    centers = ["CC100", "CC101", "CC102"]
    return [
        f"{accounts[i % 10]},{centers[i % 3]},2025-{1 + i % 12:02d},{i % 1000}.25,{i % 7}\n".encode()
        for i in range(count)
    ]


async def test_basic_auth_discovers_the_model_and_logs_out(
    anaplan: AnaplanHandle, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = basic(anaplan)
    async with connect(anaplan, auth) as client:
        me = await client.me()
        model = await client.open_model("Finance", "FP&A Actuals")
        assert model.model_id == anaplan.model
        assert model.workspace_id == anaplan.workspace
        token = await auth.token()
        assert anaplan.emulator.auth.lookup(token) is not None
    assert me["email"] == anaplan.user
    assert anaplan.emulator.auth.lookup(token) is None  # logged out on close
    assert auth.logins == 1
    assert anaplan.password not in caplog.text
    assert token not in caplog.text


async def test_wrong_password_is_an_authentication_error_without_the_password(anaplan: AnaplanHandle) -> None:
    auth = BasicAuth(anaplan.user, "Wrong-Passw0rd", auth_url=anaplan.url, retry=TINY)
    async with connect(anaplan, auth) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.workspaces()
    assert caught.value.status == 401
    assert "Invalid credentials" in str(caught.value)
    assert "Wrong-Passw0rd" not in str(caught.value)


async def test_a_model_without_access_is_not_found_with_the_role_hint(anaplan: AnaplanHandle) -> None:
    outsider = anaplan.emulator.state.user_by_email(OUTSIDER_EMAIL)
    assert outsider is not None
    auth = BasicAuth(outsider.email, outsider.password, auth_url=anaplan.url, retry=TINY)
    async with connect(anaplan, auth) as client:
        with pytest.raises(NotFoundError, match="NO ACCESS"):
            await client.model(anaplan.workspace, anaplan.model).imports()
        with pytest.raises(NotFoundError, match="no workspaces visible"):
            await client.find_workspace("Finance")


def self_signed(common_name: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass-phrase"),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize("fmt", ["v2", "v1"])
async def test_certificate_auth_with_a_generated_key_pair(anaplan: AnaplanHandle, fmt: str) -> None:
    cert_pem, key_pem = self_signed(anaplan.user)
    anaplan.seeded.user.certificates.append(cert_pem)
    auth = CertificateAuth(
        cert_pem,
        key_pem,
        key_password="key-pass-phrase",
        encoded_data_format=fmt,  # type: ignore[arg-type]
        auth_url=anaplan.url,
        retry=TINY,
    )
    async with connect(anaplan, auth) as client:
        assert (await client.me())["email"] == anaplan.user
        # A 401 re-authenticates with a fresh signed nonce (v2 payloads cannot be replayed).
        anaplan.emulator.auth.expire_all()
        assert (await client.find_workspace(anaplan.workspace)).name == "Finance"
    assert auth.logins == 2
    assert auth.reauthentications == 1


async def test_an_unregistered_certificate_is_refused(anaplan: AnaplanHandle) -> None:
    cert_pem, key_pem = self_signed("stranger@example.com")
    auth = CertificateAuth(cert_pem, key_pem, key_password="key-pass-phrase", auth_url=anaplan.url, retry=TINY)
    async with connect(anaplan, auth) as client:
        with pytest.raises(AuthenticationError, match="Certificate authentication failed"):
            await client.me()


async def test_oauth_device_grant_then_rotating_refresh_tokens(anaplan: AnaplanHandle) -> None:
    transport = httpx.AsyncHTTPTransport()
    device = await request_device_code(DEVICE_CLIENT_ID, oauth_url=anaplan.url, transport=transport)
    waits: list[float] = []

    async def user_approves_while_we_wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            anaplan.emulator.auth.approve_device(device.user_code, anaplan.seeded.user)

    tokens = await poll_device_token(device, DEVICE_CLIENT_ID, oauth_url=anaplan.url, sleep=user_approves_while_we_wait)
    assert waits == [5.0, 5.0]  # the emulator's interval, honoured
    assert tokens.refresh_token is not None
    first_refresh = tokens.refresh_token.get_secret_value()

    persisted: list[str] = []
    now = [0.0]
    auth = OAuthAuth.from_tokens(
        tokens, DEVICE_CLIENT_ID, oauth_url=anaplan.url, on_refresh_token=persisted.append, clock=lambda: now[0]
    )
    async with connect(anaplan, auth) as client:
        await client.me()
        assert persisted == []  # the grant's access token is used as is
        now[0] += 2100 * 0.81  # due for renewal
        await client.me()
        now[0] += 2100 * 0.81
        await client.workspaces()
    assert len(persisted) == 2
    assert len(set(persisted)) == 2
    assert auth.refresh_token.get_secret_value() == persisted[-1]
    # Rotation: the first refresh token is single-use and already spent.
    stale = OAuthAuth(DEVICE_CLIENT_ID, first_refresh, oauth_url=anaplan.url)
    with pytest.raises(AuthenticationError, match="already used by another process"):
        await stale.token()
    await stale.aclose()


async def test_token_expiry_mid_upload_reauthenticates_once_and_replays(anaplan: AnaplanHandle) -> None:
    header = (",".join(GL_ACTUALS_HEADERS) + "\n").encode()
    rows = gl_rows(100_000)  # ~2.8 MB -> 3 chunks of 1 MB
    expired_after = 40_000

    async def source() -> AsyncIterator[bytes]:
        yield header
        for start in range(0, len(rows), 10_000):
            if start == expired_after:
                anaplan.emulator.auth.expire_all()  # every token dies while chunks are in flight
            yield b"".join(rows[start : start + 10_000])

    auth = basic(anaplan)
    async with connect(anaplan, auth) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        source_file = await model.find_file("gl_actuals.csv")
        upload = await model.upload_file(source_file.id, source(), chunk_size=1_000_000, concurrency=2)
        result = await model.run_import((await model.find_import("Load GL Actuals")).id)
    assert upload.chunks == 3
    assert auth.reauthentications == 1
    assert auth.logins == 2
    assert result.successful
    assert not result.rejections
    assert result.details[0].fields["successRowCount"] == "100000"


async def test_token_is_kept_alive_with_refresh_instead_of_reauthentication(anaplan: AnaplanHandle) -> None:
    anaplan.emulator.config.token_lifetime = 30.0
    anaplan.injector.add(FaultRule(kind="delay", delay=0.4, path=r"/chunks/\d+$", method="PUT"))
    header = (",".join(GL_ACTUALS_HEADERS) + "\n").encode()
    data = header + b"".join(gl_rows(70_000))
    # Renew at 1 % of the 30 s lifetime (0.3 s): the second chunk leaves after the first one's 0.4 s delay.
    auth = basic(anaplan, refresh_fraction=0.01)
    async with connect(anaplan, auth) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        await model.upload_file((await model.find_file("gl_actuals.csv")).id, data, chunk_size=1_000_000, concurrency=1)
    assert auth.logins == 1
    assert auth.renewals >= 1
    assert auth.reauthentications == 0
