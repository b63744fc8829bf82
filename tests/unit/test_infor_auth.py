"""OAuth2 against a mocked Infor token endpoint and gateway (httpx.MockTransport, no network)."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ml_connector.infor import AuthenticationError, ClientOptions, IonApiClient, IonApiCredentials
from ml_connector.net.retry import RetryPolicy

CS = "client-secret-ABCDEFGH-123456"
SASK = "service-secret-IJKLMNOP-789012"
SAAK = "ACME_TST#service-access-key"
CI = "ACME_TST~client-id"


def credentials(service_account: bool = True) -> IonApiCredentials:
    doc: dict[str, Any] = {
        "ti": "ACME_TST", "ci": CI, "cs": CS, "iu": "https://ion.example.com",
        "pu": "https://sso.example.com/ACME_TST/as/", "ot": "token.oauth2", "or": "revoke_token.oauth2",
    }  # fmt: skip
    if service_account:
        doc.update(saak=SAAK, sask=SASK)
    return IonApiCredentials.parse(json.dumps(doc), source="test.ionapi")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeInfor:
    """Token endpoint + one gateway route; records every call."""

    expires_in: int = 100
    issue_refresh: bool = True
    refresh_ok: bool = True
    reject_password: str | None = None  # "invalid_grant" | "invalid_client"
    always_401: bool = False
    grant_delay: float = 0.0
    grants: list[dict[str, str]] = field(default_factory=list)
    revocations: list[tuple[dict[str, str], str]] = field(default_factory=list)
    api_tokens: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    counter: int = 0

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/as/token.oauth2"):
            return await self.token(request)
        if path.endswith("/as/revoke_token.oauth2"):
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            self.revocations.append((form, request.headers.get("Authorization", "")))
            self.valid.clear()
            return httpx.Response(200)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.api_tokens.append(token)
        if self.always_401 or token not in self.valid:
            return httpx.Response(401, json={"error": "invalid_token", "error_description": "Bearer token has expired"})
        return httpx.Response(200, json={"ok": True})

    async def token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.grants.append(form)
        if self.grant_delay:
            await asyncio.sleep(self.grant_delay)
        grant = form.get("grant_type")
        if grant == "password" and self.reject_password == "invalid_client":
            return httpx.Response(401, json={"error": "invalid_client", "error_description": f"bad client {CS}"})
        if grant == "password" and self.reject_password == "invalid_grant":
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "Invalid credentials"})
        if grant == "refresh_token" and not self.refresh_ok:
            return httpx.Response(400, json={"error": "invalid_grant", "error_description": "expired"})
        self.counter += 1
        access = f"access-token-{self.counter:04d}-xxxxxxxx"
        self.valid.add(access)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        if self.issue_refresh:
            body["refresh_token"] = f"refresh-token-{self.counter:04d}-yyyyyyyy"
        return httpx.Response(200, json=body)


def client(fake: FakeInfor, clock: Clock | None = None, service_account: bool = True, **opts: Any) -> IonApiClient:
    options = ClientOptions(rate_limit=0, retry=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.002), **opts)
    return IonApiClient(credentials(service_account), options, transport=httpx.MockTransport(fake), clock=clock)


async def test_password_grant_form_and_bearer_header() -> None:
    fake = FakeInfor()
    async with client(fake) as c:
        await c.request("GET", "M3/ping")
    assert fake.grants == [{"grant_type": "password", "username": SAAK, "password": SASK, "client_id": CI,
                            "client_secret": CS}]  # fmt: skip
    assert fake.api_tokens == ["access-token-0001-xxxxxxxx"]


async def test_token_is_reused_until_80_percent_then_refreshed_with_refresh_grant() -> None:
    fake, clock = FakeInfor(expires_in=100), Clock()
    async with client(fake, clock) as c:
        await c.request("GET", "M3/a")
        clock.now += 79
        await c.request("GET", "M3/b")
        assert len(fake.grants) == 1
        clock.now += 2  # 81 % of the lifetime
        await c.request("GET", "M3/c")
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token"]
    assert fake.grants[1]["refresh_token"] == "refresh-token-0001-yyyyyyyy"
    assert fake.api_tokens == ["access-token-0001-xxxxxxxx"] * 2 + ["access-token-0002-xxxxxxxx"]


async def test_refused_refresh_falls_back_to_password_grant() -> None:
    fake, clock = FakeInfor(refresh_ok=False), Clock()
    async with client(fake, clock) as c:
        await c.request("GET", "M3/a")
        clock.now += 90
        await c.request("GET", "M3/b")
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token", "password"]


async def test_no_refresh_token_means_a_new_grant() -> None:
    fake, clock = FakeInfor(issue_refresh=False), Clock()
    async with client(fake, clock) as c:
        await c.request("GET", "M3/a")
        clock.now += 95
        await c.request("GET", "M3/b")
    assert [g["grant_type"] for g in fake.grants] == ["password", "password"]
    # without a refresh token the access token is what gets revoked
    assert fake.revocations[0][0]["token_type_hint"] == "access_token"


async def test_one_grant_in_flight_for_many_concurrent_requests() -> None:
    fake = FakeInfor(grant_delay=0.05)
    async with client(fake, concurrency=20) as c:
        await asyncio.gather(*(c.request("GET", f"M3/{i}") for i in range(20)))
    assert len(fake.grants) == 1
    assert set(fake.api_tokens) == {"access-token-0001-xxxxxxxx"}


async def test_renewal_in_flight_does_not_block_callers_with_a_valid_token() -> None:
    fake, clock = FakeInfor(expires_in=100, grant_delay=0.05), Clock()
    async with client(fake, clock, concurrency=10) as c:
        await c.request("GET", "M3/first")
        clock.now += 85  # past 80 %: renew; the old token is still valid for 15 s
        await asyncio.gather(*(c.request("GET", f"M3/{i}") for i in range(10)))
    assert [g["grant_type"] for g in fake.grants] == ["password", "refresh_token"]
    assert "access-token-0001-xxxxxxxx" in fake.api_tokens[1:]


async def test_401_reauthenticates_and_replays_once() -> None:
    fake = FakeInfor()
    async with client(fake) as c:
        await c.request("GET", "M3/a")
        fake.valid.clear()  # the server forgot the token (revoked elsewhere, expired early)
        response = await c.request("GET", "M3/b")
    assert response.json() == {"ok": True}
    assert fake.api_tokens == ["access-token-0001-xxxxxxxx", "access-token-0001-xxxxxxxx", "access-token-0002-xxxxxxxx"]
    assert c.tokens.grants["refresh_token"] == 1


async def test_second_401_raises_authentication_error() -> None:
    fake = FakeInfor(always_401=True)
    async with client(fake) as c:
        with pytest.raises(AuthenticationError, match="HTTP 401 again after re-authenticating") as info:
            await c.request("GET", "M3/a")
    assert len(fake.api_tokens) == 2
    assert "invalid_token" in str(info.value)


async def test_invalid_grant_names_the_service_account() -> None:
    fake = FakeInfor(reject_password="invalid_grant")
    async with client(fake) as c:
        with pytest.raises(AuthenticationError, match=r"service account key/secret \(saak/sask\) rejected") as info:
            await c.request("GET", "M3/a")
    assert info.value.error == "invalid_grant"
    assert SASK not in str(info.value)
    assert "test.ionapi" in str(info.value)


async def test_invalid_client_names_the_client_and_masks_an_echoed_secret() -> None:
    fake = FakeInfor(reject_password="invalid_client")
    async with client(fake) as c:
        with pytest.raises(AuthenticationError, match=r"client id/secret \(ci/cs\) rejected") as info:
            await c.request("GET", "M3/a")
    assert info.value.status == 401
    assert CS not in str(info.value)
    assert "bad client ***" in str(info.value)


async def test_revoke_on_close_uses_basic_auth_and_the_refresh_token() -> None:
    fake = FakeInfor()
    c = client(fake)
    await c.request("GET", "M3/a")
    await c.aclose()
    await c.aclose()  # idempotent
    assert len(fake.revocations) == 1
    form, authorization = fake.revocations[0]
    assert form == {"token": "refresh-token-0001-yyyyyyyy", "token_type_hint": "refresh_token"}
    assert authorization == "Basic " + base64.b64encode(f"{CI}:{CS}".encode()).decode()
    assert c.tokens.revoked == 1


async def test_client_credentials_grant_without_service_account() -> None:
    fake = FakeInfor()
    async with client(fake, service_account=False) as c:
        await c.request("GET", "M3/a")
    assert fake.grants == [{"grant_type": "client_credentials", "client_id": CI, "client_secret": CS}]


async def test_tokens_are_registered_as_secrets() -> None:
    from ml_connector.net.redact import redact

    fake = FakeInfor()
    async with client(fake) as c:
        await c.request("GET", "M3/a")
    assert redact("Bearer access-token-0001-xxxxxxxx") == "Bearer ***"
    assert redact("refresh-token-0001-yyyyyyyy") == "***"
