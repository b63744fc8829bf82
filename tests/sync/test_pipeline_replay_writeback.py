"""Replay of stored payloads (after fixing what made them fail) and budget write-back (twice in a row)."""

from __future__ import annotations

import shutil
from decimal import Decimal

import pytest
from sync_helpers import Env, current_postings, gl_cells, list_items

from ml_connector.audit.store import EventStatus
from ml_connector.commands.demo import BUDGET_YEAR, UNKNOWN_COST_CENTER, UNKNOWN_SUPPLIER
from ml_connector.sandbox.anaplan.builder import add_members, write_cells
from ml_connector.sync.errors import SyncConfigError


async def test_replaying_the_failed_records_after_fixing_the_members_loads_them(env: Env) -> None:
    first = await env.run()
    gl = first.flow("gl_postings")
    assert gl is not None
    assert gl.rejected == 1
    broken = next(p for p in current_postings(env) if p.cost_center == UNKNOWN_COST_CENTER)  # type: ignore[attr-defined]
    cell = (broken.account, UNKNOWN_COST_CENTER, broken.period)  # type: ignore[attr-defined]
    assert cell not in gl_cells(env.model)
    # fix the model: the members the rejected rows needed now exist
    add_members(env.model, env.model.list_by_key("Cost Centers"), [(UNKNOWN_COST_CENTER, "Late cost center", {})])
    add_members(env.model, env.model.list_by_key("Suppliers"), [(UNKNOWN_SUPPLIER, "Late supplier", {})])
    cells_before = gl_cells(env.model)

    replay = await env.run(replay_of=first.run_id, only_failed=True)

    assert replay.succeeded
    assert replay.replay_of == first.run_id
    r_gl, r_inv, r_pay = (replay.flow(f) for f in ("gl_postings", "supplier_invoices", "payments"))
    assert r_gl is not None
    assert r_inv is not None
    assert r_pay is not None
    assert (r_gl.replayed, r_gl.loaded, r_gl.rejected, r_gl.extracted) == (1, 1, 0, 0)
    assert (r_inv.replayed, r_inv.loaded) == (1, 1)
    assert (r_pay.replayed, r_pay.rows) == (0, 0)  # nothing failed there: nothing re-sent
    cells = gl_cells(env.model)
    assert cells[cell] == (broken.amount.quantize(Decimal("0.01")), 1)  # type: ignore[attr-defined]
    assert {k: v for k, v in cells.items() if k != cell} == cells_before  # nothing else touched
    assert any(f"/{UNKNOWN_SUPPLIER}/" in k for k in list_items(env.model, "Supplier Invoices"))
    history = await env.store.history(broken.natural_key)
    assert [(e.run_id, e.status) for e in history] == [
        (first.run_id, EventStatus.EXTRACTED),
        (first.run_id, EventStatus.REJECTED),
        (replay.run_id, EventStatus.REPLAYED),
        (replay.run_id, EventStatus.LOADED),
    ]
    counts = await env.store.counts(replay.run_id)
    assert all(c.imbalance() is None for c in counts.values())
    run = await env.store.get_run(replay.run_id)
    assert run is not None
    assert run.replay_of == first.run_id


async def test_replaying_a_whole_run_sends_the_same_files_again(clean_env: Env) -> None:
    env = clean_env
    first = await env.run()
    cells = gl_cells(env.model)
    invoices = list_items(env.model, "Supplier Invoices")
    replay = await env.run(replay_of=first.run_id)
    gl = replay.flow("gl_postings")
    first_gl = first.flow("gl_postings")
    assert gl is not None
    assert first_gl is not None
    assert gl.replayed == first_gl.extracted
    assert gl.loaded == gl.replayed
    assert gl_cells(env.model) == cells
    assert list_items(env.model, "Supplier Invoices") == invoices
    with pytest.raises(SyncConfigError, match="no run 'nope'"):
        await env.run(replay_of="nope")


def approved_budget(env: Env) -> dict[tuple[str, str, str], Decimal]:
    """The approved Budget cells of the Anaplan model: (account, cost center, YYYY-MM) -> amount."""
    module = env.model.module_by_key("Budget")
    accounts, centers, time, versions = module.dimensions
    periods = {m.id: alias for alias, m in time.aliases.items() if len(alias) == 7 and alias[4] == "-"}
    amount, approved = module.line_item("Amount"), module.line_item("Approved")
    out = {}
    for key, value in module.cells[amount.id].items():
        if module.cells[approved.id].get(key) is True and versions.members[key[3]].name == "Budget":
            out[(accounts.members[key[0]].code, centers.members[key[1]].code, periods[key[2]])] = Decimal(str(value))
    return out


def m3_budget(env: Env) -> dict[tuple[str, str, str], Decimal]:
    tenant = env.demo.sandbox.infor.tenant_id("M3")
    lines = env.infor.m3_budget_lines[tenant].get(("P10", "900", "ANP"), {})
    return {(a, c, f"{p[:4]}-{p[4:]}"): Decimal(cents) / 100 for (a, c, _cur, p), cents in lines.items()}


