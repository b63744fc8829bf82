"""The fault matrix (issue 7): the real pipeline against both emulators, one fault per test, each ending with
the audit accounting balanced per flow (extracted = loaded + rejected with a reason + skipped) and Anaplan
holding exactly what Infor holds (nothing lost, nothing doubled).

Faults are placed deterministically: fault rules fire on counted requests (``skip``/``every``/``times``), and
state changes (expiring every token, pausing the model's task queue) happen at an exact request through a
hooked client transport or at an exact pipeline milestone through a progress hook. Nothing waits on wall time
beyond the emulators' own milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from reliability_env import (
    AUDIT_POLICY,
    TUNING,
    Env,
    Hooked,
    assert_accounted,
    assert_end_state,
    gl_cells,
    make_env,
    path_matches,
    tuning,
)

from ml_connector.anaplan import AnaplanError
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import RunStatus
from ml_connector.sandbox.faults import FaultRule
from ml_connector.sync.errors import SyncError
from ml_connector.sync.locks import InProcessLock, LockGrant, OnWait
from ml_connector.sync.progress import Progress, ProgressEvent

INFOR_API = "/M3/"  # every M3 API call of the tenant (not the token endpoint)


def import_id(env: Env, name: str) -> int:
    return next(i.id for i in env.model.imports.values() if i.name == name)


def fired(injector: Any) -> int:
    return sum(rule["fired"] for rule in injector.describe())


async def until(predicate: Callable[[], bool], what: str, rounds: int = 4000) -> None:
    """Let the event loop run until ``predicate`` holds (bounded by rounds, not by wall time)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"never happened: {what}")


async def succeeds_completely(env: Env, **options: Any) -> Any:
    result = await env.run(**options)
    assert result.succeeded, result.problems
    await assert_accounted(env, result)
    assert_end_state(env)
    return result


# ----------------------------------------------------------------------------------------------- throttling


@pytest.mark.parametrize("retry_after", [0.5, None], ids=["with-retry-after", "without-retry-after"])
async def test_a_429_storm_on_anaplan_is_ridden_out(env: Env, retry_after: float | None) -> None:
    env.anaplan_faults.add(FaultRule(status=429, retry_after=retry_after, every=2, times=60))
    env.anaplan_faults.add(FaultRule(status=429, retry_after=retry_after, path="/chunks/", times=4))  # a burst

    result = await succeeds_completely(env)

    storm = fired(env.anaplan_faults)
    assert storm >= 30
    assert result.api_errors["anaplan"]["429"] == storm  # every refusal was seen, retried and counted


@pytest.mark.parametrize("retry_after", [0.5, None], ids=["with-retry-after", "without-retry-after"])
async def test_a_429_storm_on_infor_is_ridden_out(env: Env, retry_after: float | None) -> None:
    env.infor_faults.add(FaultRule(status=429, retry_after=retry_after, path=INFOR_API, times=4))  # a burst, then
    env.infor_faults.add(FaultRule(status=429, retry_after=retry_after, path=INFOR_API, every=2, times=60))  # a storm
    env.infor_faults.add(FaultRule(status=429, retry_after=retry_after, path="/as/token", times=2))

    result = await succeeds_completely(env)

    api = [r for r in env.infor_faults.describe() if r["rule"]["path"] == INFOR_API]
    assert sum(r["fired"] for r in api) >= 20
    assert result.api_errors["infor"]["429"] == sum(r["fired"] for r in api)
    assert env.infor_faults.describe()[2]["fired"] == 2  # the token endpoint was throttled too


# ----------------------------------------------------------------------------------------------- 5xx


async def test_a_5xx_burst_on_anaplan_reads_and_uploads_is_retried(env: Env) -> None:
    env.anaplan_faults.add(FaultRule(status=503, method="GET", path="/2/0/", every=3, times=12))
    env.anaplan_faults.add(FaultRule(status=502, method="PUT", path="/chunks/", times=3))
    env.anaplan_faults.add(FaultRule(status=504, method="GET", path="/tasks/", times=2))

    result = await succeeds_completely(env)

    assert [r["fired"] for r in env.anaplan_faults.describe()] == [12, 3, 2]
    errors = result.api_errors["anaplan"]
    assert (errors["503"], errors["502"], errors["504"]) == (12, 3, 2)


async def test_a_5xx_burst_on_infor_is_retried(env: Env) -> None:
    env.infor_faults.add(FaultRule(status=503, path=INFOR_API, times=4))  # a burst at the start
    env.infor_faults.add(FaultRule(status=502, path=INFOR_API, skip=10, every=4, times=6))
    env.infor_faults.add(FaultRule(status=504, path=INFOR_API, skip=20, times=2))

    result = await succeeds_completely(env)

    assert [r["fired"] for r in env.infor_faults.describe()] == [4, 6, 2]
    errors = result.api_errors["infor"]
    assert (errors["503"], errors["502"], errors["504"]) == (4, 6, 2)


