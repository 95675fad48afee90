"""The ledger shared with billing: models, the balance query, lockout counts, CSV import.

Only this module knows SQL. Query functions take a `Session` and never commit; whoever
opened the session commits.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from ivr.contract import CONTRACT_LENGTH, is_valid, mask
from ivr.errors import ImportFileError

KINDS = ("payment", "charge", "adjustment", "promised_payment")
CSV_HEADER = ("contract", "posted_at", "amount", "kind", "memo")
KOPECK = Decimal("0.01")
# Statement and connection bounds, so a hung database becomes the caller's apology
# well inside Twilio's 15-second webhook timeout.
QUERY_TIMEOUT_MS = 2500
CONNECT_TIMEOUT_S = 2
BATCH_ROWS = 10_000


class Money(TypeDecorator[Decimal]):
    """Exact rubles: NUMERIC(12, 2) where the database has it, integer kopecks on SQLite.

    SQLite has no decimal type and would keep 123.45 as a float, so its column holds
    kopecks; Python always sees a `Decimal` quantized to kopecks.
    """

    impl = Numeric(12, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(12, 2, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return int(value.scaleb(2).to_integral_exact())
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-2).quantize(KOPECK)
        return Decimal(value).quantize(KOPECK)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware timestamp stored as UTC, so SQLite compares it correctly as text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("ledger timestamps must carry a UTC offset")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    """A subscriber's contract; created on the first entry billing posts for it."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract: Mapped[str] = mapped_column(String(CONTRACT_LENGTH), unique=True)