async def test_write_back_twice_posts_once(env: Env) -> None:
    wanted = approved_budget(env)
    assert wanted

    first = await env.run(direction="WriteBack")

    w = first.writeback
    assert w is not None
    assert first.succeeded
    assert (w.rows, w.added, w.updated, w.unchanged, w.failed) == (len(wanted), len(wanted), 0, 0, 0)
    assert m3_budget(env) == wanted
    tenant = env.demo.sandbox.infor.tenant_id("M3")
    currencies = {cur for (_a, _c, cur, _p) in env.infor.m3_budget_lines[tenant][("P10", "900", "ANP")]}
    assert currencies == {"USD"}  # the division's currency (the export carries none)

    second = await env.run(direction="WriteBack")

    w2 = second.writeback
    assert w2 is not None
    assert (w2.added, w2.updated, w2.unchanged, w2.failed) == (0, 0, len(wanted), 0)
    assert m3_budget(env) == wanted
    counts = await env.store.counts(second.run_id)
    assert counts["budget_lines"].skipped == len(wanted)
    assert counts["budget_lines"].loaded == 0
    assert second.counts().skipped == len(wanted)

    # a planner changes one approved figure: the next write-back updates exactly that one
    account, cost_center, period = sorted(wanted)[0]
    write_cells(
        env.model,
        env.model.module_by_key("Budget"),
        [
            {
                "GL Accounts": account,
                "Cost Centers": cost_center,
                "Time": period,
                "Versions": "Budget",
                "Amount": 1234.5,
                "Approved": True,
            }
        ],
    )
    third = await env.run(direction="WriteBack")
    w3 = third.writeback
    assert w3 is not None
    assert (w3.added, w3.updated, w3.unchanged) == (0, 1, len(wanted) - 1)
    assert m3_budget(env)[(account, cost_center, period)] == Decimal("1234.50")
    history = await env.store.history(f"Budget/{account}/{cost_center}/{period}", flow="budget_lines")
    assert [e.status for e in history if e.run_id == third.run_id] == [EventStatus.EXTRACTED, EventStatus.LOADED]


async def test_a_dry_run_write_back_posts_nothing(env: Env) -> None:
    result = await env.run(direction="WriteBack", dry_run=True)
    w = result.writeback
    assert w is not None
    assert w.dry_run
    assert w.added == len(approved_budget(env))
    assert m3_budget(env) == {}
    assert result.counts().loaded == 0


async def test_syteline_load_and_write_back(env: Env) -> None:
    secrets = env.demo.files.secrets_dir
    (secrets / "infor-csi").mkdir()
    shutil.copy(env.demo.sandbox.infor.ionapi("SyteLine"), secrets / "infor-csi" / "credentials.ionapi")
    tenant = env.demo.sandbox.infor.tenant_id("SyteLine")
    connection = env.connection_with(
        infor={
            "productLine": "SyteLine",
            "credentialsSecretRef": {"name": "infor-csi", "key": "credentials.ionapi"},
            "syteline": {"configs": [f"{tenant}_{site}" for site in ("P10", "P20", "P30")]},
            "rateLimit": {"requestsPerSecond": 0},
        },
        writeback={"exportAction": "Approved Budget", "target": {"syteline": {"config": f"{tenant}_P10"}}},
    )
    from ml_connector.sync.credentials import load_credentials

    credentials = load_credentials(connection, secrets)
    load = await env.run(connection, credentials=credentials)
    assert load.succeeded
    assert sum(f.rejected for f in load.flows) == 2
    wanted = approved_budget(env)
    wb = await env.run(connection, credentials=credentials, direction="WriteBack")
    w = wb.writeback
    assert w is not None
    # SyteLine already holds Infor's budget; the planners changed every 11th figure: those are updated
    assert w.added == 0
    assert w.updated > 0
    assert w.updated + w.unchanged == len(wanted)
    rows = env.infor.chart_bps[(tenant, "P10")]
    for (account, cost_center, period), amount in wanted.items():
        if period.startswith(str(BUDGET_YEAR)):
            assert Decimal(rows[(account, cost_center, BUDGET_YEAR)].bud[int(period[5:]) - 1]) / 100 == amount


async def test_rows_of_another_version_are_skipped_and_accounted(env: Env) -> None:
    account, cost_center, period = sorted(approved_budget(env))[0]
    write_cells(
        env.model,
        env.model.module_by_key("Budget"),
        [
            {
                "GL Accounts": account,
                "Cost Centers": cost_center,
                "Time": period,
                "Versions": "Forecast",
                "Amount": 99.0,
                "Approved": True,
            }
        ],
    )
    result = await env.run(direction="WriteBack")
    w = result.writeback
    assert w is not None
    assert w.skipped_rows == 1
    assert w.rows == len(approved_budget(env)) + 1
    assert result.problems == ()
    assert result.reconciliation is not None
    assert result.reconciliation.balanced
    assert (account, cost_center, period) in m3_budget(env)  # the Budget figure, not the Forecast one
    assert m3_budget(env)[(account, cost_center, period)] != Decimal("99")