async def test_a_5xx_on_starting_an_import_fails_the_run_and_the_next_run_completes(env: Env) -> None:
    gl_import = import_id(env, "Load GL Actuals")
    env.anaplan_faults.add(FaultRule(status=503, method="POST", path=f"/imports/{gl_import}/tasks$", times=1))
    before = gl_cells(env.model)

    with pytest.raises(AnaplanError) as caught:  # a task POST is never blindly sent twice
        await env.run()

    assert caught.value.status == 503
    assert "Load GL Actuals" in str(caught.value) or f"imports/{gl_import}" in str(caught.value)
    assert gl_cells(env.model) == before  # nothing of the GL flow reached the model
    runs = await env.store.list_runs()
    assert runs[0].status is RunStatus.FAILED
    assert runs[0].error
    assert "503" in runs[0].error or "unavailable" in runs[0].error.lower()
    assert await env.store.get_watermark(runs[0].connection, "gl_postings") is None

    await succeeds_completely(env)


# ----------------------------------------------------------------------------------------------- dropped connections


async def test_connections_dropped_in_the_middle_of_a_chunk_upload(env: Env) -> None:
    env.anaplan_faults.add(FaultRule(kind="drop", when="before", method="PUT", path="/chunks/", skip=1, times=1))
    env.anaplan_faults.add(FaultRule(kind="drop", when="after", method="PUT", path="/chunks/", skip=4, times=1))

    result = await succeeds_completely(env)

    assert [r["fired"] for r in env.anaplan_faults.describe()] == [1, 1]
    assert result.api_errors["anaplan"]["transport"] == 2


async def test_connections_dropped_in_the_middle_of_a_page(env: Env) -> None:
    env.infor_faults.add(FaultRule(kind="drop", when="before", path=INFOR_API, skip=3, times=1))
    env.infor_faults.add(FaultRule(kind="drop", when="after", path="EXPORTMI", skip=5, times=2))

    result = await succeeds_completely(env)

    assert [r["fired"] for r in env.infor_faults.describe()] == [1, 2]
    assert result.api_errors["infor"]["transport"] >= 1


async def test_a_connection_dropped_after_the_import_started_fails_the_run_and_nothing_is_doubled(env: Env) -> None:
    """The task POST reached Anaplan and the task ran, but the answer was lost: the run cannot know, fails, and
    says so; the next run loads again and the model ends up holding each record exactly once."""
    inv_import = import_id(env, "Load Supplier Invoices")
    env.anaplan_faults.add(
        FaultRule(kind="drop", when="after", method="POST", path=f"/imports/{inv_import}/tasks$", times=1)
    )

    with pytest.raises(AnaplanError) as caught:
        await env.run()

    assert "may have been applied" in str(caught.value)  # the error says what the user must know
    await until(lambda: not env.model.busy, "the orphaned import task finished on the server")
    assert len(env.model.tasks[inv_import]) == 1  # it did run there

    await succeeds_completely(env)
    assert len(env.model.tasks[inv_import]) == 2


# ----------------------------------------------------------------------------------------------- token expiry


async def test_the_anaplan_token_expires_in_the_middle_of_an_upload(env: Env) -> None:
    def expire(request: httpx.Request, n: int) -> None:
        if n == 3:
            env.emulator.auth.expire_all()

    hooked = Hooked(path_matches("/chunks/", "PUT"), expire)
    tokens_before = len(env.emulator.auth.tokens)

    result = await succeeds_completely(env, tuning=tuning(anaplan_transport=hooked))

    assert hooked.seen > 3
    # the chunks in flight were refused, one new token was fetched for all of them, and they were sent again
    assert 1 <= result.api_errors["anaplan"]["401"] <= TUNING.upload_concurrency
    assert len(env.emulator.auth.tokens) == tokens_before + 2  # the run's token and its one replacement


async def test_the_anaplan_token_expires_in_the_middle_of_an_import_poll(env: Env) -> None:
    env.emulator.config.task_duration = 0.03  # a few polls per task

    def expire(request: httpx.Request, n: int) -> None:
        if n == 2:
            env.emulator.auth.expire_all()

    hooked = Hooked(lambda r: r.method == "GET" and "/imports/" in r.url.path and "/tasks/" in r.url.path, expire)

    result = await succeeds_completely(env, tuning=tuning(anaplan_transport=hooked))

    assert hooked.seen > 2
    assert result.api_errors["anaplan"]["401"] == 1


