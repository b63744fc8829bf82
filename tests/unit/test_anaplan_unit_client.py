"""AnaplanClient over httpx.MockTransport: envelopes, paging, discovery, errors, uploads, tasks, list batches."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ml_connector.anaplan import (
    AnaplanClient,
    AnaplanModel,
    AuthenticationError,
    BasicAuth,
    InvalidRequestError,
    MappingParameter,
    ModelBusyError,
    NotFoundError,
    PollPolicy,
    RateLimitedError,
    ServerError,
    TaskCancelledError,
    TaskFailedError,
    TaskTimeoutError,
    UploadError,
)
from ml_connector.anaplan.files import cut_points
from ml_connector.net import RetryPolicy

WS = "8a81b09d5e8c6f27015ece3402487d33"
MODEL = "FC12345678901234567890123456789A"
FAST = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=0.002, total_budget=5.0)
POLL = PollPolicy(initial=0.001, multiplier=1.0, maximum=0.001, max_failures=3)

Handler = Callable[[httpx.Request, re.Match[str]], Awaitable[httpx.Response] | httpx.Response]


def ok(**body: Any) -> httpx.Response:
    return httpx.Response(200, json={"meta": {}, "status": {"code": 200, "message": "Success"}, **body})


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"status": {"code": status, "message": message}, "path": "/x"})


def page(request: httpx.Request, key: str, items: list[dict[str, Any]], cap: int = 5000) -> httpx.Response:
    limit = min(int(request.url.params.get("limit", 5000)), cap)
    offset = int(request.url.params.get("offset", 0))
    chunk = items[offset : offset + limit]
    paging = {"currentPageSize": len(chunk), "offset": offset, "totalSize": len(items)}
    body: dict[str, Any] = {"meta": {"paging": paging}, "status": {"code": 200, "message": "Success"}}
    if chunk:
        body[key] = chunk
    return httpx.Response(200, json=body)


class FakeAnaplan:
    """Routes (method, path regex) to handlers; counts calls; hands out tokens for basic auth."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.calls: list[tuple[str, str]] = []
        self.route(
            "POST",
            r"/token/authenticate",
            lambda r, m: httpx.Response(201, json={"tokenInfo": {"tokenValue": "tok", "expiresAt": 4_102_444_800_000}}),
        )
        self.route("POST", r"/token/logout", lambda r, m: httpx.Response(204))

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.insert(0, (method, re.compile(pattern + "$"), handler))

    def count(self, method: str, pattern: str) -> int:
        rx = re.compile(pattern + "$")
        return sum(1 for m, p in self.calls if m == method and rx.search(p))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append((request.method, path))
        for method, pattern, handler in self.routes:
            match = pattern.search(path)
            if match and method == request.method:
                answer = handler(request, match)
                return await answer if not isinstance(answer, httpx.Response) else answer
        return error(404, "Not Found")


def client_for(fake: FakeAnaplan, **kwargs: Any) -> AnaplanClient:
    transport = httpx.MockTransport(fake)
    auth = BasicAuth("user@example.com", "secret-pw", auth_url="http://auth.test", transport=transport)
    return AnaplanClient(
        auth, api_url="http://api.test/2/0", transport=transport, retry=FAST, rate_limit=0, poll=POLL, **kwargs
    )


def model_of(client: AnaplanClient) -> AnaplanModel:
    return client.model(WS, MODEL)


# ------------------------------------------------------------------------- discovery and paging


async def test_paging_reads_past_5000_items_even_when_the_server_truncates_pages() -> None:
    fake = FakeAnaplan()
    files = [{"id": f"113{i:09d}", "name": f"file {i}.csv", "chunkCount": 0} for i in range(12_001)]
    fake.route("GET", r"/models/\w+/files", lambda r, m: page(r, "files", files, cap=3000))
    async with client_for(fake) as client:
        found = await model_of(client).list_files()
    assert [f.id for f in found] == [f["id"] for f in files]
    assert fake.count("GET", r"/files") == 5  # 3000-item pages although 5000 were asked for


