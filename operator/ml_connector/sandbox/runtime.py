"""Serve aiohttp applications on loopback, from async code or from a background thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self, TypeVar

from aiohttp import web

T = TypeVar("T")


class AppServer:
    """``async with AppServer(app) as server: server.url`` — an app on an ephemeral loopback port."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ThreadedServers:
    """Runs coroutine-built servers in a private event loop on a daemon thread.

    For synchronous callers (third-party sync clients, benchmarks): ``start(factory)`` calls the
    async ``factory()`` in the background loop and returns its result once it is ready.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sandbox", daemon=True)
        self._thread.start()
        self._servers: list[AppServer] = []

    def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result()

    def serve(self, app_factory: Callable[[], web.Application], host: str = "127.0.0.1", port: int = 0) -> AppServer:
        async def start() -> AppServer:
            server = AppServer(app_factory(), host, port)
            await server.start()
            return server

        server = self.call(start)
        self._servers.append(server)
        return server

    def close(self) -> None:
        async def stop_all() -> None:
            for server in self._servers:
                await server.stop()

        self.call(stop_all)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
