"""Fixtures of the security tests: the reliability tests' environment (``tests/reliability/reliability_env.py``)
and a throwaway PostgreSQL server (``tests/audit/postgres_cluster.py``; it FAILS, never skips, when PostgreSQL
is not installed)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
for folder in ("reliability", "audit"):
    if str(TESTS / folder) not in sys.path:
        sys.path.append(str(TESTS / folder))

from postgres_cluster import PostgresNotInstalled, find_bin_dir, running_cluster  # noqa: E402
from reliability_env import Env, make_env  # noqa: E402


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
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
