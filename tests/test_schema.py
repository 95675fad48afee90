"""The column types' own conversions: the SQLite shortcuts give what SQLAlchemy's path gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator

from ivr.db.schema import Money, UtcDateTime

SQLITE = sqlite.dialect()


def _moments() -> list[datetime]:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-3, minutes=-30))]
    moments = [
        datetime(2026, 12, 2, 13, 31, 7, tzinfo=UTC),  # no microseconds
        datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC),  # a year of three digits
        datetime(2026, 3, 31, 23, 59, 59, 999_999, tzinfo=timezone(timedelta(hours=5))),
    ]
    for _ in range(2_000):
        seconds = rng.randrange(0, 200 * 365 * 86_400)
        moment = datetime(1950, 1, 1, tzinfo=UTC) + timedelta(
            seconds=seconds, microseconds=rng.randrange(1_000_000)
        )
        moments.append(moment.astimezone(rng.choice(zones)))
    return moments


def test_utc_datetime_binds_on_sqlite_as_sqlalchemy_writes_them() -> None:
    kind = UtcDateTime().dialect_impl(SQLITE)  # as a statement compiled for SQLite has it
    fast = kind.bind_processor(SQLITE)
    # SQLAlchemy's own composition: process_bind_param, then SQLite DATETIME's processor.
    slow = TypeDecorator.bind_processor(kind, SQLITE)
    assert fast is not None and slow is not None
    for moment in _moments():
        assert fast(moment) == slow(moment)
    assert fast(None) is None


def test_utc_datetime_refuses_a_naive_timestamp_on_sqlite() -> None:
    fast = UtcDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    assert fast is not None
    with pytest.raises(ValueError, match="UTC offset"):
        fast(datetime(2026, 12, 2, 13, 0))


def test_utc_datetime_on_postgresql_keeps_sqlalchemys_path() -> None:
    dialect = postgresql.psycopg.dialect()
    processor = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    moment = datetime(2026, 12, 2, 18, 0, tzinfo=timezone(timedelta(hours=5)))
    converted = processor(moment) if processor is not None else moment
    assert converted == moment and converted.utcoffset() == timedelta(0)


@pytest.mark.parametrize("kopecks", [0, 1, -1, 99, 100, -12_345, 123_456_789_012, None])
def test_money_reads_kopecks_on_sqlite_as_before(kopecks: int | None) -> None:
    kind = Money().dialect_impl(SQLITE)
    fast = kind.result_processor(SQLITE, None)
    slow = TypeDecorator.result_processor(kind, SQLITE, None)
    assert fast is not None and slow is not None
    assert fast(kopecks) == slow(kopecks)
    if kopecks is not None:
        assert str(fast(kopecks)) == str(slow(kopecks))  # the same exponent: two places
        assert fast(kopecks) == Decimal(kopecks) / 100
