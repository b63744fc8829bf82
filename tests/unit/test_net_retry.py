"""RetryingTransport: what is retried, how long it waits, and what is never sent twice."""

from __future__ import annotations

import datetime as dt
import email.utils

import httpx
import pytest

from ml_connector.net import RateLimiter, RetryingTransport, RetryPolicy, parse_retry_after


class Script:
    """A MockTransport handler that answers from a list of statuses (or exceptions) in order."""

    def __init__(self, *answers: int | Exception, headers: dict[str, str] | None = None) -> None:
        self.answers = list(answers)
        self.headers = headers or {}
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, headers=self.headers, json={"status": answer})


def client_for(script: Script, sleeps: list[float], policy: RetryPolicy | None = None) -> httpx.AsyncClient:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    transport = RetryingTransport(
        httpx.MockTransport(script),
        policy=policy or RetryPolicy(initial_wait=0.1, max_wait=1.0, jitter=0.0),
        sleep=fake_sleep,
    )
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_429_on_post_is_retried_and_waits_grow_exponentially() -> None:
    script, sleeps = Script(429, 429, 429, 200), []
    async with client_for(script, sleeps) as client:
        response = await client.post("/tasks", json={"localeName": "en_US"})
    assert response.status_code == 200
    assert len(script.calls) == 4
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])


async def test_retry_after_seconds_is_honoured() -> None:
    script, sleeps = Script(429, 200, headers={"Retry-After": "7"}), []
    async with client_for(script, sleeps) as client:
        response = await client.get("/x")
    assert response.status_code == 200
    assert sleeps == [7.0]


async def test_503_on_post_is_not_retried_but_on_get_is() -> None:
    post_script, sleeps = Script(503, 200), []
    async with client_for(post_script, sleeps) as client:
        assert (await client.post("/tasks")).status_code == 503
    assert len(post_script.calls) == 1

    get_script = Script(503, 502, 200)
    async with client_for(get_script, sleeps) as client:
        assert (await client.get("/tasks/1")).status_code == 200
    assert len(get_script.calls) == 3


async def test_post_marked_idempotent_is_retried_on_5xx() -> None:
    script, sleeps = Script(504, 200), []
    async with client_for(script, sleeps) as client:
        response = await client.post("/files/1/complete", extensions={"idempotent": True})
    assert response.status_code == 200
    assert len(script.calls) == 2


async def test_attempts_are_bounded_and_last_response_is_returned() -> None:
    script, sleeps = Script(429), []
    policy = RetryPolicy(max_attempts=3, initial_wait=0.01, jitter=0.0)
    async with client_for(script, sleeps, policy) as client:
        response = await client.get("/x")
    assert response.status_code == 429
    assert len(script.calls) == 3


async def test_connect_error_retried_even_for_post_read_error_only_for_get() -> None:
    sleeps: list[float] = []
    script = Script(httpx.ConnectError("refused"), 200)
    async with client_for(script, sleeps) as client:
        assert (await client.post("/tasks")).status_code == 200

    script = Script(httpx.ReadError("reset"), 200)
    async with client_for(script, sleeps) as client:
        with pytest.raises(httpx.ReadError):
            await client.post("/tasks")
    assert len(script.calls) == 1

    script = Script(httpx.RemoteProtocolError("dropped"), 200)
    async with client_for(script, sleeps) as client:
        assert (await client.get("/chunks/0")).status_code == 200


async def test_non_retryable_status_passes_through() -> None:
    script, sleeps = Script(400, 200), []
    async with client_for(script, sleeps) as client:
        assert (await client.get("/x")).status_code == 400
    assert sleeps == []


def test_parse_retry_after_forms() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    later = email.utils.format_datetime(now + dt.timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("12", now=now) == 12.0
    assert parse_retry_after(later, now=now) == pytest.approx(30.0)
    assert parse_retry_after("garbage", now=now) is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("-3") == 0.0


def test_backoff_is_capped_and_jittered_within_bounds() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=8.0, multiplier=2.0, jitter=0.5)
    for attempt in range(1, 12):
        base = min(8.0, 2.0 ** (attempt - 1))
        assert base * 0.5 <= policy.backoff(attempt) <= base * 1.5


async def test_rate_limiter_spaces_requests_with_a_fake_clock() -> None:
    now = [0.0]

    async def advancing_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0], sleep=advancing_sleep)
    assert await limiter.acquire() == 0.0
    assert await limiter.acquire() == 0.0
    # the bucket is empty: the next caller waits for half a second of refill
    assert await limiter.acquire() == pytest.approx(0.5)
    assert RateLimiter(rate=0).enabled is False
