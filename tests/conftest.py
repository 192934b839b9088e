"""Shared fixtures. PostgreSQL and Kafka come from `make up`; their tests are marked and need the
DOCLOOP_TEST_DATABASE_URL / DOCLOOP_TEST_KAFKA variables that `make test` sets. When a variable is set,
an unreachable service fails the test run instead of skipping it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import connect
from engine.store.migrate import upgrade


def postgres_url() -> str:
    url = os.environ.get("DOCLOOP_TEST_DATABASE_URL")
    if not url:
        pytest.skip("DOCLOOP_TEST_DATABASE_URL is not set (run `make test`)")
    return url


async def reset_postgres(url: str) -> None:
    database = connect(url)
    async with database.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await database.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'docloop.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, empty store on each backend."""
    import asyncio

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'docloop.db'}"
    else:
        url = postgres_url()
        await reset_postgres(url)
    await asyncio.to_thread(upgrade, url)
    yield url


@pytest.fixture
async def database(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = connect(store_url)
    yield engine
    await engine.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how much hostile input the run threw at the decoder, the engine and serve (issue #10)."""
    from tests.support.hostile import TRIED

    if TRIED:
        suites = ", ".join(f"{suite} {count}" for suite, count in sorted(TRIED.items()))
        terminalreporter.write_line(f"hostile inputs tried: {sum(TRIED.values())} ({suites})")
