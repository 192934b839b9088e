"""serve's pool on PostgreSQL keeps every connection its tasks and stages use at once: a connection given back
to a full pool is closed, and its successor prepares every statement again (it once cost a third of the
latency at 200 events/s)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, text

from engine.database import RESERVED_CONNECTIONS, connect
from engine.settings import Settings
from tests.conftest import postgres_url

pytestmark = pytest.mark.postgres


async def test_tasks_and_stages_at_once_open_no_new_connections_after_the_first_round() -> None:
    settings = Settings()
    at_once = settings.database_pool_size  # every task slot and every reserved user busy together
    assert at_once - RESERVED_CONNECTIONS >= settings.topic_partitions  # each default task has its slot
    database = connect(postgres_url(), settings.database_pool_size)
    opened = 0

    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(database.sync_engine, "connect", count)

    async def transaction() -> None:
        async with database.begin() as conn:
            await conn.execute(text("SELECT pg_sleep(0.05)"))

    try:
        await asyncio.gather(*(transaction() for _ in range(at_once)))
        first = opened
        for _ in range(3):
            await asyncio.gather(*(transaction() for _ in range(at_once)))
        assert first == at_once and opened == first, f"{opened - first} connections opened after the first round"
    finally:
        await database.dispose()
