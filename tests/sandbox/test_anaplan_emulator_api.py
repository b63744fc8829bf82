"""Anaplan emulator: discovery, envelopes, paging, files and chunks, transactional calls (raw HTTP)."""

from __future__ import annotations

import gzip
import re

import anaplan_helpers
import httpx
from anaplan_helpers import login, model_path, upload

from ml_connector.sandbox.server import AnaplanHandle

# the fixtures live in anaplan_helpers (shared with other emulator tests, no conftest of our own)
anaplan = anaplan_helpers.anaplan
api = anaplan_helpers.api
clock = anaplan_helpers.clock

ID12 = re.compile(r"^\d{12}$")


async def test_discovery_ids_and_envelopes(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    me = (await api.get("/2/0/users/me")).json()
    assert me["status"] == {"code": 200, "message": "Success"}
    assert re.fullmatch(r"[0-9a-f]{32}", me["user"]["id"])
    ws = (await api.get("/2/0/workspaces", params={"tenantDetails": "true"})).json()
    assert ws["meta"]["schema"] == "https://api.anaplan.com/2/0/objects/workspace"
    assert ws["meta"]["paging"] == {"currentPageSize": 1, "offset": 0, "totalSize": 1}
    [workspace] = ws["workspaces"]
    assert workspace["name"] == "Finance"
    assert re.fullmatch(r"[0-9a-f]{32}", workspace["id"])
    assert {"sizeAllowance", "currentSize"} <= set(workspace)
    models = (await api.get(f"/2/0/workspaces/{anaplan.workspace}/models", params={"modelDetails": "true"})).json()
    [model] = models["models"]
    assert model["name"] == "FP&A Actuals"
    assert re.fullmatch(r"[0-9A-F]{32}", model["id"])
    assert model["currentWorkspaceId"] == anaplan.workspace
    one = (await api.get(f"/2/0/models/{anaplan.model}", params={"modelDetails": "true"})).json()["model"]
    assert one["modelTransactionRunning"] is False
    status = (await api.get(f"/2/0/models/{anaplan.model}/status")).json()
    assert set(status) == {"requestStatus"}
    assert status["requestStatus"]["progress"] == -1.0

    not_allowed = await api.get(model_path(anaplan))
    assert not_allowed.status_code == 405
    assert not_allowed.json()["status"] == {"code": 405, "message": "Method Not Allowed"}

    for kind, key in [
        ("lists", "lists"),
        ("modules", "modules"),
        ("imports", "imports"),
        ("exports", "exports"),
        ("processes", "processes"),
        ("actions", "actions"),
        ("files", "files"),
    ]:
        for path in (model_path(anaplan, f"/{kind}"), f"/2/0/models/{anaplan.model}/{kind}"):
            body = (await api.get(path)).json()
            assert body[key], (kind, body)
            assert all(ID12.match(item["id"]) for item in body[key])
            assert body["meta"]["schema"].startswith(f"https://api.anaplan.com/2/0/models/{anaplan.model}/objects/")
    lists = {i["name"]: i["id"] for i in (await api.get(model_path(anaplan, "/lists"))).json()["lists"]}
    assert set(lists) == {"GL Accounts", "Cost Centers", "Suppliers", "Supplier Invoices", "Payments"}
    assert all(v.startswith("101") for v in lists.values())
    meta = (await api.get(model_path(anaplan, f"/lists/{lists['Supplier Invoices']}"))).json()["metadata"]
    assert meta["numberedList"] is True
    assert [p["name"] for p in meta["properties"]][:2] == ["Supplier", "Invoice Number"]

    imports = {i["name"]: i for i in (await api.get(model_path(anaplan, "/imports"))).json()["imports"]}
    gl = imports["Load GL Actuals"]
    assert gl["importType"] == "MODULE_DATA"
    assert gl["importDataSourceId"].startswith("113")
    im = (await api.get(model_path(anaplan, f"/imports/{gl['id']}"))).json()["importMetadata"]
    assert im["source"]["headerNames"] == ["Account", "Cost Center", "Period", "Amount", "Postings"]
    assert im["source"]["headerRow"] == 1
    assert im["source"]["firstDataRow"] == 2
    inv = (await api.get(model_path(anaplan, f"/imports/{imports['Load Supplier Invoices']['id']}"))).json()
    assert inv["importMetadata"]["source"]["headerNames"] == [
        "Code", "Supplier", "Invoice Number", "Invoice Date", "Period", "Account", "Cost Center", "Currency", "Amount",
    ]  # fmt: skip
    [export] = (await api.get(model_path(anaplan, "/exports"))).json()["exports"]
    assert export["name"] == "Approved Budget"
    assert export["exportType"] == "TABULAR_MULTI_COLUMN"
    em = (await api.get(model_path(anaplan, f"/exports/{export['id']}"))).json()["exportMetadata"]
    assert em["headerNames"] == ["Account", "Cost Center", "Period", "Version", "Amount"]
    [proc] = (await api.get(model_path(anaplan, "/processes"))).json()["processes"]
    pm = (await api.get(f"/2/0/models/{anaplan.model}/processes/{proc['id']}")).json()["processMetadata"]
    assert [a["name"] for a in pm["actions"]] == ["Load GL Accounts", "Load Cost Centers", "Load GL Actuals"]
    versions = (await api.get(f"/2/0/models/{anaplan.model}/versions")).json()["versionMetadata"]
    assert [v["name"] for v in versions] == ["Actual", "Budget", "Forecast"]
    modules = {m["name"]: m["id"] for m in (await api.get(f"/2/0/models/{anaplan.model}/modules")).json()["modules"]}
    items = (
        await api.get(
            f"/2/0/models/{anaplan.model}/modules/{modules['Budget']}/lineItems", params={"includeAll": "true"}
        )
    ).json()["items"]
    assert [i["name"] for i in items] == ["Amount", "Approved"]
    assert items[1]["format"] == "BOOLEAN"
    view = (await api.get(f"/2/0/models/{anaplan.model}/views/{modules['GL Actuals']}")).json()
    assert [d["name"] for d in view["rows"]] == ["GL Accounts", "Cost Centers", "Time"]
    time_items = (await api.get(f"/2/0/models/{anaplan.model}/dimensions/20000000003/items")).json()["items"]
    assert len(time_items) == 36
    assert time_items[0]["name"] == "Jan 24"


async def test_no_access_user_sees_404(anaplan: AnaplanHandle) -> None:
    outsider = anaplan.seeded.outsider
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, outsider.email, outsider.password)
        http.headers["Authorization"] = f"AnaplanAuthToken {token}"
        assert (await http.get("/2/0/users/me")).status_code == 200
        models = (await http.get("/2/0/models")).json()
        assert "models" not in models  # empty collections omit their key
        assert models["meta"]["paging"]["totalSize"] == 0
        for path in (
            f"/2/0/models/{anaplan.model}",
            model_path(anaplan, "/imports"),
            f"/2/0/models/{anaplan.model}/lists",
        ):
            res = await http.get(path)
            assert res.status_code == 404
            assert res.json()["status"] == {"code": 404, "message": "Not Found"}
            assert res.json()["path"] == path