async def test_the_infor_token_expires_in_the_middle_of_a_page_walk(env: Env) -> None:
    def expire(request: httpx.Request, n: int) -> None:
        if n == 6:
            env.infor.expire_tokens()

    hooked = Hooked(path_matches("EXPORTMI", "GET"), expire)
    grants_before = env.infor.stats["token.password"] + env.infor.stats["token.refresh"]

    result = await succeeds_completely(env, tuning=tuning(infor_transport=hooked))

    assert hooked.seen > 6
    assert result.api_errors["infor"]["401"] >= 1  # the page in flight (and any sent alongside it) came back 401
    assert env.infor.stats["token.password"] + env.infor.stats["token.refresh"] == grants_before + 2


# ----------------------------------------------------------------------------------------------- tasks and the model


async def test_an_import_that_fails_part_way_loads_nothing_and_the_next_run_completes(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GL import dies after it started processing rows: Anaplan keeps nothing of it, the run fails and
    says so, every record of the file is accounted rejected with the task's reason, the watermark stays; the
    next run loads everything."""
    from ml_connector.sandbox.anaplan import tasks as emulator_tasks

    original = emulator_tasks.stage_import

    def dies_half_way(model: Any, imp: Any, user: Any, params: Any, cancel: Any, progress: Any) -> Any:
        if imp.name == "Load GL Actuals":
            progress(0.5)
            raise RuntimeError("storage failure half way through the import")
        return original(model, imp, user, params, cancel, progress)

    monkeypatch.setattr(emulator_tasks, "stage_import", dies_half_way)
    cells_before = gl_cells(env.model)

    with pytest.raises(SyncError) as caught:
        await env.run()

    result = caught.value.result
    assert result is not None
    assert result.status == "Failed"
    assert "Load GL Actuals" in result.message
    assert "failed as a whole" in result.message
    assert gl_cells(env.model) == cells_before  # no partial load
    gl = result.flow("gl_postings")
    assert gl is not None
    assert gl.loaded == 0
    assert gl.rejected == gl.extracted > 0
    await assert_accounted(env, result)  # balanced even so: every record rejected, with the task's reason
    failed = [e async for e in env.store.failed(result.run_id, flow="gl_postings")]
    assert len(failed) == gl.extracted
    assert all("Load GL Actuals" in (e.reason or "") for e in failed)
    assert await env.store.get_watermark(result.connection, "gl_postings") is None

    monkeypatch.setattr(emulator_tasks, "stage_import", original)
    retry = await succeeds_completely(env)
    assert retry.flow("gl_postings").loaded == gl.extracted - 1  # type: ignore[union-attr]


async def _start_outside_export(env: Env) -> None:
    """Another user of the model starts an export (the planners' own work): the model is busy while it runs."""
    export = next(e for e in env.model.exports.values() if e.name == "Approved Budget")
    async with httpx.AsyncClient(base_url=env.anaplan.url) as http:
        auth = await http.post("/token/authenticate", auth=(env.anaplan.user, env.anaplan.password))
        token = auth.json()["tokenInfo"]["tokenValue"]
        started = await http.post(
            f"/2/0/workspaces/{env.anaplan.workspace}/models/{env.anaplan.model}/exports/{export.id}/tasks",
            json={"localeName": "en_US"},
            headers={"Authorization": f"AnaplanAuthToken {token}"},
        )
        assert started.status_code in (200, 201), started.text


@pytest.mark.parametrize("milestone", ["start", "suppliers"])
async def test_the_model_busy_with_another_task(env: Env, milestone: str) -> None:
    """Someone else's task holds the model when the run starts (its reads and task wait) or just before the
    run's transactional list writes (they wait): the run waits and completes."""
    engine = env.emulator.engine
    seen_busy: list[ProgressEvent] = []

    async def hook(event: ProgressEvent) -> None:
        if milestone == "suppliers" and event.kind == "step" and "suppliers" in event.message and not seen_busy:
            seen_busy.append(event)
            engine.pause()
            await _start_outside_export(env)

    if milestone == "start":
        engine.pause()
        await _start_outside_export(env)
    watch = Hooked(lambda r: False)  # counts the answers the run gets
    run = asyncio.create_task(env.run(progress=Progress(hooks=[hook]), tuning=tuning(anaplan_transport=watch)))

    def met_the_busy_model() -> bool:
        queued = any(t.state == "NOT_STARTED" for tasks in env.model.tasks.values() for t in tasks.values())
        return watch.statuses[409] >= 2 or queued or run.done()

    await until(met_the_busy_model, "the run meets the busy model")  # refused while busy, or queued behind
    assert not run.done(), "the run did not wait for the busy model"
    engine.resume()
    result = await run

    assert result.succeeded, result.problems
    await assert_accounted(env, result)
    assert_end_state(env)
    export = next(e for e in env.model.exports.values() if e.name == "Approved Budget")
    assert [t.state for t in env.model.tasks[export.id].values()] == ["COMPLETE"]


class CountingLock:
    """The in-process lock, instrumented: how many runs held one model at the same time, how many waited."""

    def __init__(self, lock: InProcessLock) -> None:
        self.lock = lock
        self.holding = 0
        self.most = 0
        self.waits = 0

    @contextlib.asynccontextmanager
    async def hold(self, model_id: str, *, on_wait: OnWait | None = None) -> AsyncIterator[LockGrant]:
        async def waiting(holder: str) -> None:
            self.waits += 1
            if on_wait is not None:
                outcome = on_wait(holder)
                if outcome is not None:
                    await outcome

        async with self.lock.hold(model_id, on_wait=waiting) as grant:
            self.holding += 1
            self.most = max(self.most, self.holding)
            try:
                yield grant
            finally:
                self.holding -= 1


async def test_ten_runs_against_one_model_at_once_all_complete_one_task_at_a_time(env: Env) -> None:
    connections = [env.connection_with(f"{env.connection.metadata.name}-{n}") for n in range(10)]
    locks = [CountingLock(env.lock.for_holder(f"run-{n}")) for n in range(10)]

    flows = ["gl_postings"]  # every run: two dimension imports (accounts, cost centers) and the GL import

    results = await asyncio.gather(
        *(env.run(c, lock=lock, flows=flows) for c, lock in zip(connections, locks, strict=True))
    )

    assert all(r.succeeded for r in results), [r.problems for r in results]  # nobody failed for the lock
    assert max(lock.most for lock in locks) == 1
    assert sum(lock.holding for lock in locks) == 0
    assert sum(lock.waits for lock in locks) > 0  # they did meet, and waited
    assert sum(r.lock_wait_seconds for r in results) > 0
    for result in results:
        await assert_accounted(env, result, flows=flows)
    assert_end_state(env, flows)  # ten full loads of the same data: every cell and item once
    running = [t for tasks in env.model.tasks.values() for t in tasks.values() if t.state != "COMPLETE"]
    assert running == []


async def test_a_run_killed_during_an_import_releases_the_model_and_the_next_run_doubles_nothing(env: Env) -> None:
    engine = env.emulator.engine
    gl_import = import_id(env, "Load GL Actuals")

    async def hook(event: ProgressEvent) -> None:
        if event.kind == "step" and event.flow == "gl_postings" and event.stage == "import":
            engine.pause()  # the GL import will sit IN_PROGRESS

    run = asyncio.create_task(env.run(progress=Progress(hooks=[hook])))
    await until(
        lambda: any(t.state == "IN_PROGRESS" for t in env.model.tasks.get(gl_import, {}).values()),
        "the GL import is running",
    )
    run.cancel()  # the worker dies
    with pytest.raises(asyncio.CancelledError):
        await run

    assert env.lock.holder_of(env.anaplan.model) is None  # the model lock was given up
    runs = await env.store.list_runs()
    assert runs[0].status is RunStatus.FAILED
    assert "cancelled while" in (runs[0].error or "")
    assert await env.store.get_watermark(runs[0].connection, "gl_postings") is None
    engine.resume()  # the import the dead run started finishes on the server anyway
    await until(lambda: not env.model.busy, "the orphaned import finished")

    result = await succeeds_completely(env)
    assert result.flow("gl_postings").loaded > 0  # type: ignore[union-attr]


# ----------------------------------------------------------------------------------------------- the audit database


async def test_the_audit_database_unavailable_for_a_while(tmp_path: Path) -> None:
    """Another session locks the audit database while the GL flow loads: the store buffers and retries with
    backoff; when the database is back every event lands, and the run completes and balances."""
    path = tmp_path / "audit-locked.sqlite3"
    backoffs: list[float] = []
    conn = sqlite3.connect(path, isolation_level=None)
    locked = False

    async def sleep(seconds: float) -> None:
        nonlocal locked
        backoffs.append(seconds)
        if len(backoffs) == 4 and locked:  # the database comes back after a few failed attempts
            conn.execute("ROLLBACK")
            locked = False
        await asyncio.sleep(0)

    store = SqliteAuditStore(path, policy=AUDIT_POLICY, busy_timeout=0.005, sleep=sleep)
    try:

        async def hook(event: ProgressEvent) -> None:
            nonlocal locked
            if event.kind == "step" and event.flow == "gl_postings" and not locked and not backoffs:
                await store.flush()
                conn.execute("BEGIN EXCLUSIVE")
                locked = True

        async for env in make_env(tmp_path, store=store):
            result = await env.run(progress=Progress(hooks=[hook]))

            assert len(backoffs) >= 4  # it did meet the outage, and waited it out
            assert not locked
            assert result.succeeded, result.problems
            await assert_accounted(env, result)
            assert_end_state(env)
            counts = await env.store.counts(result.run_id)
            assert counts["gl_postings"].loaded == result.flow("gl_postings").loaded  # type: ignore[union-attr]
    finally:
        if locked:
            conn.execute("ROLLBACK")
        conn.close()
