"""Fidelity check: the independent ``anaplan-sdk`` client, unchanged, against the emulator.

The SDK hard-codes ``https://api.anaplan.com`` and ``https://auth.anaplan.com``; a transport passed
through its ``httpx_kwargs`` sends those requests to the emulator's base URL instead (auth and the
Integration API share it). Nothing else of the SDK is touched: its own models validate every answer.
"""

from __future__ import annotations

import base64
import csv
import io
import logging

import anaplan_helpers
import httpx
import httpx2
import pytest
from anaplan_helpers import login
from anaplan_sdk import AsyncClient, Client
from anaplan_sdk.exceptions import AnaplanActionError, InvalidIdentifierException

from ml_connector.sandbox.runtime import ThreadedServers
from ml_connector.sandbox.server import AnaplanHandle, start_anaplan

# the fixtures live in anaplan_helpers (shared with other emulator tests, no conftest of our own)
anaplan = anaplan_helpers.anaplan
clock = anaplan_helpers.clock


class ToEmulator(httpx2.AsyncHTTPTransport):
    """Rewrites every request's origin to the emulator's."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = httpx2.URL(base_url)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(scheme=self._base.scheme, host=self._base.host, port=self._base.port)
        return await super().handle_async_request(request)


@pytest.fixture
async def sdk(anaplan: AnaplanHandle) -> AsyncClient:
    # The SDK authenticates once in its constructor with a private client we cannot redirect; give it
    # a first token (and the credentials it re-authenticates with on 401, through the transport).
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, anaplan.user, anaplan.password)
    client = AsyncClient(
        workspace_id=anaplan.workspace,
        model_id=anaplan.model,
        user_email=anaplan.user,
        password=anaplan.password,
        token=token,
        status_poll_delay=0,
        upload_chunk_size=40,  # several chunks, cut in the middle of rows
        transport=ToEmulator(anaplan.url),
    )
    return client


async def test_sdk_discovery(sdk: AsyncClient, anaplan: AnaplanHandle) -> None:
    [ws] = await sdk.get_workspaces()
    assert ws.name == "Finance"
    assert ws.id == anaplan.workspace
    assert (await sdk.get_workspace()).id == anaplan.workspace
    models = await sdk.get_models()
    assert [m.name for m in models] == ["FP&A Actuals"]
    assert [m.name for m in await sdk.get_models(only_in_workspace=True, sort_by="name")] == ["FP&A Actuals"]
    model = await sdk.get_model()
    assert model.model_transaction_running is False
    imports = {i.name: i for i in await sdk.get_imports(sort_by="name")}
    assert imports["Load GL Actuals"].type == "MODULE_DATA"
    assert imports["Load GL Actuals"].file_id == anaplan.seeded.file_id("gl_actuals.csv")
    files = {f.name: f for f in await sdk.get_files()}
    assert files["gl_actuals.csv"].header_row == 1
    [export] = await sdk.get_exports()
    assert export.type == "TABULAR_MULTI_COLUMN"
    assert [p.name for p in await sdk.get_processes()] == ["Refresh Actuals"]
    assert [a.type for a in await sdk.get_actions()] == ["DELETE_BY_SELECTION"]

    tr = sdk.tr
    lists = {lst.name: lst.id for lst in await tr.get_lists()}
    meta = await tr.get_list_metadata(lists["Supplier Invoices"])
    assert meta.numbered_list is True
    modules = {m.name: m.id for m in await tr.get_modules()}
    assert set(modules) == {"GL Actuals", "Budget"}
    line_items = await tr.get_line_items()
    assert {li.name for li in line_items} == {"Amount", "Postings", "Approved"}
    assert {li.name for li in await tr.get_line_items(modules["Budget"])} == {"Amount", "Approved"}
    views = await tr.get_views()
    info = await tr.get_view_info(views[0].id)
    assert info.view_name in modules
    status = await tr.get_model_status()
    assert status.progress == -1.0
    assert (await tr.get_model_details()).name == "FP&A Actuals"
    dims = await tr.get_line_item_dimensions(line_items[0].id)
    assert [d.name for d in dims][:2] == ["GL Accounts", "Cost Centers"]
    found = await tr.lookup_dimension_items(20000000003, names=["Jan 24"])
    assert [d.name for d in found] == ["Jan 24"]
    period = await tr.get_current_period()
    assert period.calendar_type == "Calendar Months/Quarters/Years"
    calendar = await tr.get_model_calendar()
    assert calendar.calendar_type == "Calendar Months/Quarters/Years"


async def test_sdk_upload_import_and_read_list(sdk: AsyncClient, anaplan: AnaplanHandle) -> None:
    d = anaplan.seeded
    content = "Code,Name,Type\n" + "".join(f"{7000 + i},Imported {i},Expense\n" for i in range(25))
    task = await sdk.upload_and_import(d.file_id("gl_accounts.csv"), content, d.import_id("Load GL Accounts"))
    assert task.task_state == "COMPLETE"
    assert task.result.successful is True
    assert task.result.details[0].type == "hierarchyRowsProcessed"
    assert await sdk.get_file(d.file_id("gl_accounts.csv")) == content.encode()

    items = await sdk.tr.get_list_items(d.list_id("GL Accounts"))
    by_code = {i.code: i for i in items}
    assert by_code["7024"].name == "Imported 24"
    assert by_code["7024"].properties == {"Type": "Expense"}

    rows = ["Account,Cost Center,Period,Amount,Postings\n", "7000,CC100,2024-03,12.5,2\n", "7001,MISSING,2024-03,1,1\n"]
    await sdk.upload_file_stream(d.file_id("gl_actuals.csv"), iter(rows))
    warned = await sdk.run_action(d.import_id("Load GL Actuals"))
    assert warned.result.successful is True  # rows rejected into the dump are warnings, not a failure
    assert warned.result.failure_dump_available is True
    summaries = await sdk.get_task_summaries(d.import_id("Load GL Actuals"))
    assert [s.id for s in summaries] == [warned.id]

    with pytest.raises(AnaplanActionError):
        await sdk.run_action(d.import_id("Load Payments"))  # no file uploaded: the import fails


async def test_sdk_transactional_writes(sdk: AsyncClient, anaplan: AnaplanHandle) -> None:
    d = anaplan.seeded
    tr = sdk.tr
    suppliers = d.list_id("Suppliers")
    added = await tr.insert_list_items(
        suppliers, [{"code": "S9", "name": "Sdk Supplier", "properties": {"Currency": "CHF"}}]
    )
    assert (added.added, added.ignored, added.total) == (1, 0, 1)
    again = await tr.insert_list_items(suppliers, [{"code": "S9", "name": "Sdk Supplier"}])
    assert again.ignored == 1
    assert again.failures[0].reason == "DUPLICATE_CODE"
    updated = await tr.update_list_items(suppliers, [{"code": "S9", "properties": {"Currency": "EUR"}}])
    assert updated.updated == 1
    deleted = await tr.delete_list_items(suppliers, [{"code": "S9"}])
    assert deleted.deleted == 1

    gl = d.module_id("GL Actuals")
    changed = await tr.update_module_data(
        gl,
        [
            {
                "lineItemName": "Postings",
                "dimensions": [
                    {"dimensionName": "GL Accounts", "itemName": "6000"},
                    {"dimensionName": "Cost Centers", "itemName": "CC100"},
                    {"dimensionName": "Time", "itemName": "Jan 24"},
                ],
                "value": 9,
            }
        ],
    )
    assert changed == 1
    grid = await tr.get_view_data(gl)
    assert grid["rows"][0]["cells"] == ["", "9"]
    text = await tr.get_view_data(gl, data_format="text/csv;escaped=true")
    assert text.decode().splitlines()[1].endswith(",9")


async def test_sdk_export_and_process(sdk: AsyncClient, anaplan: AnaplanHandle) -> None:
    d = anaplan.seeded
    anaplan.emulator.config.export_chunk_size = 1024
    data = await sdk.export_and_download(d.export_id("Approved Budget"))
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert rows
    assert set(rows[0]) == {"Account", "Cost Center", "Period", "Version", "Amount"}
    streamed = b"".join([chunk async for chunk in sdk.get_file_stream(d.export_id("Approved Budget"), batch_size=3)])
    assert streamed == data

    await sdk.upload_file(d.file_id("gl_accounts.csv"), "Code,Name,Type\n6000,Account 6000,Expense\n")
    await sdk.upload_file(d.file_id("cost_centers.csv"), "Code,Name,Plant\nCC100,Cost Center 100,P100\n")
    await sdk.upload_file(
        d.file_id("gl_actuals.csv"), "Account,Cost Center,Period,Amount,Postings\n6000,CC100,Jun 24,3,1\n"
    )
    task = await sdk.run_action(d.process_id("Refresh Actuals"))
    assert task.result.successful is True
    assert len(task.result.nested_results) == 3


async def test_sdk_reauthenticates_after_expiry(sdk: AsyncClient, anaplan: AnaplanHandle) -> None:
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        assert (await http.post("/_sandbox/anaplan/tokens/expire")).status_code == 200
    assert (await sdk.get_model()).name == "FP&A Actuals"  # 401, then basic auth through the transport


async def test_sdk_file_guard_and_unknown_ids(sdk: AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="anaplan_sdk")
    with pytest.raises(InvalidIdentifierException):
        await sdk.upload_file(113999999999, "x")  # the emulator creates a new file id, as Anaplan does
    with pytest.raises(InvalidIdentifierException):
        await sdk.get_task_status(112999999998, "0" * 32)


class ToEmulatorSync(httpx2.HTTPTransport):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self._base = httpx2.URL(base_url)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(scheme=self._base.scheme, host=self._base.host, port=self._base.port)
        return super().handle_request(request)


def test_sync_sdk_client_against_a_threaded_emulator() -> None:
    servers = ThreadedServers()
    try:
        handle = servers.call(lambda: start_anaplan(scale=1))
        with httpx.Client(base_url=handle.url) as http:
            basic = base64.b64encode(f"{handle.user}:{handle.password}".encode()).decode()
            token = http.post("/token/authenticate", headers={"Authorization": f"Basic {basic}"}).json()
        client = Client(
            workspace_id=handle.workspace,
            model_id=handle.model,
            user_email=handle.user,
            password=handle.password,
            token=token["tokenInfo"]["tokenValue"],
            status_poll_delay=0,
            transport=ToEmulatorSync(handle.url),
        )
        d = handle.seeded
        assert [m.name for m in client.get_models()] == ["FP&A Actuals"]
        task = client.upload_and_import(
            d.file_id("cost_centers.csv"), "Code,Name,Plant\nCC777,Sync,P7\n", d.import_id("Load Cost Centers")
        )
        assert task.result.successful is True
        codes = {i.code for i in client.tr.get_list_items(d.list_id("Cost Centers"))}
        assert "CC777" in codes
        servers.call(handle.server.stop)
    finally:
        servers.close()
