"""Compose the emulators into one runnable sandbox (``ml-connector sandbox``, the demo, tests, benchmarks).

::

    async with await start_sandbox() as sb:
        sb.anaplan.url, sb.anaplan.user, sb.anaplan.password, sb.anaplan.workspace, sb.anaplan.model
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from ml_connector.sandbox.anaplan import AnaplanEmulator, DefaultModel, EmulatorConfig, build_default_model
from ml_connector.sandbox.faults import FaultInjector
from ml_connector.sandbox.infor import RunningInfor
from ml_connector.sandbox.runtime import AppServer


@dataclass
class AnaplanHandle:
    """One running Anaplan emulator: its base URL (auth, OAuth and ``/2/0``), credentials and state."""

    server: AppServer
    emulator: AnaplanEmulator
    seeded: DefaultModel

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def user(self) -> str:
        return self.seeded.user.email

    @property
    def password(self) -> str:
        return self.seeded.password

    @property
    def workspace(self) -> str:
        return self.seeded.workspace_id

    @property
    def model(self) -> str:
        return self.seeded.model_id

    @property
    def injector(self) -> FaultInjector:
        return self.emulator.injector

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "user": self.user,
            "password": self.password,
            "workspace": self.workspace,
            "model": self.model,
            "workspace_name": self.seeded.model.workspace.name,
            "model_name": self.seeded.model.name,
        }


@dataclass
class Sandbox:
    anaplan: AnaplanHandle
    # ---- Infor (sandbox/infor/): URL, state and generated .ionapi files; None when not started.
    infor: RunningInfor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"anaplan": self.anaplan.to_json()}
        if self.infor is not None:
            out["infor"] = self.infor.describe()
        return out

    async def close(self) -> None:
        await self.anaplan.server.stop()
        if self.infor is not None:
            await self.infor.stop()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def start_anaplan(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: EmulatorConfig | None = None,
    scale: int = 1,
    seed: int = 0,
    password: str | None = None,
    accounts: Iterable[Any] = (),
    cost_centers: Iterable[Any] = (),
    suppliers: Iterable[Any] = (),
    budget: Iterable[Mapping[str, Any]] = (),
) -> AnaplanHandle:
    seeded = build_default_model(
        config=config or EmulatorConfig(),
        password=password,
        accounts=accounts,
        cost_centers=cost_centers,
        suppliers=suppliers,
        budget=budget,
        scale=scale,
        seed=seed,
    )
    emulator = AnaplanEmulator(seeded.state)
    emulator.register_default_clients(seeded.user.email)
    server = AppServer(emulator.app(), host, port)
    await server.start()
    return AnaplanHandle(server, emulator, seeded)


async def start_sandbox(
    host: str = "127.0.0.1",
    port_anaplan: int = 0,
    scale: int = 1,
    seed: int = 0,
    *,
    token_lifetime: float | None = None,
    anaplan_config: EmulatorConfig | None = None,
    anaplan_data: Mapping[str, Any] | None = None,
    infor: bool = True,
    port_infor: int = 0,
    infor_postings: int | None = None,
    infor_token_lifetime: float | None = None,
) -> Sandbox:
    """Start every emulator on ``host``; ``port_anaplan=0`` picks a free port.

    ``anaplan_data`` may hold ``accounts``, ``cost_centers``, ``suppliers`` and ``budget`` (plain
    tuples/dicts, see :func:`build_default_model`) to seed the model instead of the synthetic data.
    ``infor`` starts the Infor emulator too (port ``port_infor``) over the deterministic dataset with
    ``infor_postings`` GL postings (default ``20_000 * scale``, at least 2 000) and the same ``seed``.
    """
    config = anaplan_config or EmulatorConfig()
    if token_lifetime is not None:
        config.token_lifetime = token_lifetime
    anaplan = await start_anaplan(host, port_anaplan, config=config, scale=scale, seed=seed, **dict(anaplan_data or {}))
    running_infor: RunningInfor | None = None
    if infor:
        from ml_connector.sandbox.dataset import DatasetConfig
        from ml_connector.sandbox.infor import launch_infor

        postings = infor_postings if infor_postings is not None else max(2_000, 20_000 * scale)
        options: dict[str, Any] = {} if infor_token_lifetime is None else {"token_lifetime": infor_token_lifetime}
        try:
            running_infor = await launch_infor(
                dataset=DatasetConfig(seed=seed, gl_postings=postings), host=host, port=port_infor, **options
            )
        except BaseException:
            await anaplan.server.stop()
            raise
    return Sandbox(anaplan=anaplan, infor=running_infor)
