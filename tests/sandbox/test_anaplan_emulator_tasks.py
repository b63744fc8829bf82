"""Anaplan emulator: imports, dumps, exports, processes, the per-model queue, cancel, busy model, faults."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io

import anaplan_helpers
import httpx
import pytest
from anaplan_helpers import model_path, run_task, start_task, upload, wait_state, wait_task

from ml_connector.sandbox.anaplan import ModelBuilder
from ml_connector.sandbox.server import AnaplanHandle

GL_ACTUALS = (
    b"Account,Cost Center,Period,Amount,Postings\n"
    b"6000,CC100,2024-01,100.50,3\n"
    b"6000,CC999,Jan 24,7,1\n"
    b'"6010",CC101,Feb 24,"1,250.25",4\n'
    b"6020,CC100,2024-13,1,1\n"
    b"6030,CC102,Mar 24,abc,1\n"
)
EXPECTED_DUMP = (
    "_Status_,Account,Cost Center,Period,Amount,Postings,_Line_,_Error_1_\n"
    "E,6000,CC999,Jan 24,7,1,3,Item not located in Cost Centers list: CC999\n"
    "E,6020,CC100,2024-13,1,1,5,Item not located in Time list: 2024-13\n"
    "E,6030,CC102,Mar 24,abc,1,6,Amount: Invalid number: abc\n"
)

# the fixtures live in anaplan_helpers (shared with other emulator tests, no conftest of our own)
anaplan = anaplan_helpers.anaplan
api = anaplan_helpers.api
clock = anaplan_helpers.clock


async def cells(api: httpx.AsyncClient, a: AnaplanHandle, module: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = (
        await api.get(f"/_sandbox/anaplan/models/{a.model}/modules/{module}/cells")
    ).json()["rows"]
    return rows


async def members(api: httpx.AsyncClient, a: AnaplanHandle, lst: str) -> list[dict[str, object]]:
    items: list[dict[str, object]] = (await api.get(f"/_sandbox/anaplan/models/{a.model}/lists/{lst}/items")).json()[
        "items"
    ]
    return items


async def test_module_import_with_gzip_chunks_and_failure_dump(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    d = anaplan.seeded
    imp = d.import_id("Load GL Actuals")
    await upload(api, anaplan, d.file_id("gl_actuals.csv"), GL_ACTUALS, chunk=11)  # chunks cut rows anywhere
    task_id, task = await run_task(api, anaplan, "imports", imp)
    assert task["taskState"] == "COMPLETE"
    assert task["currentStep"] == "Complete."
    result = task["result"]
    assert result["successful"] is True
    assert result["failureDumpAvailable"] is True
    assert result["objectId"] == str(imp)
    [detail] = result["details"]
    values = dict(zip(detail["values"][::2], detail["values"][1::2], strict=True))
    assert values["successRowCount"] == "2"
    assert values["ignoredCount"] == "3"
    assert values["totalRowCount"] == "5"

    dump = await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id}/dump"))
    assert dump.status_code == 200
    assert dump.text == EXPECTED_DUMP
    chunks = (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id}/dump/chunks"))).json()["chunks"]
    assert chunks == [{"id": "0", "name": "Chunk 0"}]
    assert (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id}/dump/chunks/0"))).text == EXPECTED_DUMP

    loaded = await cells(api, anaplan, "GL Actuals")
    assert loaded == [
        {"GL Accounts": "6000", "Cost Centers": "CC100", "Time": "Jan 24", "Amount": 100.5, "Postings": 3.0},
        {"GL Accounts": "6010", "Cost Centers": "CC101", "Time": "Feb 24", "Amount": 1250.25, "Postings": 4.0},
    ]
    # the same rows again: cells are replaced, never added; a clean run removes the old dump
    task_id2, _ = await run_task(api, anaplan, "imports", imp)
    assert await cells(api, anaplan, "GL Actuals") == loaded
    assert (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id}/dump"))).status_code == 404
    assert (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id2}/dump"))).status_code == 200
    await upload(
        api, anaplan, d.file_id("gl_actuals.csv"), GL_ACTUALS.splitlines(keepends=True)[0] + b"6000,CC100,Jan 24,5,1\n"
    )
    task_id3, clean = await run_task(api, anaplan, "imports", imp)
    assert clean["result"]["failureDumpAvailable"] is False
    assert (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id2}/dump"))).status_code == 404
    assert (await api.get(model_path(anaplan, f"/imports/{imp}/tasks/{task_id3}/dump"))).status_code == 404


async def test_large_dump_comes_in_chunks(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    anaplan.emulator.config.dump_chunk_size = 200
    d = anaplan.seeded
    rows = b"".join(f"6000,NOPE{i},Jan 24,1,1\n".encode() for i in range(40))
    await upload(api, anaplan, d.file_id("gl_actuals.csv"), b"Account,Cost Center,Period,Amount,Postings\n" + rows)
    imp = d.import_id("Load GL Actuals")
    task_id, _ = await run_task(api, anaplan, "imports", imp)
    base = model_path(anaplan, f"/imports/{imp}/tasks/{task_id}/dump")
    whole = (await api.get(base)).content
    chunk_list = (await api.get(base + "/chunks")).json()["chunks"]
    assert len(chunk_list) > 5
    pieces = [(await api.get(f"{base}/chunks/{c['id']}")).content for c in chunk_list]
    assert all(len(p) <= 200 and p.endswith(b"\n") for p in pieces)
    assert b"".join(pieces) == whole


async def test_list_imports_create_update_and_reject(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    d = anaplan.seeded
    await upload(
        api,
        anaplan,
        d.file_id("gl_accounts.csv"),
        b"Code,Name,Type\n6000,Travel,Expense\n7777,New Account,Revenue\n,,\n",
    )
    _, task = await run_task(api, anaplan, "imports", d.import_id("Load GL Accounts"))
    detail = task["result"]["details"][0]
    assert detail["type"] == "hierarchyRowsProcessed"
    values = dict(zip(detail["values"][::2], detail["values"][1::2], strict=True))
    assert (values["successCreateCount"], values["successUpdateCount"], values["totalRowCount"]) == ("1", "1", "3")
    accounts = {m["code"]: m for m in await members(api, anaplan, "GL Accounts")}
    assert accounts["6000"]["name"] == "Travel"
    assert accounts["7777"]["properties"] == {"Type": "Revenue"}

    invoices = (
        b"Code,Supplier,Invoice Number,Invoice Date,Period,Account,Cost Center,Currency,Amount\n"
        b"INV-1,S1000,A-1,2024-01-15,2024-01,6000,CC100,USD,100.00\n"
        b"INV-2,S4242,A-2,2024-01-16,2024-01,6000,CC100,USD,5\n"
        b"INV-3,S1001,A-3,2024-01-17,2024-01,6000,CC100,USD,n/a\n"
    )
    await upload(api, anaplan, d.file_id("supplier_invoices.csv"), invoices)
    task_id, task = await run_task(api, anaplan, "imports", d.import_id("Load Supplier Invoices"))
    assert task["result"]["successful"] is True
    assert task["result"]["failureDumpAvailable"] is True
    dump = (
        await api.get(model_path(anaplan, f"/imports/{d.import_id('Load Supplier Invoices')}/tasks/{task_id}/dump"))
    ).text
    rows = list(csv.reader(io.StringIO(dump)))
    assert rows[1][-1] == "Item not located in Suppliers list: S4242"
    assert rows[2][-1] == "Invalid number: n/a"
    [inv] = await members(api, anaplan, "Supplier Invoices")
    assert inv["code"] == "INV-1"
    assert inv["name"] == "#1"
    assert inv["properties"]["Supplier"] == "Supplier 1000"


async def test_whole_import_failures(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    d = anaplan.seeded
    imp = d.import_id("Load Cost Centers")
    _, missing = await run_task(api, anaplan, "imports", imp)
    assert missing["result"]["successful"] is False
    assert missing["result"]["failureDumpAvailable"] is False
    assert missing["currentStep"] == "Failed."
    assert "cost_centers.csv" in missing["result"]["details"][0]["localMessageText"]

    await upload(api, anaplan, d.file_id("cost_centers.csv"), b"Code,Label,Plant\nCC1,x,P\n")
    _, wrong = await run_task(api, anaplan, "imports", imp)
    assert wrong["result"]["successful"] is False
    assert "Name" in wrong["result"]["details"][0]["localMessageText"]

    fid = d.file_id("cost_centers.csv")
    await api.post(model_path(anaplan, f"/files/{fid}"), json={"chunkCount": 2})
    await api.put(
        model_path(anaplan, f"/files/{fid}/chunks/0"),
        content=b"Code,Name,Plant\n",
        headers={"Content-Type": "application/octet-stream"},
    )
    _, partial = await run_task(api, anaplan, "imports", imp)
    assert partial["result"]["successful"] is False
    assert "incomplete" in partial["result"]["details"][0]["localMessageText"]


async def test_second_task_queues_behind_the_first_and_busy_model(
    anaplan: AnaplanHandle, api: httpx.AsyncClient
) -> None:
    d = anaplan.seeded
    await upload(api, anaplan, d.file_id("gl_accounts.csv"), b"Code,Name,Type\n8000,Queued,Expense\n")
    await upload(api, anaplan, d.file_id("cost_centers.csv"), b"Code,Name,Plant\nCC800,Queued,P8\n")
    anaplan.emulator.engine.pause()
    first = await start_task(api, anaplan, "imports", d.import_id("Load GL Accounts"))
    running = await wait_state(api, anaplan, "imports", d.import_id("Load GL Accounts"), first, "IN_PROGRESS")
    assert 0.0 <= running["progress"] < 1.0
    assert "result" not in running
    second = await start_task(api, anaplan, "imports", d.import_id("Load Cost Centers"))
    third = await start_task(api, anaplan, "exports", d.export_id("Approved Budget"))
    await asyncio.sleep(0.2)
    queued = (await api.get(model_path(anaplan, f"/imports/{d.import_id('Load Cost Centers')}/tasks/{second}"))).json()
    assert queued["task"]["taskState"] == "NOT_STARTED"
    assert "result" not in queued["task"]
    queued_export = (
        await api.get(model_path(anaplan, f"/exports/{d.export_id('Approved Budget')}/tasks/{third}"))
    ).json()
    assert queued_export["task"]["taskState"] == "NOT_STARTED"

    status = (await api.get(f"/2/0/models/{anaplan.model}/status")).json()["requestStatus"]
    assert status["taskId"] == first
    assert status["currentStep"] != "Open"
    model = (await api.get(f"/2/0/models/{anaplan.model}", params={"modelDetails": "true"})).json()["model"]
    assert model["modelTransactionRunning"] is True
    lists = {i["name"]: i["id"] for i in (await api.get(f"/2/0/models/{anaplan.model}/lists")).json()["lists"]}
    busy = await api.post(
        f"/2/0/models/{anaplan.model}/lists/{lists['Suppliers']}/items",
        params={"action": "add"},
        json={"items": [{"name": "x"}]},
    )
    assert busy.status_code == 409
    assert busy.json()["status"]["code"] == 409
    summaries = (await api.get(model_path(anaplan, f"/imports/{d.import_id('Load GL Accounts')}/tasks"))).json()[
        "tasks"
    ]
    assert [t["taskId"] for t in summaries] == [first]

    anaplan.emulator.engine.resume()
    done_first = await wait_task(api, anaplan, "imports", d.import_id("Load GL Accounts"), first)
    done_second = await wait_task(api, anaplan, "imports", d.import_id("Load Cost Centers"), second)
    done_third = await wait_task(api, anaplan, "exports", d.export_id("Approved Budget"), third)
    assert done_first["result"]["successful"]
    assert done_second["result"]["successful"]
    assert done_third["result"]["successful"]
    assert (await api.get(f"/2/0/models/{anaplan.model}/status")).json()["requestStatus"]["taskId"] is None


async def test_cancel_rolls_back(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    d = anaplan.seeded
    imp = d.import_id("Load GL Accounts")
    before = await members(api, anaplan, "GL Accounts")
    await upload(api, anaplan, d.file_id("gl_accounts.csv"), b"Code,Name,Type\n8100,Cancelled,Expense\n")
    anaplan.emulator.engine.pause()
    first = await start_task(api, anaplan, "imports", imp)
    await wait_state(api, anaplan, "imports", imp, first, "IN_PROGRESS")
    waiting = await start_task(api, anaplan, "imports", imp)
    cancel_waiting = (await api.delete(model_path(anaplan, f"/imports/{imp}/tasks/{waiting}"))).json()["task"]
    assert cancel_waiting["taskState"] == "CANCELLED"
    cancelling = (await api.delete(model_path(anaplan, f"/imports/{imp}/tasks/{first}"))).json()["task"]
    assert cancelling["taskState"] == "CANCELLING"
    final = await wait_task(api, anaplan, "imports", imp, first)
    assert final["taskState"] == "CANCELLED"
    assert "result" not in final
    anaplan.emulator.engine.resume()
    assert await members(api, anaplan, "GL Accounts") == before

    # a process cancelled after its first actions applied is rolled back as a whole
    await upload(api, anaplan, d.file_id("cost_centers.csv"), b"Code,Name,Plant\nCC900,Rolled Back,P1\n")
    await upload(
        api,
        anaplan,
        d.file_id("gl_actuals.csv"),
        b"Account,Cost Center,Period,Amount,Postings\n8100,CC900,Jan 24,1,1\n",
    )
    anaplan.emulator.engine.slow(d.import_id("Load GL Actuals"), 30)
    proc = d.process_id("Refresh Actuals")
    task_id = await start_task(api, anaplan, "processes", proc)
    for _ in range(500):
        if any(m["code"] == "CC900" for m in await members(api, anaplan, "Cost Centers")):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the process never applied its first actions")
    await api.delete(model_path(anaplan, f"/processes/{proc}/tasks/{task_id}"))
    final = await wait_task(api, anaplan, "processes", proc, task_id)
    assert final["taskState"] == "CANCELLED"
    assert not any(m["code"] == "CC900" for m in await members(api, anaplan, "Cost Centers"))
    assert await members(api, anaplan, "GL Accounts") == before
    assert await cells(api, anaplan, "GL Actuals") == []


async def test_export_download(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    anaplan.emulator.config.export_chunk_size = 4096
    d = anaplan.seeded
    exp = d.export_id("Approved Budget")
    _, task = await run_task(api, anaplan, "exports", exp)
    assert task["result"]["successful"] is True
    files = {f["id"]: f for f in (await api.get(model_path(anaplan, "/files"))).json()["files"]}
    meta = files[str(exp)]
    assert meta["chunkCount"] > 1
    assert set(meta) == {"id", "name", "chunkCount", "firstDataRow", "headerRow"}
    chunks = (await api.get(model_path(anaplan, f"/files/{exp}/chunks"))).json()["chunks"]
    data = b"".join([(await api.get(model_path(anaplan, f"/files/{exp}/chunks/{c['id']}"))).content for c in chunks])
    assert data == (await api.get(model_path(anaplan, f"/files/{exp}"))).content
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    budget = await cells(api, anaplan, "Budget")
    approved = [r for r in budget if r.get("Approved") is True]
    assert len(rows) == len(approved) > 0
    assert {r["Version"] for r in rows} == {"Budget"}
    first = rows[0]
    match = next(
        c
        for c in approved
        if (c["GL Accounts"], c["Cost Centers"], c["Time"]) == (first["Account"], first["Cost Center"], first["Period"])
    )
    assert float(first["Amount"]) == match["Amount"]


async def test_process_nested_results_and_dumps(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    d = anaplan.seeded
    await upload(api, anaplan, d.file_id("gl_accounts.csv"), b"Code,Name,Type\n9100,Fresh,Expense\n")
    await upload(
        api,
        anaplan,
        d.file_id("cost_centers.csv"),
        gzip.decompress(gzip.compress(b"Code,Name,Plant\nCC910,Fresh CC,P9\n")),
    )
    await upload(
        api,
        anaplan,
        d.file_id("gl_actuals.csv"),
        b"Account,Cost Center,Period,Amount,Postings\n9100,CC910,Jan 25,10,1\n9100,CC404,Jan 25,1,1\n",
    )
    proc = d.process_id("Refresh Actuals")
    task_id, task = await run_task(api, anaplan, "processes", proc)
    result = task["result"]
    assert result["objectId"] == str(proc)
    assert result["successful"] is True
    assert result["failureDumpAvailable"] is True
    nested = result["nestedResults"]
    assert [n["objectId"] for n in nested] == [
        str(d.import_id(n)) for n in ("Load GL Accounts", "Load Cost Centers", "Load GL Actuals")
    ]
    assert [n["failureDumpAvailable"] for n in nested] == [False, False, True]
    gl = d.import_id("Load GL Actuals")
    dump = (await api.get(model_path(anaplan, f"/processes/{proc}/tasks/{task_id}/dumps/{gl}"))).text
    assert "Item not located in Cost Centers list: CC404" in dump
    chunk = (await api.get(model_path(anaplan, f"/processes/{proc}/tasks/{task_id}/dumps/{gl}/chunks/0"))).text
    assert chunk == dump
    assert (
        await api.get(model_path(anaplan, f"/processes/{proc}/tasks/{task_id}/dumps/{d.import_id('Load GL Accounts')}"))
    ).status_code == 404
    assert {
        "GL Accounts": "9100",
        "Cost Centers": "CC910",
        "Time": "Jan 25",
        "Amount": 10.0,
        "Postings": 1.0,
    } in await cells(api, anaplan, "GL Actuals")


async def test_mapping_parameters_on_a_prompted_dimension(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    state = anaplan.emulator.state
    b = ModelBuilder(state, workspace="Finance", name="Scenario Model", users=[anaplan.seeded.user])
    b.list("Regions")
    b.versions(("Actual", "Forecast"))
    b.time_months((2025, 1), (2025, 12))
    b.module("Sales", ["Regions", "Time", "Versions"], [("Units", "NUMBER")])
    imp = b.module_import(
        "Load Sales",
        "sales.csv",
        "Sales",
        {"Region": "dimension:Regions", "Month": "dimension:Time", "Units": "lineitem:Units"},
        fixed={"Versions": None},
    )
    b.members("Regions", [("N", "North"), ("S", "South")])
    model = b.build()
    prefix = f"/2/0/workspaces/{model.workspace.id}/models/{model.id}"
    await api.post(f"{prefix}/files/{imp.file_id}", json={"chunkCount": 1})
    await api.put(
        f"{prefix}/files/{imp.file_id}/chunks/0",
        content=b"Region,Month,Units\nNorth,2025-02,5\n",
        headers={"Content-Type": "application/octet-stream"},
    )

    async def run(params: list[dict[str, str]] | None) -> dict[str, object]:
        body: dict[str, object] = {"localeName": "en_US"}
        if params is not None:
            body["mappingParameters"] = params
        task_id = (await api.post(f"{prefix}/imports/{imp.id}/tasks", json=body)).json()["task"]["taskId"]
        for _ in range(500):
            task: dict[str, object] = (await api.get(f"{prefix}/imports/{imp.id}/tasks/{task_id}")).json()["task"]
            if task["taskState"] == "COMPLETE":
                return task
            await asyncio.sleep(0.01)
        raise AssertionError("task did not complete")

    def message(task: dict[str, object]) -> str:
        result = task["result"]
        assert isinstance(result, dict)
        assert result["successful"] is False
        return str(result["details"][0]["localMessageText"])

    assert "mapping parameter for dimension Versions is required" in message(await run(None))
    assert "Unknown dimension in mappingParameters: Colour" in message(
        await run([{"entityType": "Colour", "entityName": "Red"}])
    )
    assert "Item not located in Versions list: Budget" in message(
        await run([{"entityType": "Versions", "entityName": "Budget"}])
    )
    ok = await run([{"entityType": "Version", "entityName": "Forecast"}])
    assert ok["result"]["successful"] is True  # type: ignore[index]
    rows = (await api.get(f"/_sandbox/anaplan/models/{model.id}/modules/Sales/cells")).json()["rows"]
    assert rows == [{"Regions": "N", "Time": "Feb 25", "Versions": "Forecast", "Units": 5.0}]
    assert (await api.post(f"{prefix}/imports/{imp.id}/tasks", json={})).status_code == 400
    assert (await api.post(f"{prefix}/imports/112999999999/tasks", json={"localeName": "en_US"})).status_code == 404


async def test_fault_injection(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    injector = anaplan.injector
    injector.add(kind="status", status=429, retry_after=7, path="/files$", times=1)
    limited = await api.get(model_path(anaplan, "/files"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "7"
    assert (await api.get(model_path(anaplan, "/files"))).status_code == 200
    injector.add(kind="status", status=429, path="/imports$", times=1)
    bare = await api.get(model_path(anaplan, "/imports"))
    assert bare.status_code == 429
    assert "Retry-After" not in bare.headers
    injector.add(kind="status", status=503, path="/exports$", times=1)
    assert (await api.get(model_path(anaplan, "/exports"))).status_code == 503
    injector.add(kind="drop", path="/processes$", times=1)
    with pytest.raises(httpx.TransportError):
        await api.get(model_path(anaplan, "/processes"))
    assert (await api.get(model_path(anaplan, "/processes"))).status_code == 200
    # dropped after the handler ran: the chunk count was set although the client never heard back
    fid = anaplan.seeded.file_id("payments.csv")
    injector.add(kind="drop", when="after", path=f"/files/{fid}$", method="POST", times=1)
    with pytest.raises(httpx.TransportError):
        await api.post(model_path(anaplan, f"/files/{fid}"), json={"chunkCount": 3})
    chunks = (await api.get(model_path(anaplan, f"/files/{fid}/chunks"))).json()["chunks"]
    assert len(chunks) == 3
    # admin routes are never faulted; rules can also be added over HTTP
    injector.add(kind="status", status=500, path="")
    assert (await api.get("/_sandbox/anaplan/state")).status_code == 200
    assert (await api.get("/_sandbox/faults")).json()["rules"]
    injector.clear()


async def test_slow_complete(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    anaplan.emulator.config.complete_delay = 1.0
    fid = anaplan.seeded.file_id("payments.csv")
    await api.post(model_path(anaplan, f"/files/{fid}"), json={"chunkCount": -1})
    await api.put(
        model_path(anaplan, f"/files/{fid}/chunks/0"),
        content=b"x",
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(httpx.ReadTimeout):
        await api.post(model_path(anaplan, f"/files/{fid}/complete"), json={"id": str(fid)}, timeout=0.2)
    done = await api.post(model_path(anaplan, f"/files/{fid}/complete"), json={"id": str(fid)}, timeout=5)
    assert done.status_code == 200
