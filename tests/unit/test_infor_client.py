"""Gateway client behaviour against httpx.MockTransport: retries, errors, bounded concurrency, M3/Mongoose shapes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from ml_connector.infor import ClientOptions, GatewayError, IonApiClient, IonApiCredentials, M3Error, MongooseError
from ml_connector.infor.m3api import M3Api
from ml_connector.infor.mongoose import MongooseApi
from ml_connector.net.retry import RetryPolicy

CREDS = IonApiCredentials.parse(
    json.dumps({"ti": "T1", "ci": "T1~c", "cs": "secret-cs-000000", "iu": "https://ion.example.com",
                "pu": "https://sso.example.com/T1/as/", "ot": "token.oauth2", "saak": "T1#k",
                "sask": "secret-sask-00000"}),
    source="unit",
)  # fmt: skip
FAST = RetryPolicy(max_attempts=4, initial_wait=0.001, max_wait=0.002, max_retry_after=0.005)


def make(handler: Any, **opts: Any) -> IonApiClient:
    async def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("token.oauth2"):
            return httpx.Response(200, json={"access_token": "tok-123456", "expires_in": 3600})
        if request.url.path.endswith("revoke_token.oauth2"):
            return httpx.Response(200)
        result = handler(request)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, httpx.Response)
        return result

    options = ClientOptions(**{"rate_limit": 0, "retry": FAST, **opts})
    return IonApiClient(CREDS, options, transport=httpx.MockTransport(route))


async def test_429_storm_is_retried_with_backoff_then_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            headers = {"Retry-After": "1"} if len(calls) == 1 else {}
            return httpx.Response(429, json={"error": "quota_exceeded", "error_description": "Quota policy exceeded"},
                                  headers=headers)  # fmt: skip
        return httpx.Response(200, json={"x": 1})

    async with make(handler) as client:
        status, body = await client.request_json("GET", "M3/x")
    assert (status, body) == (200, {"x": 1})
    assert client.attempts[429] == 2
    assert client.attempts[200] == 1


async def test_exhausted_retries_raise_gateway_error_with_the_gateway_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": "quota_exceeded", "error_description": "Quota policy exceeded"})

    async with make(handler) as client:
        with pytest.raises(GatewayError, match="HTTP 429: quota_exceeded Quota policy exceeded") as info:
            await client.request("GET", "M3/x")
    assert info.value.status == 429
    assert client.attempts[429] == FAST.max_attempts


async def test_404_is_not_retried_and_names_the_url() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="no such route")

    async with make(handler) as client:
        with pytest.raises(GatewayError, match=r"GET https://ion.example.com/T1/NOPE/x -> HTTP 404: no such route"):
            await client.request("GET", "NOPE/x")
    assert client.attempts[404] == 1


async def test_post_is_not_retried_on_503_but_an_idempotent_post_is() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(503, text="busy") if count == 1 else httpx.Response(200, json={})

    async with make(handler) as client:
        with pytest.raises(GatewayError, match="503"):
            await client.request("POST", "M3/write", json={})
        count = 0
        await client.request("POST", "M3/read", json={}, idempotent=True)
    assert count == 2


async def test_dropped_connection_on_a_get_is_retried() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={})

    async with make(handler) as client:
        await client.request("GET", "M3/x")
    assert count == 2


async def test_concurrency_is_bounded() -> None:
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(200, json={})

    async with make(handler, concurrency=3) as client:
        await asyncio.gather(*(client.request("GET", f"M3/{i}") for i in range(12)))
    assert peak == 3


async def test_rate_limit_counts_every_attempt() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(429, json={}) if count % 2 else httpx.Response(200, json={})

    async with make(handler, rate_limit=1000.0, burst=5) as client:
        acquired = 0
        original = client.limiter.acquire

        async def counting() -> float:
            nonlocal acquired
            acquired += 1
            return await original()

        client.limiter.acquire = counting  # type: ignore[method-assign]
        for _ in range(3):
            await client.request("GET", "M3/x")
    assert count == 6
    assert acquired == 6  # retries go through the limiter too


async def test_non_json_body_is_a_protocol_error() -> None:
    from ml_connector.infor import ProtocolError

    async with make(lambda r: httpx.Response(200, text="<html>login</html>")) as client:
        with pytest.raises(ProtocolError, match="not JSON"):
            await client.request_json("GET", "M3/x")


# -- M3 shapes ---------------------------------------------------------------------------------


async def test_m3_400_error_at_top_level() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"errorMessage": "Supplier number S9999 does not exist", "errorCode": "WSU0203",
                                         "errorField": "SUNO", "errorType": "ServerReturnedNOK"})  # fmt: skip

    async with make(handler) as client:
        with pytest.raises(M3Error) as info:
            await M3Api(client).execute("CRS620MI", "GetBasicData", {"SUNO": "S9999"})
    error = info.value
    assert (error.program, error.transaction, error.code, error.field) == (
        "CRS620MI",
        "GetBasicData",
        "WSU0203",
        "SUNO",
    )
    assert "Supplier number S9999 does not exist" in str(error)


async def test_m3_200_with_failed_transaction_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"results": [{"transaction": "X", "errorMessage": "Nope", "errorCode": "E1"}],
                                         "wasTerminated": False, "nrOfSuccessfullTransactions": 0,
                                         "nrOfFailedTransactions": 1})  # fmt: skip

    async with make(handler) as client:
        with pytest.raises(M3Error, match="Nope"):
            await M3Api(client).execute("P", "X")


async def test_m3_execute_sends_options_and_trims_values() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"results": [{"transaction": "LstSuppliers", "records": [
            {"SUNO": "S1   ", "SUNM": " Acme "}]}], "nrOfFailedTransactions": 0})  # fmt: skip

    async with make(handler) as client:
        rows = await M3Api(client, company="100").execute(
            "CRS620MI", "LstSuppliers", {"FRSU": "S1", "LMTS": None}, maxrecs=50, returncols=["SUNO", "SUNM"]
        )
    assert rows == [{"SUNO": "S1", "SUNM": "Acme"}]
    assert seen[0].path == "/T1/M3/m3api-rest/v2/execute/CRS620MI/LstSuppliers"
    assert dict(seen[0].params) == {"FRSU": "S1", "maxrecs": "50", "returncols": "SUNO,SUNM", "cono": "100"}


async def test_m3_bulk_per_result_errors_and_not_processed() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={
            "results": [{"transaction": "AddBudgetLnPer", "records": []},
                        {"transaction": "AddBudgetLnPer", "errorMessage": "Record already exists",
                         "errorCode": "WBU0001"},
                        {"transaction": "AddBudgetLnPer", "notProcessed": True}],
            "wasTerminated": True, "terminationReason": "too many errors",
            "nrOfSuccessfullTransactions": 1, "nrOfFailedTransactions": 1})  # fmt: skip

    async with make(handler) as client:
        results = await M3Api(client, company="100").execute_bulk(
            "BUS100MI", [("AddBudgetLnPer", {"BUPE": "202501", "BCUA": "1.00"})] * 3, division="P10"
        )
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].error is not None
    assert "Record already exists" in str(results[1].error)
    assert results[2].error is not None
    assert "too many errors" in str(results[2].error)
    assert bodies[0]["program"] == "BUS100MI"
    assert bodies[0]["cono"] == 100
    assert bodies[0]["divi"] == "P10"
    assert bodies[0]["transactions"][0] == {
        "transaction": "AddBudgetLnPer",
        "record": {"BUPE": "202501", "BCUA": "1.00"},
    }


async def test_exportmi_select_splits_rows_and_keeps_separators_in_the_last_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["QERY"] == "A,B,TXT from T where A = 1"
        assert request.url.params["SEPC"] == "|"
        return httpx.Response(200, json={"results": [{"records": [{"REPL": "1|x|free|text"}, {"REPL": "2"}]}]})

    async with make(handler) as client:
        rows = await M3Api(client).select(["A", "B", "TXT"], "T", "A = 1", maxrecs=10)
    assert rows == [["1", "x", "free|text"], ["2"]]


# -- Mongoose shapes ---------------------------------------------------------------------------


async def test_mongoose_bookmark_paging_until_no_more_rows() -> None:
    calls: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        calls.append({**params, "config": request.headers["X-Infor-MongooseConfig"]})
        page = int(params.get("bookmark", "<B>0</B>")[3:-4])
        items = [{"VendNum": f"V{page * 2 + i}", "_ItemId": "x"} for i in range(2)]
        return httpx.Response(200, json={"Items": items, "Bookmark": f"<B>{page + 1}</B>", "MoreRowsExist": page < 2,
                                         "Success": True, "Message": None})  # fmt: skip

    async with make(handler) as client:
        pages = [p async for p in MongooseApi(client).load("SLVendors", "CFG", properties=["VendNum"], page_size=2)]
    assert [[i["VendNum"] for i in p] for p in pages] == [["V0", "V1"], ["V2", "V3"], ["V4", "V5"]]
    assert calls[0]["loadtype"] == "FIRST"
    assert "bookmark" not in calls[0]
    assert calls[1]["loadtype"] == "NEXT"
    assert calls[1]["bookmark"] == "<B>1</B>"
    assert all(c["recordcap"] == "2" and c["properties"] == "VendNum" and c["config"] == "CFG" for c in calls)


async def test_mongoose_success_false_raises_with_the_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Success": False, "Message": "User requires [Read] privilege for SLVendors"})

    async with make(handler) as client:
        with pytest.raises(MongooseError, match=r"load SLVendors \(config CFG\) failed: User requires \[Read\]"):
            async for _ in MongooseApi(client).load("SLVendors", "CFG", properties=["VendNum"]):
                pass


async def test_mongoose_stuck_bookmark_is_detected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Items": [{"A": "1"}], "Bookmark": "<B>same</B>", "MoreRowsExist": True,
                                         "Success": True})  # fmt: skip

    from ml_connector.infor import ProtocolError

    async with make(handler) as client:
        with pytest.raises(ProtocolError, match="bookmark did not advance"):
            async for _ in MongooseApi(client).load("SLX", "CFG", properties=["A"]):
                pass
