"""Budget write-back over real HTTP: M3 BUS100MI and SyteLine SLChartBps, query before post, idempotent reruns,
dry runs, per-line failures, optimistic locking."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from test_infor_client_support import credentials, emulator, open_m3, open_syteline, syteline_options

from ml_connector.infor import BudgetWriteError, open_product_line
from ml_connector.records import BudgetLine
from ml_connector.sandbox.dataset import budget_record
from ml_connector.sandbox.infor import RunningInfor


@pytest.fixture
async def infor() -> AsyncIterator[RunningInfor]:
    async with emulator(products=("M3", "SyteLine")) as running:
        yield running


def budget(infor: RunningInfor, year: int, plant: str | None = None, version: str = "Budget") -> list[BudgetLine]:
    return [budget_record(c, version) for c in infor.state.dataset.budget_cells(year, plant)]


def sample(infor: RunningInfor, year: int, version: str = "Budget", per_plant: int = 120) -> list[BudgetLine]:
    """The first ``per_plant`` figures of every plant (three divisions/sites, fast)."""
    return [line for plant in ("P10", "P20", "P30") for line in budget(infor, year, plant, version)[:per_plant]]


def bump(lines: list[BudgetLine], delta: str = "100.00") -> list[BudgetLine]:
    return [dataclasses.replace(line, amount=line.amount + Decimal(delta)) for line in lines]


def m3_cells(infor: RunningInfor, buno: str) -> dict[tuple[str, ...], int]:
    tenant = infor.tenant_id("M3")
    return {
        (*key, *cell): cents
        for key, cells in infor.state.m3_budget_lines[tenant].items()
        if key[1] == buno
        for cell, cents in cells.items()
    }


# -- M3 ----------------------------------------------------------------------------------------


async def test_m3_write_back_twice_changes_nothing_the_second_time(infor: RunningInfor) -> None:
    lines = sample(infor, 2026)
    async with open_m3(infor, budget_number="ANP", budget_versions={"Budget": "{year}"}) as m3:
        first = await m3.write_budget(lines, version="Budget")
        assert first.counts == {"added": len(lines), "updated": 0, "unchanged": 0, "failed": 0}
        assert sorted(first.notes) == [f"M3 BUS100MI {p}/ANP/2026: budget header added" for p in ("P10", "P20", "P30")]
        state_after_first = m3_cells(infor, "ANP")
        assert len(state_after_first) == len(lines)

        second = await m3.write_budget(lines, version="Budget")
        assert second.counts == {"added": 0, "updated": 0, "unchanged": len(lines), "failed": 0}
        assert m3_cells(infor, "ANP") == state_after_first

        read_back = [b async for b in m3.read_budget("Budget")]
    assert {(b.account, b.cost_center, b.period, b.amount) for b in read_back} == {  # type: ignore[union-attr]
        (b.account, b.cost_center, b.period, b.amount) for b in lines
    }


async def test_m3_changed_figures_are_updated_and_only_those(infor: RunningInfor) -> None:
    lines = budget(infor, 2025, "P20")[:150]
    async with open_m3(infor, budget_number="ANP", budget_versions={"Budget": "{year}"}) as m3:
        await m3.write_budget(lines, version="Budget")
        changed = bump(lines[:7]) + lines[7:]
        report = await m3.write_budget(changed, version="Budget")
    assert report.counts == {"added": 0, "updated": 7, "unchanged": len(lines) - 7, "failed": 0}
    updated = [o for o in report.outcomes if o.outcome == "updated"]
    assert all(o.previous == o.line.amount - Decimal("100.00") for o in updated)
    cells = m3_cells(infor, "ANP")
    first = lines[0]
    assert cells[("P20", "ANP", "2025", first.account, first.cost_center, first.currency,
                  first.period.replace("-", ""))] == int((first.amount + 100) * 100)  # fmt: skip


async def test_m3_dry_run_reports_the_plan_and_posts_nothing(infor: RunningInfor) -> None:
    lines = budget(infor, 2024, "P10")[:150]
    async with open_m3(infor, budget_number="ANP", budget_versions={"Budget": "{year}"}) as m3:
        dry = await m3.write_budget(lines, version="Budget", dry_run=True)
        assert dry.dry_run
        assert dry.counts["added"] == len(lines)
        assert dry.notes == ["M3 BUS100MI P10/ANP/2024: the budget header would be added"]
        assert m3_cells(infor, "ANP") == {}
        assert ("P10", "ANP", "2024") not in infor.state.m3_budget_headers[infor.tenant_id("M3")]
        await m3.write_budget(lines, version="Budget")
        dry_again = await m3.write_budget(bump(lines[:3]) + lines[3:], version="Budget", dry_run=True)
    assert dry_again.counts == {"added": 0, "updated": 3, "unchanged": len(lines) - 3, "failed": 0}
    assert m3_cells(infor, "ANP")[("P10", "ANP", "2024", lines[0].account, lines[0].cost_center, lines[0].currency,
                                   lines[0].period.replace("-", ""))] == int(lines[0].amount * 100)  # fmt: skip


async def test_m3_add_falls_back_to_update_when_the_cell_appeared_meanwhile(infor: RunningInfor) -> None:
    """Another writer adds the cell between our query and our post: 'Record already exists' -> Upd."""
    lines = budget(infor, 2025, "P30")[:4]
    tenant = infor.tenant_id("M3")
    state = infor.state

    class Interloper(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if (
                request.method == "POST"
                and request.url.path.endswith("/v2/execute")
                and b"AddBudgetLnPer" in request.content
            ):
                line = lines[0]
                state.m3_budget_lines[tenant][("P30", "ANP", "2025")][
                    (line.account, line.cost_center, line.currency, line.period.replace("-", ""))
                ] = 1  # someone else's figure
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    from test_infor_client_support import m3_options

    transport = Interloper()
    options = m3_options(budget_number="ANP", budget_versions={"Budget": "{year}"})
    async with open_product_line("M3", credentials(infor, "M3"), options, transport=transport) as m3:
        report = await m3.write_budget(lines, version="Budget")
    await transport.aclose()
    assert report.counts == {"added": 4, "updated": 0, "unchanged": 0, "failed": 0}
    cell = (lines[0].account, lines[0].cost_center, lines[0].currency, lines[0].period.replace("-", ""))
    assert state.m3_budget_lines[tenant][("P30", "ANP", "2025")][cell] == int(lines[0].amount * 100)


async def test_m3_per_line_failures_are_reported_not_raised(infor: RunningInfor) -> None:
    lines = budget(infor, 2025, "P10")[:3]
    bad_cc = dataclasses.replace(lines[0], cost_center="CC9999")
    bad_period = dataclasses.replace(lines[1], period="2025-13")
    duplicate = lines[2]
    async with open_m3(infor, budget_number="100", budget_versions={"Budget": "{year}"}) as m3:
        # BUNO 100 / BVER 2025 is the seeded, locked approved budget: every change is refused by M3.
        report = await m3.write_budget([*bump(lines), bad_cc, bad_period, duplicate], version="Budget")
    reasons = [o.reason for o in report.failures()]
    assert report.counts == {"added": 0, "updated": 0, "unchanged": 0, "failed": 6}
    assert sum("is locked" in r for r in reasons) == 3
    assert any("cost center 'CC9999'" in r for r in reasons)
    assert any("2025-13" in r for r in reasons)
    assert any("duplicate" in r for r in reasons)


async def test_m3_write_back_needs_a_budget_number(infor: RunningInfor) -> None:
    async with open_m3(infor) as m3:
        with pytest.raises(BudgetWriteError, match="budget_number"):
            await m3.write_budget(budget(infor, 2025, "P10")[:1], version="Budget")


# -- SyteLine ----------------------------------------------------------------------------------


def chart_bps(infor: RunningInfor) -> dict[tuple[str, str, str, int], tuple[list[int], list[int]]]:
    tenant = infor.tenant_id("SyteLine")
    return {
        (site, *key): (list(bp.bud), list(bp.plan))
        for (tid, site), rows in infor.state.chart_bps.items()
        if tid == tenant
        for key, bp in rows.items()
    }


async def test_syteline_forecast_write_back_twice(infor: RunningInfor) -> None:
    lines = sample(infor, 2025, version="Forecast")
    before = chart_bps(infor)
    async with open_syteline(infor) as sl:
        dry = await sl.write_budget(lines, version="Forecast", dry_run=True)
        assert chart_bps(infor) == before
        first = await sl.write_budget(lines, version="Forecast")
        assert first.counts == dry.counts == {"added": 0, "updated": len(lines), "unchanged": 0, "failed": 0}
        after = chart_bps(infor)
        second = await sl.write_budget(lines, version="Forecast")
        assert second.counts == {"added": 0, "updated": 0, "unchanged": len(lines), "failed": 0}
        assert chart_bps(infor) == after
        forecast = [b async for b in sl.read_budget("Forecast", periods=["2025-06"])]
    line = lines[0]
    site = infor.state.dataset.cost_center_by_code[line.cost_center].plant
    assert after[(site, line.account, line.cost_center, 2025)][1][int(line.period[5:]) - 1] == int(line.amount * 100)
    assert (
        after[(site, line.account, line.cost_center, 2025)][0]
        == before[(site, line.account, line.cost_center, 2025)][0]
    )
    assert len(forecast) == len({(b.account, b.cost_center) for b in budget(infor, 2025)})  # every row's June


async def test_syteline_new_rows_are_inserted(infor: RunningInfor) -> None:
    # An account/unit pair no seeded row has, in a year without budget: Action 1 inserts.
    new = [BudgetLine(version="Budget", account="6000", cost_center="CC2020", period=f"2027-{m:02d}", currency="MXN",
                      amount=Decimal(1000 * m)) for m in (1, 2, 3)]  # fmt: skip
    async with open_syteline(infor) as sl:
        first = await sl.write_budget(new, version="Budget")
        again = await sl.write_budget(new, version="Budget")
    assert first.counts == {"added": 3, "updated": 0, "unchanged": 0, "failed": 0}
    assert again.counts == {"added": 0, "updated": 0, "unchanged": 3, "failed": 0}
    bud, _ = chart_bps(infor)[("P20", "6000", "CC2020", 2027)]
    assert bud[:4] == [100_000, 200_000, 300_000, 0]


async def test_syteline_stale_item_id_is_reloaded_and_retried(infor: RunningInfor) -> None:
    """Another user saves a row between our load and our update: the batch fails (optimistic lock),
    the rows are read again with fresh ItemIds and resent one by one."""
    lines = bump(budget(infor, 2026, "P10"))[:24]
    tenant = infor.tenant_id("SyteLine")
    rows = infor.state.chart_bps[(tenant, "P10")]
    victim = rows[(lines[0].account, lines[0].cost_center, 2026)]
    touched = False

    class OtherUser(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.AsyncHTTPTransport()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal touched
            if request.method == "POST" and "/ido/update/" in request.url.path and not touched:
                touched = True
                victim.record_date = victim.record_date + dt.timedelta(seconds=5)
            return await self.inner.handle_async_request(request)

        async def aclose(self) -> None:
            await self.inner.aclose()

    transport = OtherUser()
    creds = credentials(infor, "SyteLine")
    async with open_product_line("SyteLine", creds, syteline_options(creds.ti), transport=transport) as sl:
        report = await sl.write_budget(lines, version="Budget")
    await transport.aclose()
    assert touched
    assert report.counts == {"added": 0, "updated": 24, "unchanged": 0, "failed": 0}
    assert infor.state.stats["csi.fail"] == 1


async def test_syteline_unknown_version_and_foreign_cost_center(infor: RunningInfor) -> None:
    lines = budget(infor, 2025, "P30")[:2]
    async with open_syteline(infor) as sl:
        with pytest.raises(BudgetWriteError, match="no amounts for version 'Plan'; known versions: Budget, Forecast"):
            await sl.write_budget(lines, version="Plan")
        report = await sl.write_budget([dataclasses.replace(lines[0], cost_center="CC7777")], version="Budget")
    assert report.failed == 1
    assert "CC7777" in report.failures()[0].reason
