"""Shared helpers for the Anaplan emulator tests (raw HTTP with httpx)."""

from __future__ import annotations

import asyncio
import base64
import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from ml_connector.sandbox.anaplan import EmulatorConfig
from ml_connector.sandbox.server import AnaplanHandle, start_anaplan


class FakeClock:
    """An adjustable wall clock for the emulator (token expiry, certificate timestamps)."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def anaplan(clock: FakeClock) -> AsyncIterator[AnaplanHandle]:
    """The default sandbox model (scale 1) on a loopback port, with the fake clock."""
    handle = await start_anaplan(config=EmulatorConfig(clock=clock), scale=1)
    try:
        yield handle
    finally:
        await handle.server.stop()


@pytest.fixture
async def api(anaplan: AnaplanHandle) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the emulator, logged in as the integration user."""
    async with httpx.AsyncClient(base_url=anaplan.url, timeout=30) as client:
        token = await login(client, anaplan.user, anaplan.password)
        client.headers["Authorization"] = f"AnaplanAuthToken {token}"
        yield client


async def login(client: httpx.AsyncClient, user: str, password: str) -> str:
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    res = await client.post("/token/authenticate", headers={"Authorization": f"Basic {basic}"})
    assert res.status_code == 201, res.text
    token: str = res.json()["tokenInfo"]["tokenValue"]
    return token


def model_path(a: AnaplanHandle, suffix: str = "") -> str:
    return f"/2/0/workspaces/{a.workspace}/models/{a.model}{suffix}"


async def upload(
    client: httpx.AsyncClient, a: AnaplanHandle, file_id: int, data: bytes, chunk: int = 0, gz: bool = True
) -> None:
    """Chunked upload like the SDK: chunkCount, PUT every chunk (gzip), done (no complete needed)."""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    res = await client.post(model_path(a, f"/files/{file_id}"), json={"chunkCount": len(pieces)})
    assert res.status_code == 200, res.text
    for n, piece in enumerate(pieces):
        body = gzip.compress(piece) if gz else piece
        ctype = "application/x-gzip" if gz else "application/octet-stream"
        res = await client.put(
            model_path(a, f"/files/{file_id}/chunks/{n}"), content=body, headers={"Content-Type": ctype}
        )
        assert res.status_code == 204, res.text


async def start_task(client: httpx.AsyncClient, a: AnaplanHandle, kind: str, action_id: int, **extra: Any) -> str:
    res = await client.post(model_path(a, f"/{kind}/{action_id}/tasks"), json={"localeName": "en_US", **extra})
    assert res.status_code == 200, res.text
    task_id: str = res.json()["task"]["taskId"]
    return task_id


async def wait_task(
    client: httpx.AsyncClient, a: AnaplanHandle, kind: str, action_id: int, task_id: str, limit: float = 30
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        res = await client.get(model_path(a, f"/{kind}/{action_id}/tasks/{task_id}"))
        assert res.status_code == 200, res.text
        task: dict[str, Any] = res.json()["task"]
        if task["taskState"] in ("COMPLETE", "CANCELLED"):
            return task
        assert loop.time() < deadline, f"task still {task['taskState']}"
        await asyncio.sleep(0.02)


async def run_task(
    client: httpx.AsyncClient, a: AnaplanHandle, kind: str, action_id: int, **extra: Any
) -> tuple[str, dict[str, Any]]:
    task_id = await start_task(client, a, kind, action_id, **extra)
    return task_id, await wait_task(client, a, kind, action_id, task_id)


async def wait_state(
    client: httpx.AsyncClient, a: AnaplanHandle, kind: str, action_id: int, task_id: str, state: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        res = await client.get(model_path(a, f"/{kind}/{action_id}/tasks/{task_id}"))
        task: dict[str, Any] = res.json()["task"]
        if task["taskState"] == state:
            return task
        assert loop.time() < deadline, f"task is {task['taskState']}, never {state}"
        await asyncio.sleep(0.01)
