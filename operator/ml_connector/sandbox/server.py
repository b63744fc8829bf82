"""Compose the emulators into one runnable sandbox (``ml-connector sandbox``, the demo, tests, benchmarks).

::

    async with await start_sandbox() as sb:
        sb.anaplan.url, sb.anaplan.user, sb.anaplan.password, sb.anaplan.workspace, sb.anaplan.model

``url`` is where an emulator listens; ``public_url`` is the base URL it advertises (in the ``.ionapi`` files
and the printed connection details), which differs when clients reach it under another name, e.g. the
in-cluster sandbox behind a Kubernetes Service (``examples/sandbox.yaml``). ``credentials`` fixes the
credentials the emulators accept (:mod:`ml_connector.sandbox.credentials`); by default they are random.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from ml_connector.sandbox.anaplan import AnaplanEmulator, DefaultModel, EmulatorConfig, build_default_model
from ml_connector.sandbox.credentials import SandboxCredentials, apply_infor_credentials
from ml_connector.sandbox.faults import FaultInjector
from ml_connector.sandbox.infor import RunningInfor
from ml_connector.sandbox.runtime import AppServer


@dataclass
class AnaplanHandle:
    """One running Anaplan emulator: its base URL (auth, OAuth and ``/2/0``), credentials and state."""

    server: AppServer
    emulator: AnaplanEmulator
    seeded: DefaultModel
    advertised_url: str | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def public_url(self) -> str:
        """The base URL clients are told to use (``url`` unless another one is advertised)."""
        return self.advertised_url or self.url

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
            "public_url": self.public_url,
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
    public_url: str | None = None,
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
    return AnaplanHandle(server, emulator, seeded, public_url)


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
    anaplan_public_url: str | None = None,
    infor_public_url: str | None = None,
    credentials: SandboxCredentials | None = None,
    ionapi_dir: str | Path | None = None,
) -> Sandbox:
    """Start every emulator on ``host``; ``port_anaplan=0`` picks a free port.

    ``anaplan_data`` may hold ``accounts``, ``cost_centers``, ``suppliers`` and ``budget`` (plain
    tuples/dicts, see :func:`build_default_model`) to seed the model instead of the synthetic data.
    ``infor`` starts the Infor emulator too (port ``port_infor``) over the deterministic dataset with
    ``infor_postings`` GL postings (default ``20_000 * scale``, at least 2 000) and the same ``seed``.
    ``anaplan_public_url`` / ``infor_public_url`` are the base URLs advertised instead of the listening
    ones (the Infor one goes into the ``.ionapi`` files, written to ``ionapi_dir`` when given, else to a
    temporary directory removed on close); ``credentials`` fixes what the emulators accept.
    """
    config = anaplan_config or EmulatorConfig()
    if token_lifetime is not None:
        config.token_lifetime = token_lifetime
    data = dict(anaplan_data or {})
    if credentials is not None and credentials.anaplan_password is not None:
        data["password"] = credentials.anaplan_password
    anaplan = await start_anaplan(
        host, port_anaplan, config=config, scale=scale, seed=seed, public_url=anaplan_public_url, **data
    )
    running_infor: RunningInfor | None = None
    if infor:
        from ml_connector.sandbox.dataset import DatasetConfig
        from ml_connector.sandbox.infor import InforState, launch_infor

        postings = infor_postings if infor_postings is not None else max(2_000, 20_000 * scale)
        options: dict[str, Any] = {} if infor_token_lifetime is None else {"token_lifetime": infor_token_lifetime}
        try:
            state = InforState(DatasetConfig(seed=seed, gl_postings=postings), **options)
            if credentials is not None:
                apply_infor_credentials(state, credentials)
            running_infor = await launch_infor(
                state, ionapi_dir=ionapi_dir, host=host, port=port_infor, public_url=infor_public_url
            )
        except BaseException:
            await anaplan.server.stop()
            raise
    return Sandbox(anaplan=anaplan, infor=running_infor)
