"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

Plain column types only (the DDL is what counts): money is
`sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")` (kopecks on SQLite), a
timestamp `sa.DateTime(timezone=True)`, a big id
`sa.BigInteger().with_variant(sa.Integer(), "sqlite")`.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = ${repr(branch_labels)}
depends_on = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
