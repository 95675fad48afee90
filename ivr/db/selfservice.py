"""Self-service queries after the balance, and the promised payment's exactly-once write.

Reads: the charges of a window, the last payment, the facts that decide whether a promised
payment may be offered. Query functions take a `Session` or a `Connection` and never commit.

Exactly once, by the database's own guarantees, not a Python check two processes can both
pass. `write_promise` runs, in the step's one transaction:

1. one atomic upsert of the account's `promise_guards` row (primary key: the account):
   `INSERT ... ON CONFLICT (account_id) DO UPDATE SET ... WHERE promise_guards.taken_at
   <= :now - 30 days AND promise_guards.returns_at <= :now RETURNING account_id`. A row
   comes back only when no guard existed or the old one allows a new promise. PostgreSQL
   locks the conflicting row (waiting for an uncommitted insert of it to commit) and
   checks the WHERE on its latest version; SQLite (>= 3.35) runs writers one at a time.
   So of two confirmations for one account, on any processes, one gets the row, the
   other none;
2. only then the two `promised_payment` entries: `+amount` now, `-amount` at the end of
   the term, the memo naming the CallSid.

A refused upsert writes nothing, and the flow answers from the ledger (`flow.promise_not_
written`): the same CallSid that holds the guard is a replay (Twilio's retry, a second `1`)
and is answered like the first; another call is told the promise is running. A failure
anywhere rolls the whole transaction back: no guard, no entry, and the caller hears the
apology. The guard is the hotline's own record; the entries are what billing sees.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, and_, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.db.ledger import (
    Executor,
    account_balance,
    as_connection,
    charges_sum,
    find_account,
    kind_is,
    spend,
)
from ivr.db.schema import Entry, PromiseGuard, UtcDateTime
from ivr.flow import PromiseToWrite
from ivr.selfservice import WINDOW, Payment, PromiseFacts

PROMISED_PAYMENT = "promised_payment"
_entries = Entry.__table__.c
_guards = PromiseGuard.__table__.c

_CHARGES = select(charges_sum(bindparam("account")))


# The latest payment, the running promise and the latest promise taken are each the first
# entries read from their kind's partial index, however many charges came since.
_LAST_PAYMENT = (
    select(_entries.posted_at, _entries.amount)
    .where(
        _entries.account_id == bindparam("account"),
        kind_is("payment"),
        _entries.posted_at <= bindparam("at", type_=UtcDateTime()),
    )
    .order_by(_entries.posted_at.desc(), _entries.id.desc())
    .limit(1)
)
_RUNNING_UNTIL = select(func.min(_entries.posted_at)).where(
    _entries.account_id == bindparam("account"),
    kind_is(PROMISED_PAYMENT),
    _entries.amount < Decimal(0),
    _entries.posted_at > bindparam("at", type_=UtcDateTime()),
)
_LAST_TAKEN = select(func.max(_entries.posted_at)).where(
    _entries.account_id == bindparam("account"),
    kind_is(PROMISED_PAYMENT),
    _entries.amount > Decimal(0),
    _entries.posted_at <= bindparam("at", type_=UtcDateTime()),
)
_GUARD = select(_guards.call_sid, _guards.taken_at, _guards.returns_at, _guards.amount).where(
    _guards.account_id == bindparam("account")
)


def charges_since(executor: Executor, account_id: int, since: datetime, at: datetime) -> Decimal:
    """Return the magnitude of an account's charges posted after `since`, up to `at`."""
    params = {"account": account_id, "charges_since": since, "at": at}
    total = as_connection(executor).scalar(_CHARGES, params)
    assert isinstance(total, Decimal)  # COALESCE: never NULL; SUM keeps the Money type
    return spend(total)  # a charge is negative; the spend is its magnitude


def last_payment(executor: Executor, account_id: int, at: datetime) -> Payment | None:
    """Return an account's latest payment posted at or before `at`, or None if it has none."""
    row = as_connection(executor).execute(_LAST_PAYMENT, {"account": account_id, "at": at}).first()
    return None if row is None else Payment(row.posted_at, row.amount)


