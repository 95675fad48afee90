"""Migrations: a ledger made by today's `create_all` is adopted with its rows; the
migrations and the models describe one schema; `ivr db` reports and upgrades."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Engine, String, insert, inspect, literal, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr import db
from ivr.cli import main
from ivr.db import migrate
from tests.conftest import DEMO_CSV, database_url

AT = datetime(2026, 11, 30, 9, 30, 15, 123456, tzinfo=UTC)

# The DDL of `Base.metadata.create_all` on main before migrations, as each dialect
# printed it (CreateTable/CreateIndex), table by table in creation order. Never edit:
# this is what deployed ledgers have.
TODAY_DDL: dict[str, dict[str, list[str]]] = {
    "sqlite": {
        "accounts": [
            """CREATE TABLE accounts (
                id INTEGER NOT NULL,
                contract VARCHAR(12) NOT NULL,
                PRIMARY KEY (id),
                UNIQUE (contract)
            )"""
        ],
        "call_ends": [
            """CREATE TABLE call_ends (
                id INTEGER NOT NULL,
                call_sid VARCHAR(64) NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at DATETIME NOT NULL,
                status VARCHAR(20) NOT NULL,
                duration_s INTEGER,
                PRIMARY KEY (id)
            )""",
            "CREATE INDEX ix_call_ends_at ON call_ends (at)",
            "CREATE INDEX ix_call_ends_call_sid ON call_ends (call_sid)",
        ],
        "call_steps": [
            """CREATE TABLE call_steps (
                id INTEGER NOT NULL,
                call_sid VARCHAR(64) NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at DATETIME NOT NULL,
                state VARCHAR(20),
                next_state VARCHAR(20),
                outcome VARCHAR(20) NOT NULL,
                contract VARCHAR(20),
                PRIMARY KEY (id),
                CONSTRAINT ck_call_steps_masked CHECK (contract IS NULL OR contract LIKE '%*%')
            )""",
            "CREATE INDEX ix_call_steps_at ON call_steps (at)",
            "CREATE INDEX ix_call_steps_call_sid_at ON call_steps (call_sid, at)",
        ],
        "failed_lookups": [
            """CREATE TABLE failed_lookups (
                id INTEGER NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at DATETIME NOT NULL,
                PRIMARY KEY (id)
            )""",
            "CREATE INDEX ix_failed_lookups_caller_at ON failed_lookups (caller, at)",
        ],
        "entries": [
            """CREATE TABLE entries (
                id INTEGER NOT NULL,
                account_id INTEGER NOT NULL,
                posted_at DATETIME NOT NULL,
                amount BIGINT NOT NULL,
                kind VARCHAR(20) NOT NULL,
                memo TEXT NOT NULL,
                entry_key VARCHAR(64),
                PRIMARY KEY (id),
                CONSTRAINT ck_entry_kind
                    CHECK (kind IN ('payment', 'charge', 'adjustment', 'promised_payment')),
                FOREIGN KEY(account_id) REFERENCES accounts (id),
                UNIQUE (entry_key)
            )""",
            "CREATE INDEX ix_entries_account_posted_amount"
            " ON entries (account_id, posted_at, amount)",
        ],
    },
    "postgresql": {
        "accounts": [
            """CREATE TABLE accounts (
                id SERIAL NOT NULL,
                contract VARCHAR(12) NOT NULL,
                PRIMARY KEY (id),
                UNIQUE (contract)
            )"""
        ],
        "call_ends": [
            """CREATE TABLE call_ends (
                id BIGSERIAL NOT NULL,
                call_sid VARCHAR(64) NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at TIMESTAMP WITH TIME ZONE NOT NULL,
                status VARCHAR(20) NOT NULL,
                duration_s INTEGER,
                PRIMARY KEY (id)
            )""",
            "CREATE INDEX ix_call_ends_at ON call_ends (at)",
            "CREATE INDEX ix_call_ends_call_sid ON call_ends (call_sid)",
        ],
        "call_steps": [
            """CREATE TABLE call_steps (
                id BIGSERIAL NOT NULL,
                call_sid VARCHAR(64) NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at TIMESTAMP WITH TIME ZONE NOT NULL,
                state VARCHAR(20),
                next_state VARCHAR(20),
                outcome VARCHAR(20) NOT NULL,
                contract VARCHAR(20),
                PRIMARY KEY (id),
                CONSTRAINT ck_call_steps_masked CHECK (contract IS NULL OR contract LIKE '%*%')
            )""",
            "CREATE INDEX ix_call_steps_at ON call_steps (at)",
            "CREATE INDEX ix_call_steps_call_sid_at ON call_steps (call_sid, at)",
        ],
        "failed_lookups": [
            """CREATE TABLE failed_lookups (
                id SERIAL NOT NULL,
                caller VARCHAR(32) NOT NULL,
                at TIMESTAMP WITH TIME ZONE NOT NULL,
                PRIMARY KEY (id)
            )""",
            "CREATE INDEX ix_failed_lookups_caller_at ON failed_lookups (caller, at)",
        ],
        "entries": [
            """CREATE TABLE entries (
                id BIGSERIAL NOT NULL,
                account_id INTEGER NOT NULL,
                posted_at TIMESTAMP WITH TIME ZONE NOT NULL,
                amount NUMERIC(12, 2) NOT NULL,
                kind VARCHAR(20) NOT NULL,
                memo TEXT NOT NULL,
                entry_key VARCHAR(64),
                PRIMARY KEY (id),
                CONSTRAINT ck_entry_kind
                    CHECK (kind IN ('payment', 'charge', 'adjustment', 'promised_payment')),
                FOREIGN KEY(account_id) REFERENCES accounts (id),
                UNIQUE (entry_key)
            )""",
            "CREATE INDEX ix_entries_account_posted_amount"
            " ON entries (account_id, posted_at, amount)",
        ],
    },
}
TODAY_TABLES = tuple(TODAY_DDL["sqlite"])
# A ledger from before the call log and the lockout table: only the demo ledger's tables.
FIRST_TABLES = ("accounts", "entries")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(database_url(tmp_path))
    wipe(engine)
    yield engine
    wipe(engine)
    engine.dispose()


def wipe(engine: Engine) -> None:
    """Leave the (possibly shared PostgreSQL) database without any of our tables."""
    with engine.begin() as connection:
        for table in ("alembic_version", *reversed(db.Base.metadata.sorted_tables)):
            connection.execute(text(f"DROP TABLE IF EXISTS {table}"))


def create_as_today(engine: Engine, tables: tuple[str, ...] = TODAY_TABLES) -> None:
    """Create tables exactly as main's `create_all` did, with no alembic_version."""
    with engine.begin() as connection:
        # On the driver's cursor without parameters, so psycopg leaves '%' in the DDL alone.
        cursor = connection.connection.cursor()
        for table in tables:
            for statement in TODAY_DDL[engine.dialect.name][table]:
                cursor.execute(statement)
        cursor.close()


