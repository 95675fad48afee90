"""Entry keys unique per account instead of across the ledger (issue 11: the import's speed).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

An entry's content key (`ivr.db.import_parse.content_key`) is a hash of the row's text,
contract included, so one row always belongs to one account: `UNIQUE (account_id,
entry_key)` refuses the same duplicates as `UNIQUE (entry_key)` did, and the import's
`ON CONFLICT` finds them as before. What changes is where a new key goes: a global index
of random 16-byte keys put every imported row on a random leaf (most of the cost of the
move into `entries`: SQLite ~2.2 s, PostgreSQL ~4 s of a million rows); keyed by account
first, a billing export (written account by account) fills a few leaves at a time.

PostgreSQL: the new constraint is added (an index build: a while on a big ledger, with
writes to `entries` blocked meanwhile), then the old one dropped. SQLite cannot drop a
table's UNIQUE constraint: the table is rebuilt as revision 0003 rebuilt it (rows copied
with their ids, its index and its `month_totals` triggers made again; the totals do not
change).

Downgrade makes the key unique across the ledger again; it fails if two accounts have
come to hold the same key meanwhile (billing's own keys; imported ones cannot).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ivr.db import totals

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")  # kopecks on SQLite
UTC_TIME = sa.DateTime(timezone=True)
NEW_NAME = "uq_entries_account_key"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_unique_constraint(NEW_NAME, "entries", ["account_id", "entry_key"])
        op.drop_constraint(_unique_on(["entry_key"]), "entries", type_="unique")
        return
    _rebuild_sqlite(sa.UniqueConstraint("account_id", "entry_key", name=NEW_NAME))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_unique_constraint("entries_entry_key_key", "entries", ["entry_key"])
        op.drop_constraint(NEW_NAME, "entries", type_="unique")
        return
    _rebuild_sqlite(sa.UniqueConstraint("entry_key"))


def _unique_on(columns: list[str]) -> str:
    """The name of the unique constraint of `entries` on exactly `columns` (PostgreSQL)."""
    for unique in sa.inspect(op.get_bind()).get_unique_constraints("entries"):
        if unique["column_names"] == columns and unique["name"]:
            return str(unique["name"])
    raise LookupError(f"entries has no unique constraint on {', '.join(columns)}")


def _rebuild_sqlite(unique: sa.UniqueConstraint) -> None:
    """Copy `entries` into a new table with `unique` as its key's constraint, then swap."""
    op.create_table(
        "entries_0005",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("posted_at", UTC_TIME, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("entry_key", sa.LargeBinary(16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.CheckConstraint(
            "kind IN ('payment', 'charge', 'adjustment', 'promised_payment')",
            name="ck_entry_kind",
        ),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        unique,
    )
    columns = "id, account_id, posted_at, amount, kind, memo, entry_key"
    op.execute(f"INSERT INTO entries_0005 ({columns}) SELECT {columns} FROM entries ORDER BY id")
    # Dropping a table fires none of its triggers (the totals stay as they are) and takes
    # its index and triggers with it; they are made again on the new table below.
    op.drop_table("entries")
    op.rename_table("entries_0005", "entries")
    op.create_index(
        "ix_entries_account_posted_amount_kind",
        "entries",
        ["account_id", "posted_at", "amount", "kind"],
    )
    for statement in totals.trigger_ddl("sqlite"):
        op.execute(statement)
