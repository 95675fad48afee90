"""Monthly totals kept by triggers (flat balances), one entries index, promised-payment guards.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

- `month_totals` (issue 11): one row per account and UTC month (and the flag table
  with which the import pauses SQLite's insert trigger), filled from the entries
  already there and kept exact by the triggers of `ivr.db.totals` (the same DDL that
  `create_all` installs, so a migrated ledger and a new one cannot differ).
- The entries' covering index gains `kind`, so the 30-day charges of the days-left
  estimate are read from the index alone; it replaces the old one instead of adding a
  second index that every imported row would pay for.
- `promise_guards` (issue 10): the row per account that makes a promised payment taken
  by phone exactly-once (see `ivr.db.selfservice`).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ivr.db import totals

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")  # kopecks on SQLite
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "month_totals",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("month", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.PrimaryKeyConstraint("account_id", "month"),
        sqlite_with_rowid=False,
    )
    op.create_table("month_totals_paused", sa.Column("paused", sa.Integer(), nullable=False))
    totals.install(op.get_bind())

    op.drop_index("ix_entries_account_posted_amount", table_name="entries")
    op.create_index(
        "ix_entries_account_posted_amount_kind",
        "entries",
        ["account_id", "posted_at", "amount", "kind"],
    )

    op.create_table(
        "promise_guards",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("taken_at", UTC_TIME, nullable=False),
        sa.Column("returns_at", UTC_TIME, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("account_id"),
    )


def downgrade() -> None:
    op.drop_table("promise_guards")
    op.drop_index("ix_entries_account_posted_amount_kind", table_name="entries")
    op.create_index(
        "ix_entries_account_posted_amount", "entries", ["account_id", "posted_at", "amount"]
    )
    bind = op.get_bind()
    for statement in totals.drop_trigger_ddl(bind.dialect.name):
        bind.exec_driver_sql(statement)
    op.drop_table("month_totals_paused")
    op.drop_table("month_totals")
