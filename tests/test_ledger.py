"""The ledger: exact money, balance as of a moment, all-or-nothing idempotent import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from ivr import db
from ivr.contract import with_check_digit
from ivr.errors import ImportFileError
from tests.conftest import DEMO_CSV

HEADER = "contract,posted_at,amount,kind,memo\n"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def write_csv(tmp_path: Path, rows: str, name: str = "entries.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rows, encoding="utf-8")
    return path


def balance(engine: Engine, contract: str, at: datetime = NOW) -> Decimal | None:
    with Session(engine) as session:
        return db.balance(session, contract, at)


def entry_count(engine: Engine) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(db.Entry)) or 0)


def test_demo_import_and_balances(engine: Engine) -> None:
    report = db.import_csv(engine, DEMO_CSV)
    assert (report.rows, report.added, report.accounts_added) == (12, 12, 6)
    assert balance(engine, "590000000018") == Decimal("1234.56")
    assert balance(engine, "590000000034") == Decimal("-350.75")
    assert balance(engine, "590000000026") == Decimal("0.00")
    assert balance(engine, "590000000075") is None


def test_importing_the_same_file_twice_does_not_double_it(engine: Engine) -> None:
    db.import_csv(engine, DEMO_CSV)
    again = db.import_csv(engine, DEMO_CSV)
    assert (again.rows, again.added, again.already_present) == (12, 0, 12)
    assert entry_count(engine) == 12
    assert balance(engine, "590000000018") == Decimal("1234.56")


def test_overlapping_file_adds_only_new_rows(engine: Engine, tmp_path: Path) -> None:
    first = write_csv(tmp_path, "590000000018,2026-11-01T00:00:00Z,10.00,payment,\n", "a.csv")
    both = write_csv(
        tmp_path,
        "590000000018,2026-11-01T00:00:00Z,10.00,payment,\n"
        "590000000018,2026-11-02T00:00:00Z,5.50,payment,\n",
        "b.csv",
    )
    db.import_csv(engine, first)
    assert db.import_csv(engine, both).added == 1
    assert balance(engine, "590000000018") == Decimal("15.50")


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ("590000000017,2026-11-01T00:00:00Z,1.00,payment,", "check digit"),
        ("59000000001,2026-11-01T00:00:00Z,1.00,payment,", "check digit"),
        ("590000000018,2026-11-01T00:00:00,1.00,payment,", "no UTC offset"),
        ("590000000018,yesterday,1.00,payment,", "ISO 8601"),
        ("590000000018,2026-11-01T00:00:00Z,1.001,payment,", "at most 2 decimals"),
        ("590000000018,2026-11-01T00:00:00Z,1e3,payment,", "at most 2 decimals"),
        ("590000000018,2026-11-01T00:00:00Z,,payment,", "at most 2 decimals"),
        ("590000000018,2026-11-01T00:00:00Z,1.00,gift,", "kind 'gift'"),
        ("590000000018,2026-11-01T00:00:00Z,1.00", "fields"),
        ("590000000018,2026-11-01T00:00:00Z,1.00,payment,memo,extra", "fields"),
    ],
)
def test_bad_row_names_its_line_and_imports_nothing(
    engine: Engine, tmp_path: Path, bad_row: str, reason: str
) -> None:
    good = "590000000026,2026-11-01T00:00:00Z,100.00,payment,first\n"
    path = write_csv(tmp_path, good + good.replace("first", "second") + bad_row + "\n")
    with pytest.raises(ImportFileError) as caught:
        db.import_csv(engine, path)
    assert f"{path}:4:" in str(caught.value)
    assert reason in str(caught.value)
    assert entry_count(engine) == 0
    assert balance(engine, "590000000026") is None


def test_wrong_header_is_refused(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("contract,when,amount\n590000000018,2026-11-01T00:00:00Z,1\n", encoding="utf-8")
    with pytest.raises(ImportFileError, match=":1: the header must be"):
        db.import_csv(engine, path)


def test_balance_counts_entries_at_or_before_the_moment(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path,
        "590000000018,2026-11-30T17:00:00+05:00,100.00,payment,\n"  # 12:00 UTC
        "590000000018,2026-12-01T00:00:00+05:00,-650.00,charge,next month\n",
    )
    db.import_csv(engine, path)
    assert balance(engine, "590000000018", NOW - timedelta(seconds=1)) == Decimal("0.00")
    assert balance(engine, "590000000018", NOW) == Decimal("100.00")
    next_month = datetime(2026, 11, 30, 19, 0, tzinfo=UTC)
    assert balance(engine, "590000000018", next_month - timedelta(microseconds=1)) == Decimal(
        "100.00"
    )
    assert balance(engine, "590000000018", next_month) == Decimal("-550.00")


def test_money_is_exact_over_many_kopecks(engine: Engine, tmp_path: Path) -> None:
    rows = "".join(
        f"590000000018,2026-11-01T00:{minute:02d}:{second:02d}Z,0.10,payment,\n"
        for minute in range(10)
        for second in range(30)
    )
    rows += "590000000018,2026-11-02T00:00:00Z,-0.01,charge,\n"
    db.import_csv(engine, write_csv(tmp_path, rows))
    total = balance(engine, "590000000018")
    assert total == Decimal("29.99")
    assert isinstance(total, Decimal)
    assert str(total) == "29.99"


def test_largest_amounts_survive_the_round_trip(engine: Engine, tmp_path: Path) -> None:
    rows = "590000000018,2026-11-01T00:00:00Z,9999999999.99,adjustment,\n"
    rows += "590000000026,2026-11-01T00:00:00Z,-9999999999.99,adjustment,\n"
    db.import_csv(engine, write_csv(tmp_path, rows))
    assert balance(engine, "590000000018") == Decimal("9999999999.99")
    assert balance(engine, "590000000026") == Decimal("-9999999999.99")


def test_big_file_imports_in_batches_with_progress(engine: Engine, tmp_path: Path) -> None:
    count = db.BATCH_ROWS * 2 + 345
    rows = "".join(
        f"{with_check_digit(f'{59_000_000_000 + n % 1000:011d}')},"
        f"2026-11-01T00:00:00Z,{n % 7}.{n % 100:02d},payment,row {n}\n"
        for n in range(count)
    )
    seen: list[tuple[int, int]] = []
    report = db.import_csv(
        engine, write_csv(tmp_path, rows), progress=lambda d, t: seen.append((d, t))
    )
    assert (report.rows, report.added, report.accounts_added) == (count, count, 1000)
    assert seen[-1] == (count, count)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert len(seen) == 3
    expected = sum(Decimal(f"{n % 7}.{n % 100:02d}") for n in range(0, count, 1000))
    assert balance(engine, with_check_digit("59000000000")) == expected


def test_failed_lookups_are_counted_in_a_window(engine: Engine) -> None:
    with Session(engine) as session:
        for minutes in (90, 30, 10):
            db.record_failed_lookup(session, "+73422000001", NOW - timedelta(minutes=minutes))
        db.record_failed_lookup(session, "unknown", NOW)
        session.commit()
        since = NOW - timedelta(hours=1)
        assert db.failed_lookups_since(session, "+73422000001", since) == 2
        assert db.failed_lookups_since(session, "unknown", since) == 1
        assert db.failed_lookups_since(session, "+70000000000", since) == 0


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with Session(engine) as session, pytest.raises(Exception, match="UTC offset"):
        db.record_failed_lookup(session, "x", datetime(2026, 1, 1))
        session.flush()


# --- issue 11: the fast import keeps every promise ----------------------------------------


def big_rows(count: int) -> str:
    """`count` canonical rows (the billing export's form: the import's fast path)."""
    return "".join(
        f"{with_check_digit(f'{59_000_000_000 + n % 997:011d}')},"
        f"2026-{n % 11 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:00.{n % 999_999 + 1:06d}"
        f"+00:00,{-(n % 1000)}.{n % 100:02d},charge,Абонентская плата {n}\n"
        for n in range(count)
    )


def test_an_overlapping_canonical_file_adds_only_its_new_rows(
    engine: Engine, tmp_path: Path
) -> None:
    rows = big_rows(3000).splitlines(keepends=True)
    first = write_csv(tmp_path, "".join(rows[:2000]), "first.csv")
    assert db.import_csv(engine, first).added == 2000
    # 1000 rows already there (the same moments written with another offset and amount
    # form, so through the slow path), 1000 new, and a new row given twice.
    again = [row if n % 2 else _shifted(row) for n, row in enumerate(rows)]
    twice = "590000000018,2026-11-01T00:00:00.5+00:00,1.50,payment,twice\n"
    second = write_csv(tmp_path, "".join(again[1000:]) + twice + twice, "second.csv")
    report = db.import_csv(engine, second)
    assert (report.rows, report.added, report.already_present) == (2002, 1001, 1001)
    assert entry_count(engine) == 3001
    assert db.import_csv(engine, second).added == 0
    assert totals_agree(engine)


def _shifted(row: str) -> str:
    """The same entry, its time written at +05:00 and its amount with a plus sign."""
    contract, stamp, amount, kind, memo = row.split(",", 4)
    moment = datetime.fromisoformat(stamp).astimezone(timezone(timedelta(hours=5)))
    amount = amount if amount.startswith("-") else "+" + amount
    return ",".join((contract, moment.isoformat(), amount, kind, memo))


def test_a_bad_last_row_of_a_big_file_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    count = db.BATCH_ROWS + 1234
    bad = "590000000018,2026-02-30T10:00:00.123456+00:00,1.00,payment,no such day\n"
    path = write_csv(tmp_path, big_rows(count) + bad)
    with pytest.raises(ImportFileError) as caught:
        db.import_csv(engine, path)
    assert str(caught.value).startswith(f"{path}:{count + 2}: posted_at '2026-02-30T10")
    assert entry_count(engine) == 0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(db.Account)) == 0
    assert db.import_csv(engine, write_csv(tmp_path, big_rows(count), "good.csv")).added == count


def totals_agree(engine: Engine) -> bool:
    """Whether `month_totals` holds exactly the sums of the entries per account and month."""
    with Session(engine) as session:
        summed: dict[tuple[int, int], Decimal] = {}
        for account_id, posted_at, amount in session.execute(
            select(db.Entry.account_id, db.Entry.posted_at, db.Entry.amount)
        ):
            month = posted_at.year * 12 + posted_at.month - 1
            summed[account_id, month] = summed.get((account_id, month), Decimal(0)) + amount
        kept = {
            (t.account_id, t.month): t.amount
            for t in session.scalars(select(db.MonthTotal))
            if t.amount != 0
        }
    return kept == {k: v for k, v in summed.items() if v != 0}


def test_the_contract_steps_lookup_binds_no_kind(engine: Engine) -> None:
    """The entries' kind is written into the lookup's SQL, never bound (revision 0006).

    With partial indexes on the kind, SQLite prepares a statement anew whenever a value
    is bound to a parameter compared with it: the lookup went from ~8 to ~40-57 µs.
    """
    from ivr.db.ledger import _compiled_lookup

    lookup = _compiled_lookup(engine.dialect)
    assert "entries.kind = 'charge'" in lookup.sql
    bound = {name for name, _ in lookup._variables} | set(lookup._constants)
    assert not any(name.startswith("kind") for name in bound), bound
    assert "charge" not in lookup._constants.values()
