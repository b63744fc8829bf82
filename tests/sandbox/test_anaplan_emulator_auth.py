"""Anaplan emulator: authentication service and OAuth 2.0, over real HTTP."""

from __future__ import annotations

import base64
import datetime as dt
import os
from typing import Any
from urllib.parse import parse_qs, urlparse

import anaplan_helpers
import httpx
import pytest
from anaplan_helpers import FakeClock, login
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from ml_connector.sandbox.anaplan.default_model import DEVICE_CLIENT_ID, WEB_CLIENT_ID
from ml_connector.sandbox.server import AnaplanHandle

# the fixtures live in anaplan_helpers (shared with other emulator tests, no conftest of our own)
anaplan = anaplan_helpers.anaplan
api = anaplan_helpers.api
clock = anaplan_helpers.clock


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def token_header(token: str, scheme: str = "AnaplanAuthToken") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


async def test_basic_auth_returns_201_token_info(anaplan: AnaplanHandle, clock: FakeClock) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        res = await http.post("/token/authenticate", headers=basic(anaplan.user, anaplan.password))
    assert res.status_code == 201
    body = res.json()
    assert body["status"] == "SUCCESS"
    assert body["statusMessage"] == "Login successful"
    info = body["tokenInfo"]
    assert set(info) == {"tokenId", "tokenValue", "expiresAt", "refreshTokenId"}
    assert info["expiresAt"] == int((clock.now + 35 * 60) * 1000)  # epoch milliseconds, 35 minutes
    assert len(info["tokenId"]) == 36
    assert info["tokenId"].count("-") == 4
    assert body["meta"]["validationUrl"].endswith("/token/validate")


async def test_bad_credentials_and_bad_header(anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        wrong = await http.post("/token/authenticate", headers=basic(anaplan.user, "nope"))
        garbage = await http.post("/token/authenticate", headers={"Authorization": "Basic %%%"})
        none = await http.post("/token/authenticate")
    assert wrong.status_code == 401
    assert wrong.json()["status"] == "FAILURE_BAD_CREDENTIAL"
    assert garbage.status_code == 400
    assert garbage.json()["status"] == "FAILURE_BAD_HEADER"
    assert none.status_code == 400


async def test_token_expiry_gives_401_envelope_and_refresh_extends(anaplan: AnaplanHandle, clock: FakeClock) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, anaplan.user, anaplan.password)
        assert (await http.get("/2/0/users/me", headers=token_header(token))).status_code == 200
        clock.advance(30 * 60)
        refreshed = await http.post("/token/refresh", headers=token_header(token))
        assert refreshed.status_code == 200
        info = refreshed.json()["tokenInfo"]
        assert info["tokenValue"] == token  # refresh keeps the value, moves expiresAt
        assert info["expiresAt"] == int((clock.now + 35 * 60) * 1000)
        assert refreshed.json()["statusMessage"] == "Token refreshed"
        clock.advance(34 * 60)
        assert (await http.get("/2/0/users/me", headers=token_header(token))).status_code == 200
        clock.advance(2 * 60)
        expired = await http.get("/2/0/workspaces", headers=token_header(token))
        assert expired.status_code == 401
        body = expired.json()
        assert body["status"] == {"code": 401, "message": "Unauthorized"}
        assert body["path"] == "/2/0/workspaces"
        assert body["timestamp"].endswith("Z")
        assert (await http.post("/token/refresh", headers=token_header(token))).status_code == 401


async def test_configurable_lifetime_and_admin_expiry(anaplan: AnaplanHandle, clock: FakeClock) -> None:
    anaplan.emulator.config.token_lifetime = 10
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, anaplan.user, anaplan.password)
        clock.advance(11)
        assert (await http.get("/2/0/users/me", headers=token_header(token))).status_code == 401
        token = await login(http, anaplan.user, anaplan.password)
        assert (await http.post("/_sandbox/anaplan/tokens/expire")).status_code == 200
        assert (await http.get("/2/0/users/me", headers=token_header(token))).status_code == 401


