"""The CSV import: validate a whole billing export first, then load it in bulk, all or nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from ivr.db import totals
from ivr.db.import_parse import (
    CSV_HEADER,
    KEY_BYTES,
    Batch,
    LedgerRow,
    content_key,
    parse_row,
    parsed,
    read_csv,
    sqlite_rows,
    staged_rows,
)

__all__ = [
    "CSV_HEADER",
    "KEY_BYTES",
    "ImportReport",
    "LedgerRow",
    "content_key",
    "convert_key",
    "import_csv",
    "parse_row",
    "read_csv",
    "staged_rows",
]

_OLD_KEY = re.compile(r"[0-9a-f]{64}")


def convert_key(old: str | None) -> bytes | None:
    """Turn a key of before revision 0003 (64 hex digits) into today's 16 bytes.

    A key that is not such a digest (billing may have written its own) is hashed, so it
    stays unique and never matches an imported row.
    """
    if old is None:
        return None
    if _OLD_KEY.fullmatch(old):
        return bytes.fromhex(old[: 2 * KEY_BYTES])
    return content_key(old)


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    rows: int
    added: int
    accounts_added: int

    @property
    def already_present(self) -> int:
        return self.rows - self.added


def import_csv(
    engine: Engine,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    checking: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Load a ledger CSV in bulk, all or nothing; rows already in the ledger are skipped.

    One transaction. First every row is validated in Python and staged, ready to insert,
    in a staging table of the import's own (PostgreSQL: COPY into an unlogged table made
    in the transaction): nothing reaches the ledger's tables until the whole file has
    passed, and a bad row rolls it all back. Then the database moves the staged rows into
    `entries` in a few big statements, skipping rows whose content key is already there,
    so importing a file twice adds nothing. `month_totals` follows: PostgreSQL's
    statement triggers aggregate each statement; on SQLite the import adds the new rows'
    sums itself while its row trigger stands aside (see `ivr.db.totals`).

    The checking runs in a child process for a big file (`import_parse.parsed`), so it
    and the staging share the machine's cores.

    `checking(bytes read, file size)` now and then while the file is checked;
    `progress(rows moved, rows)` after each batch of `BATCH_ROWS` moved.
    """
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    size = path.stat().st_size
    report_read = None
    if checking is not None:
        tell = checking

        def report_read(done: int) -> None:
            tell(min(done, size), size)

    with engine.connect() as connection:
        driver: Any = connection.connection.driver_connection
        if dialect == "sqlite":
            # On the driver, outside any transaction (foreign_keys is a no-op inside one),
            # and put back whatever happens: the connection goes back to the pool.
            for pragma in _SQLITE_BULK:
                driver.execute(pragma)
        try:
            with connection.begin():
                report = _import(connection, path, report_read, progress)
        finally:
            if dialect == "sqlite":
                for pragma in _SQLITE_USUAL:
                    driver.execute(pragma)
    return report


