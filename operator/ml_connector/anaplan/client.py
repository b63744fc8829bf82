"""The Anaplan Integration API v2 client: discovery by name or id, and the per-model facade.

::

    async with AnaplanClient(BasicAuth(user, password)) as anaplan:
        model = await anaplan.open_model("Finance", "FP&A Actuals")
        source = await model.find_file("GL Actuals.csv")
        await model.upload_file(source.id, csv_chunks())
        result = await model.run_import((await model.find_import("Load GL Actuals")).id)

Ids follow Anaplan's formats: workspaces 32 lowercase hex, models 32 uppercase hex (path
parameters are case-sensitive), model objects 12 digits with a type prefix. Every ``find_*``
accepts a name or an id and raises :class:`NotFoundError` listing what exists when nothing matches.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import httpx

from ml_connector.anaplan.api import DEFAULT_API_URL, DEFAULT_TIMEOUT, MAX_PAGE_SIZE, ApiSession, ModelScope
from ml_connector.anaplan.auth import AnaplanAuth
from ml_connector.anaplan.errors import InvalidRequestError, NotFoundError
from ml_connector.anaplan.files import DEFAULT_CHUNK_SIZE, FileTransfer, Source, UploadResult
from ml_connector.anaplan.lists import MAX_BATCH, Items, ListItems
from ml_connector.anaplan.models import (
    ActionInfo,
    ExportInfo,
    FileInfo,
    ImportInfo,
    ListInfo,
    ListItem,
    ListWriteResult,
    ModelInfo,
    ModelObject,
    ModelStatus,
    ModuleInfo,
    ProcessInfo,
    Task,
    TaskResult,
    Workspace,
)
from ml_connector.anaplan.tasks import MappingParameters, PollPolicy, TaskHandle, TaskRunner
from ml_connector.net.retry import RetryPolicy

WORKSPACE_ID = re.compile(r"^[0-9a-f]{32}$")
MODEL_ID = re.compile(r"^[0-9A-F]{32}$")
OBJECT_ID = re.compile(r"^\d{11,13}$")
_SHOWN = 20


class _Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=_Named)
Obj = TypeVar("Obj", bound=ModelObject)


def resolve(kind: str, wanted: str, items: Sequence[N], *, id_pattern: re.Pattern[str], where: str) -> N:
    """Pick the one item whose id (when ``wanted`` looks like an id) or name is ``wanted``.

    Names match exactly first, then case-insensitively. Several matches raise
    :class:`InvalidRequestError` (use the id); none raises :class:`NotFoundError` listing what exists.
    """
    matches: list[N] = []
    if id_pattern.match(wanted):
        matches = [item for item in items if item.id == wanted]
    if not matches:
        matches = [item for item in items if item.name == wanted]
    if not matches:
        folded = wanted.casefold()
        matches = [item for item in items if item.name.casefold() == folded]
    if len(matches) == 1:
        return matches[0]
    if matches:
        ids = ", ".join(item.id for item in matches)
        raise InvalidRequestError(
            f"{len(matches)} {kind}s in {where} are named {wanted!r} (ids {ids})",
            hint=f"use the {kind} id instead of its name",
        )
    shown = ", ".join(f"{item.name!r} ({item.id})" for item in items[:_SHOWN])
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    existing = f"it has: {shown}{more}" if items else f"it has no {kind}s visible to this user"
    hint = None
    if any(item.id.casefold() == wanted.casefold() for item in items):
        hint = "ids are case-sensitive: workspace ids are lowercase, model ids uppercase"
    raise NotFoundError(f"no {kind} {wanted!r} in {where}; {existing}", hint=hint)


class AnaplanModel:
    """One model: object discovery, file transfer, tasks and transactional list items.

    The building blocks are public too: ``files`` (:class:`FileTransfer`), ``tasks``
    (:class:`TaskRunner`), ``items`` (:class:`ListItems`).
    """

    def __init__(
        self,
        scope: ModelScope,
        *,
        poll: PollPolicy | None = None,
        chunk_timeout: float = 300.0,
        complete_timeout: float = 3600.0,
        info: ModelInfo | None = None,
    ) -> None:
        self.scope = scope
        self.info = info
        self.poll = poll or PollPolicy()
        self.files = FileTransfer(scope, chunk_timeout=chunk_timeout, complete_timeout=complete_timeout)
        self.tasks = TaskRunner(scope)
        self.items = ListItems(scope)

    def __repr__(self) -> str:
        return f"AnaplanModel(workspace_id={self.workspace_id!r}, model_id={self.model_id!r})"

    @property
    def workspace_id(self) -> str:
        return self.scope.workspace_id

    @property
    def model_id(self) -> str:
        return self.scope.model_id

    @property
    def _where(self) -> str:
        name = f"{self.info.name!r} " if self.info else ""
        return f"model {name}({self.model_id})"

    # ---------------------------------------------------------------- discovery

    async def _objects(self, collection: str, key: str, model: type[Obj], *, model_form: bool = False) -> list[Obj]:
        path = self.scope.model_path(collection) if model_form else self.scope.path(collection)
        items = await self.scope.session.collect(path, key, what=f"listing {collection} of {self._where}")
        return [model.model_validate(item) for item in items]

    async def lists(self) -> list[ListInfo]:
        return await self._objects("lists", "lists", ListInfo)

    async def modules(self) -> list[ModuleInfo]:
        return await self._objects("modules", "modules", ModuleInfo, model_form=True)

    async def imports(self) -> list[ImportInfo]:
        return await self._objects("imports", "imports", ImportInfo)

    async def exports(self) -> list[ExportInfo]:
        return await self._objects("exports", "exports", ExportInfo)

    async def processes(self) -> list[ProcessInfo]:
        return await self._objects("processes", "processes", ProcessInfo)

    async def actions(self) -> list[ActionInfo]:
        return await self._objects("actions", "actions", ActionInfo)

    async def list_files(self) -> list[FileInfo]:
        return await self._objects("files", "files", FileInfo)

    async def _find(self, kind: str, wanted: str, listing: Callable[[], Awaitable[list[Obj]]]) -> Obj:
        return resolve(kind, wanted, await listing(), id_pattern=OBJECT_ID, where=self._where)

    async def find_list(self, name_or_id: str) -> ListInfo:
        return await self._find("list", name_or_id, self.lists)

    async def find_module(self, name_or_id: str) -> ModuleInfo:
        return await self._find("module", name_or_id, self.modules)

    async def find_import(self, name_or_id: str) -> ImportInfo:
        return await self._find("import", name_or_id, self.imports)

    async def find_export(self, name_or_id: str) -> ExportInfo:
        return await self._find("export", name_or_id, self.exports)

    async def find_process(self, name_or_id: str) -> ProcessInfo:
        return await self._find("process", name_or_id, self.processes)

    async def find_action(self, name_or_id: str) -> ActionInfo:
        return await self._find("action", name_or_id, self.actions)

    async def find_file(self, name_or_id: str) -> FileInfo:
        return await self._find("file", name_or_id, self.list_files)

    async def status(self) -> ModelStatus:
        """The model's current activity (``requestStatus``): busy when a task holds it."""
        body = await self.scope.session.json(
            "GET", self.scope.model_path("status"), what=f"reading the status of {self._where}", idempotent=True
        )
        return ModelStatus.model_validate(body.get("requestStatus") or {})

    # ---------------------------------------------------------------- files

    async def upload_file(
        self,
        file_id: str,
        data: Source,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        compress: bool = True,
        concurrency: int = 4,
        compress_level: int = 1,
    ) -> UploadResult:
        """Chunked, gzipped, parallel upload (see :meth:`FileTransfer.upload`)."""
        return await self.files.upload(
            file_id,
            data,
            chunk_size=chunk_size,
            compress=compress,
            concurrency=concurrency,
            compress_level=compress_level,
        )

    def download_file(self, file_id: str) -> AsyncIterator[bytes]:
        """A file's content chunk by chunk (an export's output has the export's id)."""
        return self.files.download(file_id)

    # ---------------------------------------------------------------- tasks

    async def run_import(
        self, import_id: str, mapping_parameters: MappingParameters | None = None, *, poll: PollPolicy | None = None
    ) -> TaskResult:
        """Run an import to the end; :class:`TaskFailedError` (with rejections) when it fails."""
        return await self.tasks.run(
            import_id, kind="imports", mapping_parameters=mapping_parameters, poll=poll or self.poll
        )

    async def run_export(self, export_id: str, *, poll: PollPolicy | None = None) -> TaskResult:
        """Run an export; then read its output with ``download_file(export_id)``."""
        return await self.tasks.run(export_id, kind="exports", poll=poll or self.poll)

    async def run_process(
        self, process_id: str, mapping_parameters: MappingParameters | None = None, *, poll: PollPolicy | None = None
    ) -> TaskResult:
        """Run a process; nested results carry their own rejections."""
        return await self.tasks.run(
            process_id, kind="processes", mapping_parameters=mapping_parameters, poll=poll or self.poll
        )

    async def run_action(self, action_id: str, *, poll: PollPolicy | None = None) -> TaskResult:
        """Run an "other" action (e.g. delete by selection)."""
        return await self.tasks.run(action_id, kind="actions", poll=poll or self.poll)

    async def cancel(self, task: TaskHandle, *, wait: bool = False) -> Task:
        return await self.tasks.cancel(task, wait=wait, poll=self.poll)

    # ---------------------------------------------------------------- transactional lists

    def list_items(self, list_id: str, *, include_all: bool = False) -> AsyncIterator[ListItem]:
        return self.items.read(list_id, include_all=include_all)

    async def add_list_items(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        return await self.items.add(list_id, items, batch_size=batch_size)

    async def update_list_items(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        return await self.items.update(list_id, items, batch_size=batch_size)

    async def delete_list_items(self, list_id: str, items: Items, *, batch_size: int = MAX_BATCH) -> ListWriteResult:
        return await self.items.delete(list_id, items, batch_size=batch_size)


class AnaplanClient:
    """Async client of the Integration API v2. Use as ``async with``; closing logs the token out."""

    def __init__(
        self,
        auth: AnaplanAuth,
        *,
        api_url: str = DEFAULT_API_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        rate_limit: float = 10.0,
        burst: int | None = 20,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        page_size: int = MAX_PAGE_SIZE,
        poll: PollPolicy | None = None,
        chunk_timeout: float = 300.0,
        complete_timeout: float = 3600.0,
    ) -> None:
        self.session = ApiSession(
            auth,
            api_url=api_url,
            transport=transport,
            retry=retry,
            rate_limit=rate_limit,
            burst=burst,
            timeout=timeout,
            page_size=page_size,
        )
        self.poll = poll
        self.chunk_timeout = chunk_timeout
        self.complete_timeout = complete_timeout

    def __repr__(self) -> str:
        return f"AnaplanClient(api_url={self.session.api_url!r}, auth={self.session.auth!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.session.aclose()

    async def me(self) -> dict[str, Any]:
        """``GET /users/me``: a cheap check that the credentials work."""
        body = await self.session.json("GET", "/users/me", what="reading the current user", idempotent=True)
        user = body.get("user")
        return user if isinstance(user, dict) else {}

    async def workspaces(self) -> list[Workspace]:
        items = await self.session.collect("/workspaces", "workspaces", what="listing workspaces")
        return [Workspace.model_validate(item) for item in items]

    async def models(self, workspace_id: str | None = None) -> list[ModelInfo]:
        """Models visible to the user, in one workspace (by id) or everywhere."""
        path = f"/workspaces/{workspace_id}/models" if workspace_id else "/models"
        items = await self.session.collect(path, "models", what="listing models")
        return [ModelInfo.model_validate(item) for item in items]

    async def find_workspace(self, name_or_id: str) -> Workspace:
        return resolve("workspace", name_or_id, await self.workspaces(), id_pattern=WORKSPACE_ID, where="the tenant")

    async def find_model(self, name_or_id: str, *, workspace: str | None = None) -> ModelInfo:
        """A model by name or id, within ``workspace`` (name or id) when given."""
        if workspace is None:
            return resolve("model", name_or_id, await self.models(), id_pattern=MODEL_ID, where="the tenant")
        ws = await self.find_workspace(workspace)
        return resolve(
            "model", name_or_id, await self.models(ws.id), id_pattern=MODEL_ID, where=f"workspace {ws.name!r} ({ws.id})"
        )

    async def open_model(self, workspace: str, model: str) -> AnaplanModel:
        """Resolve workspace and model (names or ids) and return the model facade."""
        ws = await self.find_workspace(workspace)
        info = resolve(
            "model", model, await self.models(ws.id), id_pattern=MODEL_ID, where=f"workspace {ws.name!r} ({ws.id})"
        )
        return self._model(ws.id, info.id, info)

    def model(self, workspace_id: str, model_id: str) -> AnaplanModel:
        """The facade for known ids (e.g. cached in the SyncConnection status), without a lookup."""
        if not WORKSPACE_ID.match(workspace_id):
            raise InvalidRequestError(
                f"{workspace_id!r} is not a workspace id (32 lowercase hex characters)",
                hint="use open_model() to resolve names",
            )
        if not MODEL_ID.match(model_id):
            raise InvalidRequestError(
                f"{model_id!r} is not a model id (32 uppercase hex characters)",
                hint="use open_model() to resolve names",
            )
        return self._model(workspace_id, model_id, None)

    def _model(self, workspace_id: str, model_id: str, info: ModelInfo | None) -> AnaplanModel:
        return AnaplanModel(
            ModelScope(self.session, workspace_id, model_id),
            poll=self.poll,
            chunk_timeout=self.chunk_timeout,
            complete_timeout=self.complete_timeout,
            info=info,
        )
