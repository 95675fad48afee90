"""Partial indexes of an account's payments and promises (issue 11: flat self-service).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

The last payment (menu key 4) and the last promise taken (key 5) read the entries index
backwards from the call to the latest entry of their kind, so an account that has not
paid for years cost every entry it posted since (185 against 24 µs a lookup on SQLite,
3 650 entries against 10). Each kind gets an index of its own rows only (the columns of
`ix_entries_account_posted_amount_kind`, `WHERE kind = ...`): the latest one is read
first, however long the history. The queries write the kind into their SQL, so that the
planner can match it to the index.

Upgrade builds both indexes: on PostgreSQL, writes to `entries` wait meanwhile (reads go
on), on a big ledger for a while. Downgrade drops them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Written out, not imported: a migration keeps what it did when the models change.
INDEXES = {
    "ix_entries_account_payments": "payment",
    "ix_entries_account_promises": "promised_payment",
}


def upgrade() -> None:
    for name, kind in INDEXES.items():
        where = sa.text(f"kind = '{kind}'")
        op.create_index(
            name,
            "entries",
            ["account_id", "posted_at", "amount", "kind"],
            sqlite_where=where,
            postgresql_where=where,
        )


def downgrade() -> None:
    for name in INDEXES:
        op.drop_index(name, table_name="entries")
