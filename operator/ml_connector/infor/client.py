"""The ION API Gateway client for one tenant: auth, retries, a rate limit and bounded concurrency.

One :class:`IonApiClient` per tenant and run (one token per side per run, DESIGN.md §1). Layers:

``httpx.AsyncClient`` (auth = :class:`~ml_connector.infor.auth.IonApiAuth`)
  -> :class:`~ml_connector.net.RetryingTransport` (429 always, 502/503/504 and timeouts for
     idempotent requests; exponential backoff with jitter; ``Retry-After`` honoured; total budget)
  -> :class:`~ml_connector.net.RateLimiter` (per tenant, inside the transport: every attempt counts)
  -> the real transport.

A semaphore bounds the requests in flight (reference §8.3: about 4-5 per tenant). The request
timeout is a bit above the gateway's own 60 s backend timeout, so the gateway's 504 arrives first.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx

from ml_connector.infor.auth import DEFAULT_REFRESH_RATIO, IonApiAuth, TokenProvider
from ml_connector.infor.errors import GatewayError, ProtocolError
from ml_connector.infor.ionapi import IonApiCredentials
from ml_connector.net.ratelimit import RateLimiter
from ml_connector.net.redact import redact
from ml_connector.net.retry import RetryingTransport, RetryPolicy

log = logging.getLogger(__name__)

#: Reference §8.2: the gateway gives up on the backend after 60 s (504); wait a little longer.
DEFAULT_TIMEOUT = 75.0
_DETAIL_LIMIT = 300
_URL_LIMIT = 400


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """Connection behaviour for one tenant.

    ``rate_limit`` is requests per second (every attempt, retries included; ``0`` disables it),
    ``concurrency`` the requests in flight, ``retry`` the backoff policy for 429/5xx/timeouts.
    """

    rate_limit: float = 20.0
    burst: int | None = None
    concurrency: int = 4
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    refresh_ratio: float = DEFAULT_REFRESH_RATIO
    revoke_on_close: bool = True

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {self.timeout}")


class _Unclosable(httpx.AsyncBaseTransport):
    """Shares a caller-provided transport without closing it twice."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        return None


def _short_url(url: httpx.URL) -> str:
    text = str(url)
    return text if len(text) <= _URL_LIMIT else text[: _URL_LIMIT - 3] + "..."


def describe_error_body(response: httpx.Response) -> str:
    """A one-line summary of an error body: the usual error fields of the gateway, M3, Mongoose, OAuth."""
    try:
        body: Any = response.json()
    except ValueError:
        text = " ".join(response.text.split())
        return redact(text[:_DETAIL_LIMIT]) or response.reason_phrase
    if isinstance(body, dict):
        parts = [
            str(body[k])
            for k in ("error", "error_description", "errorMessage", "errorCode", "Message", "message", "status")
            if body.get(k)
        ]
        if parts:
            return redact(" ".join(parts)[:_DETAIL_LIMIT])
    return redact(str(body)[:_DETAIL_LIMIT])


class IonApiClient:
    """Authenticated, throttled, retrying access to ``iu/ti/...`` of one tenant."""

    def __init__(
        self,
        credentials: IonApiCredentials,
        options: ClientOptions | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.credentials = credentials
        self.options = options or ClientOptions()
        opts = self.options
        self.limiter = RateLimiter(opts.rate_limit, opts.burst)
        #: Attempts by outcome (HTTP status, or None for a transport error), retries included.
        self.attempts: Counter[int | None] = Counter()
        timeout = httpx.Timeout(opts.timeout, connect=opts.connect_timeout)
        if transport is not None:
            api_inner: httpx.AsyncBaseTransport = _Unclosable(transport)
            token_inner: httpx.AsyncBaseTransport = _Unclosable(transport)
        else:
            # One connection pool (and one TLS context) for the gateway and the token endpoint.
            limits = httpx.Limits(max_connections=opts.concurrency + 2, max_keepalive_connections=opts.concurrency + 2)
            api_inner = httpx.AsyncHTTPTransport(limits=limits)
            token_inner = _Unclosable(api_inner)
        self._token_http = httpx.AsyncClient(
            transport=RetryingTransport(token_inner, policy=opts.retry, sleep=sleep),
            timeout=timeout,
            follow_redirects=False,
        )
        provider_kwargs: dict[str, Any] = {"refresh_ratio": opts.refresh_ratio}
        if clock is not None:
            provider_kwargs["clock"] = clock
        self.tokens = TokenProvider(credentials, self._token_http, **provider_kwargs)
        self._http = httpx.AsyncClient(
            base_url=credentials.api_base + "/",
            transport=RetryingTransport(
                api_inner, policy=opts.retry, limiter=self.limiter, observer=self._observe, sleep=sleep
            ),
            auth=IonApiAuth(self.tokens),
            timeout=timeout,
            follow_redirects=False,
        )
        self._slots = asyncio.Semaphore(opts.concurrency)
        self._closed = False

    def _observe(self, request: httpx.Request, status: int | None, elapsed: float) -> None:
        self.attempts[status] += 1
        if status is None or status >= 400:
            log.debug("%s %s -> %s in %.2fs", request.method, request.url.path, status or "transport error", elapsed)

    @property
    def tenant(self) -> str:
        return self.credentials.ti

    @property
    def concurrency(self) -> int:
        return self.options.concurrency

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        idempotent: bool = False,
        accept: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send one request (``path`` relative to ``iu/ti``); the body is read.

        Statuses outside ``accept`` raise :class:`GatewayError` (after the retry policy gave up).
        ``idempotent=True`` lets a POST be retried on 5xx/timeouts (reads sent as POST).
        """
        if self._closed:
            raise RuntimeError("IonApiClient is closed")
        extensions = {"idempotent": True} if idempotent else None
        async with self._slots:
            try:
                response = await self._http.request(
                    method, path.lstrip("/"), params=params, headers=headers, json=json, extensions=extensions
                )
            except httpx.TimeoutException as exc:
                raise GatewayError(
                    method, self._url_for(path), None, f"timed out ({type(exc).__name__}) after retries"
                ) from None
            except httpx.TransportError as exc:
                raise GatewayError(
                    method, self._url_for(path), None, f"{type(exc).__name__}: {redact(str(exc))}"
                ) from None
        if response.status_code not in accept:
            raise GatewayError(
                method, _short_url(response.request.url), response.status_code, describe_error_body(response)
            )
        return response

    def _url_for(self, path: str) -> str:
        return f"{self.credentials.api_base}/{path.lstrip('/')}"

    async def request_json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Like :meth:`request`, returning ``(status, parsed JSON body)``."""
        response = await self.request(method, path, **kwargs)
        try:
            return response.status_code, response.json()
        except ValueError:
            snippet = " ".join(response.text.split())[:120]
            raise ProtocolError(
                f"{method} {_short_url(response.request.url)} -> HTTP {response.status_code} with a body that is not "
                f"JSON: {redact(snippet)!r}"
            ) from None

    async def aclose(self) -> None:
        """Revoke the grant (unless disabled) and close the connections. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.options.revoke_on_close:
                await self.tokens.revoke()
        finally:
            await self._http.aclose()
            await self._token_http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
