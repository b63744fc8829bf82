"""The Anaplan side as the pipeline sees it: one authenticated model, its objects found by name, files
uploaded from CSV chunks, tasks run to the end with their rejections, list members read and added.

One :class:`AnaplanTarget` per run (one token, kept alive by the auth). Every HTTP attempt is counted by
status (:attr:`AnaplanTarget.statuses`) for the run result's API error counts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from ml_connector.anaplan import (
    DEFAULT_API_URL,
    DEFAULT_AUTH_URL,
    DEFAULT_OAUTH_URL,
    AnaplanAuth,
    AnaplanClient,
    AnaplanModel,
    BasicAuth,
    CertificateAuth,
    ExportInfo,
    ImportInfo,
    ListInfo,
    ListWriteResult,
    ModelBusyError,
    OAuthAuth,
    TaskFailedError,
    TaskResult,
)
from ml_connector.anaplan.files import MAX_CHUNKS
from ml_connector.net.retry import RetryPolicy
from ml_connector.spec import AnaplanSpec, Discovered
from ml_connector.sync.credentials import AnaplanCredentials
from ml_connector.sync.csvfile import CsvChunk
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.mapping import Member
from ml_connector.sync.options import Tuning

T = TypeVar("T")
#: How long a transactional call waits for a busy model when the poll policy sets no timeout (seconds).
BUSY_PATIENCE = 3600.0


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts every attempt's HTTP status (None: no response) into ``counter``; below the retries."""

    def __init__(self, inner: httpx.AsyncBaseTransport, counter: Counter[int | None], *, owns: bool = True) -> None:
        self._inner = inner
        self.counter = counter
        self._owns = owns

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError:
            self.counter[None] += 1
            raise
        self.counter[response.status_code] += 1
        return response

    async def aclose(self) -> None:
        if self._owns:
            await self._inner.aclose()


def build_auth(
    credentials: AnaplanCredentials,
    spec: AnaplanSpec,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    retry: RetryPolicy | None = None,
) -> AnaplanAuth:
    """The ``httpx.Auth`` of the configured method (``spec.anaplan.auth.method``)."""
    common: dict[str, Any] = {"transport": transport}
    if retry is not None:
        common["retry"] = retry
    if credentials.method == "basic":
        assert credentials.username is not None
        assert credentials.password is not None
        return BasicAuth(
            credentials.username, credentials.password, auth_url=spec.auth_url or DEFAULT_AUTH_URL, **common
        )
    if credentials.method == "certificate":
        assert credentials.certificate is not None
        assert credentials.private_key is not None
        return CertificateAuth(
            credentials.certificate,
            credentials.private_key,
            key_password=credentials.key_password,
            auth_url=spec.auth_url or DEFAULT_AUTH_URL,
            **common,
        )
    assert credentials.client_id is not None
    assert credentials.refresh_token is not None
    return OAuthAuth(
        credentials.client_id,
        credentials.refresh_token,
        client_secret=credentials.client_secret,
        oauth_url=spec.oauth_url or DEFAULT_OAUTH_URL,
        **common,
    )


@dataclass(frozen=True)
class ImportTarget:
    """An import action and the data source file the pipeline uploads to."""

    import_id: str
    name: str
    file_id: str
    file_name: str


@dataclass(frozen=True)
class UploadStats:
    chunks: int
    raw_bytes: int
    sent_bytes: int


@dataclass
class ImportOutcome:
    """A finished import task: its result and the row rejections of its failure dump (``E`` rows only)."""

    result: TaskResult
    rejections: list[Any] = field(default_factory=list)
    warnings: list[Any] = field(default_factory=list)

    @property
    def failed_whole(self) -> bool:
        """The task failed as a whole (no row-level rejections to explain it): nothing was loaded."""
        return not self.result.successful and not self.rejections


