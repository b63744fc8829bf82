"""Row mapping: typed conversions, and malformed rows turned into SourceRecordError in the stream (never dropped)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from ml_connector.infor import (
    ClientOptions,
    IonApiCredentials,
    M3Options,
    SourceRecordError,
    SyteLineOptions,
    open_product_line,
)
from ml_connector.infor import mapping as m
from ml_connector.infor.paging import merge, prefetch
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import GLPosting, Supplier

CREDS = IonApiCredentials.parse(
    json.dumps({"ti": "T1", "ci": "T1~c", "cs": "secret-cs-111111", "iu": "https://ion.example.com",
                "pu": "https://sso.example.com/T1/as/", "ot": "token.oauth2", "saak": "T1#k",
                "sask": "secret-sask-11111"}),
    source="unit",
)  # fmt: skip
CLIENT = ClientOptions(rate_limit=0, retry=RetryPolicy.never())


def test_decimal_parsing() -> None:
    assert m.decimal({"A": " 12.50 "}, "A") == Decimal("12.50")
    assert m.decimal({"A": "100.00000000"}, "A") == Decimal("100.00")
    assert str(m.decimal({"A": "100.00000000"}, "A")) == "100.00"
    assert str(m.decimal({"A": "0.12345678"}, "A")) == "0.12345678"
    for bad in ("12,50", "", "NaN", "Infinity", "1e"):
        with pytest.raises(m.BadField):
            m.decimal({"A": bad}, "A")


def test_dates_and_stamps() -> None:
    assert m.ymd({"D": "20250131"}, "D") == dt.date(2025, 1, 31)
    assert m.optional_ymd({"D": "0"}, "D") is None
    with pytest.raises(m.BadField, match="not a valid calendar date"):
        m.ymd({"D": "20250231"}, "D")
    with pytest.raises(m.BadField, match="YYYYMMDD"):
        m.ymd({"D": "2025-01-31"}, "D")
    assert m.epoch_millis({"T": "1735689600000"}, "T") == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert m.ymd_stamp({"T": "20250102"}, "T") == dt.datetime(2025, 1, 2, tzinfo=dt.UTC)
    berlin = m.zone("Europe/Berlin")
    assert m.mongoose_datetime({"R": "20250115 10:22:33.250"}, "R", berlin) == dt.datetime(
        2025, 1, 15, 9, 22, 33, 250_000, tzinfo=dt.UTC
    )
    assert m.format_mongoose_datetime(dt.datetime(2025, 1, 15, 9, 22, 33, 250_000, tzinfo=dt.UTC), berlin) == (
        "20250115 10:22:33.250"
    )
    assert m.mongoose_date({"D": "20250115 00:00:00.000"}, "D") == dt.date(2025, 1, 15)
    assert m.iso_date({"D": "2025-01-15"}, "D") == dt.date(2025, 1, 15)


def test_convert_returns_a_source_record_error_naming_field_and_key() -> None:
    def build(row: m.Row) -> Supplier:
        return Supplier(
            supplier_id=m.key(row, "SUNO"), name=m.text(row, "SUNM"), changed_at=m.epoch_millis(row, "LMTS")
        )

    good = m.convert("suppliers", "M3 test", {"SUNO": "S1", "SUNM": "A", "LMTS": "0"}, build, ("SUNO",))
    assert isinstance(good, Supplier)
    bad = m.convert("suppliers", "M3 test", {"SUNO": "S2", "SUNM": "B", "LMTS": "yesterday"}, build, ("SUNO",))
    assert isinstance(bad, SourceRecordError)
    assert (bad.entity, bad.natural_key, bad.field, bad.raw_value) == ("suppliers", "S2", "LMTS", "yesterday")
    assert "epoch-milliseconds" in bad.reason
    assert bad.to_dict()["row"] == {"SUNO": "S2", "SUNM": "B", "LMTS": "yesterday"}
    no_key = m.convert("suppliers", "M3 test", {"SUNO": " ", "SUNM": "C"}, build, ("SUNO",))
    assert isinstance(no_key, SourceRecordError)
    assert no_key.natural_key is None
    assert no_key.reason == "empty key field"


def test_party_status() -> None:
    assert [m.party_status(s) for s in ("20", "90", "A", "I", "50")] == [
        "active",
        "inactive",
        "active",
        "inactive",
        "50",
    ]


def _m3_transport(rows: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("token.oauth2"):
            return httpx.Response(200, json={"access_token": "tok-abcdef", "expires_in": 3600})
        if request.url.path.endswith("revoke_token.oauth2"):
            return httpx.Response(200)
        query = request.url.params["QERY"]
        if "EGJRNO >=" in query:
            return httpx.Response(200, json={"results": [{"records": []}]})
        return httpx.Response(200, json={"results": [{"records": [{"REPL": r} for r in rows]}]})

    return httpx.MockTransport(handler)


async def test_m3_stream_yields_bad_rows_as_errors_and_goes_on() -> None:
    rows = [
        "100|P10|2025|1|1|20250105|6100|CC1010|12.50|USD|GL|1|00|20250106|Travel",
        "100|P10|2025|1|2|20250105|2200|CC1010|12,50|USD|GL|1|00|20250106|Travel",  # bad amount
        "100|P10|2025|2|1|20251305|6100|CC1010|3.00|USD|GL|2|00|20250106|Bad date",  # bad date
        "100|P10|2025|3|1",  # short row
        "100|P10|2025|4|1|20250107|6100|CC1010|-4.00|USD|GL|4|00|20250107|text|with|bars",
    ]
    options = M3Options(company="100", divisions=("P10",), years=(2025,), export_batch_size=10, client=CLIENT)
    async with open_product_line("M3", CREDS, options, transport=_m3_transport(rows)) as m3:
        items = [x async for x in m3.read("gl_postings")]
    assert [type(x).__name__ for x in items] == ["GLPosting", "SourceRecordError", "SourceRecordError",
                                                 "SourceRecordError", "GLPosting"]  # fmt: skip
    errors = [x for x in items if isinstance(x, SourceRecordError)]
    assert [(e.natural_key, e.field, e.raw_value) for e in errors] == [
        ("100/P10/2025/1/2", "EGACAM", "12,50"), ("100/P10/2025/2/1", "EGACDT", "20251305"),
        ("100/P10/2025/3/1", "REPL", None)]  # fmt: skip
    assert "5 of 15 fields" in errors[2].reason
    last = items[-1]
    assert isinstance(last, GLPosting)
    assert (last.text, last.amount, last.period) == ("text|with|bars", Decimal("-4.00"), "2025-01")


async def test_syteline_stream_yields_bad_rows_as_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("token.oauth2"):
            return httpx.Response(200, json={"access_token": "tok-abcdef", "expires_in": 3600})
        if request.url.path.endswith("revoke_token.oauth2"):
            return httpx.Response(200)
        items = [
            {"Site": "S1", "TransNum": "1", "Acct": "6100", "AcctUnit1": "U1", "TransDate": "20250105 00:00:00.000",
             "DomAmount": "5.00000000", "CurrCode": "USD", "Ref": "r", "RecordDate": "20250106 10:00:00.000"},
            {"Site": "S1", "TransNum": "2", "Acct": "", "AcctUnit1": "U1", "TransDate": "20250105 00:00:00.000",
             "DomAmount": "5.00000000", "CurrCode": "USD", "Ref": "r", "RecordDate": "20250106 10:00:00.000"},
        ]  # fmt: skip
        return httpx.Response(200, json={"Items": items, "MoreRowsExist": False, "Success": True})

    options = SyteLineOptions(sites={"S1": "CFG1"}, client=CLIENT)
    async with open_product_line("SyteLine", CREDS, options, transport=httpx.MockTransport(handler)) as sl:
        items = [x async for x in sl.read("gl_postings")]
    assert isinstance(items[0], GLPosting)
    assert items[0].amount == Decimal("5.00")
    assert isinstance(items[1], SourceRecordError)
    assert (items[1].field, items[1].reason) == ("Acct", "empty key field")


# -- paging helpers ----------------------------------------------------------------------------


async def _pages(name: str, n: int, fail_at: int | None = None) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        if fail_at == i:
            raise RuntimeError(f"{name} failed at page {i}")
        yield [f"{name}{i}"]


async def test_merge_runs_sources_with_bounded_concurrency_and_keeps_every_page() -> None:
    running = peak = 0

    def source(name: str) -> Any:
        async def pages() -> Any:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            try:
                async for page in _pages(name, 5):
                    yield page
            finally:
                running -= 1

        return pages

    out = [p[0] async for p in merge([source(c) for c in "abcdef"], limit=2)]
    assert sorted(out) == sorted(f"{c}{i}" for c in "abcdef" for i in range(5))
    assert peak == 2


async def test_merge_raises_the_first_error_and_cancels_the_rest() -> None:
    sources = [lambda: _pages("a", 100), lambda: _pages("b", 100, fail_at=3)]
    with pytest.raises(RuntimeError, match="b failed at page 3"):
        async for _ in merge(sources, limit=2):
            pass


async def test_prefetch_keeps_order_and_closes_early() -> None:
    closed = False

    async def pages() -> Any:
        nonlocal closed
        try:
            for i in range(10):
                yield [i]
        finally:
            closed = True

    stream = prefetch(pages())
    assert [await anext(stream), await anext(stream)] == [[0], [1]]
    await stream.aclose()
    assert closed
    assert [p async for p in prefetch(_pages("x", 3))] == [["x0"], ["x1"], ["x2"]]
