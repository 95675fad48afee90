"""Bring a database to the schema's head revision with the Alembic migrations shipped here.

The migrations live in `ivr/db/migrations/` inside the package and Alembic is configured
in code (`config()`), so they run from an installed wheel with no alembic.ini.
`bring_to_head(engine)` is the one call `ivr serve`, `ivr ledger init` and the tests make:

- an empty database gets the models' tables (`create_all`) stamped with the head revision;
  `tests/test_migrations.py` checks that this is the very schema the migrations build;
- a ledger made before migrations (its tables, no alembic_version) is adopted: revision
  0001 creates only the tables it lacks, then the later revisions run;
- a database behind the head is upgraded; one at the head is left alone.

Adding a revision (a new table, a changed column):

1. change the models, then run `ivr db revision -m "promised payments"`: it builds a
   scratch SQLite database from the migrations, compares it with the models and writes
   `ivr/db/migrations/versions/0002_promised_payments.py` (numbered in order);
2. review that file: use plain column types, not the models' (money is
   `sa.Numeric(12, 2).with_variant(sa.BigInteger(), "sqlite")`, a timestamp
   `sa.DateTime(timezone=True)`), and give data changes their own `op.execute`;
3. run `pytest tests/test_migrations.py`, on SQLite and with IVR_TEST_DATABASE_URL set
   to PostgreSQL: it fails while the models and the migrations disagree.
"""

from __future__ import annotations

import enum
import functools
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from ivr.db.engine import make_engine
from ivr.db.schema import Base

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class Outcome(enum.Enum):
    """What `bring_to_head` did to a database."""

    CREATED = "created"  # it was empty
    ADOPTED = "adopted"  # a ledger from before migrations, now versioned
    UPGRADED = "upgraded"
    CURRENT = "current"  # nothing to do


def config(connection: Connection | None = None) -> Config:
    """Build Alembic's configuration in code; env.py runs on `connection`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Revision files named 0002_what_it_does.py; ConfigParser needs the % doubled.
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    """Return the shipped revisions, read once per process."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """Return the head revision of the shipped migrations."""
    found = script().get_current_head()
    assert found is not None, f"no revisions in {MIGRATIONS}"
    return found


def current(engine: Engine) -> str | None:
    """Return the database's revision, or None when it is not versioned."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def bring_to_head(engine: Engine) -> Outcome:
    """Create, adopt or upgrade the database so that its schema is at the head revision."""
    with engine.begin() as connection:
        context = MigrationContext.configure(connection)
        revision = context.get_current_revision()
        if revision == head():
            return Outcome.CURRENT
        ours = set(Base.metadata.tables)
        if revision is None and not ours & set(inspect(connection).get_table_names()):
            # One create_all instead of replaying every revision: the tests do this ~600
            # times, and test_migrations proves both give the same schema.
            Base.metadata.create_all(connection, checkfirst=False)
            context.stamp(script(), "head")
            return Outcome.CREATED
        command.upgrade(config(connection), "head")
        return Outcome.ADOPTED if revision is None else Outcome.UPGRADED


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Run the migrations up to `revision`, replaying each one (no create_all shortcut)."""
    with engine.begin() as connection:
        command.upgrade(config(connection), revision)


def stamp(engine: Engine, revision: str) -> None:
    """Record `revision` as the database's schema without running any migration."""
    with engine.begin() as connection:
        command.stamp(config(connection), revision)


def new_revision(message: str, database_url: str | None = None) -> Path:
    """Write the next revision file from the models' differences with the migrations.

    The comparison runs on a scratch SQLite database built by the migrations unless
    `database_url` names a database at the head revision.
    """
    number = max(int(r.revision) for r in script().walk_revisions() if r.revision.isdigit()) + 1
    with tempfile.TemporaryDirectory(prefix="ivr-revision-") as folder:
        engine = make_engine(database_url or f"sqlite:///{folder}/head.sqlite3")
        try:
            if database_url is None:
                upgrade(engine)
            with engine.begin() as connection:
                written = command.revision(
                    config(connection),
                    message=message,
                    autogenerate=True,
                    rev_id=f"{number:04d}",
                )
        finally:
            engine.dispose()
    script.cache_clear()
    assert written is not None and not isinstance(written, list)
    return Path(written.path)
