"""The Anaplan client against the emulator over loopback HTTP: discovery, paging, uploads under faults,
tasks (queueing, failure dumps mapped to rows, processes, cancel), export download and list item batches."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest

from ml_connector.anaplan import (
    AnaplanClient,
    AnaplanModel,
    BasicAuth,
    ModelBusyError,
    NotFoundError,
    PollPolicy,
    RateLimitedError,
    TaskCancelledError,
    TaskFailedError,
    TaskHandle,
)
from ml_connector.net import RetryPolicy
from ml_connector.sandbox.anaplan import EmulatorConfig
from ml_connector.sandbox.anaplan.builder import add_members
from ml_connector.sandbox.anaplan.default_model import GL_ACTUALS_HEADERS
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sandbox.server import AnaplanHandle, start_anaplan

TINY = RetryPolicy(max_attempts=5, initial_wait=0.005, max_wait=0.02, total_budget=10.0)
POLL = PollPolicy(initial=0.01, multiplier=1.5, maximum=0.05, timeout=30, max_failures=5)
HEADER = (",".join(GL_ACTUALS_HEADERS) + "\n").encode()
ACCOUNTS = [f"{6000 + 10 * i}" for i in range(10)]
CENTERS = ["CC100", "CC101", "CC102"]


@pytest.fixture
async def anaplan() -> AsyncIterator[AnaplanHandle]:
    handle = await start_anaplan(config=EmulatorConfig(), scale=1)
    try:
        yield handle
    finally:
        await handle.server.stop()


def connect(a: AnaplanHandle, retry: RetryPolicy = TINY, **kwargs: object) -> AnaplanClient:
    auth = BasicAuth(a.user, a.password, auth_url=a.url, retry=TINY)
    return AnaplanClient(auth, api_url=f"{a.url}/2/0", retry=retry, rate_limit=0, poll=POLL, **kwargs)  # type: ignore[arg-type]


def gl_rows(count: int, bad: dict[int, str] | None = None) -> list[bytes]:
    """GL actual rows; ``bad`` maps a row index to an account code that does not exist."""
    bad = bad or {}
    return [
        f"{bad.get(i, ACCOUNTS[i % 10])},{CENTERS[i % 3]},2025-{1 + i % 12:02d},{i % 1000}.25,{i % 7}\n".encode()
        for i in range(count)
    ]


async def ids(model: AnaplanModel) -> tuple[str, str]:
    source = await model.find_file("gl_actuals.csv")
    load = await model.find_import("Load GL Actuals")
    assert load.import_data_source_id == source.id
    return source.id, load.id


# ------------------------------------------------------------------------- discovery and paging


async def test_discovery_by_name_and_id_with_paging_forced_by_a_small_server_page(anaplan: AnaplanHandle) -> None:
    anaplan.emulator.config.page_size = 2  # the server truncates every collection to 2 items a page
    async with connect(anaplan) as client:
        model = await client.open_model(anaplan.workspace, "fp&a actuals")
        imports = await model.imports()
        files = await model.list_files()
        assert len(imports) == len(anaplan.seeded.model.imports) > 2
        assert len(files) == len(anaplan.seeded.model.files) > 2
        by_id = await model.find_import(imports[-1].id)
        assert by_id.name == imports[-1].name
        assert (await model.find_export("Approved Budget")).id.startswith("116")
        assert (await model.find_process("Refresh Actuals")).id.startswith("118")
        assert (await model.find_list("GL Accounts")).id.startswith("101")
        assert (await model.find_module("GL Actuals")).id.startswith("102")
        with pytest.raises(NotFoundError) as caught:
            await model.find_import("Load Budget")
        assert "'Load GL Actuals'" in str(caught.value)


async def test_list_items_page_past_5000(anaplan: AnaplanHandle) -> None:
    lst = anaplan.seeded.model.list_by_key("Suppliers")
    assert lst is not None
    add_members(
        anaplan.seeded.model, lst, [(f"X{i:05d}", f"Extra supplier {i}", {"Currency": "EUR"}) for i in range(12_000)]
    )
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        supplier_list = await model.find_list("Suppliers")
        items = [item async for item in model.list_items(supplier_list.id, include_all=True)]
    assert len(items) == len(lst) == 12_005
    assert len({item.id for item in items}) == len(items)
    assert items[-1].properties == {"Currency": "EUR"}


# ------------------------------------------------------------------------- uploads and imports


async def test_upload_then_import_and_the_file_reads_back_identically(anaplan: AnaplanHandle) -> None:
    data = HEADER + b"".join(gl_rows(90_000))
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        upload = await model.upload_file(file_id, data, chunk_size=1_000_000)
        back = b"".join([chunk async for chunk in model.download_file(file_id)])
        result = await model.run_import(import_id)
    assert back == data
    assert upload.chunks == 3
    assert upload.sent_bytes < upload.raw_bytes / 4
    assert result.successful
    assert result.details[0].fields["successRowCount"] == "90000"


async def test_a_dropped_connection_during_a_chunk_put_is_retried(anaplan: AnaplanHandle) -> None:
    anaplan.injector.add(FaultRule(kind="drop", when="after", path=r"/chunks/1$", method="PUT", times=1))
    anaplan.injector.add(FaultRule(kind="drop", when="before", path=r"/chunks/2$", method="PUT", times=1))
    data = HEADER + b"".join(gl_rows(100_000))

    async def stream() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, len(data), 65_536):
            yield bytes(view[start : start + 65_536])

    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, stream(), chunk_size=1_000_000, concurrency=3)
        back = b"".join([chunk async for chunk in model.download_file(file_id)])
        result = await model.run_import(import_id)
    assert anaplan.injector.injected == {"drop:after": 1, "drop:before": 1}
    assert back == data
    assert result.successful
    assert result.details[0].fields["successRowCount"] == "100000"


@pytest.mark.parametrize("retry_after", [None, 0.01])
async def test_429_storms_with_and_without_retry_after_are_ridden_out(
    anaplan: AnaplanHandle, retry_after: float | None
) -> None:
    # Every other request of the upload, the task start and the polls is refused.
    anaplan.injector.add(FaultRule(status=429, retry_after=retry_after, path=r"/files/|/tasks", every=2))
    data = HEADER + b"".join(gl_rows(40_000))
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, data, chunk_size=1_000_000)
        result = await model.run_import(import_id)
    [rule] = anaplan.injector.describe()
    assert rule["fired"] == (rule["seen"] + 1) // 2 >= 4  # the chunk-count POST, chunk PUTs, task POST, polls
    assert result.successful


async def test_a_429_storm_longer_than_the_retry_budget_is_a_rate_limited_error(anaplan: AnaplanHandle) -> None:
    anaplan.injector.add(FaultRule(status=429, retry_after=0, path=r"/imports$"))
    async with connect(anaplan) as client:
        with pytest.raises(RateLimitedError, match="lower the client rate limit"):
            await client.model(anaplan.workspace, anaplan.model).imports()
    assert anaplan.injector.injected["status:429"] == TINY.max_attempts


async def test_5xx_bursts_on_gets_and_polls_are_absorbed(anaplan: AnaplanHandle) -> None:
    anaplan.injector.add(FaultRule(status=503, path=r"/files$", method="GET", times=3))
    # More 502s on the task status than the transport retries: the poll loop tolerates the failed poll.
    anaplan.injector.add(FaultRule(status=502, path=r"/tasks/[0-9A-F]{32}$", method="GET", times=7))
    data = HEADER + b"".join(gl_rows(1_000))
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, data)
        anaplan.emulator.engine.slow(int(import_id), 0.5)  # still running while the polls fail
        result = await model.run_import(import_id)
    assert anaplan.injector.injected == {"status:503": 3, "status:502": 7}
    assert result.successful


# ------------------------------------------------------------------------- tasks


async def test_failure_dump_maps_rejections_back_to_the_rows_sent(anaplan: AnaplanHandle) -> None:
    anaplan.emulator.config.dump_chunk_size = 256  # the dump comes in many small chunks
    bad = {17: "9999", 4_711: "8888", 29_999: "7777"}
    rows = gl_rows(30_000, bad)
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, HEADER + b"".join(rows))
        result = await model.run_import(import_id)
    assert result.successful
    assert result.failure_dump_available
    assert [r.row for r in result.rejections] == [i + 2 for i in sorted(bad)]  # line numbers, header is line 1
    for rejection in result.rejections:
        sent = rows[rejection.row - 2].decode().rstrip("\n").split(",")
        assert dict(zip(GL_ACTUALS_HEADERS, sent, strict=True)) == rejection.values
        assert rejection.column == "Account"
        assert rejection.message == f"Item not located in GL Accounts list: {rejection.values['Account']}"
    assert result.details[0].fields["invalidCount"] == "3"


async def test_an_import_that_fails_as_a_whole_raises_task_failed(anaplan: AnaplanHandle) -> None:
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, b"Account,Amount\n6000,1\n")
        with pytest.raises(TaskFailedError) as caught:
            await model.run_import(import_id)
    assert "import 'Load GL Actuals'" in str(caught.value)
    assert "headers do not match" in str(caught.value)
    assert caught.value.task is not None
    assert caught.value.task.task_state == "COMPLETE"
    assert caught.value.rejections == []


async def test_process_nested_results_carry_their_own_rejections(anaplan: AnaplanHandle) -> None:
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        accounts = b"Code,Name,Type\n" + b"".join(f"{a},Account {a},Expense\n".encode() for a in ACCOUNTS)
        centers = b"Code,Name,Plant\nCC100,A,P100\nCC101,B,P200\nCC102,C,P300\nCC103,D,NOPE\n"
        await model.upload_file((await model.find_file("gl_accounts.csv")).id, accounts)
        await model.upload_file((await model.find_file("cost_centers.csv")).id, centers)
        file_id, _ = await ids(model)
        await model.upload_file(file_id, HEADER + b"".join(gl_rows(500, {3: "1234"})))
        result = await model.run_process((await model.find_process("Refresh Actuals")).id)
    assert result.successful
    names = [n.object_name for n in result.nested_results]
    assert names == ["Load GL Accounts", "Load Cost Centers", "Load GL Actuals"]
    gl = result.nested_results[2]
    assert [(r.row, r.column, r.values["Account"]) for r in gl.rejections] == [(5, "Account", "1234")]
    assert [r.row for r in result.all_rejections()] == [5]


async def test_a_second_import_waits_behind_the_first_and_the_model_is_busy(anaplan: AnaplanHandle) -> None:
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, HEADER + b"".join(gl_rows(100)))
        anaplan.emulator.engine.pause()  # the first task holds the model until resumed
        first = await model.tasks.start(import_id)
        second = await model.tasks.start(import_id)
        while (await model.tasks.status(first)).task_state != "IN_PROGRESS":  # noqa: ASYNC110 - remote state
            await asyncio.sleep(0.01)
        assert (await model.tasks.status(second)).task_state == "NOT_STARTED"
        assert (await model.status()).busy
        accounts = await model.find_list("GL Accounts")
        with pytest.raises(ModelBusyError, match="another task holds the model"):
            await model.add_list_items(accounts.id, [{"name": "New", "code": "7000"}])
        waiting = asyncio.create_task(model.tasks.wait(second, POLL))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # NOT_STARTED is not terminal
        anaplan.emulator.engine.resume()
        done_second = await waiting
        done_first = await model.tasks.wait(first, POLL)
        listed = await model.tasks.tasks(import_id)
    assert done_first.task_state == done_second.task_state == "COMPLETE"
    assert done_first.result is not None
    assert done_first.result.successful
    assert {t.task_id for t in listed} == {first.task_id, second.task_id}


async def test_cancel_a_running_import(anaplan: AnaplanHandle) -> None:
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        file_id, import_id = await ids(model)
        await model.upload_file(file_id, HEADER + b"".join(gl_rows(100)))
        anaplan.emulator.engine.slow(int(import_id), 30.0)
        started: asyncio.Queue[TaskHandle] = asyncio.Queue()
        run = asyncio.create_task(model.tasks.run(import_id, poll=POLL, on_start=started.put_nowait))
        handle = await started.get()
        cancelled = await model.cancel(handle, wait=True)
        with pytest.raises(TaskCancelledError):
            await run
    assert cancelled.task_state == "CANCELLED"
    module = anaplan.seeded.model.module_by_key("GL Actuals")
    assert module is not None
    assert all(not cells for cells in module.cells.values())


async def test_export_runs_and_downloads_by_chunks(anaplan: AnaplanHandle) -> None:
    anaplan.emulator.config.export_chunk_size = 4096
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        export = await model.find_export("Approved Budget")
        result = await model.run_export(export.id)
        chunks = [chunk async for chunk in model.download_file(export.id)]
    rows = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert result.successful
    assert len(chunks) > 1
    assert rows[0] == ["Account", "Cost Center", "Period", "Version", "Amount"]
    assert len(rows) - 1 == int(result.details[0].fields["rowCount"]) > 0
    assert {r[3] for r in rows[1:]} == {"Budget"}


# ------------------------------------------------------------------------- transactional lists


async def test_list_item_batches_report_failures_by_input_index(anaplan: AnaplanHandle) -> None:
    items = [
        {"name": f"Account {7000 + i}", "code": f"{7000 + i}", "properties": {"Type": "Expense"}} for i in range(25)
    ]
    items[5]["code"] = "6000"  # already used by a seeded account
    items[21] = {"code": "7999"}  # a new item of a general list needs a name
    async with connect(anaplan) as client:
        model = client.model(anaplan.workspace, anaplan.model)
        accounts = await model.find_list("GL Accounts")
        added = await model.add_list_items(accounts.id, items, batch_size=10)
        updated = await model.update_list_items(
            accounts.id, [{"code": "7001", "properties": {"Type": "Revenue"}}, {"code": "nope"}], batch_size=1
        )
        deleted = await model.delete_list_items(accounts.id, [{"code": "7002"}, {"code": "7003"}])
        members = {item.code: item async for item in model.list_items(accounts.id, include_all=True)}
    assert added.added == 23
    assert [(f.request_index, f.failure_type) for f in added.failures] == [
        (5, "DUPLICATE_CODE"),
        (21, "INCOMPLETE_DATA"),
    ]
    assert updated.updated == 1
    assert [f.request_index for f in updated.failures] == [1]
    assert deleted.deleted == 2
    assert members["7001"].properties["Type"] == "Revenue"
    assert "7002" not in members
    assert "7024" in members
