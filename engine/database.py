"""Creating the async engine for the store, with the settings each backend needs."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


class DatabaseUrlError(ValueError):
    """A database URL Docloop cannot use; the message never carries the URL's password."""


def check_database_url(url: str) -> None:
    """Raise DatabaseUrlError unless `url` names a store Docloop can use (SQLite or PostgreSQL, async driver)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            "not a database URL; expected e.g. sqlite+aiosqlite:///./docloop.db or "
            "postgresql+asyncpg://user:password@host/db"
        ) from None
    expected = " or ".join(f"{b}+{d}" for b, d in ASYNC_DRIVERS.items())
    try:  # a URL without a driver names its backend's default one, which SQLAlchemy must load to say
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    except NoSuchModuleError:
        raise DatabaseUrlError(f"unsupported database {parsed.drivername!r} in {masked(url)}; use {expected}") from None
    if ASYNC_DRIVERS.get(backend) != driver:
        raise DatabaseUrlError(f"unsupported database driver {parsed.drivername!r} in {masked(url)}; use {expected}")
    try:
        parsed.get_dialect()
    except NoSuchModuleError:
        raise DatabaseUrlError(f"database driver {parsed.drivername!r} is not installed") from None


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for other stores and for in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def masked(url: str) -> str:
    """The URL as it may be shown: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show nothing of it
        return "(unparseable database URL)"


# Connections of the pool used by other work than the tasks' batches: the department and routing stage, the
# relay, the ticker or pruning, and the probes and read API.
RESERVED_CONNECTIONS = 4


def connect(url: str, pool_size: int = 10) -> AsyncEngine:
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
    # The pool must hold every connection in steady use: one given back when the pool is full is closed, and
    # a new one prepares every statement again (and asks the server for its types) before it is any quicker.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={"timeout": 10, "command_timeout": 60},
        json_deserializer=_json_value,
    )


def _json_value(text: str) -> Any:
    """A JSON column's value; most are empty lists, which need no parser (a new list each time: callers
    change what they load)."""
    return [] if text == "[]" else json.loads(text)
