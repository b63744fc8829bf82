"""Policies and modes of a run: the Stop policy, dry runs, the model lock, API errors, configuration errors."""

from __future__ import annotations

import asyncio

import pytest
from sync_helpers import Env, gl_cells, list_codes, list_items

from ml_connector.audit.store import RunStatus
from ml_connector.commands.demo import UNKNOWN_COST_CENTER, UNKNOWN_SUPPLIER
from ml_connector.net.redact import MASK, redact
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sync.credentials import load_credentials
from ml_connector.sync.errors import SyncConfigError
from ml_connector.sync.progress import Progress

LISTS = ("GL Accounts", "Cost Centers", "Suppliers")


def snapshot(env: Env) -> tuple[object, ...]:
    return (
        {name: list_codes(env.model, name) for name in LISTS},
        gl_cells(env.model),
        list_items(env.model, "Supplier Invoices"),
        list_items(env.model, "Payments"),
    )


async def test_stop_policy_lists_the_missing_members_and_loads_nothing(env: Env) -> None:
    before = snapshot(env)
    connection = env.connection_with(mappings={"missingMembers": "Stop"})

    with pytest.raises(SyncConfigError, match="missing-member policy Stop") as caught:
        await env.run(connection)

    assert snapshot(env) == before  # nothing added, nothing loaded
    result = caught.value.result
    assert result is not None
    assert result.status == "Failed"
    assert result.alignment is not None
    assert result.alignment.blocking
    dims = {d.dimension: d for d in result.alignment.dimensions}
    dataset = env.infor.dataset
    assert {m.code for m in dims["cost_center"].missing} == {c.code for c in dataset.cost_centers} - before[0][
        "Cost Centers"
    ]  # type: ignore[index]
    # the report says how many records and how much money each missing member carries
    used = {code: usage for code, usage in dims["cost_center"].usage.items()}
    assert used
    assert all(u.records > 0 for u in used.values())
    assert UNKNOWN_COST_CENTER in dims["cost_center"].unknown
    assert all(f.loaded == 0 for f in result.flows)
    run = await env.store.get_run(result.run_id)
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert "policy Stop" in (run.error or "")
    assert await env.store.get_watermark(result.connection, "gl_postings") is None


async def test_a_dry_run_reports_and_changes_nothing(env: Env) -> None:
    before = snapshot(env)

    result = await env.run(dry_run=True)

    assert snapshot(env) == before  # no member added, no file uploaded, no import run
    assert result.dry_run
    assert result.succeeded
    assert result.alignment is not None
    unmapped = {d.dimension: set(d.unmapped) for d in result.alignment.dimensions}
    assert UNKNOWN_COST_CENTER in unmapped["cost_center"]
    assert UNKNOWN_SUPPLIER in unmapped["supplier"]
    assert unmapped["account"]  # the accounts the seed left out
    # rows that would be rejected: only those whose member would still be missing after the additions
    gl = result.flow("gl_postings")
    inv = result.flow("supplier_invoices")
    assert gl is not None
    assert inv is not None
    assert [r.reason.split(":")[0] for r in gl.rejections] == ["dry run"]
    assert UNKNOWN_COST_CENTER in gl.rejections[0].reason
    assert len(inv.rejections) == 1
    assert UNKNOWN_SUPPLIER in inv.rejections[0].reason
    assert gl.loaded == gl.rejected == 0
    assert gl.skipped == gl.extracted
    summary = result.reconciliation
    assert summary is not None
    totals = summary.flow("gl_postings")
    assert totals is not None
    assert totals.tallies.rejected.count == 1
    assert totals.tallies.loaded.count == totals.tallies.source.count - 1
    assert "would load" in summary.text(dry_run=True)
    for flow in ("gl_postings", "supplier_invoices", "payments"):
        assert await env.store.get_watermark(result.connection, flow) is None  # nothing is "loaded"
    run = await env.store.get_run(result.run_id)
    assert run is not None
    assert run.dry_run

    real = await env.run()  # the dry run did not make the real one skip anything
    real_inv = real.flow("supplier_invoices")
    assert real_inv is not None
    assert real_inv.loaded == inv.extracted - 1