async def test_paging_and_sort(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    files = model_path(anaplan, "/files")
    total = len((await api.get(files)).json()["files"])
    assert total >= 7
    page = (await api.get(files, params={"limit": 3, "offset": 3})).json()
    assert page["meta"]["paging"]["currentPageSize"] == 3
    assert page["meta"]["paging"]["totalSize"] == total
    assert "offset=6" in page["meta"]["paging"]["next"]
    assert "offset=0" in page["meta"]["paging"]["previous"]
    nxt = (await api.get(page["meta"]["paging"]["next"])).json()
    assert nxt["meta"]["paging"]["offset"] == 6
    capped = (await api.get(files, params={"limit": 99999})).json()
    assert capped["meta"]["paging"]["currentPageSize"] == total
    assert (await api.get(files, params={"limit": "x"})).status_code == 400
    assert (await api.get("/2/0/models", params={"sort": "name"})).status_code == 400
    assert (await api.get("/2/0/models", params={"sort": "+bogus"})).status_code == 400
    assert (await api.get("/2/0/models", params={"sort": "-name"})).status_code == 200
    assert (await api.get(model_path(anaplan, "/imports"), params={"sort": "whatever"})).status_code == 200
    unknown = await api.get("/2/0/nothing/here")
    assert unknown.status_code == 404
    assert unknown.json()["status"]["code"] == 404


async def test_files_chunks_and_limits(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    fid = anaplan.seeded.file_id("gl_accounts.csv")
    base = model_path(anaplan, f"/files/{fid}")
    assert (await api.get(base)).status_code == 404  # no content yet
    res = await api.post(base, json={"chunkCount": 2})
    assert res.json()["file"]["id"] == str(fid)
    chunks = (await api.get(base + "/chunks")).json()["chunks"]
    assert chunks == [{"id": "0", "name": "Chunk 0"}, {"id": "1", "name": "Chunk 1"}]
    bad = await api.put(base + "/chunks/0", content=b"not gzip", headers={"Content-Type": "application/x-gzip"})
    assert bad.status_code == 400
    assert "decompress" in bad.json()["status"]["message"]
    assert (
        await api.put(base + "/chunks/2", content=b"x", headers={"Content-Type": "application/octet-stream"})
    ).status_code == 400
    ok = await api.put(
        base + "/chunks/0", content=gzip.compress(b"Code,Name,Type\n"), headers={"Content-Type": "application/x-gzip"}
    )
    assert ok.status_code == 204
    assert ok.content == b""
    assert (
        await api.put(base + "/chunks/1", content=b"1,A,B\n", headers={"Content-Type": "application/octet-stream"})
    ).status_code == 204
    assert (await api.get(base)).content == b"Code,Name,Type\n1,A,B\n"
    assert (await api.get(base + "/chunks/1")).content == b"1,A,B\n"
    listed = {f["id"]: f for f in (await api.get(model_path(anaplan, "/files"))).json()["files"]}
    assert listed[str(fid)]["chunkCount"] == 2
    assert (await api.delete(base)).status_code == 204
    assert (await api.get(base)).status_code == 404

    single = await api.put(base, content=b"Code,Name,Type\n", headers={"Content-Type": "application/octet-stream"})
    assert single.status_code == 204
    assert (
        await api.put(base, content=gzip.compress(b"x"), headers={"Content-Type": "application/x-gzip"})
    ).status_code == 415

    created = (await api.post(model_path(anaplan, "/files/113999999999"), json={"chunkCount": 1})).json()["file"]
    assert created["id"] != "113999999999"
    assert created["id"].startswith("113")
    assert (await api.post(base, json={"chunkCount": 1001})).status_code == 400

    anaplan.emulator.config.chunk_limit = 1000
    await api.post(base, json={"chunkCount": -1})
    too_big = await api.put(
        base + "/chunks/0", content=gzip.compress(b"x" * 2000), headers={"Content-Type": "application/x-gzip"}
    )
    assert too_big.status_code == 400
    assert (
        await api.put(base + "/chunks/0", content=b"a" * 10, headers={"Content-Type": "application/octet-stream"})
    ).status_code == 204
    done = await api.post(base + "/complete", json={"id": str(fid)})
    assert done.status_code == 200
    assert done.json()["file"]["chunkCount"] == 1


async def test_file_content_is_private_to_the_user(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    model = anaplan.seeded.model
    other = anaplan.emulator.state.add_user("second@ml-connector.example", "pw-second")
    model.users.add(other.id)
    fid = anaplan.seeded.file_id("suppliers.csv")
    await upload(api, anaplan, fid, b"Code,Name,Currency\n")
    async with httpx.AsyncClient(base_url=anaplan.url) as http:
        token = await login(http, other.email, "pw-second")
        res = await http.get(
            model_path(anaplan, f"/files/{fid}"), headers={"Authorization": f"AnaplanAuthToken {token}"}
        )
    assert res.status_code == 404


async def test_transactional_list_items(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    lists = {i["name"]: i["id"] for i in (await api.get(f"/2/0/models/{anaplan.model}/lists")).json()["lists"]}
    items = f"/2/0/models/{anaplan.model}/lists/{lists['Suppliers']}/items"
    before = (await api.get(items)).json()
    assert before["meta"]["paging"]["totalSize"] == 5
    add = await api.post(
        items,
        params={"action": "add"},
        json={
            "items": [
                {"name": "Acme", "code": "S9001", "properties": {"Currency": "EUR"}},
                {"name": "Acme", "code": "S9002"},
                {"code": "S9003"},
                {"name": "Supplier 1000", "code": "S1000"},
            ]
        },
    )
    body = add.json()
    assert (body["added"], body["ignored"], body["total"]) == (1, 3, 4)
    types = {f["requestIndex"]: f["failureType"] for f in body["failures"]}
    assert types == {1: "DUPLICATE_NAME", 2: "INCOMPLETE_DATA", 3: "DUPLICATE_CODE"}
    clean = (
        await api.post(items, params={"action": "add"}, json={"items": [{"name": "Beta", "code": "S9004"}]})
    ).json()
    assert "failures" not in clean
    full = (await api.get(items, params={"includeAll": "true"})).json()["listItems"]
    acme = next(i for i in full if i["code"] == "S9001")
    assert acme["properties"] == {"Currency": "EUR"}
    assert ID12.match(acme["id"])
    csv_text = (await api.get(items, headers={"Accept": "text/csv"})).text
    assert csv_text.splitlines()[0] == "Name,Code,Parent,Currency"
    upd = (
        await api.put(
            items,
            json={
                "items": [{"code": "S9001", "name": "Acme Corp", "properties": {"Currency": "USD"}}, {"code": "nope"}]
            },
        )
    ).json()
    assert (upd["updated"], upd["ignored"], upd["total"]) == (1, 1, 2)
    admin = (await api.get(f"/_sandbox/anaplan/models/{anaplan.model}/lists/Suppliers/items")).json()["items"]
    assert {"name": "Acme Corp", "code": "S9001"}.items() <= next(i for i in admin if i["code"] == "S9001").items()
    deleted = (
        await api.post(
            items, params={"action": "delete"}, json={"items": [{"code": "S9001"}, {"name": "Beta"}, {"code": "gone"}]}
        )
    ).json()
    assert deleted["deleted"] == 2
    too_many = await api.post(
        items, params={"action": "add"}, json={"items": [{"name": f"n{i}"} for i in range(100_001)]}
    )
    assert too_many.status_code == 400

    invoices = f"/2/0/models/{anaplan.model}/lists/{lists['Supplier Invoices']}/items"
    res = (
        await api.post(
            invoices,
            params={"action": "add"},
            json={
                "items": [
                    {"code": "INV-1", "properties": {"Supplier": "S1001", "Amount": "12.5"}},
                    {"code": "INV-2", "properties": {"Supplier": "NOPE"}},
                    {"code": "INV-3", "properties": {"Amount": "twelve"}},
                    {"code": "INV-4", "name": "named"},
                ]
            },
        )
    ).json()
    assert res["added"] == 1
    assert [f["failureType"] for f in res["failures"]] == ["INCORRECT_FORMAT", "INCORRECT_FORMAT", "INCORRECT_FORMAT"]
    [inv] = (await api.get(invoices, params={"includeAll": "true"})).json()["listItems"]
    assert inv["name"] == "#1"
    assert inv["properties"]["Supplier"] == "Supplier 1001"
    assert inv["properties"]["Amount"] == "12.5"


async def test_cell_write_and_view_read(anaplan: AnaplanHandle, api: httpx.AsyncClient) -> None:
    modules = {m["name"]: m["id"] for m in (await api.get(f"/2/0/models/{anaplan.model}/modules")).json()["modules"]}
    data = f"/2/0/models/{anaplan.model}/modules/{modules['GL Actuals']}/data"
    write = [
        {
            "lineItemName": "Amount",
            "dimensions": [
                {"dimensionName": "GL Accounts", "itemCode": "6000"},
                {"dimensionName": "Cost Centers", "itemName": "CC100"},
                {"dimensionName": "Time", "itemName": "Mar 24"},
            ],
            "value": 42.5,
        },
        {"lineItemName": "Amount", "dimensions": [{"dimensionName": "GL Accounts", "itemName": "6000"}], "value": 1},
        {"lineItemName": "Nope", "dimensions": [], "value": 1},
    ]
    res = (await api.post(data, json=write)).json()
    assert res["numberOfCellsChanged"] == 1
    assert [f["requestIndex"] for f in res["failures"]] == [1, 2]
    again = (await api.post(data, json=write[:1])).json()
    assert again["numberOfCellsChanged"] == 0
    assert "failures" not in again
    view = f"/2/0/models/{anaplan.model}/views/{modules['GL Actuals']}/data"
    csv_text = (await api.get(view, headers={"Accept": "text/csv"})).text
    assert csv_text.splitlines() == [
        "GL Accounts,Cost Centers,Time,Amount,Postings",
        "Account 6000,Cost Center 100,Mar 24,42.5,",
    ]
    v1 = (await api.get(view, params={"format": "v1"}, headers={"Accept": "application/json"})).json()
    assert v1["columnCoordinates"] == [["Amount"], ["Postings"]]
    assert v1["rows"] == [{"rowCoordinates": ["Account 6000", "Cost Center 100", "Mar 24"], "cells": ["42.5", ""]}]
    assert (await api.get(view, params={"pages": "101000000000:1"})).status_code == 400