async def test_validate_logout_and_schemes(anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, anaplan.user, anaplan.password)
        valid = await http.get("/token/validate", headers=token_header(token))
        assert valid.status_code == 200
        user_info = valid.json()["userInfo"]
        assert user_info["userId"] == anaplan.user
        assert len(user_info["userGuid"]) == 32
        assert (await http.get("/2/0/users/me", headers=token_header(token, "Bearer"))).status_code == 200
        assert (await http.get("/token/validate", headers=token_header(token, "Bearer"))).status_code == 400
        assert (await http.post("/token/logout", headers=token_header(token, "Bearer"))).status_code == 401
        out = await http.post("/token/logout", headers=token_header(token))
        assert out.status_code == 204
        assert out.content == b""
        assert (await http.get("/token/validate", headers=token_header(token))).status_code == 401
        assert (await http.get("/2/0/users/me", headers=token_header(token))).status_code == 401
        assert (await http.get("/2/0/users/me")).status_code == 401


# -- certificate authentication --------------------------------------------------------------------


def make_certificate(now: float) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integration@ml-connector.example")])
    start = dt.datetime.fromtimestamp(now, dt.UTC) - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def cert_request(key: rsa.RSAPrivateKey, pem: bytes, data: bytes, fmt: str | None) -> dict[str, Any]:
    body = {
        "encodedData": base64.b64encode(data).decode(),
        "encodedSignedData": base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA512())).decode(),
    }
    if fmt:
        body["encodedDataFormat"] = fmt
    return {"headers": {"Authorization": "CACertificate " + base64.b64encode(pem).decode()}, "json": body}


@pytest.fixture
async def certificate(anaplan: AnaplanHandle, clock: FakeClock) -> tuple[rsa.RSAPrivateKey, bytes]:
    key, pem = make_certificate(clock.now)
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        res = await http.post(f"/_sandbox/anaplan/users/{anaplan.user}/certificates", content=pem)
    assert res.status_code == 201
    return key, pem


async def test_certificate_auth_v1(anaplan: AnaplanHandle, certificate: tuple[rsa.RSAPrivateKey, bytes]) -> None:
    key, pem = certificate
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        ok = await http.post("/token/authenticate", **cert_request(key, pem, os.urandom(150), None))
        assert ok.status_code == 201, ok.text
        token = ok.json()["tokenInfo"]["tokenValue"]
        me = await http.get("/2/0/users/me", headers=token_header(token))
        assert me.json()["user"]["email"] == anaplan.user
        short = await http.post("/token/authenticate", **cert_request(key, pem, os.urandom(50), "v1"))
        assert short.status_code == 400
        tampered = cert_request(key, pem, os.urandom(150), None)
        tampered["json"]["encodedData"] = base64.b64encode(os.urandom(150)).decode()
        assert (await http.post("/token/authenticate", **tampered)).status_code == 401
        other_key, other_pem = make_certificate(1_790_000_000.0)
        unknown = await http.post("/token/authenticate", **cert_request(other_key, other_pem, os.urandom(150), None))
        assert unknown.status_code == 401


@pytest.mark.parametrize("unit", [1, 1000], ids=["seconds", "milliseconds"])
async def test_certificate_auth_v2_timestamp(
    anaplan: AnaplanHandle, certificate: tuple[rsa.RSAPrivateKey, bytes], clock: FakeClock, unit: int
) -> None:
    key, pem = certificate

    def payload(at: float) -> bytes:
        return int(at * unit).to_bytes(8, "big") + os.urandom(100)

    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        fresh = cert_request(key, pem, payload(clock.now - 20), "v2")
        assert (await http.post("/token/authenticate", **fresh)).status_code == 201
        assert (await http.post("/token/authenticate", **fresh)).status_code == 401  # replayed
        stale = cert_request(key, pem, payload(clock.now - 3600), "v2")
        assert (await http.post("/token/authenticate", **stale)).status_code == 401


# -- OAuth -------------------------------------------------------------------------------------------


