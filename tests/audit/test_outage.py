"""An unavailable audit database loses no events: buffer, retry with backoff, give up only after the budget.

"Unavailable" is another session holding an exclusive lock on the audit tables (SQLite: ``BEGIN
EXCLUSIVE``; PostgreSQL: ``LOCK TABLE ... ACCESS EXCLUSIVE`` against a short ``lock_timeout``), a killed
PostgreSQL connection, and a PostgreSQL that is not there. Time is a fake clock that moves only when the
store sleeps, so the outage budget is exercised without waiting for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest

from conftest import Backend, FakeClock, PostgresBackend
from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.audit.store import AuditUnavailableError, EventStatus, OutagePolicy, RecordEvent, RunInfo

POLICY = OutagePolicy(batch_size=10, max_buffer=30, max_outage=10.0, initial_backoff=0.2, max_backoff=1.0)


def events(run_id: str, count: int, start: int = 0) -> list[RecordEvent]:
    return [
        RecordEvent(run_id, "gl_postings", "gl_postings", f"100/AAA/2024/J{n}/1", f"h{n}", EventStatus.EXTRACTED)
        for n in range(start, start + count)
    ]


async def test_events_are_buffered_while_the_database_is_locked_and_written_afterwards(
    backend: Backend, fake_clock: FakeClock
) -> None:
    async with backend.make(policy=POLICY, monotonic=fake_clock.monotonic, sleep=fake_clock.sleep) as store:
        await store.start_run(RunInfo("r1", "acme"))
        with backend.lock():
            await store.record(events("r1", 25))  # two full batches fail; below max_buffer the caller goes on
            assert store.buffered == 25
            assert fake_clock.sleeps == []  # nobody waited
        await store.flush()
        assert store.buffered == 0
        counts = await store.counts("r1")
        assert counts["gl_postings"].extracted == 25
        rows = await store._fetch("SELECT natural_key FROM audit_events WHERE run_id = ?", ("r1",))
        assert sorted(r[0] for r in rows) == sorted(e.natural_key for e in events("r1", 25))


async def test_a_full_buffer_makes_the_caller_wait_until_the_database_is_back(
    backend: Backend, fake_clock: FakeClock
) -> None:
    async with backend.make(policy=POLICY, monotonic=fake_clock.monotonic, sleep=fake_clock.sleep) as store:
        await store.start_run(RunInfo("r1", "acme"))
        stack = contextlib.ExitStack()
        stack.enter_context(backend.lock())
        fake_clock.on_sleep = lambda n: stack.close() if n == 3 else None  # the database comes back
        await store.record(events("r1", 45))  # beyond max_buffer: blocks, retries with backoff, then drains
        stack.close()
        # the first failure (10 buffered) did not stop the caller; from 30 buffered on it waited, backing off
        # exponentially up to max_backoff
        assert fake_clock.sleeps[:3] == [0.4, 0.8, 1.0]
        await store.flush()
        assert (await store.counts("r1"))["gl_postings"].extracted == 45


async def test_the_run_fails_only_after_the_outage_budget_and_keeps_the_events(
    backend: Backend, fake_clock: FakeClock
) -> None:
    store = backend.make(policy=POLICY, monotonic=fake_clock.monotonic, sleep=fake_clock.sleep)
    async with store:
        await store.start_run(RunInfo("r1", "acme"))
        with backend.lock():
            await store.record(events("r1", 15))
            with pytest.raises(AuditUnavailableError) as info:
                await store.flush()
            message = str(info.value)
            assert "budget 10s" in message
            assert "15 event(s) still buffered" in message
            # it kept trying for the whole budget, and gave up as soon as the budget was spent
            assert sum(fake_clock.sleeps) == pytest.approx(POLICY.max_outage)
            assert store.buffered == 15
        await store.flush()  # the database is back: nothing was lost
        assert (await store.counts("r1"))["gl_postings"].extracted == 15


async def test_a_killed_postgres_connection_is_replaced(
    postgres_server: str, tmp_path: object, fake_clock: FakeClock
) -> None:
    backend = PostgresBackend(postgres_server)
    try:
        async with backend.make(policy=POLICY, monotonic=fake_clock.monotonic, sleep=fake_clock.sleep) as store:
            await store.start_run(RunInfo("r1", "acme"))
            await store.record(events("r1", 10))
            assert backend.terminate_store_connections() >= 1
            await store.record(events("r1", 10, start=10))
            await store.flush()
            assert (await store.counts("r1"))["gl_postings"].extracted == 20
    finally:
        await backend.cleanup()


async def test_an_absent_postgres_fails_after_the_budget_without_leaking_the_password(fake_clock: FakeClock) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = PostgresAuditStore(
        f"postgresql://ml:s3cret-audit-pw@127.0.0.1:{port}/audit",
        policy=OutagePolicy(max_outage=3.0, initial_backoff=0.5, max_backoff=1.0),
        monotonic=fake_clock.monotonic,
        sleep=fake_clock.sleep,
        connect_timeout=1,
    )
    with pytest.raises(AuditUnavailableError, match=rf"postgresql://127.0.0.1:{port}/audit unavailable") as info:
        await store.open()
    assert "s3cret-audit-pw" not in str(info.value)
    assert len(fake_clock.sleeps) >= 3


def test_outage_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_buffer"):
        OutagePolicy(batch_size=100, max_buffer=10)
    assert [OutagePolicy(initial_backoff=1, max_backoff=5).backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert dt.timedelta(seconds=OutagePolicy().max_outage) == dt.timedelta(minutes=2)
