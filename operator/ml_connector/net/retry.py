"""Retries as an httpx transport: exponential backoff with jitter, Retry-After honoured, a total budget.

What is retried:

* ``429`` on any method: the server refused the request before doing anything.
* ``502``/``503``/``504``, read timeouts and dropped connections only for idempotent requests
  (GET, HEAD, PUT, DELETE, OPTIONS, or any request sent with ``extensions={"idempotent": True}``);
  a POST that may have been applied is never blindly sent twice.
* Connection failures before the request left (connect errors, connect timeouts) on any method.

The transport sits below ``httpx.Auth``, so a retried request keeps its credentials, and a 401
is left to the auth flow (one re-authentication, never a loop).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_result,
    stop_after_attempt,
    stop_after_delay,
)

from ml_connector.net.ratelimit import RateLimiter

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
IDEMPOTENT_EXTENSION = "idempotent"

#: Called once per attempt: (request, status code or None on a transport error, seconds the attempt took).
AttemptObserver = Callable[[httpx.Request, int | None, float], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. The defaults suit both Anaplan and the ION API Gateway."""

    max_attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    total_budget: float = 300.0
    max_retry_after: float = 120.0
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 502, 503, 504}))

    @classmethod
    def never(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Exponential backoff for ``attempt`` (1-based) with +/- ``jitter`` spread, capped at ``max_wait``."""
        base = min(self.max_wait, self.initial_wait * self.multiplier ** max(0, attempt - 1))
        spread = base * self.jitter
        return max(0.0, (rng or random).uniform(base - spread, base + spread))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def is_idempotent(request: httpx.Request) -> bool:
    return request.method in IDEMPOTENT_METHODS or bool(request.extensions.get(IDEMPOTENT_EXTENSION))


def _replayable(request: httpx.Request) -> bool:
    return isinstance(request.stream, httpx.ByteStream)


class RetryingTransport(httpx.AsyncBaseTransport):
    """Wraps another transport with the retry policy and an optional client-side rate limit."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        observer: AttemptObserver | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._inner = inner or httpx.AsyncHTTPTransport()
        self.policy = policy or RetryPolicy()
        self._limiter = limiter
        self._observer = observer
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        if self._limiter is not None:
            await self._limiter.acquire()
        started = time.monotonic()
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            if self._observer is not None:
                self._observer(request, None, time.monotonic() - started)
            raise
        if self._observer is not None:
            self._observer(request, response.status_code, time.monotonic() - started)
        return response

    def _should_retry_response(self, idempotent: bool, response: httpx.Response) -> bool:
        status = response.status_code
        if status not in self.policy.retry_statuses:
            return False
        return status == 429 or idempotent

    @staticmethod
    def _should_retry_exception(idempotent: bool, exc: BaseException) -> bool:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return True
        if isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError):
            return idempotent
        return False

    def _wait(self, state: RetryCallState) -> float:
        wait = self.policy.backoff(state.attempt_number, self._rng)
        outcome = state.outcome
        if outcome is not None and not outcome.failed:
            response: httpx.Response = outcome.result()
            hinted = parse_retry_after(response.headers.get("Retry-After"))
            if hinted is not None:
                wait = min(self.policy.max_retry_after, hinted)
        return wait

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.policy.max_attempts <= 1 or not _replayable(request):
            return await self._attempt(request)

        async def discard(state: RetryCallState) -> None:
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                response: httpx.Response = outcome.result()
                await response.aread()
                await response.aclose()

        def give_up(state: RetryCallState) -> httpx.Response:
            assert state.outcome is not None
            return state.outcome.result()  # type: ignore[no-any-return]

        # The predicates capture a bool, not the request: AsyncRetrying is self-referential, and a request
        # captured in it (with its body, e.g. an 8 MB upload chunk) would live until the cyclic GC runs.
        idempotent = is_idempotent(request)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.policy.max_attempts) | stop_after_delay(self.policy.total_budget),
            wait=self._wait,
            retry=retry_if_result(lambda r: self._should_retry_response(idempotent, r))
            | retry_if_exception(lambda e: self._should_retry_exception(idempotent, e)),
            before_sleep=discard,
            sleep=self._sleep,
            retry_error_callback=give_up,
            reraise=True,
        )
        response: httpx.Response = await retrying(self._attempt, request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