async def test_device_grant_pending_approve_and_rotation(anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        code = await http.post(
            "/oauth/device/code", data={"client_id": DEVICE_CLIENT_ID, "scope": "openid offline_access"}
        )
        assert code.status_code == 200
        device = code.json()
        assert device["expires_in"] == 900
        assert device["interval"] == 5
        poll = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device["device_code"],
            "client_id": DEVICE_CLIENT_ID,
        }
        pending = await http.post("/oauth/token", json=poll)
        assert pending.status_code == 400
        assert pending.json()["error"] == "authorization_pending"
        approve = await http.post("/_sandbox/anaplan/device/approve", json={"user_code": device["user_code"]})
        assert approve.status_code == 200
        granted = await http.post("/oauth/token", data=poll)
        assert granted.status_code == 200, granted.text
        tokens = granted.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 2100
        assert "profile" not in tokens["scope"]
        for scheme in ("Bearer", "AnaplanAuthToken"):
            me = await http.get("/2/0/users/me", headers=token_header(tokens["access_token"], scheme))
            assert me.status_code == 200
        assert (await http.get("/token/validate", headers=token_header(tokens["access_token"]))).status_code == 200
        assert (await http.post("/oauth/token", json=poll)).json()["error"] == "invalid_grant"  # code used

        refresh = {
            "grant_type": "refresh_token",
            "client_id": DEVICE_CLIENT_ID,
            "refresh_token": tokens["refresh_token"],
        }
        rotated = await http.post("/oauth/token", data=refresh)
        assert rotated.status_code == 200
        assert rotated.json()["refresh_token"] != tokens["refresh_token"]
        reused = await http.post("/oauth/token", data=refresh)
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        again = {**refresh, "refresh_token": rotated.json()["refresh_token"]}
        assert (await http.post("/oauth/token", json=again)).status_code == 200


async def test_device_auto_approve_and_denial(anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        device = (await http.post("/oauth/device/code", json={"client_id": DEVICE_CLIENT_ID})).json()
        await http.post("/_sandbox/anaplan/device/approve", json={"device_code": device["device_code"], "deny": True})
        poll = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device["device_code"],
            "client_id": DEVICE_CLIENT_ID,
        }
        assert (await http.post("/oauth/token", json=poll)).json()["error"] == "access_denied"
        await http.put("/_sandbox/anaplan/config", json={"device_auto_approve": True})
        device = (await http.post("/oauth/device/code", json={"client_id": DEVICE_CLIENT_ID})).json()
        poll["device_code"] = device["device_code"]
        assert (await http.post("/oauth/token", json=poll)).status_code == 200
        unknown = await http.post("/oauth/device/code", json={"client_id": "nobody"})
        assert unknown.json()["error"] == "invalid_client"


async def test_non_rotating_client_keeps_refresh_token(anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        await http.post(
            "/_sandbox/anaplan/oauth/clients", json={"client_id": "steady", "grant": "device", "rotating": False}
        )
        await http.put("/_sandbox/anaplan/config", json={"device_auto_approve": True})
        device = (
            await http.post("/oauth/device/code", json={"client_id": "steady", "scope": "openid offline_access"})
        ).json()
        poll = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": device["device_code"],
            "client_id": "steady",
        }
        first = (await http.post("/oauth/token", json=poll)).json()
        refresh = {"grant_type": "refresh_token", "client_id": "steady", "refresh_token": first["refresh_token"]}
        for _ in range(2):
            res = await http.post("/oauth/token", json=refresh)
            assert res.status_code == 200
            assert res.json()["refresh_token"] == first["refresh_token"]


async def test_authorization_code_grant(anaplan: AnaplanHandle) -> None:
    redirect = "http://localhost:8765/callback"
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        res = await http.get(
            "/auth/authorize",
            params={
                "response_type": "code",
                "client_id": WEB_CLIENT_ID,
                "redirect_uri": redirect,
                "scope": "openid email offline_access",
                "state": "xyz",
            },
        )
        assert res.status_code == 302
        location = urlparse(res.headers["Location"])
        query = parse_qs(location.query)
        assert query["state"] == ["xyz"]
        exchange = {
            "grant_type": "authorization_code",
            "client_id": WEB_CLIENT_ID,
            "client_secret": "sandbox-web-secret",
            "code": query["code"][0],
            "redirect_uri": redirect,
        }
        wrong_secret = await http.post("/oauth/token", data={**exchange, "client_secret": "bad"})
        assert wrong_secret.status_code == 401
        tokens = await http.post("/oauth/token", data=exchange)
        assert tokens.status_code == 200, tokens.text
        assert (
            await http.get("/2/0/users/me", headers=token_header(tokens.json()["access_token"], "Bearer"))
        ).status_code == 200
        assert (await http.post("/oauth/token", data=exchange)).json()["error"] == "invalid_grant"
        refresh = {
            "grant_type": "refresh_token",
            "client_id": WEB_CLIENT_ID,
            "client_secret": "sandbox-web-secret",
            "refresh_token": tokens.json()["refresh_token"],
        }
        assert (await http.post("/oauth/token", data=refresh)).status_code == 200
