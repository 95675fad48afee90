"""Balance and account queries on billing's ledger, and `LedgerView`, the flow's read view.

Query functions take a `Session` or a `Connection` and never commit; the unit of work
(`ivr.db.unit`) that opened it commits.

A balance is flat in the account's history: the totals of the months before the one
asked about (`month_totals`, kept by triggers, see `ivr.db.totals`) plus that month's
entries posted by then. Ten years of daily charges read ~120 totals and ~30 entries.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Dialect,
    Engine,
    Select,
    bindparam,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from ivr.db.hotline_tables import failed_lookups_since
from ivr.db.schema import KINDS, Account, Entry, FailedLookup, Money, MonthTotal, UtcDateTime
from ivr.db.totals import month_number, month_start
from ivr.selfservice import WINDOW, Payment, PromiseFacts

Executor = Session | Connection
T = TypeVar("T")

_accounts = Account.__table__.c
_entries = Entry.__table__.c
_months = MonthTotal.__table__.c
_failed = FailedLookup.__table__.c

# The hot-path queries are built once and run as Core statements: building an ORM
# select and running it through `Session.scalar` on every call cost more than the
# indexed lookups themselves.
_FIND_ACCOUNT = select(_accounts.id).where(_accounts.contract == bindparam("contract"))
_CONTRACT_OF = select(_accounts.contract).where(_accounts.id == bindparam("account"))


def _balance_parts(account: Any) -> tuple[Any, Any]:
    """The two sums of a balance as of :at, for the account expression `account`.

    Months before :month from their totals; :month itself from its entries up to :at.
    SUM and COALESCE keep the Money type: kopecks (SQLite) or numeric (PostgreSQL)
    come back as exact rubles.
    """
    months = (
        select(func.coalesce(func.sum(_months.amount), 0))
        .where(_months.account_id == account, _months.month < bindparam("month"))
        .scalar_subquery()
    )
    current = (
        select(func.coalesce(func.sum(_entries.amount), 0))
        .where(
            _entries.account_id == account,
            _entries.posted_at >= bindparam("month_start", type_=UtcDateTime()),
            _entries.posted_at <= bindparam("at", type_=UtcDateTime()),
        )
        .scalar_subquery()
    )
    return type_coerce(months, Money()), type_coerce(current, Money())


def kind_is(kind: str) -> Any:
    """`entries.kind = '<kind>'`, the kind written into the SQL rather than bound.

    Revision 0006 has partial indexes on the kind. Against a bound kind SQLite would
    prepare the statement anew every time a value is bound (the value might make a
    partial index usable): the contract step's lookup cost 36-57 µs instead of 7-9. And
    only a kind written out lets SQLite or PostgreSQL's generic plan use such an index.
    """
    assert kind in KINDS  # a constant of ours, never input
    return _entries.kind == literal_column(f"'{kind}'")


def charges_sum(account: Any) -> Any:
    """The sum of an account's charges posted after :charges_since, up to :at (negative).

    The days-left estimate's spend; one range of the entries index, like the month's.
    """
    return type_coerce(
        select(func.coalesce(func.sum(_entries.amount), 0))
        .where(
            _entries.account_id == account,
            kind_is("charge"),
            _entries.posted_at > bindparam("charges_since", type_=UtcDateTime()),
            _entries.posted_at <= bindparam("at", type_=UtcDateTime()),
        )
        .scalar_subquery(),
        Money(),
    )


def spend(charges: Decimal) -> Decimal:
    """Return the magnitude of a (negative) sum of charges: what the account spent."""
    return max(-charges, Decimal(0)).quantize(Decimal("0.01"))


_ACCOUNT_BALANCE = select(*_balance_parts(bindparam("account")))

# One statement for the contract step: the caller's recent failures (lockout), the
# contract's account, its balance and its charges of the last 30 days (days left). An
# unknown contract gives NULL account and zero sums. The account is joined once (an
# outer join on one row, so the failures come back either way) and the sums correlate
# on it, instead of looking the contract up in each subquery.
_one_row = select(literal_column("1").label("one")).subquery("one_row")
_LOOKUP = select(
    select(func.count())
    .select_from(FailedLookup.__table__)
    .where(
        _failed.caller == bindparam("caller"),
        _failed.at >= bindparam("since", type_=UtcDateTime()),
    )
    .scalar_subquery(),
    _accounts.id,
    *_balance_parts(_accounts.id),
    charges_sum(_accounts.id),
).select_from(
    _one_row.outerjoin(Account.__table__, _accounts.contract == bindparam("contract"))
)


def _at(at: datetime) -> dict[str, Any]:
    month = month_number(at.astimezone(UTC))
    return {"at": at, "month": month, "month_start": month_start(month)}


class CompiledRead:
    """A read statement compiled once for a dialect and run on the driver's own cursor.

    SQLAlchemy's `Connection.execute` costs about 90 µs a statement in Python (the
    statement's cache key, the execution context, the result object): twice what SQLite
    takes to answer the contract step's statement. The SQL, the bind and result
    conversions are SQLAlchemy's own (`compile`, the types' processors), worked out once;
    a driver error is raised as SQLAlchemy's `DBAPIError`, with `connection_invalidated`
    set (and the connection invalidated) when the dialect calls it a disconnect, as
    `Connection.execute` would.
    """

    def __init__(self, statement: Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.dialect = dialect
        self.sql = compiled.string
        self._positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        # The statement's constants (the literal 0s, "charge") are converted once; a call
        # converts only the values it passes.
        self._constants: dict[str, Any] = {}
        self._variables: list[tuple[str, Callable[[Any], Any] | None]] = []
        for bind, name in compiled.bind_names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required:
                self._variables.append((name, processor))
            else:
                value = bind.effective_value
                self._constants[name] = value if processor is None else processor(value)
        self._types = [column.type.dialect_impl(dialect) for column in statement.selected_columns]
        # Made from the first result's column type codes, as SQLAlchemy does (PostgreSQL's
        # numeric conversion depends on the type the server sends).
        self._results: tuple[Callable[[Any], Any] | None, ...] | None = None

    def parameters(self, values: dict[str, Any]) -> Any:
        """Convert `values` (and the statement's constants) for the driver."""
        converted = self._constants.copy()
        for name, processor in self._variables:
            value = values[name]
            converted[name] = value if processor is None or value is None else processor(value)
        if self._positions is None:
            return converted
        return tuple([converted[name] for name in self._positions])

    def one(self, driver: PoolProxiedConnection, values: dict[str, Any]) -> tuple[Any, ...]:
        """Run the statement on a pooled driver connection; return its one row.

        On a disconnect the connection is invalidated and the pool replaced, as
        `Connection.execute` does, so a retry checks out a new connection.
        """
        parameters = self.parameters(values)
        keep = self.dialect.name != "sqlite"
        cursor = driver.info.get(_KEPT_CURSOR) if keep else None
        if cursor is None:
            cursor = driver.cursor()
            if keep:
                driver.info[_KEPT_CURSOR] = cursor
        try:
            cursor.execute(self.sql, parameters)
            row = cursor.fetchone()
            if self._results is None:
                codes = [column[1] for column in cursor.description]
                self._results = tuple(
                    kind.result_processor(self.dialect, code)
                    for kind, code in zip(self._types, codes, strict=True)
                )
        except self.dialect.loaded_dbapi.Error as error:
            driver.info.pop(_KEPT_CURSOR, None)
            gone = self.dialect.is_disconnect(error, driver.dbapi_connection, cursor)
            raise DBAPIError.instance(
                self.sql,
                parameters,
                error,
                self.dialect.loaded_dbapi.Error,
                connection_invalidated=gone,
                dialect=self.dialect,
            ) from error
        finally:
            if not keep:
                cursor.close()  # SQLite: ends the statement, and the read it holds open
        if row is None:
            raise LookupError("the statement returned no row")
        return tuple(
            value if convert is None else convert(value)
            for value, convert in zip(row, self._results, strict=True)
        )


# A pooled PostgreSQL connection's cursor for compiled reads, kept in the connection's
# `info` (which SQLAlchemy clears when the connection is replaced): making a psycopg cursor
# cost ~20 µs of a step. A SQLite cursor is closed after each read instead, which ends
# the read transaction its statement holds open.
_KEPT_CURSOR = "ivr_compiled_read_cursor"

# One compiled lookup per engine's dialect, gone with the engine.
_compiled_lookups: weakref.WeakKeyDictionary[Dialect, CompiledRead] = weakref.WeakKeyDictionary()


def _compiled_lookup(dialect: Dialect) -> CompiledRead:
    found = _compiled_lookups.get(dialect)
    if found is None:
        found = _compiled_lookups[dialect] = CompiledRead(_LOOKUP, dialect)
    return found


def as_connection(executor: Executor) -> Connection:
    return executor.connection() if isinstance(executor, Session) else executor


def balance(executor: Executor, contract: str, at: datetime) -> Decimal | None:
    """Return the contract's balance as of `at`, or None when there is no such contract."""
    account_id = find_account(executor, contract)
    return None if account_id is None else account_balance(executor, account_id, at)


def read_balance(engine: Engine, contract: str, at: datetime) -> Decimal | None:
    """Return a contract's balance on a connection of its own (for a command, not a step)."""
    with engine.connect() as connection:
        return balance(connection, contract, at)


def find_account(executor: Executor, contract: str) -> int | None:
    """Return the id of a contract's account, or None when there is no such contract."""
    found: int | None = as_connection(executor).scalar(_FIND_ACCOUNT, {"contract": contract})
    return found


def contract_of(executor: Executor, account_id: int) -> str | None:
    """Return the contract number of an account, or None when there is no such account."""
    found: str | None = as_connection(executor).scalar(_CONTRACT_OF, {"account": account_id})
    return found


def account_balance(executor: Executor, account_id: int, at: datetime) -> Decimal:
    """Return an account's balance as of `at`: the sum of its entries posted by then."""
    row = as_connection(executor).execute(_ACCOUNT_BALANCE, {"account": account_id, **_at(at)})
    months, current = row.one()
    return Decimal(months) + Decimal(current)


def _autocommit(dialect: Dialect, dbapi_connection: Any, on: bool) -> None:
    """Switch a pooled PostgreSQL connection's autocommit on for a step's reads, or back.

    psycopg keeps the setting on the client (no round trip), and its `autocommit`
    attribute is what SQLAlchemy's isolation-level calls end up setting, after checks
    that cost ~20 µs a step; another driver gets SQLAlchemy's calls.
    """
    if hasattr(dbapi_connection, "autocommit"):
        dbapi_connection.autocommit = on
    elif on:
        dialect.set_isolation_level(dbapi_connection, "AUTOCOMMIT")
    else:
        dialect.reset_isolation_level(dbapi_connection)


class LedgerView:
    """The flow's view of the ledger for one webhook step: reads only, no transaction.

    Reads go through `connection`, checked out of the pool on first use, without a
    transaction (autocommit on PostgreSQL; pysqlite begins only before a write): a step
    that only reads sends no BEGIN and no COMMIT, and a step that reads
    nothing (the first one) touches no connection at all. `session`, also made on first
    use, is a transactional ORM session for what must be written together; the unit of
    work commits it. `expect_lookup` lets the web layer announce the contract step, so
    the lockout count, the account, its balance and its 30-day charges come in one
    statement, run compiled on the pooled driver connection (no `Connection` around it
    unless the step also writes or reads otherwise; then `connection` wraps the same one).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None
        self._driver: PoolProxiedConnection | None = None  # checked out for compiled reads
        self._session: Session | None = None
        self._accounts: dict[str, int] = {}  # contract -> account id, found this step
        self._balances: dict[tuple[str, datetime], Decimal] = {}
        self._failures: dict[tuple[str, datetime], int] = {}
        self._charges: dict[tuple[int, datetime, datetime], Decimal] = {}
        self._expected: tuple[str, datetime, str, datetime] | None = None
        self._fresh = False  # the connection has not been used yet

    @property
    def connection(self) -> Connection:
        """The step's read connection (autocommit), checked out on first use."""
        if self._connection is None:
            if self._driver is not None:  # the compiled reads' connection: wrap it
                connection = Connection(self.engine, connection=self._driver)
                self._driver = None
            else:
                connection = self.engine.connect()
                self._fresh = True
            # pysqlite sends no BEGIN before a SELECT anyway, and switching its isolation
            # level costs a PRAGMA at checkout and one at return; PostgreSQL's driver
            # switches autocommit on the client, with no round trip.
            if connection.dialect.name != "sqlite":
                connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            self._connection = connection
        return self._connection

    def _pooled(self) -> PoolProxiedConnection:
        """The step's pooled driver connection for compiled reads (autocommit).

        Checked out of the pool without a SQLAlchemy `Connection` around it (a third of
        a checkout's cost); `connection` wraps it if the step needs one later.
        """
        if self._connection is not None:
            return self._connection.connection
        if self._driver is None:
            dialect = self.engine.dialect
            try:
                driver = self.engine.raw_connection()
            except dialect.loaded_dbapi.Error as error:  # as `engine.connect()` raises it
                raise DBAPIError.instance(
                    None,
                    None,
                    error,
                    dialect.loaded_dbapi.Error,
                    connection_invalidated=dialect.is_disconnect(error, None, None),
                    dialect=dialect,
                ) from error
            if self.engine.dialect.name != "sqlite" and driver.dbapi_connection is not None:
                _autocommit(self.engine.dialect, driver.dbapi_connection, on=True)
            self._driver = driver
            self._fresh = True
        return self._driver

    def _read_compiled(self, statement: CompiledRead, values: dict[str, Any]) -> tuple[Any, ...]:
        """Run a compiled read, retried once on a new connection like `_read`."""
        driver = self._pooled()
        first, self._fresh = self._fresh, False
        try:
            return statement.one(driver, values)
        except DBAPIError as error:
            if not (first and error.connection_invalidated):
                raise
            # As SQLAlchemy does on a disconnect: this connection and every other one
            # pooled before it go (a server restart kills them all), then one retry.
            driver.invalidate(error)
            self.engine.dispose(close=False)
        self._give_back()
        return statement.one(self._pooled(), values)

    def _give_back(self) -> None:
        """Return the step's connection to the pool (an invalidated one is dropped)."""
        connection, driver = self._connection, self._driver
        self._connection = self._driver = None
        self._fresh = False
        if connection is not None:
            connection.close()
        if driver is not None:
            raw = driver.dbapi_connection if driver.is_valid else None
            if raw is not None and self.engine.dialect.name != "sqlite":
                _autocommit(self.engine.dialect, raw, on=False)
            driver.close()

    def _read(self, query: Callable[[Connection], T]) -> T:
        """Run a read; if the pooled connection turns out dead, retry once on a new one.

        Instead of pinging every connection at checkout (a round trip per step), the
        first read finds out: a connection the server dropped (restart, idle timeout,
        pg_terminate_backend) raises a disconnect, the pool discards its connections,
        and the read, which changed nothing, runs again. A second failure is the apology.
        """
        connection = self.connection
        first, self._fresh = self._fresh, False
        try:
            return query(connection)
        except DBAPIError as error:
            if not (first and error.connection_invalidated):
                raise
        self._give_back()
        return query(self.connection)

    @property
    def session(self) -> Session:
        """A transactional session on a connection of its own, for writes that go together."""
        if self._session is None:
            self._session = Session(self.engine)
        return self._session

    def expect_lookup(self, caller: str, since: datetime, contract: str, at: datetime) -> None:
        """Announce the lockout count and balance this step will probably ask for."""
        self._expected = (caller, since, contract, at)

    def balance(self, contract: str, at: datetime) -> Decimal | None:
        self._maybe_fetch_expected(contract=contract, at=at)
        if (contract, at) in self._balances:
            return self._balances[contract, at]
        account = self.account_of(contract)
        if account is None:
            return None
        self._balances[contract, at] = self._read(lambda c: account_balance(c, account, at))
        return self._balances[contract, at]

    def account_of(self, contract: str) -> int | None:
        if contract not in self._accounts:
            account = self._read(lambda c: find_account(c, contract))
            if account is None:
                return None
            self._accounts[contract] = account
        return self._accounts[contract]

    def contract_of(self, account: int) -> str | None:
        return self._read(lambda c: contract_of(c, account))

    def failures_since(self, caller: str, since: datetime) -> int:
        # Asked twice in a step that fails (before, and with the pending try): the count
        # cannot change in between, since the step writes its try only at the end.
        self._maybe_fetch_expected(caller=caller, since=since)
        if (caller, since) not in self._failures:
            self._failures[caller, since] = self._read(
                lambda c: failed_lookups_since(c, caller, since)
            )
        return self._failures[caller, since]

    def _maybe_fetch_expected(self, **asked: Any) -> None:
        """Run the announced lookup when the flow asks for a part of it, once."""
        if self._expected is None:
            return
        caller, since, contract, at = self._expected
        announced = {"caller": caller, "since": since, "contract": contract, "at": at}
        if any(announced[key] != value for key, value in asked.items()):
            return
        self._expected = None
        charges_since = at - WINDOW
        params = {
            "caller": caller,
            "since": since,
            "contract": contract,
            "charges_since": charges_since,
            **_at(at),
        }
        lookup = _compiled_lookup(self.engine.dialect)
        failures, account, months, current, charges = self._read_compiled(lookup, params)
        self._failures[caller, since] = int(failures)
        if account is not None:
            self._accounts[contract] = account
            self._balances[contract, at] = Decimal(months) + Decimal(current)
            self._charges[account, charges_since, at] = spend(Decimal(charges))

    def close(self, commit: bool) -> None:
        """Commit the session (when asked and used), and give every connection back."""
        try:
            if self._session is not None and commit:
                self._session.commit()
        finally:
            if self._session is not None:
                self._session.close()
            self._give_back()

    # Self-service after the balance (issue 10): the queries are in ivr.db.selfservice.

    def charges_since(self, account: int, since: datetime, at: datetime) -> Decimal:
        found = self._charges.get((account, since, at))
        if found is not None:  # read with the contract step's lookup
            return found
        from ivr.db import selfservice  # it imports this module's account_balance

        return self._read(lambda c: selfservice.charges_since(c, account, since, at))

    def last_payment(self, account: int, at: datetime) -> Payment | None:
        from ivr.db import selfservice

        return self._read(lambda c: selfservice.last_payment(c, account, at))

    def promise_facts(self, account: int, at: datetime) -> PromiseFacts:
        from ivr.db import selfservice

        return self._read(lambda c: selfservice.promise_facts(c, account, at))