async def test_empty_collection_without_the_key_is_an_empty_list() -> None:
    fake = FakeAnaplan()
    fake.route("GET", r"/models/\w+/imports", lambda r, m: ok())
    async with client_for(fake) as client:
        assert await model_of(client).imports() == []


async def test_find_by_name_or_id_and_helpful_not_found() -> None:
    fake = FakeAnaplan()
    workspaces = [{"id": WS, "name": "Finance", "active": True}, {"id": "b" * 32, "name": "Sales", "active": True}]
    models = [{"id": MODEL, "name": "FP&A", "activeState": "UNLOCKED", "currentWorkspaceId": WS}]
    imports = [
        {"id": "112000000001", "name": "GL Actuals from gl.csv", "importDataSourceId": "113000000001"},
        {"id": "112000000002", "name": "Dup", "importDataSourceId": "113000000002"},
        {"id": "112000000003", "name": "Dup", "importDataSourceId": "113000000003"},
    ]
    fake.route("GET", r"/2/0/workspaces", lambda r, m: page(r, "workspaces", workspaces))
    fake.route("GET", rf"/workspaces/{WS}/models", lambda r, m: page(r, "models", models))
    fake.route("GET", r"/models/\w+/imports", lambda r, m: page(r, "imports", imports))
    async with client_for(fake) as client:
        assert (await client.find_workspace("finance")).id == WS  # case-insensitive name fallback
        model = await client.open_model("Finance", "FP&A")
        assert model.model_id == MODEL
        assert (await client.find_model(MODEL, workspace=WS)).name == "FP&A"
        assert (await model.find_import("112000000001")).import_data_source_id == "113000000001"
        assert (await model.find_import("GL Actuals from gl.csv")).id == "112000000001"
        with pytest.raises(NotFoundError) as caught:
            await model.find_import("GL Budget")
        assert "'GL Actuals from gl.csv' (112000000001)" in str(caught.value)
        with pytest.raises(InvalidRequestError, match="112000000002, 112000000003"):
            await model.find_import("Dup")
        with pytest.raises(NotFoundError, match="case-sensitive"):
            await client.find_model(MODEL.lower(), workspace=WS)
        with pytest.raises(InvalidRequestError, match="uppercase"):
            client.model(WS, MODEL.lower())


# ------------------------------------------------------------------------- errors and retries


@pytest.mark.parametrize(
    ("status", "error_type", "text"),
    [
        (400, InvalidRequestError, "Bad sort order"),
        (404, NotFoundError, "NO ACCESS"),
        (409, ModelBusyError, "another task holds the model"),
        (429, RateLimitedError, "lower the client rate limit"),
        (503, ServerError, "retry later"),
    ],
)
async def test_http_failures_become_typed_errors_that_say_what_to_do(
    status: int, error_type: type[Exception], text: str
) -> None:
    fake = FakeAnaplan()
    fake.route("GET", r"/models/\w+/lists", lambda r, m: error(status, "Bad sort order format"))
    async with client_for(fake) as client:
        with pytest.raises(error_type) as caught:
            await model_of(client).lists()
    assert text in str(caught.value)
    assert f"/workspaces/{WS}/models/{MODEL}/lists" in str(caught.value)
    assert fake.count("GET", r"/lists") == (3 if status in (429, 503) else 1)


async def test_task_post_is_not_repeated_on_5xx_but_is_on_429() -> None:
    fake = FakeAnaplan()
    answers = [error(503, "Service Unavailable")]
    fake.route(
        "POST",
        r"/imports/112000000001/tasks",
        lambda r, m: answers.pop(0) if answers else ok(task={"taskId": "A" * 32, "taskState": "NOT_STARTED"}),
    )
    async with client_for(fake) as client:
        with pytest.raises(ServerError):
            await model_of(client).tasks.start("112000000001")
        assert fake.count("POST", r"/tasks") == 1
        answers.extend([error(429, "Too Many Requests"), error(429, "Too Many Requests")])
        handle = await model_of(client).tasks.start("112000000001")
    assert handle.task_id == "A" * 32
    assert fake.count("POST", r"/tasks") == 4


