"""Fixtures of the reliability tests (they live in ``reliability_env``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from reliability_env import Env, make_env


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    """Both emulators seeded as the demo seeds them (two records Anaplan must reject), an SQLite audit store."""
    async for value in make_env(tmp_path):
        yield value