class Entry(Base):
    """One posting to an account: a payment (+), a charge (-), an adjustment, ..."""

    __tablename__ = "entries"
    __table_args__ = (
        # Covers the balance query (account, time bound, sum of amounts) from the index
        # alone, so a lookup costs the same at a thousand or a million accounts.
        Index("ix_entries_account_posted_amount", "account_id", "posted_at", "amount"),
        CheckConstraint(f"kind IN ({', '.join(repr(k) for k in KINDS)})", name="ck_entry_kind"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime())
    amount: Mapped[Decimal] = mapped_column(Money())
    kind: Mapped[str] = mapped_column(String(20))
    memo: Mapped[str] = mapped_column(Text(), default="")
    # A digest of the row's content: importing the same file twice adds nothing.
    # Entries billing posts by other means may leave it empty.
    entry_key: Mapped[str | None] = mapped_column(String(64), unique=True)


class FailedLookup(Base):
    """A caller's failed contract entry, counted across calls and processes for lockout."""

    __tablename__ = "failed_lookups"
    __table_args__ = (Index("ix_failed_lookups_caller_at", "caller", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# A masked contract as the call log stores it; longer keyed-in junk is cut to this.
CALL_LOG_CONTRACT_LENGTH = 20
# How long a call-log write may wait for a lock: it must not hold up the caller's answer.
CALL_LOG_WAIT_MS = 500


class CallStep(Base):
    """One webhook step of a call, as the call log keeps it: where, how it ended, which contract.

    The contract is stored masked; the table refuses a value without a mask character, so
    a whole contract number cannot land here by mistake.
    """

    __tablename__ = "call_steps"
    __table_args__ = (
        Index("ix_call_steps_at", "at"),
        Index("ix_call_steps_call_sid_at", "call_sid", "at"),
        CheckConstraint("contract IS NULL OR contract LIKE '%*%'", name="ck_call_steps_masked"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    call_sid: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(32))  # E.164, or "unknown"
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    state: Mapped[str | None] = mapped_column(String(20))  # None: the call was just answered
    next_state: Mapped[str | None] = mapped_column(String(20))  # None: the call ended here
    outcome: Mapped[str] = mapped_column(String(20))
    contract: Mapped[str | None] = mapped_column(String(CALL_LOG_CONTRACT_LENGTH))


class CallEnd(Base):
    """A status Twilio reported for a call (its status callback): how and after how long."""

    __tablename__ = "call_ends"
    __table_args__ = (Index("ix_call_ends_at", "at"), Index("ix_call_ends_call_sid", "call_sid"))

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    call_sid: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    status: Mapped[str] = mapped_column(String(20))
    duration_s: Mapped[int | None] = mapped_column(Integer())


# --- engine -------------------------------------------------------------------------


def make_engine(url: str) -> Engine:
    """Create an engine with bounded connect and statement times for this dialect."""
    if url.startswith("sqlite"):
        # An in-memory database has a single connection, so no pool to wait for.
        in_memory = make_url(url).database in (None, "", ":memory:")
        pool_args = {} if in_memory else {"pool_timeout": CONNECT_TIMEOUT_S}
        engine = create_engine(url, connect_args={"timeout": QUERY_TIMEOUT_MS / 1000}, **pool_args)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={QUERY_TIMEOUT_MS}",
        }
    # A step waiting for a pooled connection is bounded like one waiting for the server.
    return create_engine(
        url, connect_args=connect_args, pool_pre_ping=True, pool_timeout=CONNECT_TIMEOUT_S
    )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets billing append while calls read; the busy timeout bounds a lock wait.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={QUERY_TIMEOUT_MS}")
    # In WAL mode NORMAL stays consistent on a crash and skips an fsync per commit; only
    # the hotline's own last writes (lockout counts, call log) can be lost to a power cut.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_schema(engine: Engine) -> None:
    """Bring the ledger's tables to the head revision of the shipped migrations."""
    # Imported here: the migrations import the models from this module.
    from ivr.db.migrate import bring_to_head

    bring_to_head(engine)


def has_schema(engine: Engine) -> bool:
    """Return True when the ledger's tables exist."""
    return inspect(engine).has_table(Entry.__tablename__)


def create_demo_if_missing(engine: Engine, demo_csv: Path) -> ImportReport | None:
    """Create the ledger from the demo entries when it has no tables yet; else do nothing."""
    if has_schema(engine):
        return None
    create_schema(engine)
    return import_csv(engine, demo_csv)


# --- queries ------------------------------------------------------------------------


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


def record_failed_lookup(session: Session, caller: str, at: datetime) -> None:
    """Count one failed contract entry against a caller."""
    session.add(FailedLookup(caller=caller, at=at))


_FAILED_LOOKUPS_SINCE = (
    select(func.count())
    .select_from(FailedLookup.__table__)
    .where(
        FailedLookup.__table__.c.caller == bindparam("caller"),
        FailedLookup.__table__.c.at >= bindparam("since", type_=UtcDateTime()),
    )
)


def failed_lookups_since(session: Session, caller: str, since: datetime) -> int:
    """Return how many failed contract entries a caller made at or after `since`."""
    count = session.connection().scalar(_FAILED_LOOKUPS_SINCE, {"caller": caller, "since": since})
    return int(count or 0)


@contextmanager
def lock_wait(connection: Connection, ms: int) -> Iterator[None]:
    """Make the statements inside the block give up after waiting `ms` for a lock.

    Commit after the block: the bound covers what the block sends. PostgreSQL: a
    statement timeout local to the transaction. SQLite: the connection's busy timeout,
    put back to the engine's bound when the block ends.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(select(func.set_config("statement_timeout", str(int(ms)), True)))
        yield
        return
    if dialect != "sqlite":
        yield
        return
    # On the driver's connection: two PRAGMAs through SQLAlchemy cost more than the row.
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute(f"PRAGMA busy_timeout = {int(ms)}")
    try:
        yield
    finally:
        try:
            driver.execute(f"PRAGMA busy_timeout = {QUERY_TIMEOUT_MS}")
        except Exception:
            # A connection that cannot take a PRAGMA must not go back to the pool
            # with the short wait; drop it instead.
            connection.invalidate()
            raise


def record_call_step(
    executor: Connection | Session,
    *,
    call_sid: str,
    caller: str,
    at: datetime,
    state: str | None,
    next_state: str | None,
    outcome: str,
    masked_contract: str | None,
) -> None:
    """Add one step to the call log; the contract must already be masked."""
    # A Core INSERT, sent at once: every step writes one, and the ORM's unit of work
    # cost more than the row.
    executor.execute(
        insert(CallStep),
        {
            "call_sid": call_sid,
            "caller": caller,
            "at": at,
            "state": state,
            "next_state": next_state,
            "outcome": outcome,
            "contract": masked_contract,
        },
    )


def record_call_end(
    executor: Connection | Session,
    *,
    call_sid: str,
    caller: str,
    at: datetime,
    status: str,
    duration_s: int | None,
) -> None:
    """Add a status Twilio reported for a call to the call log."""
    executor.execute(
        insert(CallEnd),
        {
            "call_sid": call_sid,
            "caller": caller,
            "at": at,
            "status": status,
            "duration_s": duration_s,
        },
    )


def call_steps_between(session: Session, start: datetime, end: datetime) -> list[CallStep]:
    """Return the call-log steps of calls that had a step in [start, end), call by call in order."""
    in_window = select(CallStep.call_sid).where(CallStep.at >= start, CallStep.at < end)
    rows = session.scalars(
        select(CallStep)
        .where(CallStep.call_sid.in_(in_window.distinct()))
        .order_by(CallStep.call_sid, CallStep.at, CallStep.id)
    )
    return list(rows)


def call_ends_between(session: Session, start: datetime, end: datetime) -> list[CallEnd]:
    """Return the statuses Twilio reported in [start, end), oldest first."""
    rows = session.scalars(
        select(CallEnd)
        .where(CallEnd.at >= start, CallEnd.at < end)
        .order_by(CallEnd.at, CallEnd.id)
    )
    return list(rows)


# --- CSV import ---------------------------------------------------------------------

_AMOUNT = re.compile(r"^[+-]?\d{1,10}(\.\d{1,2})?$")


@dataclass(frozen=True)
class LedgerRow:
    """One validated CSV row."""

    contract: str
    posted_at: datetime
    amount: Decimal
    kind: str
    memo: str

    @property
    def key(self) -> str:
        """Identify the row by its content, so a re-import recognises it."""
        text = "|".join(
            (self.contract, self.posted_at.isoformat(), str(self.amount), self.kind, self.memo)
        )
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    rows: int
    added: int
    accounts_added: int

    @property
    def already_present(self) -> int:
        return self.rows - self.added


def parse_row(fields: dict[str, str | None]) -> LedgerRow:
    """Validate one CSV row; raise ValueError saying what is wrong with it."""
    contract = (fields.get("contract") or "").strip()
    if not is_valid(contract):
        raise ValueError(
            # Masked: the line number finds the row, and errors may end up in logs.
            f"contract {mask(contract)!r} is not {CONTRACT_LENGTH} digits with a valid check digit"
        )
    raw_time = (fields.get("posted_at") or "").strip()
    try:
        posted_at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise ValueError(f"posted_at {raw_time!r} is not an ISO 8601 timestamp") from None
    if posted_at.tzinfo is None:
        raise ValueError(f"posted_at {raw_time!r} has no UTC offset (add +00:00 or Z)")
    raw_amount = (fields.get("amount") or "").strip()
    if not _AMOUNT.match(raw_amount):
        raise ValueError(f"amount {raw_amount!r} is not a signed decimal with at most 2 decimals")
    try:
        amount = Decimal(raw_amount).quantize(KOPECK)
    except InvalidOperation:
        raise ValueError(f"amount {raw_amount!r} is not a number") from None
    kind = (fields.get("kind") or "").strip()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    memo = fields.get("memo") or ""
    return LedgerRow(contract, posted_at.astimezone(UTC), amount, kind, memo)


def read_csv(path: Path) -> Iterator[tuple[int, LedgerRow]]:
    """Yield (line number, row) for every data row; raise ImportFileError on the first bad one."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        if header != CSV_HEADER:
            raise ImportFileError(
                f"{path}:1: the header must be {','.join(CSV_HEADER)}, got {','.join(header)}"
            )
        for fields in reader:
            line = reader.line_num
            if None in fields or any(value is None for value in fields.values()):
                raise ImportFileError(
                    f"{path}:{line}: expected {len(CSV_HEADER)} fields, got another number"
                )
            try:
                yield line, parse_row(fields)
            except ValueError as exc:
                raise ImportFileError(f"{path}:{line}: {exc}") from None


def import_csv(
    engine: Engine, path: Path, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Load a ledger CSV in bulk, all or nothing; rows already in the ledger are skipped.

    The file is read twice: once to validate every row (so a bad row imports nothing),
    then to insert in batches inside a single transaction. `progress(done, total)`
    is called after every batch.
    """
    contracts: set[str] = set()
    total = 0
    for _line, row in read_csv(path):
        contracts.add(row.contract)
        total += 1

    with Session(engine) as session, session.begin():
        accounts_before = _count(session, Account)
        entries_before = _count(session, Entry)
        account_ids = _ensure_accounts(session, contracts)
        insert_new = _insert_ignoring_duplicates(session, Entry, "entry_key")
        done = 0
        batch: list[dict[str, Any]] = []
        for _line, row in read_csv(path):
            batch.append(
                {
                    "account_id": account_ids[row.contract],
                    "posted_at": row.posted_at,
                    "amount": row.amount,
                    "kind": row.kind,
                    "memo": row.memo,
                    "entry_key": row.key,
                }
            )
            # The last batch goes when the row count of the first pass is reached.
            if len(batch) >= BATCH_ROWS or done + len(batch) == total:
                session.execute(insert_new, batch)
                done += len(batch)
                batch.clear()
                if progress:
                    progress(done, total)
        return ImportReport(
            rows=total,
            added=_count(session, Entry) - entries_before,
            accounts_added=_count(session, Account) - accounts_before,
        )


def _count(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _ensure_accounts(session: Session, contracts: set[str]) -> dict[str, int]:
    """Create the accounts not yet known; return every contract's account id."""
    wanted = sorted(contracts)
    insert_new = _insert_ignoring_duplicates(session, Account, "contract")
    ids: dict[str, int] = {}
    for start in range(0, len(wanted), BATCH_ROWS):
        chunk = wanted[start : start + BATCH_ROWS]
        session.execute(insert_new, [{"contract": c} for c in chunk])
        rows = session.execute(
            select(Account.contract, Account.id).where(Account.contract.in_(chunk))
        )
        ids.update({contract: account_id for contract, account_id in rows})
    return ids


def _insert_ignoring_duplicates(session: Session, model: type[Base], unique: str) -> Any:
    """Build an INSERT that skips rows whose `unique` column is already taken."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=[unique])
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=[unique])
    raise NotImplementedError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
