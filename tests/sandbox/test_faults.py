"""The emulators' fault injection, over real HTTP."""

from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from ml_connector.sandbox.faults import FaultInjector, FaultRule
from ml_connector.sandbox.runtime import AppServer


def make_app(injector: FaultInjector, hits: list[str]) -> web.Application:
    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[injector.middleware])
    app.add_routes(injector.routes())
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


async def test_status_fault_with_retry_after_skip_and_times() -> None:
    injector, hits = FaultInjector(), []
    injector.add(kind="status", status=429, retry_after=3, path="^/api", skip=1, times=2)
    async with AppServer(make_app(injector, hits)) as server, httpx.AsyncClient(base_url=server.url) as http:
        statuses = [(await http.get("/api/x")).status_code for _ in range(5)]
        throttled = await http.get("/other")
    assert statuses == [200, 429, 429, 200, 200]
    assert throttled.status_code == 200
    assert hits.count("/api/x") == 3
    assert injector.injected == {"status:429": 2}


async def test_retry_after_header_and_body() -> None:
    injector, hits = FaultInjector(), []
    injector.add(FaultRule(kind="status", status=429, retry_after=2, times=1))
    async with AppServer(make_app(injector, hits)) as server, httpx.AsyncClient(base_url=server.url) as http:
        response = await http.get("/x")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.json()["status"]["code"] == 429
    assert hits == []


async def test_drop_before_and_after_handler() -> None:
    injector, hits = FaultInjector(), []
    injector.add(kind="drop", when="before", path="^/before", times=1)
    injector.add(kind="drop", when="after", path="^/after", times=1)
    async with AppServer(make_app(injector, hits)) as server, httpx.AsyncClient(base_url=server.url) as http:
        with pytest.raises(httpx.TransportError):
            await http.post("/before")
        with pytest.raises(httpx.TransportError):
            await http.post("/after")
        assert (await http.post("/after")).status_code == 200
    # the "after" drop ran the handler: state changed although the client saw no answer
    assert hits == ["/after", "/after"]


async def test_every_nth_and_admin_routes() -> None:
    injector, hits = FaultInjector(), []
    async with AppServer(make_app(injector, hits)) as server, httpx.AsyncClient(base_url=server.url) as http:
        created = await http.post("/_sandbox/faults", json={"kind": "status", "status": 503, "every": 3})
        assert created.status_code == 201
        bad = await http.post("/_sandbox/faults", json={"kind": "nonsense"})
        assert bad.status_code == 400
        statuses = [(await http.get("/x")).status_code for _ in range(6)]
        listing = (await http.get("/_sandbox/faults")).json()
        assert (await http.delete("/_sandbox/faults")).status_code == 204
        after = (await http.get("/x")).status_code
    assert statuses == [503, 200, 200, 503, 200, 200]
    assert listing["rules"][0]["fired"] == 2
    assert after == 200


async def test_probability_is_deterministic_per_seed() -> None:
    def pattern(seed: int) -> list[bool]:
        injector = FaultInjector(seed=seed)
        injector.add(kind="status", status=429, probability=0.5)
        fired = []
        for _ in range(20):
            before = injector.injected.get("status:429", 0)
            injector._select(_FakeRequest())
            fired.append(injector.injected.get("status:429", 0) > before)
        return fired

    assert pattern(7) == pattern(7)
    assert 0 < sum(pattern(7)) < 20


class _FakeRequest:
    method = "GET"
    path = "/x"
