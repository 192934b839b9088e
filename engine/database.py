"""Creating the async engine for the store, with the settings each backend needs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def masked(url: str) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show nothing of it
        return "(unparseable database URL)"


def connect(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        database = create_async_engine(url)

        @event.listens_for(database.sync_engine, "connect")
        def _sqlite_pragmas(connection: Any, _: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return database
    # A short connect timeout: while the database is down, retries should come quickly, not hang for a minute.
    return create_async_engine(
        url, pool_size=5, max_overflow=5, pool_pre_ping=True, connect_args={"timeout": 10, "command_timeout": 60}
    )
