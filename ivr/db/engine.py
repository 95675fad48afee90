"""Engines with bounded connect, statement and lock waits, per dialect.

A hung database must become the caller's apology well inside Twilio's 15-second webhook
timeout, so every wait is bounded here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, func, make_url, select
from sqlalchemy.exc import SQLAlchemyError

# Statement and connection bounds, so a hung database becomes the caller's apology
# well inside Twilio's 15-second webhook timeout.
QUERY_TIMEOUT_MS = 2500
CONNECT_TIMEOUT_S = 2
# A checkout takes the connection returned last, not the one idle longest. A worker's
# steps and its call-log thread then share one warm connection instead of taking turns
# on two: on SQLite another connection's commit empties a reader's page cache, and on
# PostgreSQL the server process, its caches and psycopg's prepared statements stay the
# same. The deepest step, alternating runs: SQLite 0.51x -> 0.54x, PostgreSQL 0.38x ->
# 0.41x of bare Flask (bench/PROFILE.md).
LIFO_POOL = True


def make_engine(url: str) -> Engine:
    """Create an engine with bounded connect and statement times for this dialect."""
    if url.startswith("sqlite"):
        # An in-memory database has a single connection, so no pool to wait for.
        in_memory = make_url(url).database in (None, "", ":memory:")
        pool_args = (
            {} if in_memory else {"pool_timeout": CONNECT_TIMEOUT_S, "pool_use_lifo": LIFO_POOL}
        )
        engine = create_engine(url, connect_args={"timeout": QUERY_TIMEOUT_MS / 1000}, **pool_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={QUERY_TIMEOUT_MS}",
        }
    # A step waiting for a pooled connection is bounded like one waiting for the server.
    return create_engine(
        url, connect_args=connect_args, pool_timeout=CONNECT_TIMEOUT_S, pool_use_lifo=LIFO_POOL
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets billing append while calls read; the busy timeout bounds a lock wait.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={QUERY_TIMEOUT_MS}")
    # In WAL mode NORMAL stays consistent on a crash and skips an fsync per commit; only
    # the hotline's own last writes (lockout counts, call log) can be lost to a power cut.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def is_database_error(error: BaseException) -> bool:
    """Say whether an error came from the database (or its driver) rather than our code."""
    return isinstance(error, SQLAlchemyError)


def reason(error: BaseException) -> str:
    """Say why a database call failed in one short line (the log filter masks what it holds)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__qualname__
    return f"{name}: {first[:200]}" if first else name


@contextmanager
def lock_wait(connection: Connection, ms: int) -> Iterator[None]:
    """Make the statements inside the block give up after waiting `ms` for a lock.

    Commit after the block: the bound covers what the block sends. PostgreSQL: a
    statement timeout local to the transaction. SQLite: the connection's busy timeout,
    put back to the engine's bound when the block ends.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(select(func.set_config("statement_timeout", str(int(ms)), True)))
        yield
        return
    if dialect != "sqlite":
        yield
        return
    # On the driver's connection: two PRAGMAs through SQLAlchemy cost more than the row.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA busy_timeout = {int(ms)}")
    try:
        yield
    finally:
        try:
            driver.execute(f"PRAGMA busy_timeout = {QUERY_TIMEOUT_MS}")
        except Exception:
            # A connection that cannot take a PRAGMA must not go back to the pool
            # with the short wait; drop it instead.
            connection.invalidate()
            raise
