"""cases: a denied claim line is a case per rendering provider (its id now includes the provider's NPI)

A claim denied under one rendering provider, corrected to another and denied again was one case, of the first
provider: the second denial, keyed by the new provider's NPI and applied by that provider's task, changed the
first provider's case and pattern, so serve could differ from replay. The second provider now has a case of
their own. The ids are derived as in engine/domain/ids.py of this revision (copied here: a migration must keep
working whatever the code does later). Only rows whose id is the old derivation are changed, and not one whose
new id is taken already (a replica still on the code before wrote it again after the upgrade: both are kept).
A line denied under two providers before this revision keeps its one case, of the first provider.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAMESPACE = uuid.UUID("5f0c3c2e-7f7e-4d0a-9a57-64f1c0d1e001")


def _derive(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts)))


def _cases() -> list[sa.Row]:
    # Cases found in notes (line 0) have ids of their own derivation (0010): not read.
    statement = "SELECT case_id, claim_id, line_number, root_cause, provider_npi FROM cases WHERE line_number <> 0"
    return list(op.get_bind().execute(sa.text(statement)).all())


def _rename(pairs: list[tuple[str, str]]) -> None:
    if pairs:  # one executemany: a store may hold many cases
        rename = sa.text("UPDATE cases SET case_id = :new WHERE case_id = :old")
        op.get_bind().execute(rename, [{"new": new, "old": old} for old, new in pairs])


def upgrade() -> None:
    rows = _cases()
    present = {row.case_id for row in rows}
    pairs = []
    for row in rows:
        line = ("case", row.claim_id, row.line_number, row.root_cause)
        if row.case_id == _derive(*line):
            new = _derive(*line, row.provider_npi)
            if new not in present:  # (a replica of the code before that wrote on after the upgrade: kept as is)
                pairs.append((row.case_id, new))
    _rename(pairs)


def downgrade() -> None:
    rows = _cases()
    present = {row.case_id for row in rows}
    pairs, targets, lines = [], set(), set()
    for row in rows:
        line = ("case", row.claim_id, row.line_number, row.root_cause)
        if row.case_id == _derive(*line, row.provider_npi):
            old = _derive(*line)
            if old in present or old in targets:
                lines.add(line)
            targets.add(old)
            pairs.append((row.case_id, old))
    if lines:
        # Two providers' cases of one line were one case before: no row can say which one it would have been.
        raise RuntimeError(f"cannot downgrade: {len(lines)} claim lines have a case of more than one provider")
    _rename(pairs)
