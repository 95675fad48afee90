"""Balance and account queries on billing's ledger, and `LedgerView`, the flow's read view.

Query functions take a `Session` and never commit; the unit of work (`ivr.db.unit`) that
opened the session commits.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Engine, bindparam, func, select
from sqlalchemy.orm import Session

from ivr.db.hotline_tables import failed_lookups_since
from ivr.db.schema import Account, Entry, UtcDateTime
from ivr.selfservice import Payment, PromiseFacts

# The hot-path queries are built once and run as Core statements on the session's
# connection: building an ORM select and running it through `Session.scalar` on every
# call cost more than the indexed lookups themselves.
_FIND_ACCOUNT = select(Account.__table__.c.id).where(
    Account.__table__.c.contract == bindparam("contract")
)
_CONTRACT_OF = select(Account.__table__.c.contract).where(
    Account.__table__.c.id == bindparam("account")
)
_ACCOUNT_BALANCE = select(func.coalesce(func.sum(Entry.__table__.c.amount), 0)).where(
    Entry.__table__.c.account_id == bindparam("account"),
    Entry.__table__.c.posted_at <= bindparam("at", type_=UtcDateTime()),
)


def balance(session: Session, contract: str, at: datetime) -> Decimal | None:
    """Return the contract's balance as of `at`, or None when there is no such contract."""
    account_id = find_account(session, contract)
    return None if account_id is None else account_balance(session, account_id, at)


def read_balance(engine: Engine, contract: str, at: datetime) -> Decimal | None:
    """Return a contract's balance in a session of its own (for a command, not a step)."""
    with Session(engine) as session:
        return balance(session, contract, at)


def find_account(session: Session, contract: str) -> int | None:
    """Return the id of a contract's account, or None when there is no such contract."""
    found: int | None = session.connection().scalar(_FIND_ACCOUNT, {"contract": contract})
    return found


def contract_of(session: Session, account_id: int) -> str | None:
    """Return the contract number of an account, or None when there is no such account."""
    found: str | None = session.connection().scalar(_CONTRACT_OF, {"account": account_id})
    return found


def account_balance(session: Session, account_id: int, at: datetime) -> Decimal:
    """Return an account's balance as of `at`: the sum of its entries posted by then."""
    # SUM and COALESCE keep the column's Money type, so the driver's kopecks (SQLite) or
    # numeric (PostgreSQL) come back as rubles quantized to kopecks.
    total = session.connection().scalar(_ACCOUNT_BALANCE, {"account": account_id, "at": at})
    assert isinstance(total, Decimal)  # COALESCE: never NULL
    return total


class LedgerView:
    """The flow's view of the ledger through one database session: reads only."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._accounts: dict[str, int] = {}  # contract -> account id, found this step

    def balance(self, contract: str, at: datetime) -> Decimal | None:
        account = self.account_of(contract)
        return None if account is None else account_balance(self.session, account, at)

    def account_of(self, contract: str) -> int | None:
        if contract not in self._accounts:
            account = find_account(self.session, contract)
            if account is None:
                return None
            self._accounts[contract] = account
        return self._accounts[contract]

    def contract_of(self, account: int) -> str | None:
        return contract_of(self.session, account)

    def failures_since(self, caller: str, since: datetime) -> int:
        return failed_lookups_since(self.session, caller, since)

    # Self-service after the balance (issue 10): the queries are in ivr.db.selfservice.

    def balance_of(self, account: int, at: datetime) -> Decimal:
        return account_balance(self.session, account, at)

    def charges_since(self, account: int, since: datetime, at: datetime) -> Decimal:
        from ivr.db import selfservice  # it imports this module's account_balance

        return selfservice.charges_since(self.session, account, since, at)

    def last_payment(self, account: int, at: datetime) -> Payment | None:
        from ivr.db import selfservice

        return selfservice.last_payment(self.session, account, at)

    def promise_facts(self, account: int, at: datetime) -> PromiseFacts:
        from ivr.db import selfservice

        return selfservice.promise_facts(self.session, account, at)
