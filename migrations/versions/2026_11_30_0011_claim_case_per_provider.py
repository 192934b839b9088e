"""cases: a denied claim line is a case per rendering provider (its id now includes the provider's NPI)

A claim denied under one rendering provider, corrected to another and denied again was one case, of the first
provider: the second denial, keyed by the new provider's NPI and applied by that provider's task, changed the
first provider's case and pattern, so serve could differ from replay. The second provider now has a case of
their own. The ids are derived as in engine/domain/ids.py of this revision (copied here: a migration must keep
working whatever the code does later). Only rows whose id is the old derivation are changed, and not one whose
new id is present already (both are then kept: no row can say which one is right). A line denied under two
providers before this revision keeps its one case, of the first provider.

Nearly every case of a store is renamed, so the rows are read and renamed a page at a time: the migration job's
memory does not grow with the store (a million cases took 1.25 GB read at once).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

NAMESPACE = uuid.UUID("5f0c3c2e-7f7e-4d0a-9a57-64f1c0d1e001")
PAGE = 5_000


def _derive(*parts: object) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(str(part) for part in parts)))


def _pages() -> Iterator[list[sa.Row]]:
    """Claim cases (line 0 is a case found in a note, of its own derivation: 0010), by id, a page at a time. A row
    renamed in an earlier page may come again under its new id; its id is then no longer the one renamed from."""
    read = sa.text(
        "SELECT case_id, claim_id, line_number, root_cause, provider_npi FROM cases "
        "WHERE line_number <> 0 AND case_id > :after ORDER BY case_id LIMIT :page"
    )
    after = ""
    while rows := list(op.get_bind().execute(read, {"after": after, "page": PAGE}).all()):
        yield rows
        after = rows[-1].case_id


def _rename(rows: list[sa.Row], old: Callable[[sa.Row], str], new: Callable[[sa.Row], str]) -> None:
    pairs = [(row.case_id, new(row)) for row in rows if row.case_id == old(row)]
    if not pairs:
        return
    taken = sa.text("SELECT case_id FROM cases WHERE case_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    present = set(op.get_bind().execute(taken, {"ids": [n for _, n in pairs]}).scalars())
    rename = sa.text("UPDATE cases SET case_id = :new WHERE case_id = :old")
    renames = [{"new": n, "old": o} for o, n in pairs if n not in present]
    if renames:
        op.get_bind().execute(rename, renames)


def _line(row: sa.Row) -> tuple[object, ...]:
    return ("case", row.claim_id, row.line_number, row.root_cause)


def upgrade() -> None:
    for rows in _pages():
        _rename(rows, lambda row: _derive(*_line(row)), lambda row: _derive(*_line(row), row.provider_npi))


def downgrade() -> None:
    shared = sa.text(
        "SELECT count(*) FROM (SELECT 1 FROM cases WHERE line_number <> 0 "
        "GROUP BY claim_id, line_number, root_cause HAVING count(*) > 1) AS lines"
    )
    lines = op.get_bind().execute(shared).scalar_one()
    if lines:
        # They were one case before: no row can say which one it would have been.
        raise RuntimeError(f"cannot downgrade: {lines} claim lines have more than one case (of more than one provider)")
    for rows in _pages():
        _rename(rows, lambda row: _derive(*_line(row), row.provider_npi), lambda row: _derive(*_line(row)))
