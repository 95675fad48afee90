"""Monthly totals of the ledger, kept exact by triggers on `entries`, on SQLite and PostgreSQL.

Why triggers: billing appends entries with its own INSERTs, not only through
`ivr ledger import`, and an entry may be backdated (posted in a past month, arriving
today) or future-dated. A trigger sees every change whoever makes it, in the same
transaction, so `month_totals` never disagrees with `entries`:

- SQLite: row triggers (AFTER INSERT / DELETE / UPDATE) upsert the entry's month.
- PostgreSQL: statement triggers with transition tables, so a COPY or a bulk
  INSERT ... SELECT updates each (account, month) once, not once per row.

The DDL lives here once (`trigger_ddl(dialect)`): `create_all` runs `install` when it
creates `month_totals` (filling the table from the entries already there, so an existing
ledger upgrades in place), and a migration can call `install(connection)` the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, event

from ivr.db.schema import Base, MonthTotal

TRIGGERS = ("entries_month_totals_ins", "entries_month_totals_del", "entries_month_totals_upd")


def month_number(at: datetime) -> int:
    """Return the month of a UTC moment as `month_totals` counts it: year * 12 + month - 1."""
    return at.year * 12 + at.month - 1


def month_start(month: int) -> datetime:
    """Return the first moment (UTC) of a month number."""
    return datetime(month // 12, month % 12 + 1, 1, tzinfo=UTC)


def _month_sql(dialect: str, column: str) -> str:
    """The SQL of a stored `posted_at`'s month number."""
    if dialect == "sqlite":
        # Stored as naive UTC text, 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
        return (
            f"(CAST(substr({column}, 1, 4) AS INTEGER) * 12"
            f" + CAST(substr({column}, 6, 2) AS INTEGER) - 1)"
        )
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"(CAST(EXTRACT(YEAR FROM {utc}) AS INTEGER) * 12"
        f" + CAST(EXTRACT(MONTH FROM {utc}) AS INTEGER) - 1)"
    )


def backfill_sql(dialect: str, where: str = "") -> str:
    """Add the sums of the entries (those matching `where`, else all) to their months' totals."""
    month = _month_sql(dialect, "posted_at")
    # SQLite's parser needs a WHERE before an ON CONFLICT that follows a SELECT.
    condition = where or "WHERE true"
    return (
        "INSERT INTO month_totals (account_id, month, amount) "
        f"SELECT account_id, {month}, sum(amount) FROM entries {condition} "
        "GROUP BY 1, 2 ORDER BY 1, 2 "
        "ON CONFLICT (account_id, month) DO UPDATE "
        "SET amount = month_totals.amount + excluded.amount"
    )


def trigger_ddl(dialect: str) -> list[str]:
    """Return the statements that create the triggers keeping `month_totals` exact."""
    if dialect == "sqlite":
        return _sqlite_triggers()
    if dialect == "postgresql":
        return _postgres_triggers()
    raise NotImplementedError(f"monthly totals support SQLite and PostgreSQL, not {dialect}")


def drop_trigger_ddl(dialect: str) -> list[str]:
    """Return the statements that drop those triggers (for a bulk load that rebuilds totals)."""
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON entries" for name in TRIGGERS]
    return [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGERS]


def _sqlite_upsert(row: str, sign: str) -> str:
    month = _month_sql("sqlite", f"{row}.posted_at")
    return (
        "INSERT INTO month_totals (account_id, month, amount) "
        f"VALUES ({row}.account_id, {month}, {sign}{row}.amount) "
        "ON CONFLICT (account_id, month) DO UPDATE SET amount = amount + excluded.amount;"
    )


