"""The tables: billing's ledger (accounts, entries) and the hotline's own (lockout, call log).

`Money` and `UtcDateTime` make SQLite and PostgreSQL agree: exact kopecks, aware UTC times.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

from ivr.contract import CONTRACT_LENGTH

KINDS = ("payment", "charge", "adjustment", "promised_payment")
# The partial indexes of one kind's entries (revision 0006), by name.
KIND_INDEXES = {
    "ix_entries_account_payments": "payment",
    "ix_entries_account_promises": "promised_payment",
}
KOPECK = Decimal("0.01")


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
            return _kopecks_to_rubles(value)
        return Decimal(value).quantize(KOPECK)

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        # On SQLite the column's own type converts nothing: one function instead of
        # SQLAlchemy's wrapper around `process_result_value` (the contract step reads three).
        if dialect.name == "sqlite":
            return _kopecks_to_rubles_or_none
        return super().result_processor(dialect, coltype)


def _kopecks_to_rubles(value: Any) -> Decimal:
    return Decimal(int(value)).scaleb(-2).quantize(KOPECK)


def _kopecks_to_rubles_or_none(value: Any) -> Decimal | None:
    return None if value is None else _kopecks_to_rubles(value)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware timestamp stored as UTC, so SQLite compares it correctly as text."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = _as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        # On SQLite: SQLAlchemy's DATETIME text ("2026-12-02 13:31:07.000000", which
        # `isoformat` writes alike) in one step, instead of a wrapper, the conversion
        # above and a %-format; the contract step binds four timestamps.
        if dialect.name == "sqlite":
            return sqlite_text
        return super().bind_processor(dialect)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("ledger timestamps must carry a UTC offset")
    return value.astimezone(UTC)


def sqlite_text(value: datetime | None) -> str | None:
    """An aware moment as the ledger stores it on SQLite: naive UTC text, microseconds."""
    if value is None:
        return None
    if value.tzinfo is UTC:  # the usual case (datetime.now(UTC)): drop the "+00:00"
        return value.isoformat(" ", "microseconds")[:-6]
    return _as_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")


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
        # Covers the balance's current month (account, time range, sum of amounts) and,
        # with the kind, the charges of the last 30 days (days left): each one index range
        # of a month's entries, the same at a thousand or a million accounts and at ten
        # or 3 650 entries an account. One index, not two: every imported row pays for it.
        Index("ix_entries_account_posted_amount_kind", "account_id", "posted_at", "amount", "kind"),
        # The content key is unique within its account (revision 0005): the key's text
        # holds the contract, so the same row always lands in the same account, and an
        # import (in account order) inserts each account's keys side by side instead of
        # into a random leaf of a global index.
        UniqueConstraint("account_id", "entry_key", name="uq_entries_account_key"),
        # An account's payments, and its promised payments, each in an index of that kind's
        # rows only (revision 0006): the last payment and the last promise taken are the
        # first entries read, however many charges came since. Only those kinds' rows pay
        # for them. The same columns as the index above, so each covers its query and the
        # planner prefers it (SQLite has no statistics to go by).
        *(
            Index(
                name,
                "account_id",
                "posted_at",
                "amount",
                "kind",
                sqlite_where=text(f"kind = '{kind}'"),
                postgresql_where=text(f"kind = '{kind}'"),
            )
            for name, kind in KIND_INDEXES.items()
        ),
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
    # A digest of the row's content, 16 bytes (`ivr.db.imports.content_key`), unique in its
    # account: importing the same file twice adds nothing. Entries billing posts by other
    # means may leave it empty.
    entry_key: Mapped[bytes | None] = mapped_column(LargeBinary(16))


class MonthTotal(Base):
    """The sum of an account's entries posted in one calendar month (UTC), kept by triggers.

    A balance reads the totals of the months before the current one and the current
    month's entries, so ten years of daily charges cost ~120 rows, not 3 650. Triggers on
    `entries` (see `ivr.db.totals`) keep it exact for every INSERT, UPDATE and DELETE,
    billing's own as well as the import's, backdated and future-dated alike.
    """

    __tablename__ = "month_totals"
    # SQLite: the primary key is the table (no rowid), so a range read is covering.
    __table_args__ = {"sqlite_with_rowid": False}

    account_id: Mapped[int] = mapped_column(primary_key=True)
    # Months since year 0: year * 12 + month - 1 (UTC), e.g. 2026-11 -> 24322.
    month: Mapped[int] = mapped_column(primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Money())


# A row here, inside the import's own write transaction, makes SQLite's insert trigger on
# `entries` stand aside while the import adds the monthly sums itself (see ivr.db.totals).
# Declared for both databases so that one schema serves both; PostgreSQL never uses it.
month_totals_paused = Table(
    "month_totals_paused", Base.metadata, Column("paused", Integer(), nullable=False)
)


class FailedLookup(Base):
    """A caller's failed contract entry, counted across calls and processes for lockout."""

    __tablename__ = "failed_lookups"
    __table_args__ = (Index("ix_failed_lookups_caller_at", "caller", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    caller: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UtcDateTime())


# A masked contract as the call log stores it; longer keyed-in junk is cut to this.
CALL_LOG_CONTRACT_LENGTH = 20


class CallStep(Base):
    """One webhook step of a call, as the call log keeps it: where, how it ended, which contract.

    The contract is stored masked; the table refuses a value without a mask character, so
    a whole contract number cannot land here by mistake.
    """

    __tablename__ = "call_steps"
    __table_args__ = (
        Index("ix_call_steps_at", "at"),
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


def create_schema(engine: Engine) -> None:
    """Bring the ledger's tables to the head revision of the shipped migrations."""
    # Imported here: the migrations import the models from this module.
    from ivr.db.migrate import bring_to_head

    bring_to_head(engine)


def has_schema(engine: Engine) -> bool:
    """Return True when the ledger's tables exist."""
    return inspect(engine).has_table(Entry.__tablename__)


class PromiseGuard(Base):
    """The latest promised payment taken by phone on an account: one row an account.

    The row is what makes a promise exactly-once (see `ivr.db.selfservice`): a new
    promise replaces it only through one atomic upsert whose condition the database
    checks, so two processes can never both take one.
    """

    __tablename__ = "promise_guards"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    call_sid: Mapped[str] = mapped_column(String(64))
    taken_at: Mapped[datetime] = mapped_column(UtcDateTime())
    returns_at: Mapped[datetime] = mapped_column(UtcDateTime())
    amount: Mapped[Decimal] = mapped_column(Money())
