"""The schema on main before Alembic: the demo ledger, failed lookups and the call log.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

A ledger created before migrations existed (by `create_all`) has some or all of these
tables and no alembic_version; a table that is already there is left alone, so this
revision adopts such a ledger and adds what an older one lacks (the call log came later
than the ledger; billing may own accounts and entries). The types are the plain ones that
give the DDL of the models' `Money` and `UtcDateTime`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")  # kopecks on SQLite
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    present = set(sa.inspect(op.get_bind()).get_table_names())

    if "accounts" not in present:
        op.create_table(
            "accounts",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("contract", sa.String(12), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("contract"),
        )
    if "entries" not in present:
        op.create_table(
            "entries",
            sa.Column("id", BIG_ID, nullable=False),
            sa.Column("account_id", sa.Integer(), nullable=False),
            sa.Column("posted_at", UTC_TIME, nullable=False),
            sa.Column("amount", MONEY, nullable=False),
            sa.Column("kind", sa.String(20), nullable=False),
            sa.Column("memo", sa.Text(), nullable=False),
            sa.Column("entry_key", sa.String(64), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.CheckConstraint(
                "kind IN ('payment', 'charge', 'adjustment', 'promised_payment')",
                name="ck_entry_kind",
            ),
            sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
            sa.UniqueConstraint("entry_key"),
        )
        op.create_index(
            "ix_entries_account_posted_amount", "entries", ["account_id", "posted_at", "amount"]
        )
    if "failed_lookups" not in present:
        op.create_table(
            "failed_lookups",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("caller", sa.String(32), nullable=False),
            sa.Column("at", UTC_TIME, nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_failed_lookups_caller_at", "failed_lookups", ["caller", "at"])
    if "call_steps" not in present:
        op.create_table(
            "call_steps",
            sa.Column("id", BIG_ID, nullable=False),
            sa.Column("call_sid", sa.String(64), nullable=False),
            sa.Column("caller", sa.String(32), nullable=False),
            sa.Column("at", UTC_TIME, nullable=False),
            sa.Column("state", sa.String(20), nullable=True),
            sa.Column("next_state", sa.String(20), nullable=True),
            sa.Column("outcome", sa.String(20), nullable=False),
            sa.Column("contract", sa.String(20), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.CheckConstraint(
                "contract IS NULL OR contract LIKE '%*%'", name="ck_call_steps_masked"
            ),
        )
        op.create_index("ix_call_steps_at", "call_steps", ["at"])
        op.create_index("ix_call_steps_call_sid_at", "call_steps", ["call_sid", "at"])
    if "call_ends" not in present:
        op.create_table(
            "call_ends",
            sa.Column("id", BIG_ID, nullable=False),
            sa.Column("call_sid", sa.String(64), nullable=False),
            sa.Column("caller", sa.String(32), nullable=False),
            sa.Column("at", UTC_TIME, nullable=False),
            sa.Column("status", sa.String(20), nullable=False),
            sa.Column("duration_s", sa.Integer(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_call_ends_at", "call_ends", ["at"])
        op.create_index("ix_call_ends_call_sid", "call_ends", ["call_sid"])


def downgrade() -> None:
    for index, table in (
        ("ix_call_ends_call_sid", "call_ends"),
        ("ix_call_ends_at", "call_ends"),
        ("ix_call_steps_call_sid_at", "call_steps"),
        ("ix_call_steps_at", "call_steps"),
        ("ix_failed_lookups_caller_at", "failed_lookups"),
        ("ix_entries_account_posted_amount", "entries"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("call_ends", "call_steps", "failed_lookups", "entries", "accounts"):
        op.drop_table(table)
