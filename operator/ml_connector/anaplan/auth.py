"""Anaplan authentication as ``httpx.Auth``: basic, CA certificate and OAuth 2.0 (device grant, rotating refresh).

One token per client, kept alive instead of re-created per call (Anaplan's guidance):

* the token's ``expiresAt`` is tracked; at ``refresh_fraction`` (80 %) of its lifetime the next request
  first renews it (``POST /token/refresh``, or the OAuth ``refresh_token`` grant), under an
  :class:`asyncio.Lock` so only one renewal is ever in flight;
* a failed renewal with 401 falls back to a full authentication;
* a 401 from the API leads to one re-authentication and one replay of the request; a second 401 is
  returned to the caller (the client turns it into :class:`AuthenticationError`) — never a loop;
* ``tokenValue`` is always taken from the latest response;
* ``aclose()`` logs the token out.

Every credential and token is registered with :data:`ml_connector.net.redact.SECRETS` as soon as it
is read. Auth calls go through their own :class:`httpx.AsyncClient` over a
:class:`~ml_connector.net.RetryingTransport` (the auth service has its own host).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import SecretStr, ValidationError

from ml_connector.anaplan.errors import (
    AnaplanError,
    AuthenticationError,
    ServerError,
    error_details,
    error_for_status,
)
from ml_connector.anaplan.models import DeviceAuthorization, OAuthTokens, TokenInfo
from ml_connector.net.redact import SECRETS
from ml_connector.net.retry import IDEMPOTENT_EXTENSION, RetryingTransport, RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_AUTH_URL = "https://auth.anaplan.com"
DEFAULT_OAUTH_URL = "https://us1a.app.anaplan.com"
DEFAULT_SCOPE = "openid profile email offline_access"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_LIFETIME = 35 * 60.0  # used only when expiresAt is unusable (clock skew)

Secret = str | SecretStr
RefreshTokenCallback = Callable[[str], Awaitable[None] | None]


def _reveal(value: Secret | bytes) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bytes):
        return value.decode()
    return value


@dataclass(frozen=True)
class _Token:
    value: str
    generation: int
    lifetime: float
    expires: float  # monotonic
    renew_at: float  # monotonic


def _auth_client(
    base_url: str, transport: httpx.AsyncBaseTransport | None, retry: RetryPolicy | None, timeout: float
) -> httpx.AsyncClient:
    policy = retry or RetryPolicy(max_attempts=4, total_budget=60.0)
    return httpx.AsyncClient(
        base_url=base_url,
        transport=RetryingTransport(transport or httpx.AsyncHTTPTransport(), policy=policy),
        timeout=timeout,
    )


async def _send(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    what: str,
    idempotent: bool,
    headers: dict[str, str] | None = None,
    json: Any = None,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    """Send an auth-service request; transport failures become :class:`ServerError`."""
    extensions = {IDEMPOTENT_EXTENSION: True} if idempotent else None
    try:
        return await http.request(method, path, headers=headers, json=json, data=data, extensions=extensions)
    except httpx.TransportError as exc:
        raise ServerError(
            f"could not reach the Anaplan auth service at {http.base_url} while {what} ({type(exc).__name__})",
            where=f"{method} {path}",
            hint="check the network, proxy and the configured auth URL for the tenant's region; retry later",
        ) from None


def _failure(response: httpx.Response, *, what: str) -> AnaplanError:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    return error_for_status(
        response.status_code,
        where=f"{response.request.method} {response.request.url.path}",
        what=what,
        server_message=error_details(payload),
    )


class AnaplanAuth(httpx.Auth, ABC):
    """Base of the three methods: token bookkeeping and the 401 handling. Async only."""

    scheme = "AnaplanAuthToken"
    #: whether a refused renewal should be followed by a full authentication (not for OAuth, where both are
    #: the same refresh-token grant)
    login_after_refused_renewal = True

    def __init__(
        self,
        *,
        base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        refresh_fraction: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if refresh_fraction <= 0.0:
            raise ValueError("refresh_fraction must be positive (0.8 renews at 80% of the token lifetime)")
        self.base_url = base_url.rstrip("/")
        self.refresh_fraction = refresh_fraction
        self._transport = transport
        self._retry = retry
        self._timeout = timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = asyncio.Lock()
        self._token: _Token | None = None
        self._generation = 0
        self._http: httpx.AsyncClient | None = None
        #: counters, for tests and metrics: full authentications, renewals, 401-triggered re-authentications
        self.logins = 0
        self.renewals = 0
        self.reauthentications = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # ---------------------------------------------------------------- subclass hooks

    @abstractmethod
    async def _login(self, http: httpx.AsyncClient) -> tuple[str, float]:
        """Authenticate from the credentials; return (token value, seconds until expiry)."""

    @abstractmethod
    async def _renew(self, http: httpx.AsyncClient, token: str) -> tuple[str, float]:
        """Extend the current token; raise :class:`AuthenticationError` when it is no longer accepted."""

    async def _logout(self, http: httpx.AsyncClient, token: str) -> None:
        """Revoke the token (nothing to do by default)."""

    # ---------------------------------------------------------------- bookkeeping

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = _auth_client(self.base_url, self._transport, self._retry, self._timeout)
        return self._http

    def _expires_in(self, expires_at_ms: int) -> float:
        remaining = expires_at_ms / 1000.0 - self._wall_clock()
        if remaining <= 0:
            log.warning("Anaplan token expiresAt lies in the past (clock skew?); assuming a 35-minute lifetime")
            return DEFAULT_LIFETIME
        return remaining

    def _store(self, value: str, lifetime: float) -> _Token:
        SECRETS.add(value)
        self._generation += 1
        now = self._clock()
        token = _Token(
            value=value,
            generation=self._generation,
            lifetime=lifetime,
            expires=now + lifetime,
            renew_at=now + lifetime * self.refresh_fraction,
        )
        self._token = token
        return token

    def _expired(self, token: _Token, now: float) -> bool:
        return now >= token.expires - min(5.0, token.lifetime * 0.05)

    async def _fresh_token(self) -> _Token:
        token = self._token
        if token is not None and self._clock() < token.renew_at:
            return token
        async with self._lock:
            token = self._token
            now = self._clock()
            if token is not None and now < token.renew_at:
                return token
            if token is None or self._expired(token, now):
                return await self._do_login()
            try:
                value, lifetime = await self._renew(self.http, token.value)
            except AuthenticationError:
                if not self.login_after_refused_renewal:
                    raise
                log.info("Anaplan token renewal was refused; authenticating again")
                return await self._do_login()
            except AnaplanError as exc:
                # Still valid: keep it, try again a little later rather than on every request.
                log.warning("Anaplan token renewal failed, keeping the current token for now: %s", exc)
                retry_at = now + min(30.0, max(0.0, token.expires - now) / 2)
                self._token = _Token(token.value, token.generation, token.lifetime, token.expires, retry_at)
                return self._token
            self.renewals += 1
            return self._store(value, lifetime)

    async def _do_login(self) -> _Token:
        value, lifetime = await self._login(self.http)
        self.logins += 1
        return self._store(value, lifetime)

    async def _reauthenticate(self, stale: _Token) -> _Token:
        async with self._lock:
            current = self._token
            if current is not None and current.generation != stale.generation:
                return current  # another request already replaced the rejected token
            self.reauthentications += 1
            return await self._do_login()

    async def token(self) -> str:
        """A valid token value (authenticating or renewing first when due)."""
        return (await self._fresh_token()).value

    def header(self, token: str) -> str:
        return f"{self.scheme} {token}"

    # ---------------------------------------------------------------- httpx.Auth

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("the Anaplan auth classes are async only; use them with httpx.AsyncClient")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._fresh_token()
        request.headers["Authorization"] = self.header(token.value)
        response = yield request
        if response.status_code != 401:
            return
        log.info("Anaplan answered 401 on %s %s; re-authenticating once", request.method, request.url.path)
        token = await self._reauthenticate(token)
        request.headers["Authorization"] = self.header(token.value)
        yield request  # a second 401 goes back to the caller: no loop

    async def aclose(self) -> None:
        """Log the token out and close the auth HTTP client."""
        async with self._lock:
            token, self._token = self._token, None
            if self._http is None:
                return
            if token is not None:
                try:
                    await self._logout(self._http, token.value)
                except AnaplanError as exc:
                    log.warning("Anaplan logout failed (the token expires by itself): %s", exc)
            await self._http.aclose()
            self._http = None


# ==================================================================== auth service (basic, certificate)


class _AuthServiceAuth(AnaplanAuth):
    """Token from ``auth.anaplan.com``: ``/token/authenticate``, ``/token/refresh``, ``/token/logout``."""

    method_name = "authentication"

    def __init__(self, *, auth_url: str = DEFAULT_AUTH_URL, **kwargs: Any) -> None:
        super().__init__(base_url=auth_url, **kwargs)

    @abstractmethod
    def _credentials(self) -> tuple[dict[str, str], dict[str, str] | None]:
        """Headers and JSON body of ``/token/authenticate``."""

    def _token_info(self, response: httpx.Response, *, what: str) -> tuple[str, float]:
        try:
            info = TokenInfo.model_validate(response.json()["tokenInfo"])
        except (ValueError, KeyError, TypeError, ValidationError):
            raise AuthenticationError(
                f"the Anaplan auth service answered {what} without a usable tokenInfo",
                status=response.status_code,
                where=f"{response.request.method} {response.request.url.path}",
                hint="check that the auth URL points at the Anaplan auth service (e.g. https://auth.anaplan.com)",
            ) from None
        value = info.token_value.get_secret_value()
        SECRETS.add(value)
        return value, self._expires_in(info.expires_at)

    async def _login(self, http: httpx.AsyncClient) -> tuple[str, float]:
        headers, body = self._credentials()
        what = f"authenticating with {self.method_name}"
        response = await _send(
            http, "POST", "/token/authenticate", what=what, idempotent=True, headers=headers, json=body
        )
        if response.status_code not in (200, 201):
            raise _failure(response, what=what)
        return self._token_info(response, what=what)

    async def _renew(self, http: httpx.AsyncClient, token: str) -> tuple[str, float]:
        what = "refreshing the Anaplan token"
        response = await _send(
            http, "POST", "/token/refresh", what=what, idempotent=True, headers={"Authorization": self.header(token)}
        )
        if response.status_code != 200:
            raise _failure(response, what=what)
        return self._token_info(response, what=what)

    async def _logout(self, http: httpx.AsyncClient, token: str) -> None:
        what = "logging the Anaplan token out"
        response = await _send(
            http, "POST", "/token/logout", what=what, idempotent=True, headers={"Authorization": self.header(token)}
        )
        if response.status_code not in (200, 204, 401):
            raise _failure(response, what=what)


class BasicAuth(_AuthServiceAuth):
    """User name and password (for SSO tenants the user must be an Exception User)."""

    method_name = "basic authentication"

    def __init__(self, username: str, password: Secret, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        secret = _reveal(password)
        if not username or not secret:
            raise AuthenticationError("basic authentication needs a user name and a password", hint="set both")
        encoded = base64.b64encode(f"{username}:{secret}".encode()).decode()
        SECRETS.add(secret, encoded)
        self.username = username
        self._basic = SecretStr(encoded)

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, auth_url={self.base_url!r})"

    def _credentials(self) -> tuple[dict[str, str], dict[str, str] | None]:
        return {"Authorization": f"Basic {self._basic.get_secret_value()}"}, None


CertificateFormat = Literal["v1", "v2"]


class CertificateAuth(_AuthServiceAuth):
    """CA certificate authentication: the PEM certificate plus a nonce signed with its RSA private key.

    ``encoded_data_format="v2"`` (the default, required by Anaplan since 2026) signs an 8-byte big-endian
    timestamp (seconds since the epoch) followed by the random bytes and sends ``encodedDataFormat: v2``;
    ``"v1"`` signs the random bytes alone.
    """

    method_name = "certificate authentication"

    def __init__(
        self,
        certificate: bytes | str,
        private_key: bytes | Secret,
        *,
        key_password: bytes | Secret | None = None,
        encoded_data_format: CertificateFormat = "v2",
        nonce_bytes: int = 150,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if nonce_bytes < 100:
            raise ValueError("Anaplan wants at least 100 random bytes in the signed nonce")
        cert_pem = certificate.encode() if isinstance(certificate, str) else certificate
        key_pem = _reveal(private_key)
        password = None if key_password is None else _reveal(key_password)
        SECRETS.add(key_pem, password)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise AuthenticationError(
                "the Anaplan certificate is not a PEM X.509 certificate",
                hint="pass the CA-issued certificate file registered in Anaplan Administration, in PEM form",
            ) from None
        try:
            key = serialization.load_pem_private_key(key_pem.encode(), password.encode() if password else None)
        except (ValueError, TypeError):
            raise AuthenticationError(
                "the private key for Anaplan certificate authentication cannot be read",
                hint="pass the certificate's RSA private key in PEM form, with its password if it is encrypted",
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise AuthenticationError(
                "the private key for Anaplan certificate authentication is not an RSA key",
                hint="Anaplan signs with RSA (PKCS#1 v1.5, SHA-512); use the certificate's RSA key",
            )
        cert_key = cert.public_key()
        if not isinstance(cert_key, rsa.RSAPublicKey) or cert_key.public_numbers() != key.public_key().public_numbers():
            raise AuthenticationError(
                "the private key does not belong to the Anaplan certificate",
                hint="pair the certificate with the private key it was issued for",
            )
        self.encoded_data_format = encoded_data_format
        self.subject = cert.subject.rfc4514_string()
        self._key = key
        self._nonce_bytes = nonce_bytes
        self._cert_header = "CACertificate " + base64.b64encode(cert_pem).decode()

    def __repr__(self) -> str:
        return f"CertificateAuth(subject={self.subject!r}, format={self.encoded_data_format!r})"

    def signed_payload(self) -> dict[str, str]:
        """The JSON body of ``/token/authenticate`` (a fresh nonce each call)."""
        data = os.urandom(self._nonce_bytes)
        if self.encoded_data_format == "v2":
            data = struct.pack(">Q", int(self._wall_clock())) + data
        signature = self._key.sign(data, padding.PKCS1v15(), hashes.SHA512())
        body = {
            "encodedData": base64.b64encode(data).decode(),
            "encodedSignedData": base64.b64encode(signature).decode(),
        }
        if self.encoded_data_format == "v2":
            body = {"encodedDataFormat": "v2", **body}
        return body

    def _credentials(self) -> tuple[dict[str, str], dict[str, str] | None]:
        return {"Authorization": self._cert_header}, self.signed_payload()


# ==================================================================== OAuth 2.0


def _oauth_tokens(response: httpx.Response, *, what: str) -> OAuthTokens:
    try:
        tokens = OAuthTokens.model_validate(response.json())
    except (ValueError, ValidationError):
        raise AuthenticationError(
            f"the Anaplan OAuth service answered {what} without an access token",
            status=response.status_code,
            where=f"{response.request.method} {response.request.url.path}",
            hint="check that the OAuth URL points at the tenant's Anaplan OAuth service",
        ) from None
    SECRETS.add(tokens.access_token.get_secret_value())
    if tokens.refresh_token is not None:
        SECRETS.add(tokens.refresh_token.get_secret_value())
    return tokens


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload.get("error") if isinstance(payload, dict) else None


async def request_device_code(
    client_id: str,
    *,
    oauth_url: str = DEFAULT_OAUTH_URL,
    scope: str = DEFAULT_SCOPE,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 30.0,
) -> DeviceAuthorization:
    """Start the device grant: show ``verification_uri`` (or ``_complete``) and ``user_code`` to the user."""
    what = "requesting an OAuth device code"
    async with _auth_client(oauth_url, transport, None, http_timeout) as http:
        response = await _send(
            http,
            "POST",
            "/oauth/device/code",
            what=what,
            idempotent=True,
            data={"client_id": client_id, "scope": scope},
        )
    if response.status_code != 200:
        raise _failure(response, what=what)
    try:
        device = DeviceAuthorization.model_validate(response.json())
    except (ValueError, ValidationError):
        raise AuthenticationError(
            "the Anaplan OAuth service answered the device-code request without a device code",
            status=response.status_code,
            hint="check the OAuth URL and that the client id is registered for the device grant",
        ) from None
    SECRETS.add(device.device_code.get_secret_value())
    return device


async def poll_device_token(
    device: DeviceAuthorization,
    client_id: str,
    *,
    oauth_url: str = DEFAULT_OAUTH_URL,
    transport: httpx.AsyncBaseTransport | None = None,
    http_timeout: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> OAuthTokens:
    """Poll ``/oauth/token`` until the user approved the device, honouring ``interval`` and ``slow_down``."""
    what = "waiting for the OAuth device approval"
    interval = float(max(0, device.interval))
    deadline = clock() + device.expires_in
    form = {"grant_type": DEVICE_GRANT, "device_code": device.device_code.get_secret_value(), "client_id": client_id}
    async with _auth_client(oauth_url, transport, None, http_timeout) as http:
        while True:
            response = await _send(http, "POST", "/oauth/token", what=what, idempotent=False, data=form)
            if response.status_code == 200:
                return _oauth_tokens(response, what=what)
            error = _oauth_error(response)
            if error == "authorization_pending":
                pass
            elif error == "slow_down":
                interval += 5.0
            elif error in ("expired_token", "access_denied"):
                raise AuthenticationError(
                    "the OAuth device authorization was denied"
                    if error == "access_denied"
                    else "the OAuth device code expired before the user approved it",
                    status=response.status_code,
                    hint="start the device grant again and approve it in the browser in time",
                )
            else:
                raise _failure(response, what=what)
            if clock() + interval > deadline:
                raise AuthenticationError(
                    "the OAuth device code expires before the next poll; the user did not approve it in time",
                    hint="start the device grant again and approve it in the browser in time",
                )
            await sleep(interval)


class OAuthAuth(AnaplanAuth):
    """OAuth 2.0 access tokens kept alive with the ``refresh_token`` grant.

    With a rotatable client every refresh returns a new refresh token and the old one is dead: the
    new one is stored at once and handed to ``on_refresh_token`` so the caller can persist it
    (e.g. back into a Kubernetes Secret). ``client_secret`` is only for authorization-code clients.
    The access token is sent as ``AnaplanAuthToken <token>`` like Anaplan's SDKs do.
    """

    login_after_refused_renewal = False

    def __init__(
        self,
        client_id: str,
        refresh_token: Secret,
        *,
        client_secret: Secret | None = None,
        oauth_url: str = DEFAULT_OAUTH_URL,
        on_refresh_token: RefreshTokenCallback | None = None,
        access_token: Secret | None = None,
        expires_in: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(base_url=oauth_url, **kwargs)
        self.client_id = client_id
        self._refresh_token = SecretStr(_reveal(refresh_token))
        self._client_secret = None if client_secret is None else SecretStr(_reveal(client_secret))
        SECRETS.add(
            self._refresh_token.get_secret_value(),
            None if self._client_secret is None else self._client_secret.get_secret_value(),
        )
        self._on_refresh_token = on_refresh_token
        if access_token is not None:
            self._store(_reveal(access_token), float(expires_in or 2100))

    @classmethod
    def from_tokens(cls, tokens: OAuthTokens, client_id: str, **kwargs: Any) -> OAuthAuth:
        """Build from a device-grant (or code-grant) answer, keeping its access token."""
        if tokens.refresh_token is None:
            raise AuthenticationError(
                "the OAuth answer carries no refresh token",
                hint="request the offline_access scope so Anaplan issues a refresh token",
            )
        return cls(
            client_id,
            tokens.refresh_token,
            access_token=tokens.access_token,
            expires_in=tokens.expires_in,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"OAuthAuth(client_id={self.client_id!r}, oauth_url={self.base_url!r})"

    @property
    def refresh_token(self) -> SecretStr:
        """The current (latest) refresh token."""
        return self._refresh_token

    async def _login(self, http: httpx.AsyncClient) -> tuple[str, float]:
        what = "refreshing the OAuth access token"
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "refresh_token": self._refresh_token.get_secret_value(),
        }
        if self._client_secret is not None:
            form["client_secret"] = self._client_secret.get_secret_value()
        # Not idempotent: with rotation, a lost answer has already consumed the refresh token.
        response = await _send(http, "POST", "/oauth/token", what=what, idempotent=False, data=form)
        if response.status_code != 200:
            error = _failure(response, what=what)
            if _oauth_error(response) == "invalid_grant":
                raise AuthenticationError(
                    "the OAuth refresh token was refused (expired, revoked, or already used by another process)",
                    status=response.status_code,
                    where="POST /oauth/token",
                    hint="run the OAuth device grant again and store the new refresh token; never share one "
                    "rotating refresh token between processes",
                ) from error
            raise error
        tokens = _oauth_tokens(response, what=what)
        if tokens.refresh_token is not None:
            new = tokens.refresh_token.get_secret_value()
            if new != self._refresh_token.get_secret_value():
                self._refresh_token = tokens.refresh_token
                await self._publish(new)
        return tokens.access_token.get_secret_value(), float(tokens.expires_in)

    async def _publish(self, refresh_token: str) -> None:
        if self._on_refresh_token is None:
            return
        try:
            outcome = self._on_refresh_token(refresh_token)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            log.error(
                "could not persist the rotated Anaplan OAuth refresh token (%s); it lives only in memory now",
                type(exc).__name__,
            )

    async def _renew(self, http: httpx.AsyncClient, token: str) -> tuple[str, float]:
        return await self._login(http)
