"""OAuth 2.0 for the ION API Gateway (reference §2) as an :class:`httpx.Auth`.

* Grant: resource-owner password with the service account (``username=saak``, ``password=sask``,
  ``client_id=ci``, ``client_secret=cs``, form-encoded), or ``client_credentials`` when the file has
  no service account (newer backend-service apps).
* Renewal at about 80 % of ``expires_in``: with the refresh-token grant when the server issued a
  refresh token, else (or when the refresh is refused) a new grant. One renewal in flight at a time
  (an :class:`asyncio.Lock`); while it runs, callers keep using the old token if it has not expired.
* A 401 from the gateway drops the token, re-authenticates and replays the request once; a second
  401 raises :class:`~ml_connector.infor.errors.AuthenticationError`.
* :meth:`TokenProvider.revoke` (called by the client's ``aclose``) revokes the grant.

Every token is registered with :data:`ml_connector.net.redact.SECRETS` as soon as it is received.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.infor.errors import AuthenticationError
from ml_connector.infor.ionapi import IonApiCredentials
from ml_connector.net.redact import SECRETS, redact

log = logging.getLogger(__name__)

DEFAULT_REFRESH_RATIO = 0.8
#: [INF] used when a token response carries no ``expires_in`` (Infor's default lifetime is 2 h).
DEFAULT_EXPIRES_IN = 7200.0
#: Do not hand out a token that expires within this many seconds.
EXPIRY_MARGIN = 0.5

_MESSAGES: dict[tuple[str, str], str] = {
    ("password", "invalid_grant"): "service account key/secret (saak/sask) rejected",
    ("password", "invalid_client"): "client id/secret (ci/cs) rejected",
    ("password", "unauthorized_client"): "the authorized app may not use the password grant",
    ("password", "unsupported_grant_type"): "the authorized app may not use the password grant",
    ("client_credentials", "invalid_client"): "client id/secret (ci/cs) rejected",
    ("client_credentials", "invalid_grant"): "client credentials grant rejected",
    ("client_credentials", "unauthorized_client"): "the authorized app may not use the client credentials grant",
    ("client_credentials", "unsupported_grant_type"): "the authorized app may not use the client credentials grant",
    ("refresh_token", "invalid_grant"): "refresh token rejected (expired or revoked)",
    ("refresh_token", "invalid_client"): "client id/secret (ci/cs) rejected",
}


@dataclass
class Token:
    access_token: str | None
    refresh_token: str | None
    expires_in: float
    obtained_at: float

    def refresh_at(self, ratio: float) -> float:
        return self.obtained_at + ratio * self.expires_in

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in


def _error_fields(response: httpx.Response) -> tuple[str, str]:
    """``(error, error_description)`` of an RFC 6749 §5.2 error body, tolerating other shapes."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return "", text[:200]
    if isinstance(body, dict):
        return str(body.get("error") or ""), str(body.get("error_description") or body.get("message") or "")
    return "", str(body)[:200]


