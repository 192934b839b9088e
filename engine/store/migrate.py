"""Schema changes go through Alembic only: `docloop db upgrade`, or `upgrade()` from code."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking (Alembic runs its own event loop): call it before starting one, or in a thread."""
    command.upgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The schema revision this code expects (the newest migration)."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
