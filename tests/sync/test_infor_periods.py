"""The Infor client additions the pipeline needs, against the emulated tenants: reading GL postings of chosen
accounting periods (M3 ``EGACDT`` ranges, SyteLine ``TransDate`` ranges, FSM client-side) and the currency of
an M3 division (budget lines from Anaplan carry none)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from ml_connector.infor import (
    ClientOptions,
    FsmOptions,
    IonApiCredentials,
    M3Options,
    ProductLine,
    SyteLineOptions,
    open_product_line,
)
from ml_connector.infor.adapter import period_ranges
from ml_connector.net.retry import RetryPolicy
from ml_connector.records import BudgetLine
from ml_connector.sandbox.dataset import DatasetConfig
from ml_connector.sandbox.infor import RunningInfor, start_infor

CLIENT = ClientOptions(
    rate_limit=0, retry=RetryPolicy(max_attempts=5, initial_wait=0.002, max_wait=0.01), concurrency=4
)
PERIODS = ("2024-02", "2024-03", "2025-12", "2026-01", "2026-07")


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with start_infor(dataset=DatasetConfig(gl_postings=900, suppliers=20, customers=15, items=20)) as running:
        yield running


def open_line(infor: RunningInfor, product: str) -> ProductLine:
    creds = IonApiCredentials.load(infor.ionapi(product))  # type: ignore[arg-type]
    if product == "M3":
        return open_product_line("M3", creds, M3Options(company="100", export_batch_size=50, client=CLIENT))
    if product == "SyteLine":
        sites = SyteLineOptions.configs_for(creds.ti, ("P10", "P20", "P30"))
        return open_product_line("SyteLine", creds, SyteLineOptions(sites=sites, page_size=40, client=CLIENT))
    return open_product_line("FSM", creds, FsmOptions(page_size=100, client=CLIENT))


def test_period_ranges_merge_contiguous_months() -> None:
    assert period_ranges(PERIODS) == [
        (dt.date(2024, 2, 1), dt.date(2024, 3, 31)),
        (dt.date(2025, 12, 1), dt.date(2026, 1, 31)),
        (dt.date(2026, 7, 1), dt.date(2026, 7, 31)),
    ]
    assert period_ranges(["2024-02"]) == [(dt.date(2024, 2, 1), dt.date(2024, 2, 29))]


def projected(records: list[Any]) -> Counter[tuple[Any, ...]]:
    """What every product line carries faithfully (journal numbering differs between them)."""
    return Counter((r.division, r.accounting_date, r.account, r.cost_center, r.amount) for r in records)


@pytest.mark.parametrize("product", ["M3", "SyteLine", "FSM"])
async def test_gl_postings_of_chosen_periods(infor: RunningInfor, product: str) -> None:
    expected = [r for r in infor.state.dataset.records("gl_postings") if r.period in PERIODS]  # type: ignore[attr-defined]
    async with open_line(infor, product) as line:
        got = [r async for r in line.read("gl_postings", periods=PERIODS)]
    assert expected
    assert projected(got) == projected(expected)


async def test_the_period_filter_is_pushed_to_the_server_on_m3(infor: RunningInfor) -> None:
    async with open_line(infor, "M3") as line:
        before = infor.state.stats["requests.M3"]
        few = [r async for r in line.read("gl_postings", periods=["2024-02"])]
        narrow = infor.state.stats["requests.M3"] - before
        before = infor.state.stats["requests.M3"]
        every = [r async for r in line.read("gl_postings")]
        wide = infor.state.stats["requests.M3"] - before
    assert 0 < len(few) < len(every) / 10
    assert narrow < wide  # fewer EXPORTMI batches: the server did the filtering


async def test_period_filters_are_checked(infor: RunningInfor) -> None:
    async with open_line(infor, "M3") as line:
        with pytest.raises(ValueError, match="has no period"):
            line.read("suppliers", periods=["2024-01"])
        with pytest.raises(ValueError, match="YYYY-MM"):
            line.read("gl_postings", periods=["2024-13"])
        invoices = [r async for r in line.read("supplier_invoices", periods=["2025-05"])]
    assert invoices
    assert {r.period for r in invoices} == {"2025-05"}


async def test_m3_budget_lines_without_currency_take_the_divisions(infor: RunningInfor) -> None:
    creds = IonApiCredentials.load(infor.ionapi("M3"))
    options = M3Options(
        company="100", client=CLIENT, budget_number="777", budget_versions={"Budget": "ZZ"}, budget_division="P20"
    )
    async with open_product_line("M3", creds, options) as m3:
        assert await m3.division_currency("P20") == "MXN"  # type: ignore[attr-defined]
        assert await m3.division_currency("P99") == ""  # type: ignore[attr-defined]
        line = BudgetLine(
            version="Budget",
            account="6100",
            cost_center="CC2030",
            period="2026-04",
            currency="",
            amount=Decimal("12.50"),
        )
        report = await m3.write_budget([line], version="Budget")
    assert report.counts["added"] == 1
    tenant = infor.tenant_id("M3")
    assert infor.state.m3_budget_lines[tenant][("P20", "777", "ZZ")] == {("6100", "CC2030", "MXN", "202604"): 1250}
