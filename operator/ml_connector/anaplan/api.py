"""The HTTP core of the Integration API v2 client: one session, envelopes, errors, paging.

Layering of one request::

    ApiSession.request            typed errors, the "what were we doing" context
      httpx.AsyncClient + auth    AnaplanAuth: token keep-alive, one re-authentication on 401
        RetryingTransport         tenacity backoff + jitter, Retry-After, total budget, rate limiter
          AsyncHTTPTransport

Task POSTs and list-item adds are not idempotent: the transport retries them only on 429 and on
failures before the request left. Everything else the caller marks idempotent is retried on 5xx too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ml_connector.anaplan.auth import AnaplanAuth
from ml_connector.anaplan.errors import (
    AnaplanError,
    AuthenticationError,
    InvalidRequestError,
    ServerError,
    error_details,
    error_for_status,
)
from ml_connector.anaplan.models import Paging
from ml_connector.net.ratelimit import RateLimiter
from ml_connector.net.retry import IDEMPOTENT_EXTENSION, RetryingTransport, RetryPolicy

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.anaplan.com/2/0"
MAX_PAGE_SIZE = 5000
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=15.0)

JSONObject = dict[str, Any]


class ApiSession:
    """One authenticated connection to the Integration API (``/2/0``)."""

    def __init__(
        self,
        auth: AnaplanAuth,
        *,
        api_url: str = DEFAULT_API_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float = 10.0,
        burst: int | None = 20,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        self.auth = auth
        self.api_url = api_url.rstrip("/")
        self.page_size = page_size
        self.limiter = RateLimiter(rate_limit, burst)
        self.transport = RetryingTransport(
            transport or httpx.AsyncHTTPTransport(), policy=retry or RetryPolicy(), limiter=self.limiter
        )
        self.http = httpx.AsyncClient(base_url=self.api_url, auth=auth, transport=self.transport, timeout=timeout)

    def _timeout_with_read(self, read: float) -> httpx.Timeout:
        base = self.http.timeout
        return httpx.Timeout(connect=base.connect, read=read, write=max(read, base.write or 0.0), pool=base.pool)

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.auth.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        read_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; any non-2xx answer or transport failure raises a typed :class:`AnaplanError`.

        ``what`` is a short phrase ("listing imports of model X") used in error messages.
        """
        extensions: dict[str, Any] = {}
        if idempotent:
            extensions[IDEMPOTENT_EXTENSION] = True
        where = f"{method} {path}"
        try:
            request = self.http.build_request(
                method,
                path,
                params=params,
                json=json,
                content=content,
                headers=headers,
                extensions=extensions,
                timeout=httpx.USE_CLIENT_DEFAULT if read_timeout is None else self._timeout_with_read(read_timeout),
            )
            response = await self.http.send(request)
        except AnaplanError:
            raise
        except httpx.TransportError as exc:
            sent_maybe = method not in ("GET", "HEAD", "PUT", "DELETE") and not idempotent
            hint = (
                "the request may have been applied before the connection failed; check the state in Anaplan "
                "(e.g. the task list of the action) before repeating it"
                if sent_maybe
                else None
            )
            raise ServerError(
                f"the connection to Anaplan failed while {what} ({type(exc).__name__})",
                where=where,
                hint=hint,
            ) from None
        # httpx links a response and its stream both ways; that cycle (holding the request body, or the
        # downloaded content) would otherwise live until the cyclic GC, so memory would grow with every
        # chunk. The body has been read and the stream closed: drop the stream.
        response.stream = httpx.ByteStream(b"")
        if response.is_success:
            return response
        try:
            payload = response.json()
        except ValueError:
            payload = None
        message = error_details(payload)
        if response.status_code == 401:
            raise AuthenticationError(
                f"Anaplan rejected the token while {what}, even after re-authenticating",
                status=401,
                where=where,
                server_message=message,
            )
        raise error_for_status(response.status_code, where=where, what=what, server_message=message)

    async def json(self, method: str, path: str, *, what: str, **kwargs: Any) -> JSONObject:
        response = await self.request(method, path, what=what, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ServerError(
                f"Anaplan answered with something other than a JSON object while {what}",
                status=response.status_code,
                where=f"{method} {path}",
                hint="check that the API URL points at the Integration API (e.g. https://api.anaplan.com/2/0)",
            )
        return body

    async def paginate(
        self, path: str, key: str | tuple[str, ...], *, what: str, params: Mapping[str, str | int] | None = None
    ) -> AsyncIterator[JSONObject]:
        """Yield every item of a collection, page by page (``limit``/``offset``, at most 5,000 a page).

        The offset advances by what the server actually returned, so a server that silently
        truncates a page is still read to the end. An omitted ``key`` means an empty collection;
        with several keys the first present one is used.
        """
        keys = (key,) if isinstance(key, str) else key
        offset = 0
        while True:
            query: dict[str, str | int] = {**(params or {}), "limit": self.page_size, "offset": offset}
            body = await self.json("GET", path, what=what, params=query, idempotent=True)
            items = next((body[k] for k in keys if k in body), None) or []
            if not isinstance(items, list):
                raise ServerError(f"Anaplan answered {keys[0]!r} that is not a list while {what}", where=f"GET {path}")
            for item in items:
                yield item
            raw_paging = (body.get("meta") or {}).get("paging")
            if not raw_paging or not items:
                return
            paging = Paging.model_validate(raw_paging)
            offset += len(items)
            if offset >= paging.total_size:
                return

    async def collect(
        self, path: str, key: str | tuple[str, ...], *, what: str, params: Mapping[str, str | int] | None = None
    ) -> list[JSONObject]:
        return [item async for item in self.paginate(path, key, what=what, params=params)]


@dataclass(frozen=True)
class ModelScope:
    """A session bound to one model: builds ``/workspaces/{ws}/models/{m}/...`` paths."""

    session: ApiSession
    workspace_id: str
    model_id: str

    def path(self, *parts: str) -> str:
        for part in parts:
            if not part or "/" in part or part in (".", ".."):
                raise InvalidRequestError(f"invalid path segment {part!r}", hint="pass plain ids and names")
        tail = "/".join(parts)
        return f"/workspaces/{self.workspace_id}/models/{self.model_id}" + (f"/{tail}" if tail else "")

    def model_path(self, *parts: str) -> str:
        """The ``/models/{m}/...`` form used by the transactional API."""
        return f"/models/{self.model_id}/" + "/".join(parts)