class TokenProvider:
    """Holds the current token for one tenant and renews it; shared by every request of a client."""

    def __init__(
        self,
        credentials: IonApiCredentials,
        http: httpx.AsyncClient,
        *,
        refresh_ratio: float = DEFAULT_REFRESH_RATIO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 < refresh_ratio <= 1.0:
            raise ValueError(f"refresh_ratio must be in (0, 1], got {refresh_ratio}")
        self.credentials = credentials
        self._http = http
        self._ratio = refresh_ratio
        self._clock = clock
        self._token: Token | None = None
        self._lock = asyncio.Lock()
        #: Successful grants by type (``password``, ``client_credentials``, ``refresh_token``).
        self.grants: Counter[str] = Counter()
        self.revoked = 0

    # -- public -------------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid access token, renewing it first when it reached ~80 % of its lifetime."""
        token = self._token
        now = self._clock()
        if token is not None and token.access_token is not None:
            if now < token.refresh_at(self._ratio):
                return token.access_token
            if self._lock.locked() and now < token.expires_at - EXPIRY_MARGIN:
                return token.access_token  # a renewal is in flight; the old token is still good
        async with self._lock:
            token = self._token
            if token is not None and token.access_token is not None and self._clock() < token.refresh_at(self._ratio):
                return token.access_token  # renewed by another task while we waited
            return await self._renew(token)

    async def invalidate(self, access_token: str) -> None:
        """The gateway refused ``access_token`` (401): never hand it out again."""
        async with self._lock:
            if self._token is not None and self._token.access_token == access_token:
                self._token.access_token = None

    async def revoke(self) -> bool:
        """Revoke the grant (refresh token if any, else the access token). Never raises; False on failure."""
        async with self._lock:
            token, self._token = self._token, None
        if token is None or (token.refresh_token is None and token.access_token is None):
            return True
        value, hint = (
            (token.refresh_token, "refresh_token") if token.refresh_token else (token.access_token, "access_token")
        )
        creds = self.credentials
        try:
            response = await self._http.post(
                creds.revoke_url,
                data={"token": value or "", "token_type_hint": hint},
                auth=httpx.BasicAuth(creds.ci, creds.cs.get_secret_value()),
                extensions={"idempotent": True},
            )
        except httpx.HTTPError as exc:
            log.warning("revoking the ION API token at %s failed: %s", creds.revoke_url, redact(repr(exc)))
            return False
        if response.status_code >= 400:
            error, description = _error_fields(response)
            log.warning(
                "revoking the ION API token at %s failed: HTTP %s %s %s",
                creds.revoke_url,
                response.status_code,
                error,
                redact(description),
            )
            return False
        self.revoked += 1
        return True

    # -- grants -------------------------------------------------------------------------------

    async def _renew(self, current: Token | None) -> str:
        if current is not None and current.refresh_token:
            try:
                return await self._grant("refresh_token", {"refresh_token": current.refresh_token})
            except AuthenticationError as exc:
                log.info("refresh grant refused (%s); requesting a new grant", exc.error or exc.status)
        creds = self.credentials
        if creds.grant_type == "password":
            assert creds.saak is not None
            assert creds.sask is not None
            return await self._grant("password", {"username": creds.saak, "password": creds.sask.get_secret_value()})
        return await self._grant("client_credentials", {})

    async def _grant(self, grant_type: str, fields: dict[str, str]) -> str:
        creds = self.credentials
        # Client authentication in the form body (Infor SDK README, backend applications).
        form = {
            "grant_type": grant_type,
            **fields,
            "client_id": creds.ci,
            "client_secret": creds.cs.get_secret_value(),
        }
        url = creds.token_url
        try:
            response = await self._http.post(url, data=form, extensions={"idempotent": True})
        except httpx.HTTPError as exc:
            raise AuthenticationError(f"Infor token endpoint {url} unreachable ({type(exc).__name__}: {exc})") from None
        if response.status_code != 200:
            error, description = _error_fields(response)
            what = _MESSAGES.get((grant_type, error))
            if what is None:
                what = f"{grant_type} grant refused" + (f" ({error})" if error else "")
            detail = f": {description}" if description else ""
            raise AuthenticationError(
                f"Infor token endpoint {url} (credentials {creds.source}, tenant {creds.ti}): {what} "
                f"[HTTP {response.status_code} {error or 'no error code'}]{detail}",
                error=error or None,
                status=response.status_code,
            )
        try:
            body: Any = response.json()
        except ValueError:
            raise AuthenticationError(f"Infor token endpoint {url} answered 200 with a body that is not JSON") from None
        access = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(access, str) or not access:
            raise AuthenticationError(f"Infor token endpoint {url} answered 200 without an access_token")
        SECRETS.add(access)
        token_type = str(body.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            raise AuthenticationError(f"Infor token endpoint {url} issued a {token_type!r} token, expected Bearer")
        refresh = body.get("refresh_token")
        refresh = refresh if isinstance(refresh, str) and refresh else None
        if refresh is None and grant_type == "refresh_token":
            refresh = fields["refresh_token"]  # the server kept the old refresh token
        SECRETS.add(refresh)
        try:
            expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        self._token = Token(access, refresh, max(expires_in, 0.0), self._clock())
        self.grants[grant_type] += 1
        log.debug("ION API %s grant for tenant %s: token valid %.0f s", grant_type, creds.ti, expires_in)
        return access


class IonApiAuth(httpx.Auth):
    """``Authorization: Bearer`` on every gateway call; one re-authentication and replay after a 401."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("IonApiAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.provider.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        await response.aread()
        _, first = _error_fields(response)
        log.info("gateway answered 401 to %s %s (%s); re-authenticating once", request.method, request.url.path, first)
        await self.provider.invalidate(token)
        token = await self.provider.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            error, description = _error_fields(response)
            raise AuthenticationError(
                f"{request.method} {request.url.copy_with(query=None)} -> HTTP 401 again after re-authenticating "
                f"(tenant {self.provider.credentials.ti}): {error or 'unauthorized'} {description}".rstrip(),
                error=error or None,
                status=401,
            )
