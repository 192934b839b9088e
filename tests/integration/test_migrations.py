"""The schema exists only through Alembic, and the migrations match the table definitions."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.store.tables import metadata


async def test_upgrade_from_empty_creates_every_table(database: AsyncEngine) -> None:
    async with database.connect() as conn:
        names = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert set(metadata.tables) | {"alembic_version"} == names


async def test_models_and_migrations_do_not_drift(database: AsyncEngine) -> None:
    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with database.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