async def test_persistent_401_is_an_authentication_error_after_one_reauthentication() -> None:
    fake = FakeAnaplan()
    fake.route("GET", r"/users/me", lambda r, m: error(401, "Unauthorized"))
    async with client_for(fake) as client:
        with pytest.raises(AuthenticationError, match="even after re-authenticating"):
            await client.me()
    assert fake.count("POST", r"/token/authenticate") == 2
    assert fake.count("GET", r"/users/me") == 2
    assert fake.count("POST", r"/token/logout") == 1


# ------------------------------------------------------------------------- uploads


class ChunkSink:
    def __init__(self, fake: FakeAnaplan, file_id: str = "113000000001", delay: float = 0.0) -> None:
        self.announced: list[int] = []
        self.chunks: dict[int, bytes] = {}
        self.types: set[str] = set()
        self.completed = 0
        self.active = self.peak = 0
        self.delay = delay
        self.hold_first = False
        self.overlapped = asyncio.Event()
        base = rf"/models/{MODEL}/files/(\d+)"
        fake.route("POST", base, self.announce)
        fake.route("PUT", base + r"/chunks/(\d+)", self.put)
        fake.route("POST", base + "/complete", self.complete)
        self.file_id = file_id

    def announce(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.announced.append(json.loads(request.content)["chunkCount"])
        file_id = match.group(1) if match.group(1) == self.file_id else "113000000999"
        return ok(file={"id": file_id, "name": "gl.csv", "chunkCount": 0})

    async def put(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        index = int(match.group(2))
        self.active += 1
        self.peak = max(self.peak, self.active)
        if self.active >= 2:
            self.overlapped.set()
        if index == 0 and self.hold_first:
            await asyncio.wait_for(self.overlapped.wait(), 5.0)  # only returns if another PUT runs meanwhile
        await asyncio.sleep(self.delay)
        self.active -= 1
        content_type = request.headers["Content-Type"]
        self.types.add(content_type)
        body = request.content
        self.chunks[index] = gzip.decompress(body) if content_type == "application/x-gzip" else body
        return httpx.Response(204)

    def complete(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.completed += 1
        return ok(file={"id": match.group(1), "name": "gl.csv", "chunkCount": len(self.chunks)})

    def content(self) -> bytes:
        return b"".join(self.chunks[i] for i in sorted(self.chunks))


def csv_rows(count: int) -> list[bytes]:
    return [f"2024-01,{4000 + i % 97},CC-{i % 13:03d},{i * 1.5:.2f},EUR\n".encode() for i in range(count)]


async def test_streamed_upload_announces_minus_one_gzips_chunks_in_parallel_and_completes() -> None:
    fake = FakeAnaplan()
    sink = ChunkSink(fake, delay=0.001)
    sink.hold_first = True
    rows = csv_rows(150_000)  # ~4.6 MB

    async def source() -> Any:
        for start in range(0, len(rows), 1000):
            yield b"".join(rows[start : start + 1000])

    async with client_for(fake) as client:
        result = await model_of(client).upload_file("113000000001", source(), chunk_size=1_000_000, concurrency=2)
    data = b"".join(rows)
    assert sink.announced == [-1]
    assert sink.completed == 1
    assert sink.content() == data
    assert all(chunk.endswith(b"\n") for chunk in sink.chunks.values())
    assert sink.types == {"application/x-gzip"}
    assert sink.overlapped.is_set()
    assert sink.peak == 2
    assert result.chunks == len(sink.chunks) == len(cut_points(data, 1_000_000, final=True)) > 4
    assert result.raw_bytes == len(data)
    assert result.sent_bytes < len(data) / 3


async def test_bytes_upload_announces_its_chunk_count_and_needs_no_complete() -> None:
    fake = FakeAnaplan()
    sink = ChunkSink(fake)
    data = b"".join(csv_rows(80_000))
    async with client_for(fake) as client:
        result = await model_of(client).upload_file("113000000001", data, chunk_size=1_000_000, compress=False)
    assert sink.announced == [result.chunks] == [3]
    assert sink.completed == 0
    assert sink.types == {"application/octet-stream"}
    assert sink.content() == data


async def test_sent_chunks_are_freed_at_once_not_left_to_the_cyclic_gc() -> None:
    """httpx responses and tenacity retry state are reference cycles; a chunk body must not hang on to them."""
    fake = FakeAnaplan()
    ChunkSink(fake)
    data = b"".join(csv_rows(150_000))
    gc.collect()
    gc.disable()
    try:
        async with client_for(fake) as client:
            await model_of(client).upload_file("113000000001", data, chunk_size=1_000_000, concurrency=2)
            lingering = [o for o in gc.get_objects() if isinstance(o, httpx.Request) and "/chunks/" in o.url.path]
    finally:
        gc.enable()
    assert lingering == []


async def test_upload_to_a_wrong_file_id_is_refused() -> None:
    fake = FakeAnaplan()
    ChunkSink(fake)
    async with client_for(fake) as client:
        with pytest.raises(UploadError, match="Anaplan created a new file 113000000999"):
            await model_of(client).upload_file("113000000555", b"a,b\n")


async def test_a_failing_chunk_stops_the_upload_with_an_upload_error() -> None:
    fake = FakeAnaplan()
    sink = ChunkSink(fake)
    fake.route("PUT", r"/chunks/2", lambda r, m: error(500, "Internal Server Error"))
    async with client_for(fake) as client:
        with pytest.raises(UploadError, match="uploading chunk 2 of file 113000000001 failed"):
            await model_of(client).upload_file("113000000001", iter(csv_rows(200_000)), chunk_size=1_000_000)
    assert sink.completed == 0
    assert fake.count("PUT", r"/chunks/2") == 1  # 500 is not a retried status


async def test_chunk_size_limits_are_enforced() -> None:
    fake = FakeAnaplan()
    async with client_for(fake) as client:
        with pytest.raises(ValueError, match="1-50 MB"):
            await model_of(client).upload_file("113000000001", b"x", chunk_size=100)
        with pytest.raises(ValueError, match="1-50 MB"):
            await model_of(client).upload_file("113000000001", b"x", chunk_size=60_000_000)


# ------------------------------------------------------------------------- tasks


class TaskScript:
    """Answers a task's status polls from a list of task objects; records the start body."""

    def __init__(self, fake: FakeAnaplan, kind: str, action_id: str, states: list[dict[str, Any] | int]) -> None:
        self.states = states
        self.started: list[dict[str, Any]] = []
        self.cancelled = 0
        base = rf"/models/{MODEL}/{kind}/{action_id}/tasks"
        fake.route("POST", base, self.start)
        fake.route("GET", base + r"/(\w+)", self.status)
        fake.route("DELETE", base + r"/(\w+)", self.cancel)

    def start(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.started.append(json.loads(request.content))
        return ok(task={"taskId": "T" * 32, "taskState": "NOT_STARTED", "creationTime": 1})

    def status(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, int):
            return error(state, "transient")
        return ok(task={"taskId": match.group(1), **state})

    def cancel(self, request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        self.cancelled += 1
        self.states[:] = [{"taskState": "CANCELLING"}, {"taskState": "CANCELLED"}]
        return ok(task={"taskId": match.group(1), "taskState": "CANCELLING"})


def complete(successful: bool, dump: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "taskState": "COMPLETE",
        "progress": 1.0,
        "currentStep": "Complete." if successful else "Failed.",
        "result": {"successful": successful, "failureDumpAvailable": dump, "objectId": "112000000001", **extra},
    }


DUMP = (
    '"_Status_","Account","Period","Amount","_Line_","_Error_1_"\n'
    '"E","9999","2024-01","1.00","4","Item not located in Account list: 9999"\n'
)


def serve_dump(fake: FakeAnaplan, path: str, text: str) -> None:
    half = len(text) // 2
    parts = [text[:half], text[half:]]
    fake.route("GET", path + "/chunks", lambda r, m: ok(chunks=[{"id": "0", "name": "Chunk 0"}, {"id": "1"}]))
    fake.route("GET", path + r"/chunks/(\d)", lambda r, m: httpx.Response(200, text=parts[int(m.group(1))]))


async def test_import_polls_through_queued_and_running_states_and_sends_mapping_parameters() -> None:
    fake = FakeAnaplan()
    states: list[dict[str, Any] | int] = [
        {"taskState": "NOT_STARTED"},
        {"taskState": "NOT_STARTED"},
        503,
        {"taskState": "IN_PROGRESS", "progress": 0.5},
        complete(True, details=[{"type": "hierarchyRowsProcessed", "values": ["successRowCount", "3"]}]),
    ]
    script = TaskScript(fake, "imports", "112000000001", states)
    async with client_for(fake) as client:
        result = await model_of(client).run_import(
            "112000000001", [MappingParameter("Version", "Actual"), MappingParameter("Currency", "EUR", "112000000001")]
        )
    assert result.successful
    assert result.details[0].fields == {"successRowCount": "3"}
    assert list(script.started[0]) == ["localeName", "mappingParameters"]
    assert script.started[0]["mappingParameters"] == [
        {"entityType": "Version", "entityName": "Actual"},
        {"entityType": "Currency", "entityName": "EUR", "importId": "112000000001"},
    ]


async def test_failed_import_raises_with_rejections_from_the_dump() -> None:
    fake = FakeAnaplan()
    TaskScript(fake, "imports", "112000000001", [complete(False, dump=True, objectName="GL Actuals")])
    serve_dump(fake, rf"/imports/112000000001/tasks/{'T' * 32}/dump", DUMP)
    async with client_for(fake) as client:
        with pytest.raises(TaskFailedError) as caught:
            await model_of(client).run_import("112000000001")
    failure = caught.value
    assert [(r.row, r.column, r.values["Account"]) for r in failure.rejections] == [(4, "Account", "9999")]
    assert failure.result.rejections == failure.rejections
    assert "import 'GL Actuals' (112000000001) failed" in str(failure)
    assert "1 row(s) rejected, first at row 4, column 'Account'" in str(failure)


async def test_successful_import_with_a_dump_returns_its_warnings() -> None:
    fake = FakeAnaplan()
    TaskScript(fake, "imports", "112000000001", [complete(True, dump=True)])
    serve_dump(fake, rf"/imports/112000000001/tasks/{'T' * 32}/dump", DUMP)
    async with client_for(fake) as client:
        result = await model_of(client).run_import("112000000001")
    assert result.successful
    assert [r.row for r in result.rejections] == [4]


async def test_unreadable_dump_does_not_hide_the_failure() -> None:
    fake = FakeAnaplan()
    TaskScript(fake, "imports", "112000000001", [complete(False, dump=True)])
    async with client_for(fake) as client:
        with pytest.raises(TaskFailedError, match="the failure dump could not be read") as caught:
            await model_of(client).run_import("112000000001")
    assert caught.value.result.dump_error


async def test_process_nested_results_get_their_own_dumps() -> None:
    fake = FakeAnaplan()
    nested = [
        {"objectId": "116000000001", "successful": True, "failureDumpAvailable": False},
        {
            "objectId": "112000000002",
            "successful": False,
            "failureDumpAvailable": True,
            "details": [{"localMessageText": "1 row failed"}],
        },
    ]
    TaskScript(fake, "processes", "118000000001", [complete(False, objectId="118000000001", nestedResults=nested)])
    serve_dump(fake, rf"/processes/118000000001/tasks/{'T' * 32}/dumps/112000000002", DUMP)
    async with client_for(fake) as client:
        with pytest.raises(TaskFailedError) as caught:
            await model_of(client).run_process("118000000001")
    result = caught.value.result
    assert result.nested_results[0].rejections == []
    assert [r.row for r in result.nested_results[1].rejections] == [4]
    assert [r.row for r in caught.value.rejections] == [4]
    assert "112000000002: 1 row failed" in str(caught.value)


async def test_cancelling_is_not_terminal_and_cancelled_raises() -> None:
    fake = FakeAnaplan()
    script = TaskScript(fake, "imports", "112000000001", [{"taskState": "IN_PROGRESS"}])
    async with client_for(fake) as client:
        model = model_of(client)
        handle = await model.tasks.start("112000000001")
        task = await model.cancel(handle, wait=True)
        assert task.task_state == "CANCELLED"
        with pytest.raises(TaskCancelledError):
            await model.tasks.finish(handle, task)
    assert script.cancelled == 1


async def test_poll_gives_up_after_too_many_failures_or_the_timeout() -> None:
    fake = FakeAnaplan()
    TaskScript(fake, "imports", "112000000001", [503])
    async with client_for(fake) as client:
        with pytest.raises(ServerError):
            await model_of(client).run_import("112000000001")
    fake = FakeAnaplan()
    TaskScript(fake, "imports", "112000000001", [{"taskState": "IN_PROGRESS"}])
    async with client_for(fake) as client:
        with pytest.raises(TaskTimeoutError, match="last state IN_PROGRESS"):
            await model_of(client).run_import("112000000001", poll=PollPolicy(initial=0.01, maximum=0.01, timeout=0.03))


async def test_aborting_the_wait_cancels_the_anaplan_task() -> None:
    fake = FakeAnaplan()
    script = TaskScript(fake, "imports", "112000000001", [{"taskState": "IN_PROGRESS"}])
    polled = asyncio.Event()
    status = script.status

    def status_and_signal(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        polled.set()
        return status(request, match)

    script.status = status_and_signal  # type: ignore[method-assign]
    fake.route("GET", rf"/models/{MODEL}/imports/112000000001/tasks/(\w+)", status_and_signal)
    async with client_for(fake) as client:
        waiter = asyncio.create_task(model_of(client).run_import("112000000001"))
        await polled.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert script.cancelled == 1


# ------------------------------------------------------------------------- transactional lists


async def test_list_writes_are_batched_and_failures_map_to_input_indexes() -> None:
    fake = FakeAnaplan()
    batches: list[int] = []

    def add(request: httpx.Request, match: re.Match[str]) -> httpx.Response:
        assert request.url.params["action"] == "add"
        items = json.loads(request.content)["items"]
        batches.append(len(items))
        failures = [
            {"requestIndex": i, "failureType": "INCOMPLETE_DATA", "failureMessageDetails": "duplicate code"}
            for i, item in enumerate(items)
            if item["code"].endswith("7")
        ]
        body: dict[str, Any] = {"added": len(items) - len(failures), "ignored": len(failures), "total": len(items)}
        if failures:
            body["failures"] = failures
        return ok(**body)

    fake.route("POST", r"/lists/101000000001/items", add)
    fake.route(
        "GET",
        r"/lists/101000000001/items",
        lambda r, m: page(
            r,
            "listItems",
            [
                {"id": "201000000001", "name": "Cash", "code": "1000", "listId": "101000000001"},
            ],
        ),
    )
    items = [{"name": f"Account {i}", "code": f"A{i}"} for i in range(25)]
    async with client_for(fake) as client:
        model = model_of(client)
        result = await model.add_list_items("101000000001", items, batch_size=10)
        members = [item async for item in model.list_items("101000000001")]
    assert batches == [10, 10, 5]
    assert result.added == 23
    assert result.ignored == 2
    assert [f.request_index for f in result.failures] == [7, 17]
    assert [items[f.request_index]["code"] for f in result.failures] == ["A7", "A17"]
    assert [m.code for m in members] == ["1000"]
