"""Request context shared by the route modules: who is calling, which model, both path forms."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ml_connector.sandbox.anaplan.auth import AuthService
from ml_connector.sandbox.anaplan.http import API_PREFIX, ApiError
from ml_connector.sandbox.anaplan.state import AnaplanState, ModelState, User

if TYPE_CHECKING:
    from ml_connector.sandbox.anaplan.tasks import TaskEngine

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MODEL_PREFIXES = (f"{API_PREFIX}/models/{{model_id}}", f"{API_PREFIX}/workspaces/{{workspace_id}}/models/{{model_id}}")


class Context:
    def __init__(self, state: AnaplanState, auth: AuthService) -> None:
        self.state = state
        self.auth = auth
        self.engine: TaskEngine  # set by the emulator once built

    @property
    def config(self):  # type: ignore[no-untyped-def]
        return self.state.config

    def user(self, request: web.Request) -> User:
        return self.auth.api_user(request)

    def model(self, request: web.Request) -> tuple[User, ModelState]:
        """The caller and the model of a model-scoped path; 404 when unknown or not visible to the caller."""
        user = self.user(request)
        model = self.state.models.get(request.match_info["model_id"])
        if model is None or user.id not in model.users:
            raise ApiError(404)
        ws = request.match_info.get("workspace_id")
        if ws is not None and ws != model.workspace.id:
            raise ApiError(404)
        return user, model

    def require_idle(self, model: ModelState) -> None:
        """Transactional calls while a task holds the model: the emulator answers 409 (reference §6.1/§6.2)."""
        if model.busy:
            raise ApiError(
                self.config.busy_status,
                "The model is currently locked by another operation (an import, export or process is running). "
                "Retry when the model is idle.",
            )


def model_routes(method: str, suffix: str, handler: Handler, both: bool = True) -> list[web.RouteDef]:
    """Register ``suffix`` under ``/2/0/models/{m}`` and (when ``both``) ``/2/0/workspaces/{ws}/models/{m}``."""
    prefixes = MODEL_PREFIXES if both else MODEL_PREFIXES[:1]
    return [web.route(method, prefix + suffix, handler) for prefix in prefixes]


def object_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not raw.isdigit():
        raise ApiError(404)
    return int(raw)
