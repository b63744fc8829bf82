"""Anaplan authentication (``/token/*``) and OAuth 2.0 (``/oauth/*``, ``/auth/*``) emulation (reference §2).

Basic and CA-certificate authentication issue opaque tokens with ``expiresAt`` in epoch milliseconds;
refresh keeps the token value and extends it; logout revokes it. OAuth serves the device grant (approved
through ``POST /_sandbox/anaplan/device/approve`` or automatically by configuration), the authorization
code grant (the sandbox "logs in" the user named by ``login_hint`` or the default user) and refresh tokens,
rotating or not per client. OAuth access tokens live in the same store, so they work as
``AnaplanAuthToken`` or ``Bearer`` on the Integration API and on ``/token/validate``.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ml_connector.sandbox.anaplan import ids
from ml_connector.sandbox.anaplan.http import ApiError
from ml_connector.sandbox.anaplan.state import AnaplanState, User
from ml_connector.sandbox.canary import secret_token

AUTH_SCHEME = "AnaplanAuthToken"


@dataclass
class Token:
    value: str
    user_id: str
    token_id: str
    refresh_id: str
    expires_at: float
    revoked: bool = False


@dataclass
class OAuthClient:
    client_id: str
    secret: str | None = None
    grant: str = "device"  # "device" or "authorization_code"
    rotating: bool = True
    redirect_uris: list[str] = field(default_factory=list)


@dataclass
class DeviceCode:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    user_id: str | None = None
    denied: bool = False
    used: bool = False


@dataclass
class RefreshToken:
    value: str
    client_id: str
    user_id: str
    scope: str
    used: bool = False


@dataclass
class AuthCode:
    code: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    used: bool = False


class AuthService:
    def __init__(self, state: AnaplanState) -> None:
        self.state = state
        self.tokens: dict[str, Token] = {}
        self.clients: dict[str, OAuthClient] = {}
        self.device_codes: dict[str, DeviceCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        #: signatures already seen for v2 certificate payloads (replay guard)
        self._seen_signatures: set[bytes] = set()
        #: the user the sandbox "logs in" for the authorization-code flow when no login_hint is given
        self.default_login: str | None = None

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.state.config

    # -- token store -----------------------------------------------------------------------------

    def issue(self, user: User, lifetime: float | None = None) -> Token:
        token = Token(
            value=secret_token(48),
            user_id=user.id,
            token_id=ids.hyphenated_uuid(),
            refresh_id=ids.hyphenated_uuid(),
            expires_at=self.config.now() + (self.config.token_lifetime if lifetime is None else lifetime),
        )
        self.tokens[token.value] = token
        return token

    def lookup(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or token.revoked or token.expires_at <= self.config.now():
            return None
        return token

    def expire_all(self) -> int:
        now = self.config.now()
        for token in self.tokens.values():
            token.expires_at = min(token.expires_at, now - 1)
        return len(self.tokens)

    def api_user(self, request: web.Request) -> User:
        """The user of an Integration API request (``AnaplanAuthToken`` or ``Bearer``), else 401."""
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme not in (AUTH_SCHEME, "Bearer") or not value.strip():
            raise ApiError(401)
        token = self.lookup(value.strip())
        if token is None:
            raise ApiError(401)
        user = self.state.users.get(token.user_id)
        if user is None:
            raise ApiError(401)
        return user

    # -- /token/* --------------------------------------------------------------------------------

    def _token_info(self, token: Token) -> dict[str, Any]:
        return {
            "tokenId": token.token_id,
            "tokenValue": token.value,
            "expiresAt": int(token.expires_at * 1000),
            "refreshTokenId": token.refresh_id,
        }

    def _meta(self, request: web.Request) -> dict[str, str]:
        return {"validationUrl": str(request.url.with_path("/token/validate").with_query(None))}

    async def authenticate(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme == "Basic":
            user = self._basic_user(value.strip())
        elif scheme == "CACertificate":
            user = await self._certificate_user(request, value.strip())
        else:
            return _auth_failure(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        if isinstance(user, web.Response):
            return user
        token = self.issue(user)
        body = {
            "meta": self._meta(request),
            "status": "SUCCESS",
            "statusMessage": "Login successful",
            "tokenInfo": self._token_info(token),
        }
        return web.json_response(body, status=201)

    def _basic_user(self, value: str) -> User | web.Response:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _auth_failure(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        email, sep, password = decoded.partition(":")
        if not sep:
            return _auth_failure(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        user = self.state.user_by_email(email)
        if user is None or not secrets.compare_digest(user.password, password):
            return _auth_failure(
                401, "FAILURE_BAD_CREDENTIAL", "Invalid credentials. Verify the user name and password."
            )
        return user

    async def _certificate_user(self, request: web.Request, value: str) -> User | web.Response:
        bad = _auth_failure(401, "FAILURE_BAD_CREDENTIAL", "Certificate authentication failed.")
        try:
            pem = base64.b64decode(value, validate=True)
            cert = x509.load_pem_x509_certificate(pem)
        except (binascii.Error, ValueError):
            return _auth_failure(400, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        try:
            body = json.loads(await request.read() or b"{}")
            data = base64.b64decode(body["encodedData"], validate=True)
            signature = base64.b64decode(body["encodedSignedData"], validate=True)
            data_format = body.get("encodedDataFormat", "v1")
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _auth_failure(
                400, "FAILURE_BAD_REQUEST", "Invalid request body. Verify encodedData and encodedSignedData."
            )
        fingerprint = cert.fingerprint(hashes.SHA256())
        user = next(
            (
                u
                for u in self.state.users.values()
                for c in u.certificates
                if x509.load_pem_x509_certificate(c).fingerprint(hashes.SHA256()) == fingerprint
            ),
            None,
        )
        if user is None:
            return bad
        now = self.config.now()
        if not (cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp()):
            return _auth_failure(401, "FAILURE_BAD_CREDENTIAL", "Certificate is expired or not yet valid.")
        public_key = cert.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            return bad
        try:
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA512())
        except InvalidSignature:
            return bad
        if data_format == "v2":
            if len(data) < 9:
                return bad
            stamp = int.from_bytes(data[:8], "big")
            seconds = stamp / 1000 if stamp > 10**11 else float(stamp)  # milliseconds or seconds
            if abs(seconds - now) > self.config.cert_skew or signature in self._seen_signatures:
                return _auth_failure(
                    401, "FAILURE_BAD_CREDENTIAL", "Signed data timestamp is outside the accepted window."
                )
            self._seen_signatures.add(signature)
        elif data_format == "v1":
            if len(data) < 100:
                return _auth_failure(400, "FAILURE_BAD_REQUEST", "encodedData must hold at least 100 bytes.")
        else:
            return _auth_failure(400, "FAILURE_BAD_REQUEST", f"Unknown encodedDataFormat: {data_format}")
        return user

    def _auth_token(self, request: web.Request, bearer_status: int) -> Token | web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme != AUTH_SCHEME or not value.strip():
            return _auth_failure(bearer_status, "FAILURE_BAD_HEADER", "Invalid header. Verify the header.")
        token = self.lookup(value.strip())
        if token is None:
            return _auth_failure(401, "FAILURE_BAD_CREDENTIAL", "Token is invalid or expired.")
        return token

    async def refresh(self, request: web.Request) -> web.Response:
        token = self._auth_token(request, 400)
        if isinstance(token, web.Response):
            return token
        token.expires_at = self.config.now() + self.config.token_lifetime
        body = {
            "meta": self._meta(request),
            "status": "SUCCESS",
            "statusMessage": "Token refreshed",
            "tokenInfo": self._token_info(token),
        }
        return web.json_response(body)

    async def validate(self, request: web.Request) -> web.Response:
        token = self._auth_token(request, 400)
        if isinstance(token, web.Response):
            return token
        user = self.state.users[token.user_id]
        body = {
            "meta": self._meta(request),
            "status": "SUCCESS",
            "statusMessage": "Token validated",
            "tokenInfo": {"expiresAt": int(token.expires_at * 1000), "tokenId": token.token_id},
            "userInfo": {"userGuid": user.id, "userId": user.email, "customerGuid": user.customer_id},
        }
        return web.json_response(body)

    async def logout(self, request: web.Request) -> web.Response:
        token = self._auth_token(request, 401)
        if isinstance(token, web.Response):
            return token
        token.revoked = True
        return web.Response(status=204)

    # -- OAuth -----------------------------------------------------------------------------------

    def register_client(self, client: OAuthClient) -> OAuthClient:
        self.clients[client.client_id] = client
        return client

    def approve_device(self, code: str, user: User, *, deny: bool = False) -> DeviceCode | None:
        for device in self.device_codes.values():
            if code in (device.user_code, device.device_code):
                device.user_id = user.id
                device.denied = deny
                return device
        return None

    def issue_auth_code(self, client_id: str, user: User, redirect_uri: str, scope: str) -> AuthCode:
        code = AuthCode(secret_token(24), client_id, user.id, redirect_uri, scope)
        self.auth_codes[code.code] = code
        return code

    async def device_code(self, request: web.Request) -> web.Response:
        params = await _oauth_params(request)
        client = self.clients.get(params.get("client_id", ""))
        if client is None or client.grant != "device":
            return _oauth_error(401, "invalid_client", "Unknown client or not a device grant client.")
        user_code = "-".join(secrets.token_hex(2).upper() for _ in range(2))
        device = DeviceCode(
            device_code=secret_token(32),
            user_code=user_code,
            client_id=client.client_id,
            scope=params.get("scope", "openid profile email offline_access"),
            expires_at=self.config.now() + self.config.device_code_lifetime,
        )
        self.device_codes[device.device_code] = device
        if self.config.device_auto_approve and self.default_login:
            device.user_id = self.default_login
        verification = str(request.url.with_path("/activate").with_query(None))
        return web.json_response(
            {
                "device_code": device.device_code,
                "user_code": device.user_code,
                "verification_uri": verification,
                "verification_uri_complete": f"{verification}?user_code={device.user_code}",
                "expires_in": int(self.config.device_code_lifetime),
                "interval": 5,
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        params = await _oauth_params(request)
        grant = params.get("grant_type", "")
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return _oauth_error(401, "invalid_client", "Unknown client.")
        if grant == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_grant(client, params)
        if grant == "refresh_token":
            return self._refresh_grant(client, params)
        if grant == "authorization_code":
            return self._code_grant(client, params)
        return _oauth_error(400, "unsupported_grant_type", f"Unsupported grant_type: {grant}")

    def _device_grant(self, client: OAuthClient, params: dict[str, str]) -> web.Response:
        device = self.device_codes.get(params.get("device_code", ""))
        if device is None or device.client_id != client.client_id or device.used:
            return _oauth_error(400, "invalid_grant", "Invalid device code.")
        if device.expires_at <= self.config.now():
            return _oauth_error(400, "expired_token", "The device code has expired.")
        if device.denied:
            return _oauth_error(400, "access_denied", "The user denied the request.")
        if device.user_id is None:
            return _oauth_error(400, "authorization_pending", "The user has not yet approved the request.")
        device.used = True
        return self._token_response(client, self.state.users[device.user_id], device.scope)

    def _refresh_grant(self, client: OAuthClient, params: dict[str, str]) -> web.Response:
        if client.secret is not None and params.get("client_secret") != client.secret:
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        refresh = self.refresh_tokens.get(params.get("refresh_token", ""))
        if refresh is None or refresh.used or refresh.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "Unknown, invalid or already used refresh token.")
        if client.rotating:
            refresh.used = True
        return self._token_response(
            client, self.state.users[refresh.user_id], refresh.scope, reuse=None if client.rotating else refresh
        )

    def _code_grant(self, client: OAuthClient, params: dict[str, str]) -> web.Response:
        if client.secret is not None and params.get("client_secret") != client.secret:
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        code = self.auth_codes.get(params.get("code", ""))
        if code is None or code.used or code.client_id != client.client_id:
            return _oauth_error(400, "invalid_grant", "Invalid authorization code.")
        if code.redirect_uri and params.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            return _oauth_error(400, "invalid_grant", "redirect_uri does not match.")
        code.used = True
        return self._token_response(client, self.state.users[code.user_id], code.scope)

    def _token_response(
        self, client: OAuthClient, user: User, scope: str, reuse: RefreshToken | None = None
    ) -> web.Response:
        access = self.issue(user, self.config.oauth_access_lifetime)
        granted = [s for s in scope.split() if s in ("openid", "email", "offline_access")] or ["openid", "email"]
        body: dict[str, Any] = {
            "access_token": access.value,
            "id_token": _fake_jwt({"sub": user.id, "email": user.email, "aud": client.client_id}),
            "scope": " ".join(granted),
            "expires_in": int(self.config.oauth_access_lifetime),
            "token_type": "Bearer",
        }
        if "offline_access" in granted:
            refresh = reuse or RefreshToken(secret_token(40), client.client_id, user.id, scope)
            self.refresh_tokens[refresh.value] = refresh
            body["refresh_token"] = refresh.value
        return web.json_response(body)

    async def authorize(self, request: web.Request) -> web.Response:
        """``GET /auth/authorize`` (and ``/auth/prelogin``): the sandbox logs the user in at once."""
        q = request.query
        client = self.clients.get(q.get("client_id", ""))
        redirect_uri = q.get("redirect_uri", "")
        if client is None or client.grant != "authorization_code":
            return _oauth_error(400, "unauthorized_client", "Unknown client or not an authorization code client.")
        if client.redirect_uris and redirect_uri not in client.redirect_uris:
            return _oauth_error(400, "invalid_request", "redirect_uri is not registered for this client.")
        user = self.state.user_by_email(q.get("login_hint", "")) if q.get("login_hint") else None
        if user is None and self.default_login:
            user = self.state.users.get(self.default_login)
        if user is None:
            return _oauth_error(400, "access_denied", "No user to log in.")
        code = self.issue_auth_code(client.client_id, user, redirect_uri, q.get("scope", "openid email offline_access"))
        query = {"code": code.code}
        if "state" in q:
            query["state"] = q["state"]
        sep = "&" if "?" in redirect_uri else "?"
        raise web.HTTPFound(f"{redirect_uri}{sep}{urlencode(query)}")

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/token/authenticate", self.authenticate),
            web.post("/token/refresh", self.refresh),
            web.get("/token/validate", self.validate),
            web.post("/token/logout", self.logout),
            web.post("/oauth/device/code", self.device_code),
            web.post("/oauth/token", self.token),
            web.get("/auth/authorize", self.authorize),
            web.get("/auth/prelogin", self.authorize),
        ]


def _auth_failure(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"status": code, "statusMessage": message}, status=status)


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


async def _oauth_params(request: web.Request) -> dict[str, str]:
    if request.content_type == "application/json":
        try:
            data = await request.json()
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    form = await request.post()
    params = {k: str(v) for k, v in form.items()}
    # client credentials in a Basic header (RFC 6749 §2.3.1), as oauthlib may send them
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            params.setdefault("client_id", cid)
            params.setdefault("client_secret", secret)
        except (binascii.Error, UnicodeDecodeError):
            pass
    return params


def _fake_jwt(claims: dict[str, str]) -> str:
    def part(obj: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(16)}"
