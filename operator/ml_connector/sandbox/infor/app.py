"""Assemble the Infor emulator: one aiohttp app per :class:`InforState`, and ``start_infor`` to run it.

``async with start_infor(...) as infor:`` gives ``infor.url``, ``infor.state`` and ``infor.ionapi(product)``
(a written ``.ionapi`` file per tenant), ready for clients and tests.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ml_connector.sandbox.dataset import Dataset, DatasetConfig
from ml_connector.sandbox.infor import admin, fsm, gateway, m3, syteline
from ml_connector.sandbox.infor.ionapi import write_ionapi_files
from ml_connector.sandbox.infor.state import InforState, Product
from ml_connector.sandbox.runtime import AppServer


def build_app(state: InforState) -> web.Application:
    """The gateway app: fault injection outermost, then bearer/quota/timeout, then the product routes."""
    app = web.Application(middlewares=[state.faults.middleware, gateway.gateway_middleware],
                          client_max_size=64 * 1024 * 1024)  # fmt: skip
    app[gateway.STATE_KEY] = state
    app.add_routes(gateway.routes())
    app.add_routes(m3.routes())
    app.add_routes(syteline.routes())
    app.add_routes(fsm.routes())
    app.add_routes(admin.routes())
    app.add_routes(state.faults.routes())
    return app


@dataclass
class RunningInfor:
    """A started emulator: its base URL, its state, and the ``.ionapi`` files of its tenants.

    ``public_url`` is the base URL the ``.ionapi`` files advertise (``iu``, ``pu``): ``url`` unless the
    emulator is reached under another name (a Kubernetes Service, a port-forward).
    """

    url: str
    state: InforState
    ionapi_dir: Path
    ionapi_files: dict[Product, Path] = field(default_factory=dict)
    server: AppServer | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    public_url: str = ""

    def __post_init__(self) -> None:
        self.public_url = self.public_url or self.url

    def ionapi(self, product: Product) -> Path:
        return self.ionapi_files[product]

    def tenant_id(self, product: Product) -> str:
        return self.state.tenant(product).tenant_id

    def describe(self) -> dict[str, Any]:
        """The ``"infor"`` part of ``ml-connector sandbox --json``."""
        tenants: dict[str, Any] = {}
        for product, path in self.ionapi_files.items():
            tenant = self.state.tenant(product)
            entry: dict[str, Any] = {"ionapi": str(path), "tenant": tenant.tenant_id}
            if tenant.configs:
                entry["configs"] = list(tenant.configs)
                entry["sites"] = dict(tenant.configs)
            if product == "M3":
                entry["company"] = self.state.dataset.company
                entry["divisions"] = [p.code for p in self.state.dataset.plants]
            tenants[product] = entry
        return {
            "url": self.url,
            "public_url": self.public_url,
            "tenants": tenants,
            "gl_postings": self.state.dataset.gl_count,
        }

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


async def launch_infor(
    state: InforState | None = None,
    *,
    dataset: Dataset | DatasetConfig | None = None,
    ionapi_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    public_url: str | None = None,
    **state_options: Any,
) -> RunningInfor:
    """Start the Infor emulator on ``host`` (``port=0``: any free port); call ``stop()`` when done.

    ``state_options`` go to :class:`InforState` (``token_lifetime``, ``products``, ...) when no state is
    given. Without ``ionapi_dir`` the ``.ionapi`` files go to a temporary directory removed by ``stop()``.
    ``public_url`` is the base URL written into the ``.ionapi`` files (default: the URL it listens on).
    """
    state = state or InforState(dataset, **state_options)
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if ionapi_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="infor-ionapi-")
        directory = Path(tmp.name)
    else:
        directory = Path(ionapi_dir)
    server = AppServer(build_app(state), host, port)
    try:
        await server.start()
        files = write_ionapi_files(state, public_url or server.url, directory)
    except BaseException:
        await server.stop()
        if tmp is not None:
            tmp.cleanup()
        raise
    return RunningInfor(server.url, state, directory, files, server, tmp, public_url or server.url)


@contextlib.asynccontextmanager
async def start_infor(
    state: InforState | None = None,
    *,
    dataset: Dataset | DatasetConfig | None = None,
    ionapi_dir: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **state_options: Any,
) -> AsyncIterator[RunningInfor]:
    """``async with start_infor(dataset=DatasetConfig(gl_postings=2_000)) as infor:`` — see :func:`launch_infor`."""
    running = await launch_infor(state, dataset=dataset, ionapi_dir=ionapi_dir, host=host, port=port, **state_options)
    try:
        yield running
    finally:
        await running.stop()
