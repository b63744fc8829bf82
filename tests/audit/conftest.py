"""Fixtures for the audit tests: every test that takes ``backend`` runs against SQLite and PostgreSQL.

PostgreSQL is a throwaway cluster started once per session (see ``postgres_cluster.py``); each test
gets its own schema in it. When PostgreSQL is not installed, the postgres half of every test FAILS
with the install command: it is never skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from postgres_cluster import PostgresNotInstalled, find_bin_dir, running_cluster

from ml_connector.audit.postgres import PostgresAuditStore
from ml_connector.audit.sqlbase import SqlAuditStore
from ml_connector.audit.sqlite import SqliteAuditStore
from ml_connector.audit.store import OutagePolicy

FAST = OutagePolicy(batch_size=50, max_buffer=200, max_outage=5.0, initial_backoff=0.005, max_backoff=0.02)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if not os.environ.get("ML_CONNECTOR_TEST_PG_DSN"):
        try:
            find_bin_dir()
        except PostgresNotInstalled as exc:
            message = str(exc)
        else:
            message = ""
        if message:
            pytest.fail(message, pytrace=False)  # fail, never skip: CI must install PostgreSQL
    with running_cluster() as dsn:
        yield dsn


class FakeClock:
    """A monotonic clock that only moves when the store sleeps: outage budgets without wall time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep: Callable[[int], None] | None = None

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))
        await asyncio.sleep(0)


class Backend:
    """Builds stores of one kind on one fresh database, and can lock that database from outside."""

    kind: str

    def make(self, *, policy: OutagePolicy = FAST, **options: Any) -> SqlAuditStore:
        raise NotImplementedError

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on the audit tables (the database 'unavailable' for writes)."""
        raise NotImplementedError

    async def cleanup(self) -> None:
        return None


class SqliteBackend(Backend):
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def make(self, *, policy: OutagePolicy = FAST, **options: Any) -> SqlAuditStore:
        options.setdefault("busy_timeout", 0.02)
        return SqliteAuditStore(self.path, policy=policy, **options)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()


class PostgresBackend(Backend):
    kind = "postgres"

    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self.schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {self.schema}")
        self.dsn = f"{server_dsn}?options={quote(f'-csearch_path={self.schema}')}"

    def make(self, *, policy: OutagePolicy = FAST, **options: Any) -> SqlAuditStore:
        options.setdefault("lock_timeout", 0.02)
        return PostgresAuditStore(self.dsn, policy=policy, **options)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with psycopg.connect(self.dsn) as conn:
            conn.execute(
                "LOCK TABLE audit_events, audit_runs, audit_last_loaded, audit_watermarks IN ACCESS EXCLUSIVE MODE"
            )
            yield
            conn.rollback()

    def terminate_store_connections(self) -> int:
        """Kill every other session on the database (a server-side connection loss)."""
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
            ).fetchall()
        return len(rows)

    async def cleanup(self) -> None:
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield SqliteBackend(tmp_path / "audit.db")
        return
    server: str = request.getfixturevalue("postgres_server")
    pg = PostgresBackend(server)
    try:
        yield pg
    finally:
        await pg.cleanup()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlAuditStore]:
    async with backend.make() as opened:
        yield opened


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


async def wait_until(predicate: Callable[[], bool], what: str, *, rounds: int = 2000) -> None:
    """Yield to the loop until ``predicate`` holds (bounded by rounds, not by wall time)."""
    for _ in range(rounds):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")
