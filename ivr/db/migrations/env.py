"""Alembic's environment: run the migrations on the connection `ivr.db.migrate` hands over.

There is no alembic.ini: `ivr.db.migrate.config()` builds the configuration in code and
puts an open connection in `config.attributes["connection"]`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ivr.db.schema import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("run the migrations through ivr.db.migrate (`ivr db upgrade`)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it; batch mode lets one revision serve both databases.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