# The import's bulk path on SQLite: a row in this table, inside the import's own write
# transaction, makes the insert trigger stand aside while the import adds the sums itself.
# SQLite has one writer at a time and nobody else sees the uncommitted row, so billing's
# own INSERTs always go through the trigger.
_PAUSE_TABLE = "month_totals_paused"
PAUSE_SQLITE_TRIGGERS = f"INSERT INTO {_PAUSE_TABLE} (paused) VALUES (1)"
RESUME_SQLITE_TRIGGERS = f"DELETE FROM {_PAUSE_TABLE}"


def _sqlite_triggers() -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {_PAUSE_TABLE} (paused INTEGER NOT NULL)",
        "CREATE TRIGGER IF NOT EXISTS entries_month_totals_ins AFTER INSERT ON entries "
        f"WHEN NOT EXISTS (SELECT 1 FROM {_PAUSE_TABLE}) "
        f"BEGIN {_sqlite_upsert('NEW', '')} END",
        "CREATE TRIGGER IF NOT EXISTS entries_month_totals_del AFTER DELETE ON entries "
        f"BEGIN {_sqlite_upsert('OLD', '-')} END",
        "CREATE TRIGGER IF NOT EXISTS entries_month_totals_upd "
        "AFTER UPDATE OF account_id, posted_at, amount ON entries "
        f"BEGIN {_sqlite_upsert('OLD', '-')} {_sqlite_upsert('NEW', '')} END",
    ]


def _pg_function(name: str, select: str) -> str:
    # Rows in (account, month) order, so two concurrent bulk loads lock totals in the same
    # order and cannot deadlock each other on them.
    return (
        f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        "INSERT INTO month_totals (account_id, month, amount) "
        f"SELECT account_id, month, sum(amount) FROM ({select}) AS changed "
        "GROUP BY account_id, month ORDER BY account_id, month "
        "ON CONFLICT (account_id, month) DO UPDATE "
        "SET amount = month_totals.amount + EXCLUDED.amount; "
        "RETURN NULL; END $fn$"
    )


def _postgres_triggers() -> list[str]:
    def rows(table: str, sign: str) -> str:
        return (
            f"SELECT account_id, {_month_sql('postgresql', 'posted_at')} AS month, "
            f"{sign}amount AS amount FROM {table}"
        )

    return [
        _pg_function("ivr_month_totals_ins", rows("new_rows", "")),
        _pg_function("ivr_month_totals_del", rows("old_rows", "-")),
        _pg_function(
            "ivr_month_totals_upd", f"{rows('new_rows', '')} UNION ALL {rows('old_rows', '-')}"
        ),
        *drop_trigger_ddl("postgresql"),
        "CREATE TRIGGER entries_month_totals_ins AFTER INSERT ON entries "
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION ivr_month_totals_ins()",
        "CREATE TRIGGER entries_month_totals_del AFTER DELETE ON entries "
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION ivr_month_totals_del()",
        # Transition tables cannot go with a column list (UPDATE OF ...): every UPDATE.
        "CREATE TRIGGER entries_month_totals_upd AFTER UPDATE ON entries "
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION ivr_month_totals_upd()",
    ]


def install(connection: Connection) -> None:
    """Fill `month_totals` from the entries there and create its triggers (one transaction)."""
    dialect = connection.dialect.name
    for statement in _install_statements(dialect):
        connection.exec_driver_sql(statement)


def rebuild(connection: Connection) -> None:
    """Recompute every monthly total from the entries (after a load with the triggers off)."""
    connection.exec_driver_sql("DELETE FROM month_totals")
    connection.exec_driver_sql(backfill_sql(connection.dialect.name))


def _install_statements(dialect: str) -> Sequence[str]:
    return [backfill_sql(dialect), *trigger_ddl(dialect)]


def _after_create(_metadata: Any, connection: Connection, **kw: Any) -> None:
    """Install the totals when `create_all` has just created `month_totals`.

    On the metadata, not the table: `entries` must exist too, whatever the creation order.
    """
    if MonthTotal.__table__ in kw.get("tables", ()):
        install(connection)


event.listen(Base.metadata, "after_create", _after_create)