def _import(
    connection: Connection,
    path: Path,
    report_read: Callable[[int], None] | None,
    progress: Callable[[int, int], None] | None,
) -> ImportReport:
    """Stage, check and move the file inside the connection's transaction."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        # Seconds are enough for a webhook, not for millions of rows; memory for the
        # totals trigger's aggregate of a big statement (this transaction only).
        connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        connection.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
    staging, total = _stage(connection, path, report_read)
    accounts_added = connection.exec_driver_sql(_ADD_ACCOUNTS.format(staging=staging)).rowcount
    if dialect == "sqlite":
        # The row trigger stands aside (this transaction is SQLite's only writer, and
        # no one else sees the flag); the new rows' sums are added below in one go.
        connection.exec_driver_sql(totals.PAUSE_SQLITE_TRIGGERS)
    last_id = connection.exec_driver_sql("SELECT max(id) FROM entries").scalar()
    moves = _MOVE_ENTRIES.format(values=_VALUES_SQLITE if dialect == "sqlite" else _VALUES_PG)
    added = 0
    for first in range(0, total, BATCH_ROWS):
        last = min(first + BATCH_ROWS, total)
        move = moves.format(staging=staging, first=first, last=last)
        added += connection.exec_driver_sql(move).rowcount
        if progress:
            progress(last, total)
    if dialect == "sqlite":
        where = f"WHERE id > {int(last_id or 0)}"  # the rows added: ids only grow
        connection.exec_driver_sql(totals.backfill_sql("sqlite", where))
        connection.exec_driver_sql(totals.RESUME_SQLITE_TRIGGERS)
    connection.exec_driver_sql(f"DROP TABLE {staging}")
    return ImportReport(rows=total, added=added, accounts_added=accounts_added)


BATCH_ROWS = 50_000  # rows one statement moves into `entries` (and staged at once)
SQLITE_CACHE_KIB = 512 * 1024
# The import's connection settings on SQLite, and the engine's usual ones put back after:
# a bigger page cache for the indexes the import grows; the staging table in memory (a
# temporary file cost ~0.2-0.4 s a million rows to write and drop); no per-row foreign
# key check, since every moved row joins its account, which only that check repeats.
_SQLITE_BULK = (
    f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA foreign_keys=OFF",
)
_SQLITE_USUAL = ("PRAGMA cache_size=-2000", "PRAGMA temp_store=DEFAULT", "PRAGMA foreign_keys=ON")
PG_WORK_MEM = "256MB"

# Each staged row keeps its line's place (n, from 1), so rows move in file order; its
# time is ISO 8601 UTC with microseconds, its amount canonical text. SQLite: n is the
# rowid, given in insertion order. PostgreSQL: an UNLOGGED table made inside the
# import's transaction (a rollback removes it; no WAL for ~100 bytes a row; shared
# buffers, not the session's small temp buffers), named after the backend so two
# imports at once do not meet.
_STAGING_SQLITE = (
    "CREATE TEMPORARY TABLE ivr_import (n INTEGER PRIMARY KEY, contract TEXT, "
    "posted_at TEXT, amount TEXT, kind TEXT, memo TEXT, entry_key BLOB)"
)
_STAGED_COLUMNS = "contract, posted_at, amount, kind, memo, entry_key"
SQLITE_GROUP = 50  # rows one INSERT stages on SQLite: a statement per row costs more


def _sqlite_insert(rows: int) -> str:
    """The INSERT of `rows` staged rows, its parameters their fields then their keys."""
    values = ", ".join(
        "(" + ", ".join([*(f"?{5 * i + f}" for f in range(1, 6)), f"?{5 * rows + i + 1}"]) + ")"
        for i in range(rows)
    )
    return f"INSERT INTO ivr_import ({_STAGED_COLUMNS}) VALUES {values}"


_STAGING_PG = (
    "CREATE UNLOGGED TABLE {staging} (n BIGINT NOT NULL, contract TEXT, "
    "posted_at TIMESTAMPTZ, amount NUMERIC(12, 2), kind TEXT, memo TEXT, entry_key BYTEA) "
    "WITH (autovacuum_enabled = false)"
)
_ADD_ACCOUNTS = (
    "INSERT INTO accounts (contract) SELECT DISTINCT contract FROM {staging} "
    "WHERE true ORDER BY contract ON CONFLICT (contract) DO NOTHING"
)
# SQLite stores the time as naive UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff', and the amount
# as integer kopecks.
_VALUES_SQLITE = (
    "substr(s.posted_at, 1, 10) || ' ' || substr(s.posted_at, 12, 15), "
    "CAST(replace(s.amount, '.', '') AS INTEGER)"
)
_VALUES_PG = "s.posted_at, s.amount"
_MOVE_ENTRIES = (
    "INSERT INTO entries (account_id, posted_at, amount, kind, memo, entry_key) "
    "SELECT a.id, {values}, s.kind, s.memo, s.entry_key "
    "FROM {{staging}} AS s JOIN accounts AS a ON a.contract = s.contract "
    "WHERE s.n > {{first}} AND s.n <= {{last}} "
    "ON CONFLICT (account_id, entry_key) DO NOTHING"
)


def _stage(
    connection: Connection, path: Path, report_read: Callable[[int], None] | None
) -> tuple[str, int]:
    """Validate every row of the file into a staging table; return its name and row count.

    A big file is checked in a second process (`import_parse.parsed`) while this one
    stages the blocks it has passed.
    """
    sqlite = connection.dialect.name == "sqlite"
    with parsed(path, sqlite, report_read) as batches:
        if sqlite:
            return "ivr_import", _stage_sqlite(connection, batches)
        return _stage_pg(connection, batches)


def _stage_sqlite(connection: Connection, batches: Iterator[Batch]) -> int:
    driver: Any = connection.connection.driver_connection
    # Made outside the transaction (pysqlite begins at the first INSERT): a failed
    # import leaves it behind on the pooled connection, so clear it first.
    connection.exec_driver_sql("DROP TABLE IF EXISTS temp.ivr_import")
    connection.exec_driver_sql(_STAGING_SQLITE)
    insert_group = _sqlite_insert(SQLITE_GROUP)
    insert_one = _sqlite_insert(1)
    total = 0
    for rows, payload in batches:
        groups, rest = sqlite_rows(payload, SQLITE_GROUP)
        driver.executemany(insert_group, groups)
        driver.executemany(insert_one, rest)
        total += rows
    connection.exec_driver_sql("ANALYZE temp.ivr_import")
    return total


def _stage_pg(connection: Connection, batches: Iterator[Batch]) -> tuple[str, int]:
    driver: Any = connection.connection.driver_connection
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    staging = f"ivr_import_{int(pid or 0)}"
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {staging}")
    connection.exec_driver_sql(_STAGING_PG.format(staging=staging))
    columns = f"{_STAGED_COLUMNS}, n"
    total = 0
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            # The batches are COPY text already (`import_parse.staged_batches`).
            for rows, text in batches:
                copy.write(text)
                total += rows
    # The moves read it by ranges of n; the planner needs to know its size.
    connection.exec_driver_sql(f"CREATE INDEX ON {staging} (n)")
    connection.exec_driver_sql(f"ANALYZE {staging}")
    return staging, total
