"""Fixtures of the reliability tests (the environment lives in ``reliability_env``), and a throwaway PostgreSQL
server (``tests/audit/postgres_cluster.py``; it FAILS, never skips, when PostgreSQL is not installed)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from reliability_env import Env, make_env

AUDIT_TESTS = Path(__file__).resolve().parents[1] / "audit"
if str(AUDIT_TESTS) not in sys.path:
    sys.path.append(str(AUDIT_TESTS))

from postgres_cluster import PostgresNotInstalled, find_bin_dir, running_cluster  # noqa: E402


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """Both emulators seeded as the demo seeds them (two records Anaplan must reject), an SQLite audit store."""
    async for value in make_env(tmp_path):
        yield value


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    if not os.environ.get("ML_CONNECTOR_TEST_PG_DSN"):
        try:
            find_bin_dir()
        except PostgresNotInstalled as exc:
            pytest.fail(str(exc), pytrace=False)
    with running_cluster() as dsn:
        yield dsn
