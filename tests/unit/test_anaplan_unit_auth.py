"""Anaplan auth as httpx.Auth: keep-alive refresh, single flight, one re-authentication on 401, cert and OAuth."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import struct
from collections import Counter
from urllib.parse import parse_qs

import httpx
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ml_connector.anaplan import (
    AuthenticationError,
    BasicAuth,
    CertificateAuth,
    OAuthAuth,
    poll_device_token,
    request_device_code,
)
from ml_connector.net import RetryPolicy
from ml_connector.net.redact import redact

AUTH = "http://auth.test"
API = "http://api.test/2/0"
NO_RETRY = RetryPolicy.never()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class AuthService:
    """A MockTransport handler playing auth.anaplan.com and a protected API endpoint."""

    def __init__(self, clock: Clock, lifetime: float = 100.0, password: str = "pa55-word!") -> None:  # noqa: S107
        self.clock = clock
        self.lifetime = lifetime
        self.password = password
        self.calls: Counter[str] = Counter()
        self.valid: dict[str, float] = {}  # token -> expiry (clock time)
        self.issued = 0
        self.api_always_401 = False
        self.refresh_delay = 0.0
        self.cert_bodies: list[dict[str, str]] = []
        self.cert_headers: list[str] = []

    def _token(self, status: int) -> httpx.Response:
        self.issued += 1
        value = f"token-{self.issued:04d}-opaque"
        self.valid[value] = self.clock() + self.lifetime
        expires_ms = int((self.clock() + self.lifetime) * 1000)
        return httpx.Response(
            status,
            json={
                "meta": {"validationUrl": f"{AUTH}/token/validate"},
                "status": "SUCCESS",
                "statusMessage": "Login successful",
                "tokenInfo": {"tokenId": "t", "tokenValue": value, "expiresAt": expires_ms, "refreshTokenId": "r"},
            },
        )

    def _bearer(self, request: httpx.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("AnaplanAuthToken "):
            return None
        token = header.removeprefix("AnaplanAuthToken ")
        expiry = self.valid.get(token)
        return token if expiry is not None and self.clock() < expiry else None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls[path] += 1
        if path == "/token/authenticate":
            header = request.headers.get("Authorization", "")
            if header.startswith("Basic "):
                _user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if password != self.password:
                    return httpx.Response(
                        401, json={"status": "FAILURE_BAD_CREDENTIAL", "statusMessage": "Invalid credentials"}
                    )
                return self._token(201)
            if header.startswith("CACertificate "):
                self.cert_headers.append(header)
                self.cert_bodies.append(json.loads(request.content))
                return self._token(201)
            return httpx.Response(400, json={"status": "FAILURE_BAD_HEADER", "statusMessage": "Invalid header"})
        if path == "/token/refresh":
            await asyncio.sleep(self.refresh_delay)
            token = self._bearer(request)
            if token is None:
                return httpx.Response(401, json={"status": "FAILURE_BAD_CREDENTIAL", "statusMessage": "expired"})
            self.valid[token] = self.clock() + self.lifetime
            return httpx.Response(
                200,
                json={
                    "status": "SUCCESS",
                    "statusMessage": "Token refreshed",
                    "tokenInfo": {"tokenValue": token, "expiresAt": int((self.clock() + self.lifetime) * 1000)},
                },
            )
        if path == "/token/logout":
            token = self._bearer(request)
            if token:
                del self.valid[token]
            return httpx.Response(204)
        if path.startswith("/2/0/"):
            await asyncio.sleep(0)
            if self.api_always_401 or self._bearer(request) is None:
                return httpx.Response(401, json={"status": {"code": 401, "message": "Unauthorized"}})
            return httpx.Response(200, json={"status": {"code": 200, "message": "Success"}, "user": {"id": "u"}})
        return httpx.Response(404)


def basic(service: AuthService, clock: Clock, **kwargs: object) -> BasicAuth:
    transport = httpx.MockTransport(service)
    return BasicAuth(
        "integration@example.com",
        kwargs.pop("password", service.password),  # type: ignore[arg-type]
        auth_url=AUTH,
        transport=transport,
        retry=NO_RETRY,
        clock=clock,
        wall_clock=clock,
        **kwargs,
    )


def api_client(service: AuthService, auth: httpx.Auth) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=API, auth=auth, transport=httpx.MockTransport(service))


async def test_one_token_for_many_calls_and_renewal_at_80_percent_of_lifetime() -> None:
    clock, service = Clock(), None
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        for _ in range(5):
            assert (await client.get("/users/me")).status_code == 200
        clock.now += 79  # 79 % of a 100 s token: not yet
        assert (await client.get("/users/me")).status_code == 200
        assert service.calls["/token/refresh"] == 0
        clock.now += 2  # 81 %
        assert (await client.get("/users/me")).status_code == 200
    assert service.calls["/token/authenticate"] == 1
    assert service.calls["/token/refresh"] == 1
    assert auth.logins == 1
    assert auth.renewals == 1


async def test_only_one_refresh_in_flight_for_concurrent_requests() -> None:
    clock = Clock()
    service = AuthService(clock)
    service.refresh_delay = 0.01
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
        clock.now += 90
        responses = await asyncio.gather(*(client.get("/users/me") for _ in range(20)))
    assert {r.status_code for r in responses} == {200}
    assert service.calls["/token/refresh"] == 1
    assert service.calls["/token/authenticate"] == 1


async def test_expired_token_is_replaced_by_a_new_authentication_not_a_refresh() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
        clock.now += 150  # idle past expiry
        assert (await client.get("/users/me")).status_code == 200
    assert service.calls["/token/refresh"] == 0
    assert service.calls["/token/authenticate"] == 2


async def test_refused_refresh_falls_back_to_authentication() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
        service.valid.clear()  # revoked server-side
        clock.now += 85
        assert (await client.get("/users/me")).status_code == 200
    assert service.calls["/token/refresh"] == 1
    assert service.calls["/token/authenticate"] == 2


async def test_401_leads_to_one_reauthentication_and_one_replay() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
        service.valid.clear()  # server forgot the token while we think it is fresh
        assert (await client.get("/users/me")).status_code == 200
    assert auth.reauthentications == 1
    assert service.calls["/2/0/users/me"] == 3


async def test_a_second_401_is_returned_not_looped() -> None:
    clock = Clock()
    service = AuthService(clock)
    service.api_always_401 = True
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        response = await client.get("/users/me")
    assert response.status_code == 401
    assert service.calls["/2/0/users/me"] == 2
    assert service.calls["/token/authenticate"] == 2


async def test_concurrent_401s_share_one_reauthentication() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
        service.valid.clear()
        responses = await asyncio.gather(*(client.get("/users/me") for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    assert service.calls["/token/authenticate"] == 2


async def test_bad_password_is_an_authentication_error_without_the_secret() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock, password="wrong-Secret-42")
    async with api_client(service, auth) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.get("/users/me")
    text = str(caught.value)
    assert "wrong-Secret-42" not in text
    assert "check the Anaplan credentials" in text
    assert "Invalid credentials" in text
    assert "wrong-Secret-42" not in repr(auth)
    assert redact("password=wrong-Secret-42") == "password=***"
    encoded = base64.b64encode(b"integration@example.com:wrong-Secret-42").decode()
    assert encoded not in redact(f"Authorization: Basic {encoded}")


async def test_close_logs_the_token_out() -> None:
    clock = Clock()
    service = AuthService(clock)
    auth = basic(service, clock)
    async with api_client(service, auth) as client:
        await client.get("/users/me")
    assert service.valid
    await auth.aclose()
    assert service.calls["/token/logout"] == 1
    assert not service.valid


def make_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration@example.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def key_pair() -> tuple[rsa.RSAPrivateKey, bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return key, make_certificate(key), pem


@pytest.mark.parametrize("fmt", ["v1", "v2"])
async def test_certificate_auth_signs_a_nonce_the_server_can_verify(
    key_pair: tuple[rsa.RSAPrivateKey, bytes, bytes], fmt: str
) -> None:
    key, cert_pem, key_pem = key_pair
    clock = Clock()
    clock.now = 1_750_736_826.0
    service = AuthService(clock)
    auth = CertificateAuth(
        cert_pem,
        key_pem,
        encoded_data_format=fmt,  # type: ignore[arg-type]
        auth_url=AUTH,
        transport=httpx.MockTransport(service),
        retry=NO_RETRY,
        clock=clock,
        wall_clock=clock,
    )
    async with api_client(service, auth) as client:
        assert (await client.get("/users/me")).status_code == 200
    assert service.cert_headers == ["CACertificate " + base64.b64encode(cert_pem).decode()]
    body = service.cert_bodies[0]
    data = base64.b64decode(body["encodedData"])
    signature = base64.b64decode(body["encodedSignedData"])
    key.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA512())
    with pytest.raises(InvalidSignature):
        key.public_key().verify(signature, data + b"x", padding.PKCS1v15(), hashes.SHA512())
    if fmt == "v2":
        assert body["encodedDataFormat"] == "v2"
        assert struct.unpack(">Q", data[:8])[0] == 1_750_736_826
        assert len(data) == 8 + 150
    else:
        assert "encodedDataFormat" not in body
        assert len(data) == 150
    assert key_pem.decode() not in repr(auth)


def test_certificate_with_a_foreign_key_is_refused_early(key_pair: tuple[rsa.RSAPrivateKey, bytes, bytes]) -> None:
    _, cert_pem, _ = key_pair
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(AuthenticationError, match="does not belong to the Anaplan certificate"):
        CertificateAuth(cert_pem, other_pem, auth_url=AUTH)
    with pytest.raises(AuthenticationError, match=r"not a PEM X\.509 certificate"):
        CertificateAuth(b"not a cert", other_pem, auth_url=AUTH)


class OAuthService:
    """Rotating refresh tokens and a device grant with pending / slow_down answers."""

    def __init__(self, pending: list[str] | None = None) -> None:
        self.refresh_tokens = {"refresh-0000"}
        self.rotations = 0
        self.pending = pending or []
        self.access: set[str] = set()
        self.bodies: list[dict[str, list[str]]] = []

    def tokens(self) -> httpx.Response:
        self.rotations += 1
        refresh = f"refresh-{self.rotations:04d}"
        access = f"access-{self.rotations:04d}"
        self.refresh_tokens = {refresh}
        self.access.add(access)
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": 2100,
                "token_type": "Bearer",
                "scope": "openid email offline_access",
                "id_token": "x",
            },
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/device/code":
            return httpx.Response(
                200,
                json={
                    "device_code": "device-secret-code",
                    "user_code": "ABCD-EFGH",
                    "verification_uri": "https://iam.anaplan.com/activate",
                    "verification_uri_complete": "https://iam.anaplan.com/activate?user_code=ABCD-EFGH",
                    "expires_in": 900,
                    "interval": 1,
                },
            )
        if path == "/oauth/token":
            form = parse_qs(request.content.decode())
            self.bodies.append(form)
            grant = form["grant_type"][0]
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                if self.pending:
                    return httpx.Response(400, json={"error": self.pending.pop(0)})
                return self.tokens()
            if grant == "refresh_token":
                if form["refresh_token"][0] not in self.refresh_tokens:
                    return httpx.Response(400, json={"error": "invalid_grant", "error_description": "used"})
                return self.tokens()
        if path.startswith("/2/0/"):
            header = request.headers.get("Authorization", "")
            ok = header.removeprefix("AnaplanAuthToken ") in self.access
            return httpx.Response(200 if ok else 401, json={})
        return httpx.Response(404)


async def test_oauth_refresh_rotates_and_publishes_every_new_refresh_token() -> None:
    service = OAuthService()
    stored: list[str] = []

    async def persist(token: str) -> None:
        stored.append(token)

    clock = Clock()
    auth = OAuthAuth(
        "client-1",
        "refresh-0000",
        oauth_url="http://oauth.test",
        on_refresh_token=persist,
        transport=httpx.MockTransport(service),
        clock=clock,
    )
    async with api_client(service, auth) as client:  # type: ignore[arg-type]
        assert (await client.get("/users/me")).status_code == 200
        clock.now += 2100 * 0.85
        assert (await client.get("/users/me")).status_code == 200
    assert stored == ["refresh-0001", "refresh-0002"]
    assert auth.refresh_token.get_secret_value() == "refresh-0002"
    assert "client_secret" not in service.bodies[0]
    # The old refresh token is dead: an auth object still holding it fails clearly.
    stale = OAuthAuth("client-1", "refresh-0001", oauth_url="http://oauth.test", transport=httpx.MockTransport(service))
    with pytest.raises(AuthenticationError, match="already used"):
        await stale.token()
    assert "refresh-0002" not in repr(auth)


async def test_device_grant_polls_with_interval_and_slow_down() -> None:
    service = OAuthService(pending=["authorization_pending", "slow_down", "authorization_pending"])
    transport = httpx.MockTransport(service)
    device = await request_device_code("client-1", oauth_url="http://oauth.test", transport=transport)
    assert device.user_code == "ABCD-EFGH"
    assert "device-secret-code" not in repr(device)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    tokens = await poll_device_token(
        device, "client-1", oauth_url="http://oauth.test", transport=transport, sleep=sleep
    )
    assert sleeps == [1.0, 6.0, 6.0]
    assert tokens.refresh_token is not None
    auth = OAuthAuth.from_tokens(tokens, "client-1", oauth_url="http://oauth.test", transport=transport)
    async with api_client(service, auth) as client:  # type: ignore[arg-type]
        assert (await client.get("/users/me")).status_code == 200
    assert service.rotations == 1  # the access token from the grant was used, no refresh needed


async def test_device_grant_denied_is_an_authentication_error() -> None:
    service = OAuthService(pending=["access_denied"])
    transport = httpx.MockTransport(service)
    device = await request_device_code("client-1", oauth_url="http://oauth.test", transport=transport)

    async def sleep(seconds: float) -> None:
        return None

    with pytest.raises(AuthenticationError, match="denied"):
        await poll_device_token(device, "client-1", oauth_url="http://oauth.test", transport=transport, sleep=sleep)