def fill(engine: Engine, tables: tuple[str, ...]) -> None:
    """Write rows into every table given, as the code of that schema did."""
    insert_ledger_rows(engine, DEMO_CSV)
    with Session(engine) as session, session.begin():
        if "failed_lookups" in tables:
            db.record_failed_lookup(session, "+73422000001", AT)
            db.record_failed_lookup(session, "+73422000002", AT + timedelta(minutes=1))
        if "call_steps" in tables:
            for state, next_state, outcome, contract in (
                (None, "greeting", "answered", None),
                ("contract", "balance", "balance", "59******0018"),
                ("balance", None, "hangup", "59******0018"),
            ):
                db.record_call_step(
                    session,
                    call_sid="CA" + "1" * 32,
                    caller="+73422000001",
                    at=AT,
                    state=state,
                    next_state=next_state,
                    outcome=outcome,
                    masked_contract=contract,
                )
        if "call_ends" in tables:
            db.record_call_end(
                session,
                call_sid="CA" + "1" * 32,
                caller="+73422000001",
                at=AT + timedelta(seconds=42),
                status="completed",
                duration_s=42,
            )


def old_key(row: db.LedgerRow) -> str:
    """The key an import gave a row before revision 0003: the whole SHA-256, in hex."""
    text = "|".join((row.contract, row.posted_at.isoformat(), str(row.amount), row.kind, row.memo))
    return hashlib.sha256(text.encode()).hexdigest()


