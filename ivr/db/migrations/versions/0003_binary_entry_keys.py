"""Entry keys as 16 bytes instead of 64 hex characters (issue 11: the import's speed).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

The unique index on `entries.entry_key` is most of the cost of moving imported rows into
`entries`; a 16-byte BLOB/BYTEA key makes it a third of the size. Every existing key is
converted by `ivr.db.imports.convert_key`: an import's key (the SHA-256 of the row's
content, in hex) keeps its first 16 bytes, which is exactly the key today's import gives
the same row, so a file imported before the upgrade still adds nothing when imported
again. Any other non-empty key is hashed to 16 bytes (still unique); NULL stays NULL.

PostgreSQL: one `ALTER COLUMN ... TYPE bytea USING ...` (rewrites the table and its
unique index; no trigger fires). SQLite cannot change a column's type: the table is
rebuilt (rows copied with their ids, its index and its `month_totals` triggers made
again; the totals themselves do not change). Both take a while on a big ledger (SQLite:
about a minute for 10 million entries) and hold the write lock meanwhile.

Downgrade turns a key into the hex of its 16 bytes (32 characters): the code of revision
0002 would then import again the rows imported before (its keys are 64 characters).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from ivr.db import totals
from ivr.db.imports import convert_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")  # kopecks on SQLite
UTC_TIME = sa.DateTime(timezone=True)

_PG_TO_BYTES = (
    "CASE WHEN entry_key ~ '^[0-9a-f]{64}$' THEN decode(substr(entry_key, 1, 32), 'hex') "
    "ELSE substr(sha256(convert_to(entry_key, 'UTF8')), 1, 16) END"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE entries ALTER COLUMN entry_key TYPE bytea USING {_PG_TO_BYTES}")
        return
    _rebuild_sqlite(sa.LargeBinary(16), "ivr_convert_key(entry_key)", convert_key)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE entries ALTER COLUMN entry_key TYPE varchar(64) "
            "USING encode(entry_key, 'hex')"
        )
        return
    _rebuild_sqlite(sa.String(64), "lower(hex(entry_key))", None)


def _rebuild_sqlite(
    key_type: sa.types.TypeEngine[Any], key_sql: str, function: Callable[[Any], Any] | None
) -> None:
    """Copy `entries` into a new table whose key has `key_type`, then put it in its place."""
    bind = op.get_bind()
    if function is not None:
        driver: Any = bind.connection.driver_connection
        driver.create_function("ivr_convert_key", 1, function, deterministic=True)
    op.create_table(
        "entries_0003",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("posted_at", UTC_TIME, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("entry_key", key_type, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(
            "kind IN ('payment', 'charge', 'adjustment', 'promised_payment')",
            name="ck_entry_kind",
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.UniqueConstraint("entry_key"),
    )
    columns = "id, account_id, posted_at, amount, kind, memo"
    op.execute(
        f"INSERT INTO entries_0003 ({columns}, entry_key) "
        f"SELECT {columns}, {key_sql} FROM entries ORDER BY id"
    )
    # Dropping a table fires none of its triggers (the totals stay as they are) and takes
    # its index and triggers with it; they are made again on the new table below.
    op.drop_table("entries")
    op.rename_table("entries_0003", "entries")
    op.create_index(
        "ix_entries_account_posted_amount_kind",
        "entries",
        ["account_id", "posted_at", "amount", "kind"],
    )
    for statement in totals.trigger_ddl("sqlite"):
        op.execute(statement)