class AnaplanTarget:
    """One model of one tenant, for one run; use as ``async with``."""

    def __init__(self, client: AnaplanClient, model: AnaplanModel, statuses: Counter[int | None]) -> None:
        self.client = client
        self.model = model
        self.statuses = statuses
        self.discovered = Discovered(workspace_id=model.workspace_id, model_id=model.model_id)
        self._imports: dict[str, ImportInfo] | None = None
        self._files: dict[str, str] | None = None
        self._lists: list[ListInfo] | None = None

    @classmethod
    async def open(cls, spec: AnaplanSpec, credentials: AnaplanCredentials, tuning: Tuning) -> AnaplanTarget:
        """Authenticate and resolve the workspace and model by name or id."""
        statuses: Counter[int | None] = Counter()
        shared = tuning.anaplan_transport
        owns = shared is None  # the auth service gets its own pool: the API pool closes before the logout
        api = CountingTransport(shared or httpx.AsyncHTTPTransport(), statuses, owns=owns)
        auth_transport = CountingTransport(shared or httpx.AsyncHTTPTransport(), statuses, owns=owns)
        auth = build_auth(credentials, spec, transport=auth_transport, retry=tuning.anaplan_retry)
        client = AnaplanClient(
            auth,
            api_url=spec.api_url or DEFAULT_API_URL,
            transport=api,
            retry=tuning.anaplan_retry,
            rate_limit=tuning.anaplan_rate_limit,
            poll=tuning.poll,
        )
        try:
            model = await client.open_model(spec.workspace, spec.model)
        except BaseException:
            await client.aclose()
            raise
        return cls(client, model, statuses)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> AnaplanTarget:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def model_id(self) -> str:
        return self.model.model_id

    def _note(self, kind: str, name: str, object_id: str) -> None:
        current: dict[str, str] = dict(getattr(self.discovered, kind))
        current[name] = object_id
        self.discovered = self.discovered.model_copy(update={kind: current})

    # ---------------------------------------------------------------- discovery

    async def find_import(self, name: str, *, file: str | None = None, flow: str = "") -> ImportTarget:
        """The import ``name`` and its data source file (``file`` overrides it by name or id)."""
        where = f"flow {flow}: " if flow else ""
        imp = await self.model.find_import(name)
        self._note("imports", imp.name, imp.id)
        if file is not None:
            info = await self.model.find_file(file)
            file_id, file_name = info.id, info.name
        else:
            if not imp.import_data_source_id:
                raise SyncConfigError(
                    f"{where}import action {imp.name!r} ({imp.id}) has no data source file; set the flow's file"
                )
            file_id = imp.import_data_source_id
            file_name = (await self._file_names()).get(file_id, file_id)
        self._note("files", file_name, file_id)
        return ImportTarget(imp.id, imp.name, file_id, file_name)

    async def _file_names(self) -> dict[str, str]:
        if self._files is None:
            self._files = {f.id: f.name for f in await self.model.list_files()}
        return self._files

    async def find_export(self, name: str) -> ExportInfo:
        export = await self.model.find_export(name)
        self._note("exports", export.name, export.id)
        return export

    async def find_list(self, name: str) -> ListInfo:
        found = await self.model.find_list(name)
        self._note("lists", found.name, found.id)
        return found

    async def list_members(self, list_id: str) -> list[Member]:
        """The list's members as codes (the name when a member has no code)."""

        async def read() -> list[Member]:
            return [Member(item.code or item.name, item.name) async for item in self.model.list_items(list_id)]

        return await self._when_idle(read)

    async def add_list_members(
        self, list_id: str, members: Sequence[Member], properties: Mapping[str, Mapping[str, str]] | None = None
    ) -> ListWriteResult:
        """Add members through the transactional API (``properties``: code -> property values)."""
        items = [
            {
                "code": m.code,
                "name": m.name or m.code,
                **({"properties": dict(properties[m.code])} if properties and m.code in properties else {}),
            }
            for m in members
        ]
        return await self._when_idle(lambda: self.model.add_list_items(list_id, items))

    async def _when_idle(self, call: Callable[[], Awaitable[T]]) -> T:
        """Transactional calls are refused (409) while a task holds the model, someone else's included: wait for
        the model as for a task (the poll policy's delays, up to its timeout, else :data:`BUSY_PATIENCE`) and try
        again. Nobody's run fails because the model is busy; a 409 is a refusal, so nothing is applied twice."""
        poll = self.model.poll
        patience = poll.timeout if poll.timeout is not None else BUSY_PATIENCE
        delays = poll.delays()
        waited = 0.0
        while True:
            try:
                return await call()
            except ModelBusyError:
                if waited >= patience:
                    raise
                delay = next(delays)
                await asyncio.sleep(delay)
                waited += delay

    # ---------------------------------------------------------------- files and tasks

    async def upload(self, file_id: str, chunks: AsyncIterable[CsvChunk], *, concurrency: int = 4) -> UploadStats:
        """Upload prepared (gzipped) chunks: announce an open-ended file, PUT chunks in parallel, complete."""
        files = self.model.files
        await files.set_chunk_count(file_id, -1)
        in_flight: set[asyncio.Task[int]] = set()
        count = raw = sent = 0

        async def put(chunk: CsvChunk) -> int:
            await files.put_chunk(file_id, chunk.index, chunk.data, gzipped=chunk.compressed)
            return len(chunk.data)

        try:
            async for chunk in chunks:
                while len(in_flight) >= concurrency:
                    done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    sent += sum(task.result() for task in done)
                if count >= MAX_CHUNKS:
                    raise SyncConfigError(f"file {file_id} needs more than {MAX_CHUNKS} chunks: raise the chunk size")
                in_flight.add(asyncio.create_task(put(chunk)))
                count += 1
                raw += chunk.raw_size
            if in_flight:
                done, in_flight = await asyncio.wait(in_flight)
                sent += sum(task.result() for task in done)
        except BaseException:
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)
            raise
        await files.complete(file_id)
        return UploadStats(count, raw, sent)

    async def run_import(self, import_id: str) -> ImportOutcome:
        """Run an import to the end; a failed task is returned (with its rejections), not raised."""
        try:
            result = await self.model.run_import(import_id)
        except TaskFailedError as exc:
            result = exc.result
        rejections = result.all_rejections()
        return ImportOutcome(
            result,
            [r for r in rejections if r.severity.upper() != "W"],
            [r for r in rejections if r.severity.upper() == "W"],
        )

    async def run_export(self, export_id: str) -> TaskResult:
        return await self.model.run_export(export_id)

    def download(self, file_id: str) -> AsyncIterator[bytes]:
        return self.model.download_file(file_id)