def insert_ledger_rows(engine: Engine, path: Path, key: Callable[[Any], Any] = old_key) -> None:
    """Insert a CSV's entries row by row, as billing does: no import path, no month totals.

    Keyed as the import of a ledger from before revision 0003 keyed them (`old_key`).
    """
    rows = [row for _line, row in db.read_csv(path)]
    accounts, entries = db.Account.__table__, db.Entry.__table__
    with engine.begin() as connection:
        ids: dict[str, int] = {}
        for contract in sorted({row.contract for row in rows}):
            inserted = connection.execute(insert(accounts).values(contract=contract))
            ids[contract] = inserted.inserted_primary_key[0]
        for row in rows:
            connection.execute(
                insert(entries).values(
                    account_id=ids[row.contract],
                    posted_at=row.posted_at,
                    amount=row.amount,
                    kind=row.kind,
                    memo=row.memo,
                    # Bound as its own type: a hex key of before 0003, a new one's bytes.
                    entry_key=literal(key(row), String() if isinstance(key(row), str) else None),
                )
            )


def rows_of(engine: Engine, tables: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables, through the models (so the types read them), by id."""
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for name in tables:
            table = db.Base.metadata.tables[name]
            result = connection.execute(table.select().order_by(table.c.id))
            found[name] = [dict(row) for row in result.mappings()]
    return found


def schema_of(engine: Engine) -> dict[str, dict[str, Any]]:
    """Describe every table but alembic_version: columns, keys, indexes, checks."""
    inspector = inspect(engine)
    schema: dict[str, dict[str, Any]] = {}
    for table in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        schema[table] = {
            "columns": [
                (c["name"], repr(c["type"]), c["nullable"], c.get("default"))
                for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(c or "" for c in i["column_names"]), i["unique"])
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)
            ),
        }
    return schema


def differences(engine: Engine) -> list[Any]:
    """Return what autogenerate would put in a new revision: nothing when they agree."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, db.Base.metadata))


@pytest.mark.parametrize("tables", [TODAY_TABLES, FIRST_TABLES], ids=["today", "before-call-log"])
def test_a_ledger_from_before_migrations_is_adopted_with_every_row(
    engine: Engine, tables: tuple[str, ...]
) -> None:
    create_as_today(engine, tables)
    fill(engine, tables)
    before = rows_of(engine, tables)
    assert all(before.values()), "every table must hold rows for the test to mean anything"

    assert migrate.bring_to_head(engine) is migrate.Outcome.ADOPTED

    assert migrate.current(engine) == migrate.head()
    # Every row as it was; the entries' hex keys as revision 0003 converts them.
    for entry in before["entries"]:
        entry["entry_key"] = db.convert_key(entry["entry_key"])
    assert rows_of(engine, tables) == before
    assert differences(engine) == []
    with Session(engine) as session:
        assert db.balance(session, "590000000018", AT) == Decimal("1234.56")
        assert db.balance(session, "590000000034", AT) == Decimal("-350.75")
        # The tables an older ledger lacked are there and take rows.
        db.record_failed_lookup(session, "+73422000003", AT)
        session.commit()
        assert db.failed_lookups_since(session, "+73422000003", AT) == 1
        assert len(db.call_steps_between(session, AT, AT + timedelta(days=1))) == (
            3 if "call_steps" in tables else 0
        )


def test_revision_0001_is_the_schema_of_today(engine: Engine) -> None:
    create_as_today(engine)
    today = schema_of(engine)
    wipe(engine)
    migrate.upgrade(engine, "0001")
    assert schema_of(engine) == today


def test_the_migrations_build_what_the_models_describe(engine: Engine) -> None:
    migrate.upgrade(engine)  # every revision replayed, no create_all
    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []
    replayed = schema_of(engine)
    wipe(engine)
    # An empty database takes bring_to_head's shortcut: create_all, stamped head.
    assert migrate.bring_to_head(engine) is migrate.Outcome.CREATED
    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []
    assert schema_of(engine) == replayed


def test_a_database_at_head_is_left_alone(engine: Engine) -> None:
    migrate.bring_to_head(engine)
    db.import_csv(engine, DEMO_CSV)
    before = rows_of(engine, TODAY_TABLES)
    assert migrate.bring_to_head(engine) is migrate.Outcome.CURRENT
    assert rows_of(engine, TODAY_TABLES) == before


def test_the_migrations_go_down_and_up_again(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.begin() as connection:
        command.downgrade(migrate.config(connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrate.current(engine) is None
    migrate.upgrade(engine)
    assert differences(engine) == []


def test_ivr_db_upgrade_and_current(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    create_as_today(engine)
    fill(engine, TODAY_TABLES)

    behind = runner.invoke(main, ["db", "current", "--database-url", url])
    assert behind.exit_code == 1
    assert behind.output == f"none (the newest is {migrate.head()}: run `ivr db upgrade`)\n"

    adopted = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert adopted.exit_code == 0, adopted.output
    assert adopted.output == f"Adopted a database from before migrations: now at {migrate.head()}\n"

    shown = runner.invoke(main, ["db", "current", "--database-url", url])
    assert (shown.exit_code, shown.output) == (0, f"{migrate.head()} (head)\n")

    again = runner.invoke(main, ["db", "upgrade", "--database-url", url])
    assert (again.exit_code, again.output) == (0, f"Already at revision {migrate.head()} (head)\n")


def test_ivr_ledger_init_brings_an_old_ledger_to_head(engine: Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    create_as_today(engine, FIRST_TABLES)
    result = CliRunner().invoke(main, ["ledger", "init", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []


def test_ivr_db_names_a_database_it_cannot_reach() -> None:
    url = "postgresql+psycopg://hotline:secret@127.0.0.1:9/ledger"
    result = CliRunner().invoke(main, ["db", "current", "--database-url", url])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output  # one line, no traceback
    assert "cannot reach the ledger, PostgreSQL database ledger on 127.0.0.1:9" in result.output
    assert "--database-url" in result.output
    assert "secret" not in result.output


def test_the_migrations_ship_with_the_package() -> None:
    shipped = {p.relative_to(migrate.MIGRATIONS).as_posix() for p in migrate.MIGRATIONS.rglob("*")}
    assert {"env.py", "script.py.mako", "versions/0001_initial.py"} <= shipped
    assert migrate.script().get_base() == "0001"


def test_revision_0003_converts_the_keys_so_old_imports_still_count(engine: Engine) -> None:
    migrate.upgrade(engine, "0002")
    insert_ledger_rows(engine, DEMO_CSV)  # keyed as before 0003: 64 hex digits
    with engine.begin() as connection:
        account = connection.execute(text("SELECT min(id) FROM accounts")).scalar_one()
        for memo, key in (("billing's own, no key", None), ("billing's own key", "BILL-42")):
            connection.execute(
                text(
                    "INSERT INTO entries (account_id, posted_at, amount, kind, memo, entry_key) "
                    "VALUES (:a, :t, :m, 'charge', :memo, :key)"
                ),
                {
                    "a": account,
                    "t": AT.replace(tzinfo=None) if engine.dialect.name == "sqlite" else AT,
                    "m": -100 if engine.dialect.name == "sqlite" else Decimal("-1.00"),
                    "memo": memo,
                    "key": key,
                },
            )
    old = {
        memo: key
        for memo, key in db_rows(engine, "SELECT memo, entry_key FROM entries ORDER BY id")
    }
    balances = demo_balances(engine)

    migrate.upgrade(engine)

    assert migrate.current(engine) == migrate.head()
    assert differences(engine) == []
    new = dict(db_rows(engine, "SELECT memo, entry_key FROM entries ORDER BY id"))
    assert new["billing's own, no key"] is None
    assert bytes(new["billing's own key"]) == db.content_key("BILL-42")
    for memo, key in old.items():
        if key is not None and key != "BILL-42":
            assert bytes(new[memo]) == bytes.fromhex(key)[:16] == db.convert_key(key)
    # The same file imported today finds every row already there.
    report = db.import_csv(engine, DEMO_CSV)
    assert (report.rows, report.added) == (12, 0)
    assert demo_balances(engine) == balances
    # The totals' triggers survived the rebuild (SQLite): billing's plain INSERT in an
    # earlier month, which a balance reads from `month_totals` only, moves the balance.
    october = datetime(2026, 10, 15, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO entries (account_id, posted_at, amount, kind, memo) "
                "SELECT id, :t, :m, 'payment', 'late' FROM accounts WHERE contract = :c"
            ),
            {
                "t": october.replace(tzinfo=None) if engine.dialect.name == "sqlite" else october,
                "m": 1000 if engine.dialect.name == "sqlite" else Decimal("10.00"),
                "c": "590000000018",
            },
        )
    with Session(engine) as session:
        assert db.balance(session, "590000000018", AT) == balances["590000000018"] + 10


def test_revision_0005_keeps_each_key_unique_in_its_account(engine: Engine) -> None:
    migrate.upgrade(engine, "0004")
    insert_ledger_rows(engine, DEMO_CSV, key=lambda row: row.key)  # keyed as today
    columns = "id, account_id, posted_at, amount, memo, entry_key"
    rows = db_rows(engine, f"SELECT {columns} FROM entries")
    balances = demo_balances(engine)

    migrate.upgrade(engine, "0005")

    # (That 0005 leaves the models' schema, 0006's indexes aside, the upgrade to head checks.)
    assert sorted(db_rows(engine, f"SELECT {columns} FROM entries")) == sorted(rows)
    report = db.import_csv(engine, DEMO_CSV)
    assert (report.rows, report.added) == (12, 0)
    assert demo_balances(engine) == balances
    insert = text(
        "INSERT INTO entries (account_id, posted_at, amount, kind, memo, entry_key) "
        "SELECT id, :t, :m, 'charge', 'billing', :key FROM accounts WHERE contract = :c"
    )
    at = AT.replace(tzinfo=None) if engine.dialect.name == "sqlite" else AT
    amount = -100 if engine.dialect.name == "sqlite" else Decimal("-1.00")
    key = rows[0][5]
    owner, other = db_rows(engine, "SELECT contract FROM accounts ORDER BY id")[:2]
    account_of_key = dict(db_rows(engine, "SELECT id, contract FROM accounts"))[rows[0][1]]
    stranger = other[0] if owner[0] == account_of_key else owner[0]
    # The same key in another account is another row; in its own account it is refused.
    with engine.begin() as connection:
        connection.execute(insert, {"t": at, "m": amount, "key": key, "c": stranger})
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(insert, {"t": at, "m": amount, "key": key, "c": account_of_key})
    # The totals' triggers survived the rebuild (SQLite): the stranger's charge counted.
    with Session(engine) as session:
        assert db.balance(session, stranger, AT) == balances[stranger] - 1

    # Down again: the key unique across the ledger, so the stranger's copy must go first.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM entries WHERE memo = 'billing'"))
        command.downgrade(migrate.config(connection), "0004")
    assert [u["column_names"] for u in inspect(engine).get_unique_constraints("entries")] == [
        ["entry_key"]
    ]
    assert sorted(db_rows(engine, f"SELECT {columns} FROM entries")) == sorted(rows)


def db_rows(engine: Engine, sql: str) -> list[Any]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def demo_balances(engine: Engine) -> dict[str, Decimal | None]:
    with Session(engine) as session:
        return {
            contract: db.balance(session, contract, AT)
            for contract in ("590000000018", "590000000026", "590000000034")
        }


def test_revision_0006_adds_each_kinds_partial_index_and_takes_it_away(engine: Engine) -> None:
    migrate.upgrade(engine, "0005")
    insert_ledger_rows(engine, DEMO_CSV, key=lambda row: row.key)
    balances = demo_balances(engine)

    migrate.upgrade(engine, "0006")

    assert differences(engine) == []
    names = {index["name"] for index in inspect(engine).get_indexes("entries")}
    assert {"ix_entries_account_payments", "ix_entries_account_promises"} <= names
    assert demo_balances(engine) == balances
    with engine.begin() as connection:
        command.downgrade(migrate.config(connection), "0005")
    names = {index["name"] for index in inspect(engine).get_indexes("entries")}
    assert not names & {"ix_entries_account_payments", "ix_entries_account_promises"}
    assert demo_balances(engine) == balances
