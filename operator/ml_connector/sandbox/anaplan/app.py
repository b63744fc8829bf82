"""The Anaplan emulator as one aiohttp application: auth, OAuth and the Integration API on one base URL."""

from __future__ import annotations

from aiohttp import web

from ml_connector.sandbox.anaplan import admin, discovery, files, tasks, transactional
from ml_connector.sandbox.anaplan.auth import AuthService, OAuthClient
from ml_connector.sandbox.anaplan.context import Context
from ml_connector.sandbox.anaplan.http import error_middleware
from ml_connector.sandbox.anaplan.state import AnaplanState
from ml_connector.sandbox.faults import FaultInjector

EMULATOR_KEY: web.AppKey[AnaplanEmulator] = web.AppKey("anaplan_emulator")


class AnaplanEmulator:
    """State + services of one emulated Anaplan tenant; :meth:`app` builds the aiohttp application.

    ``emulator.injector`` takes fault rules, ``emulator.engine`` the task knobs (``slow``, ``pause``),
    ``emulator.state.config`` the rest (token lifetime, task duration, slow ``complete`` …).
    """

    def __init__(self, state: AnaplanState | None = None, injector: FaultInjector | None = None) -> None:
        self.state = state or AnaplanState()
        self.injector = injector or FaultInjector()
        self.auth = AuthService(self.state)
        self.ctx = Context(self.state, self.auth)
        self.engine = tasks.TaskEngine(self.ctx)
        self.ctx.engine = self.engine

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.state.config

    def register_default_clients(self, login_email: str) -> None:
        """OAuth clients of the default sandbox: a device-grant client and an authorization-code client."""
        from ml_connector.sandbox.anaplan.default_model import DEVICE_CLIENT_ID, WEB_CLIENT_ID

        user = self.state.user_by_email(login_email)
        self.auth.default_login = user.id if user else None
        self.auth.register_client(
            OAuthClient(DEVICE_CLIENT_ID, grant="device", rotating=self.config.oauth_refresh_rotating)
        )
        self.auth.register_client(
            OAuthClient(
                WEB_CLIENT_ID,
                secret="sandbox-web-secret",  # noqa: S106 - a sandbox client
                grant="authorization_code",
                rotating=self.config.oauth_refresh_rotating,
            )
        )

    def app(self) -> web.Application:
        max_body = self.config.chunk_limit + (2 << 20)
        app = web.Application(middlewares=[self.injector.middleware, error_middleware], client_max_size=max_body)
        app[EMULATOR_KEY] = self
        app.add_routes(self.auth.routes())
        app.add_routes(discovery.routes(self.ctx))
        app.add_routes(files.routes(self.ctx))
        app.add_routes(tasks.routes(self.ctx))
        app.add_routes(transactional.routes(self.ctx))
        app.add_routes(admin.routes(self.ctx))
        app.add_routes(self.injector.routes())

        async def close_engine(_: web.Application) -> None:
            await self.engine.close()

        app.on_cleanup.append(close_engine)
        return app
