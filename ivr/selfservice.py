"""The rules of the self-service answers after the balance: days left and the promised payment.

Pure: the flow hands in the ledger's facts (`PromiseFacts`) and the moment; these functions
say how long the money lasts and whether a promised payment may be offered, and why not.
SQL lives in `ivr.db.selfservice`; what is said lives in `ivr.flow` and the prompt files.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

# The window of the spend estimate and of "one promised payment in 30 days" (SPEC).
WINDOW = timedelta(days=30)
DAYS_IN_A_YEAR = 365


@dataclass(frozen=True)
class PromiseRules:
    """The promised payment's settings: IVR_PROMISE_MIN_RUB, _MAX_RUB and _DAYS."""

    min_rub: Decimal = Decimal(100)
    max_rub: Decimal = Decimal(3000)
    days: int = 5

    def __post_init__(self) -> None:
        if self.days < 1 or self.min_rub < 1 or self.max_rub < self.min_rub:
            raise ValueError(
                f"promised payment: need days >= 1 and 1 <= min <= max, got days={self.days},"
                f" min={self.min_rub}, max={self.max_rub}"
            )


@dataclass(frozen=True)
class Payment:
    """A payment entry: when it was posted and how much."""

    posted_at: datetime
    amount: Decimal


@dataclass(frozen=True)
class PromiseFacts:
    """What the ledger says about an account's promised payments, as of the call."""

    balance: Decimal
    charges: Decimal  # the magnitude of its charges in the 30 days up to the call
    running_until: datetime | None = None  # the earliest return not yet posted
    last_taken_at: datetime | None = None  # the latest promise taken at or before the call
    # The latest promise taken by phone on this account, from the hotline's guard row:
    # the call that took it, its amount and its return.
    phone_call_sid: str | None = None
    phone_amount: Decimal | None = None
    phone_returns_at: datetime | None = None


class Refusal(enum.Enum):
    """Why a promised payment is not offered (the value goes into the call log's outcome)."""

    RUNNING = "running"  # one is still running: its return is not yet posted
    RECENT = "recent"  # one was taken in the 30 days before the call
    NOT_NEEDED = "not_needed"  # the balance already covers the 30-day charges
    OVER_MAX = "over_max"  # the amount needed is above the maximum


@dataclass(frozen=True)
class Terms:
    """A promised payment that may be offered: its amount and when it is returned."""

    amount: Decimal
    returns_at: datetime


def days_left(balance: Decimal, charges: Decimal) -> int | None:
    """Return how many whole days `balance` lasts at the 30-day spend, or None for no estimate.

    Daily spend is `charges` / 30; the days are balance / daily spend, rounded down. No
    estimate for a zero or negative balance, nor without charges.
    """
    if balance <= 0 or charges <= 0:
        return None
    # balance / (charges / 30), exactly: Decimal division of two exact amounts, floored.
    return int((balance * WINDOW.days) // charges)


def promise_amount(facts: PromiseFacts, rules: PromiseRules) -> Decimal:
    """Return the amount to promise: 30-day charges plus any debt, up to whole rubles, >= min."""
    debt = -facts.balance if facts.balance < 0 else Decimal(0)
    needed = (facts.charges + debt).to_integral_value(rounding=ROUND_CEILING)
    return max(needed, rules.min_rub).quantize(Decimal("0.01"))


def judge(facts: PromiseFacts, now: datetime, rules: PromiseRules) -> Terms | Refusal:
    """Decide whether a promised payment may be offered now, the rules in the SPEC's order."""
    if facts.running_until is not None and facts.running_until > now:
        return Refusal.RUNNING
    if facts.last_taken_at is not None and facts.last_taken_at > now - WINDOW:
        return Refusal.RECENT
    if facts.balance >= facts.charges:
        return Refusal.NOT_NEEDED
    amount = promise_amount(facts, rules)
    if amount > rules.max_rub:
        return Refusal.OVER_MAX
    return Terms(amount, now + timedelta(days=rules.days))


def taken_by(facts: PromiseFacts, call_sid: str, now: datetime) -> Terms | None:
    """Return the running promise this very call took by phone (a replay), else None."""
    if (
        call_sid
        and facts.phone_call_sid == call_sid
        and facts.phone_amount is not None
        and facts.phone_returns_at is not None
        and facts.phone_returns_at > now
    ):
        return Terms(facts.phone_amount, facts.phone_returns_at)
    return None


def next_allowed(facts: PromiseFacts) -> datetime | None:
    """Return when the next promised payment may be taken under the 30-day rule."""
    return None if facts.last_taken_at is None else facts.last_taken_at + WINDOW
