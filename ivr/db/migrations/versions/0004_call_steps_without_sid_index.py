"""Drop the call log's (call_sid, at) index (issue 11: a step's share of the call log).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02

Every webhook step adds a call-log row, and a Twilio CallSid is random: each row went into
a random leaf of `ix_call_steps_call_sid_at`, about 27 µs of SQLite's time a row once the
index outgrew the page cache (3.5 µs without it), a dirty page in every WAL commit. The
one reader of it, `call_steps_between`, now reads the window by time (`ix_call_steps_at`)
widened by the longest a call can last, and keeps the calls with a step inside.

Downgrade builds the index again (a while on a big call log).
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_call_steps_call_sid_at", table_name="call_steps")


def downgrade() -> None:
    op.create_index("ix_call_steps_call_sid_at", "call_steps", ["call_sid", "at"])
