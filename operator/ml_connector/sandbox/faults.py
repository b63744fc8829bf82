"""Fault injection for the emulators: 429 storms, 5xx bursts, dropped connections, slow answers.

A :class:`FaultInjector` is an aiohttp middleware plus a list of :class:`FaultRule`. Tests add
rules in-process (``injector.add(FaultRule(...))``); out-of-process users (the operator's test
Jobs, the CLI sandbox) use the admin routes ``GET/POST/DELETE /_sandbox/faults``.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["status", "drop", "delay"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

ADMIN_PREFIX = "/_sandbox/"


class FaultRule(BaseModel):
    """One fault. Matching requests are counted; the rule fires on the ones it selects.

    * ``kind="status"``: answer ``status`` (with ``Retry-After: retry_after`` when set) without
      running the handler.
    * ``kind="drop"``: close the connection, before the handler runs (``when="before"``) or after
      it ran and changed state (``when="after"``: the client never learns that it worked).
    * ``kind="delay"``: sleep ``delay`` seconds, then run the handler.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind = "status"
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    when: Literal["before", "after"] = "before"
    path: str = Field(default="", description="regular expression searched in the request path")
    method: str | None = None
    skip: int = Field(default=0, ge=0, description="let the first N matching requests through")
    every: int = Field(default=1, ge=1, description="fire on every Nth matching request after skip")
    times: int | None = Field(default=None, ge=0, description="fire at most this many times")
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    body: dict[str, Any] | None = None


@dataclass
class _Armed:
    rule: FaultRule
    pattern: re.Pattern[str]
    seen: int = 0
    fired: int = 0

    def matches(self, request: web.Request) -> bool:
        if self.rule.method and request.method.upper() != self.rule.method.upper():
            return False
        return bool(self.pattern.search(request.path))


@dataclass
class FaultInjector:
    """Holds the active rules; ``middleware`` applies them to every non-admin request."""

    seed: int = 0
    _rules: list[_Armed] = field(default_factory=list)
    _rng: random.Random = field(init=False)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def add(self, rule: FaultRule | None = None, **fields: Any) -> FaultRule:
        rule = rule or FaultRule(**fields)
        self._rules.append(_Armed(rule, re.compile(rule.path)))
        return rule

    def clear(self) -> None:
        self._rules.clear()

    def reseed(self, seed: int) -> None:
        """Restart the generator behind ``probability`` rules from ``seed`` (the same faults for the same calls)."""
        self.seed = seed
        self._rng = random.Random(seed)

    def describe(self) -> list[dict[str, Any]]:
        return [{"rule": a.rule.model_dump(), "seen": a.seen, "fired": a.fired} for a in self._rules]

    def _select(self, request: web.Request) -> FaultRule | None:
        for armed in self._rules:
            if not armed.matches(request):
                continue
            armed.seen += 1
            rule = armed.rule
            if armed.seen <= rule.skip:
                continue
            if (armed.seen - rule.skip - 1) % rule.every:
                continue
            if rule.times is not None and armed.fired >= rule.times:
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            armed.fired += 1
            key = f"{rule.kind}:{rule.status if rule.kind == 'status' else rule.when}"
            self.injected[key] = self.injected.get(key, 0) + 1
            return rule
        return None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        rule = self._select(request)
        if rule is None:
            return await handler(request)
        if rule.kind == "delay":
            await asyncio.sleep(rule.delay)
            return await handler(request)
        if rule.kind == "drop":
            if rule.when == "after":
                await handler(request)
            _drop(request)
            return web.Response(status=500)  # never reaches the client: the connection is gone
        headers = {}
        if rule.retry_after is not None:
            headers["Retry-After"] = str(int(rule.retry_after) if rule.retry_after.is_integer() else rule.retry_after)
        body = rule.body if rule.body is not None else _default_body(rule.status)
        return web.json_response(body, status=rule.status, headers=headers)

    def routes(self) -> list[web.RouteDef]:
        async def get(_: web.Request) -> web.Response:
            return web.json_response({"rules": self.describe(), "injected": self.injected})

        async def post(request: web.Request) -> web.Response:
            try:
                rule = FaultRule.model_validate(await request.json())
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            self.add(rule)
            return web.json_response({"rule": rule.model_dump()}, status=201)

        async def delete(_: web.Request) -> web.Response:
            self.clear()
            return web.Response(status=204)

        return [
            web.get(ADMIN_PREFIX + "faults", get),
            web.post(ADMIN_PREFIX + "faults", post),
            web.delete(ADMIN_PREFIX + "faults", delete),
        ]


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _default_body(status: int) -> dict[str, Any]:
    messages = {
        429: "Too Many Requests",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    return {"status": {"code": status, "message": messages.get(status, "Injected fault")}}