async def test_a_run_waits_for_the_model_lock_held_by_another(env: Env) -> None:
    progress = Progress()
    other = env.lock.for_holder("another run")
    async with other.hold(env.demo.sandbox.anaplan.model) as grant:
        assert grant.holder == "another run"
        task = asyncio.create_task(env.run(progress=progress))
        for _ in range(2000):
            if any(e.kind == "lock" for e in progress.events):
                break
            await asyncio.sleep(0.005)
        waits = [e for e in progress.events if e.kind == "lock"]
        assert waits
        assert waits[0].fields["holder"] == "another run"
        assert not task.done()  # nobody fails because another holds the model
    result = await task
    assert result.succeeded
    assert result.lock_wait_seconds > 0


async def test_throttling_is_retried_and_counted(env: Env) -> None:
    env.demo.sandbox.anaplan.injector.add(FaultRule(status=429, retry_after=0.01, path="/files/", times=3))
    env.infor.faults.add(FaultRule(status=503, path="/M3/", method="GET", times=2))
    result = await env.run()
    assert result.succeeded
    assert result.api_errors["anaplan"].get("429") == 3
    assert result.api_errors["infor"].get("503", 0) >= 1


async def test_configuration_errors_name_what_and_where(env: Env) -> None:
    bad_import = env.connection_with(flows=[{"entity": "payments", "importAction": "Load Paymnts"}])
    with pytest.raises(SyncConfigError, match="Load Paymnts") as caught:
        await env.run(bad_import)
    assert caught.value.result is not None
    assert caught.value.result.status == "Failed"

    with pytest.raises(SyncConfigError, match="flow\\(s\\) purchase_orders not in SyncConnection"):
        await env.run(flows=["purchase_orders"])

    # bad Anaplan credentials: a configuration error, and the password appears nowhere
    secrets = env.demo.files.secrets_dir
    (secrets / "anaplan-credentials" / "password").write_text("not-the-password-123")
    credentials = load_credentials(env.connection, secrets)
    with pytest.raises(SyncConfigError) as denied:
        await env.run(credentials=credentials)
    message = str(denied.value)
    assert "Anaplan" in message
    assert "not-the-password-123" not in message
    assert redact("x not-the-password-123 y") == f"x {MASK} y"


async def test_an_import_that_fails_as_a_whole_rejects_its_file_and_fails_the_run(env: Env) -> None:
    wrong = env.connection_with(flows=[{"entity": "supplier_invoices", "importAction": "Load Payments"}])
    with pytest.raises(SyncConfigError, match="failed as a whole") as caught:
        await env.run(wrong)
    result = caught.value.result
    assert result is not None
    flow = result.flow("supplier_invoices")
    assert flow is not None
    assert flow.loaded == 0
    assert flow.rejected == flow.extracted > 0  # every record of the file, with the task's message
    assert "do not match the import definition" in flow.rejections[0].reason
    counts = await env.store.counts(result.run_id)
    assert counts["supplier_invoices"].imbalance() is None
    assert await env.store.get_watermark(result.connection, "supplier_invoices") is None


async def test_a_transient_failure_bubbles_and_the_run_is_recorded_failed(env: Env) -> None:
    from ml_connector.anaplan import ServerError

    env.demo.sandbox.anaplan.injector.add(FaultRule(status=503, path="/imports/.*/tasks$", method="POST"))
    with pytest.raises(ServerError):
        await env.run(flows=["payments"])
    runs = await env.store.list_runs()
    assert runs[0].status is RunStatus.FAILED
    assert "starting import" in (runs[0].error or "") or "failed while" in (runs[0].error or "")
    assert await env.store.get_watermark(runs[0].connection, "payments") is None
