"""The schema exists only through Alembic, and the migrations match the table definitions."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.database import connect
from engine.domain import ids
from engine.store import tables as t
from engine.store.migrate import alembic_config
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


def _case(case_id: str, npi: str, line_number: int, root_cause: str) -> dict[str, object]:
    moment = datetime(2026, 2, 3, 10, tzinfo=UTC)
    return {
        "case_id": case_id,
        "claim_id": "NOTE-1" if line_number == 0 else "CLM-1",
        "line_number": line_number,
        "root_cause": root_cause,
        "provider_npi": npi,
        "department": "Cardiology",
        "procedure_code": "99213",
        "modifiers": [],
        "encounter_id": "ENC-1",
        "service_date": date(2026, 2, 3),
        "amount": Decimal("40.00"),
        "reason_codes": [],
        "payer_id": "",
        "pattern_id": "p",
        "post_feedback": False,
        "first_denied_at": moment,
        "last_denied_at": moment,
        "denial_count": 1,
        "note_id": "NOTE-1",
        "patient_hash": None,
        "task": 0,
    }


async def test_0010_gives_each_authors_note_case_its_own_id(store_url: str) -> None:
    """Cases found in notes before 0010 were one per visit and code; their ids now include the author's NPI
    (a claim's case keeps its id). Going back is refused once a visit has cases of more than one author."""
    config = alembic_config(store_url)
    await asyncio.to_thread(command.downgrade, config, "0009")
    cause = "em_level_undercoded"
    old = ids.derive("case", "note", "ENC-1", "99213", cause)
    claim_case = ids.derive("case", "CLM-1", 1, "records_missing")  # its id before 0011
    database = connect(store_url)
    try:
        async with database.begin() as conn:
            await conn.execute(
                insert(t.cases),
                [_case(old, "1000000001", 0, cause), _case(claim_case, "1000000001", 1, "records_missing")],
            )
        await asyncio.to_thread(command.upgrade, config, "0010")
        async with database.connect() as conn:
            found = set((await conn.execute(select(t.cases.c.case_id))).scalars())
        new = ids.note_case_id("ENC-1", "99213", cause, "1000000001")
        assert found == {new, claim_case}

        await asyncio.to_thread(command.downgrade, config, "0009")  # one author per visit: back as it was
        async with database.connect() as conn:
            assert set((await conn.execute(select(t.cases.c.case_id))).scalars()) == {old, claim_case}
        # A replica of the code before may write an old id after the upgrade, next to the new one: kept.
        async with database.begin() as conn:
            await conn.execute(insert(t.cases), [_case(new, "1000000001", 0, cause)])
        await asyncio.to_thread(command.upgrade, config, "0010")
        async with database.begin() as conn:
            for author in ("1000000002", "1000000003"):
                second = ids.note_case_id("ENC-1", "99213", cause, author)
                await conn.execute(insert(t.cases), [_case(second, author, 0, cause)])
        with pytest.raises(RuntimeError, match="1 visits have an undercoding case of more than one author"):
            await asyncio.to_thread(command.downgrade, config, "0009")
    finally:
        await database.dispose()


async def test_0011_gives_each_providers_claim_case_its_own_id(store_url: str) -> None:
    """Cases of denied claim lines before 0011 were one per line and cause; their ids now include the rendering
    provider's NPI (a case found in a note keeps its id). Going back is refused once a line has cases of more
    than one provider."""
    config = alembic_config(store_url)
    await asyncio.to_thread(command.downgrade, config, "0010")
    cause = "records_missing"
    old = ids.derive("case", "CLM-1", 1, cause)
    note_case = ids.note_case_id("ENC-1", "99213", "em_level_undercoded", "1000000001")
    database = connect(store_url)
    try:
        async with database.begin() as conn:
            await conn.execute(
                insert(t.cases), [_case(old, "1000000001", 1, cause), _case(note_case, "1000000001", 0, cause)]
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with database.connect() as conn:
            found = set((await conn.execute(select(t.cases.c.case_id))).scalars())
        new = ids.case_id("CLM-1", 1, cause, "1000000001")
        assert found == {new, note_case}

        await asyncio.to_thread(command.downgrade, config, "0010")  # one provider per line: back as it was
        async with database.connect() as conn:
            assert set((await conn.execute(select(t.cases.c.case_id))).scalars()) == {old, note_case}
        # A store that holds both ids of one provider's case (the new one written while it was back at 0010):
        # both kept.
        async with database.begin() as conn:
            await conn.execute(insert(t.cases), [_case(new, "1000000001", 1, cause)])
        await asyncio.to_thread(command.upgrade, config, "head")
        async with database.connect() as conn:
            assert set((await conn.execute(select(t.cases.c.case_id))).scalars()) == {old, new, note_case}
        async with database.begin() as conn:
            await conn.execute(t.cases.delete().where(t.cases.c.case_id == old))
            for provider in ("1000000002", "1000000003"):
                second = ids.case_id("CLM-1", 1, cause, provider)
                await conn.execute(insert(t.cases), [_case(second, provider, 1, cause)])
        with pytest.raises(RuntimeError, match="1 claim lines have more than one case"):
            await asyncio.to_thread(command.downgrade, config, "0010")
        async with database.begin() as conn:
            await conn.execute(t.cases.delete())
    finally:
        await database.dispose()


async def test_0011_renames_a_store_larger_than_a_page(store_url: str) -> None:
    """The cases are read and renamed a page at a time (5,000: the migration job's memory must not grow with the
    store): every one is renamed once, whichever page its new id falls in."""
    config = alembic_config(store_url)
    await asyncio.to_thread(command.downgrade, config, "0010")
    lines = [(f"CLM-{i}", 1 + i % 3, "records_missing", f"100{i:07d}") for i in range(12_000)]
    database = connect(store_url)
    try:
        async with database.begin() as conn:
            rows = []
            for claim_id, line_number, cause, provider in lines:
                row = _case(ids.derive("case", claim_id, line_number, cause), provider, line_number, cause)
                rows.append(row | {"claim_id": claim_id})
            await conn.execute(insert(t.cases), rows)
        await asyncio.to_thread(command.upgrade, config, "head")
        async with database.connect() as conn:
            found = set((await conn.execute(select(t.cases.c.case_id))).scalars())
        assert found == {ids.case_id(c, n, cause, p) for c, n, cause, p in lines}
        await asyncio.to_thread(command.downgrade, config, "0010")
        async with database.connect() as conn:
            found = set((await conn.execute(select(t.cases.c.case_id))).scalars())
        assert found == {ids.derive("case", c, n, cause) for c, n, cause, _ in lines}
        await asyncio.to_thread(command.upgrade, config, "head")
        async with database.begin() as conn:
            await conn.execute(t.cases.delete())
    finally:
        await database.dispose()