def promise_facts(executor: Executor, account_id: int, at: datetime) -> PromiseFacts:
    """Gather what decides a promised payment: balance, 30-day charges, promises running/taken.

    Promises count from the entries (billing may post them too) and from the guard row of
    the ones taken by phone.
    """
    connection = as_connection(executor)
    params = {"account": account_id, "at": at}
    # The balance first, the promises after: each statement sees what is committed when it
    # runs, so a promise committed meanwhile shows up at least as running, never only as
    # money on the account ("not needed").
    balance = account_balance(connection, account_id, at)
    charges = charges_since(connection, account_id, at - WINDOW, at)
    running: datetime | None = connection.scalar(_RUNNING_UNTIL, params)
    taken: datetime | None = connection.scalar(_LAST_TAKEN, params)
    guard = connection.execute(_GUARD, {"account": account_id}).first()
    if guard is not None:
        if guard.returns_at > at:
            running = guard.returns_at if running is None else min(running, guard.returns_at)
        if guard.taken_at <= at:
            taken = guard.taken_at if taken is None else max(taken, guard.taken_at)
    return PromiseFacts(
        balance=balance,
        charges=charges,
        running_until=running,
        last_taken_at=taken,
        phone_call_sid=None if guard is None else guard.call_sid,
        phone_amount=None if guard is None else guard.amount,
        phone_returns_at=None if guard is None else guard.returns_at,
    )


def write_promise(session: Session, promise: PromiseToWrite) -> bool:
    """Take the guard and write the promise's two entries; False when the guard refuses.

    See the module's docstring: the upsert is the one check, made by the database.
    """
    values = {
        "account_id": promise.account,
        "call_sid": promise.call_sid,
        "taken_at": promise.taken_at,
        "returns_at": promise.returns_at,
        "amount": promise.amount,
    }
    upsert = _upsert(session, values)
    if session.connection().execute(upsert).first() is None:
        return False
    memo = f"Обещанный платёж по телефону, звонок {promise.call_sid}"
    _add_entry(session, promise.account, promise.taken_at, promise.amount, memo)
    memo = f"Возврат обещанного платежа, звонок {promise.call_sid}"
    _add_entry(session, promise.account, promise.returns_at, -promise.amount, memo)
    return True


def _upsert(session: Session, values: dict[str, Any]) -> Any:
    """Build the guard's conditional upsert for this database (same SQL on both)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement: Any = postgresql.insert(PromiseGuard).values(values)
    elif dialect == "sqlite":
        statement = sqlite.insert(PromiseGuard).values(values)
    else:
        raise NotImplementedError(f"promised payments support SQLite and PostgreSQL, not {dialect}")
    taken_at = values["taken_at"]
    table = PromiseGuard.__table__
    return statement.on_conflict_do_update(
        index_elements=[_guards.account_id],
        set_={
            "call_sid": statement.excluded.call_sid,
            "taken_at": statement.excluded.taken_at,
            "returns_at": statement.excluded.returns_at,
            "amount": statement.excluded.amount,
        },
        where=and_(table.c.taken_at <= taken_at - WINDOW, table.c.returns_at <= taken_at),
    ).returning(_guards.account_id)


def _add_entry(
    session: Session, account_id: int, posted_at: datetime, amount: Decimal, memo: str
) -> None:
    """Append one promised-payment entry (a Core INSERT in the step's transaction)."""
    session.connection().execute(
        insert(Entry),
        {
            "account_id": account_id,
            "posted_at": posted_at,
            "amount": amount,
            "kind": PROMISED_PAYMENT,
            "memo": memo,
        },
    )


# --- for `ivr ledger balance` ---------------------------------------------------------------


def entries_between(
    engine: Engine, contract: str, start: datetime, end: datetime | None = None
) -> list[tuple[datetime, Decimal, str, str]]:
    """Return a contract's entries posted after `start` (up to `end`), oldest first.

    (posted_at, amount, kind, memo) each; empty for an unknown contract. For a command.
    """
    with Session(engine) as session:
        account = find_account(session, contract)
        if account is None:
            return []
        query = (
            select(_entries.posted_at, _entries.amount, _entries.kind, _entries.memo)
            .where(_entries.account_id == account, _entries.posted_at > start)
            .order_by(_entries.posted_at, _entries.id)
        )
        if end is not None:
            query = query.where(_entries.posted_at <= end)
        return [(row.posted_at, row.amount, row.kind, row.memo) for row in session.execute(query)]
