"""cases: a case found in a note is one per visit, code and author (its id now includes the author's NPI)

A visit two clinicians sign (a resident and an attending) was one case, created by whichever author's task
applied its note first: serve could then differ from replay. Each author whose note shows the gap now has a case
of their own. The ids are derived as in engine/domain/ids.py of this revision (copied here: a migration must keep
working whatever the code does later). Only rows whose id is the old derivation are changed, and not one whose
new id is taken already (a replica still on the code before wrote it again after the upgrade: both are kept).
A visit both clinicians signed before this revision keeps its one case, of the author applied first.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAMESPACE = uuid.UUID("5f0c3c2e-7f7e-4d0a-9a57-64f1c0d1e001")
UNDERCODED = "em_level_undercoded"


def _derive(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts)))


def _note_cases() -> list[sa.Row]:
    return list(
        op.get_bind()
        .execute(
            sa.text(
                "SELECT case_id, encounter_id, procedure_code, root_cause, provider_npi FROM cases "
                "WHERE root_cause = :cause AND line_number = 0"
            ),
            {"cause": UNDERCODED},
        )
        .all()
    )


def _rename(pairs: list[tuple[str, str]]) -> None:
    if pairs:  # one executemany: a store may hold many such cases
        rename = sa.text("UPDATE cases SET case_id = :new WHERE case_id = :old")
        op.get_bind().execute(rename, [{"new": new, "old": old} for old, new in pairs])


def upgrade() -> None:
    rows = _note_cases()
    present = {row.case_id for row in rows}
    pairs = []
    for row in rows:
        if row.case_id == _derive("case", "note", row.encounter_id, row.procedure_code, row.root_cause):
            new = _derive("case", "note", row.encounter_id, row.procedure_code, row.root_cause, row.provider_npi)
            if new not in present:  # (a replica of the code before that wrote on after the upgrade: kept as is)
                pairs.append((row.case_id, new))
    _rename(pairs)


def downgrade() -> None:
    rows = _note_cases()
    present = {row.case_id for row in rows}
    pairs, targets, visits = [], set(), set()
    for row in rows:
        parts = ("case", "note", row.encounter_id, row.procedure_code, row.root_cause)
        if row.case_id == _derive(*parts, row.provider_npi):
            old = _derive(*parts)
            if old in present or old in targets:
                visits.add((row.encounter_id, row.procedure_code))
            targets.add(old)
            pairs.append((row.case_id, old))
    if visits:
        # Two authors' cases of one visit were one case before: no row can say which one it would have been.
        raise RuntimeError(f"cannot downgrade: {len(visits)} visits have an undercoding case of more than one author")
    _rename(pairs)
