"""Monthly totals (ivr.db.totals), the batched call log and the import's fast path (issue 11)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update
from stdnum import luhn

from ivr import calllog, db
from ivr.contract import is_valid
from ivr.db import migrate
from ivr.db.imports import parse_row, staged_rows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CONTRACT = "590000000018"


def totals_agree(engine: Engine) -> bool:
    """Every account's monthly totals equal the sums of its entries, month by month."""
    with engine.connect() as conn:
        kept = {
            (a, m): v
            for a, m, v in conn.execute(
                select(db.MonthTotal.account_id, db.MonthTotal.month, db.MonthTotal.amount)
            )
            if v != 0
        }
        entries = conn.execute(select(db.Entry.account_id, db.Entry.posted_at, db.Entry.amount))
        summed: dict[tuple[int, int], Decimal] = {}
        for account, posted, amount in entries:
            key = (account, db.month_number(posted))
            summed[key] = summed.get(key, Decimal("0.00")) + amount
    return kept == {k: v for k, v in summed.items() if v != 0}


def sum_of_entries(engine: Engine, account: int, at: datetime) -> Decimal:
    with engine.connect() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(db.Entry.amount), 0)).where(
                db.Entry.account_id == account, db.Entry.posted_at <= at
            )
        ).scalar_one()
    assert isinstance(total, Decimal)
    return total


def test_billing_inserts_updates_and_deletes_keep_the_totals_exact(engine: Engine) -> None:
    """Billing's own statements, backdated and future-dated: the triggers follow them all."""
    with engine.begin() as conn:
        account = conn.execute(
            insert(db.Account).values(contract=CONTRACT).returning(db.Account.id)
        ).scalar_one()
        daily = [
            {
                "account_id": account,
                "posted_at": NOW - timedelta(days=day, minutes=5),
                "amount": Decimal("-10.01"),
                "kind": "charge",
                "memo": "",
            }
            for day in range(400)
        ]
        conn.execute(insert(db.Entry), daily)
    moments = [NOW, NOW - timedelta(days=45), NOW + timedelta(days=90), NOW - timedelta(days=1)]
    changes = [
        # backdated: posted last year, arriving now
        insert(db.Entry).values(
            account_id=account,
            posted_at=NOW - timedelta(days=300),
            amount=Decimal("1000.00"),
            kind="payment",
            memo="",
        ),
        # future-dated: a promised payment's return, not counted until then
        insert(db.Entry).values(
            account_id=account,
            posted_at=NOW + timedelta(days=5),
            amount=Decimal("-300.00"),
            kind="promised_payment",
            memo="",
        ),
        # later this very month
        insert(db.Entry).values(
            account_id=account,
            posted_at=NOW + timedelta(minutes=1),
            amount=Decimal("-0.99"),
            kind="charge",
            memo="",
        ),
        update(db.Entry)
        .where(db.Entry.amount == Decimal("1000.00"))
        .values(posted_at=NOW - timedelta(days=20), amount=Decimal("999.99")),
        delete(db.Entry).where(db.Entry.posted_at < NOW - timedelta(days=390)),
    ]
    for change in changes:
        with engine.begin() as conn:
            conn.execute(change)
        assert totals_agree(engine)
        for at in moments:
            assert db.read_balance(engine, CONTRACT, at) == sum_of_entries(engine, account, at)
            view = db.LedgerView(engine)
            view.expect_lookup("+73422000001", at - timedelta(hours=1), CONTRACT, at)
            assert view.failures_since("+73422000001", at - timedelta(hours=1)) == 0
            assert view.balance(CONTRACT, at) == sum_of_entries(engine, account, at)
            view.close(commit=False)


def test_the_import_keeps_the_totals_exact_and_twice_adds_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    rows = "".join(
        f"{CONTRACT},{(NOW - timedelta(days=d)).isoformat()},-{d % 50}.{d % 100:02d},charge,\n"
        for d in range(-40, 700)
    )
    path = tmp_path / "ledger.csv"
    path.write_text("contract,posted_at,amount,kind,memo\n" + rows, encoding="utf-8")
    assert db.import_csv(engine, path).added == 740
    assert db.import_csv(engine, path).added == 0
    assert totals_agree(engine)
    with engine.connect() as conn:
        account = conn.execute(select(db.Account.id)).scalar_one()
    for at in (NOW, NOW - timedelta(days=100), NOW + timedelta(days=20)):
        assert db.read_balance(engine, CONTRACT, at) == sum_of_entries(engine, account, at)


def test_totals_are_filled_when_added_to_an_existing_ledger(engine: Engine) -> None:
    # A ledger at revision 0001, before month totals: billing's rows, no triggers yet.
    with engine.begin() as connection:
        for table in ("alembic_version", *reversed(db.Base.metadata.sorted_tables)):
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    migrate.upgrade(engine, "0001")
    with engine.begin() as connection:
        account = connection.execute(
            insert(db.Account.__table__).values(contract=CONTRACT)
        ).inserted_primary_key[0]
        for posted, amount, kind in (
            (datetime(2025, 1, 5, tzinfo=UTC), Decimal("100.00"), "payment"),
            (datetime(2026, 3, 5, tzinfo=UTC), Decimal("-30.00"), "charge"),
        ):
            connection.execute(
                insert(db.Entry.__table__).values(
                    account_id=account, posted_at=posted, amount=amount, kind=kind, memo=""
                )
            )
    assert migrate.bring_to_head(engine) is migrate.Outcome.UPGRADED
    assert totals_agree(engine)  # revision 0002 filled the totals from the entries
    assert db.read_balance(engine, CONTRACT, NOW) == Decimal("70.00")


# --- the import's fast path agrees with parse_row ---------------------------------------


@pytest.mark.parametrize(
    ("posted", "amount"),
    [
        ("2026-11-30T12:00:00.123456+00:00", "-650.00"),
        ("2026-11-30T12:00:00.000000+00:00", "0.00"),
        ("2026-11-30T12:00:00+00:00", "-0.00"),
        ("2026-11-30T17:00:00+05:00", "+5"),
        ("2026-11-30T12:00:00Z", "007.5"),
        ("2026-11-30T23:59:59.999999-03:00", "9999999999.99"),
    ],
)
def test_staged_rows_carry_the_same_key_and_values_as_parse_row(
    tmp_path: Path, posted: str, amount: str
) -> None:
    path = tmp_path / "one.csv"
    path.write_text(
        f"contract,posted_at,amount,kind,memo\n{CONTRACT},{posted},{amount},charge,a memo\n",
        encoding="utf-8",
    )
    row = parse_row(
        {
            "contract": CONTRACT,
            "posted_at": posted,
            "amount": amount,
            "kind": "charge",
            "memo": "a memo",
        }
    )
    (staged_pg,) = staged_rows(path, sqlite=False)
    (staged_sqlite,) = staged_rows(path, sqlite=True)
    assert staged_pg[-1] == staged_sqlite[-1] == row.key
    assert datetime.fromisoformat(staged_pg[2]) == row.posted_at
    assert Decimal(staged_pg[3]) == row.amount
    naive = row.posted_at.replace(tzinfo=None).isoformat(" ", "microseconds")
    assert staged_sqlite[2:4] == (naive, int(row.amount.scaleb(2)))


def test_is_valid_agrees_with_python_stdnum() -> None:
    rng = random.Random(11)
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice((11, 12, 12, 13))))
        expected = len(digits) == 12 and luhn.is_valid(digits)
        assert is_valid(digits) == expected
    assert not is_valid("５９００００００００１８")  # full-width digits are not ASCII


# --- the batched call log ----------------------------------------------------------------


def step(sid: str, contract: str | None = None) -> calllog.Step:
    return calllog.Step(sid, "+73422000001", NOW, "contract", None, "balance_told", contract)


def test_a_batched_call_log_writes_at_flush_and_masks(engine: Engine) -> None:
    log = db.CallLog(engine, batch_s=60)  # the thread would wait a minute: flush by hand
    log.step(step("CA1", CONTRACT))
    log.end(calllog.End("CA1", "+73422000001", NOW, "completed", 30))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(db.CallStep)).scalar() == 0
    assert log.flush() == 2
    with engine.connect() as conn:
        assert conn.execute(select(db.CallStep.contract)).scalar() == "59******0018"
        assert conn.execute(select(db.CallEnd.status)).scalar() == "completed"
    assert log.flush() == 0


def test_a_batched_call_log_writes_within_its_interval(engine: Engine) -> None:
    import time

    log = db.CallLog(engine, batch_s=0.05)
    for n in range(5):
        log.step(step(f"CA{n}"))
    deadline = time.monotonic() + 5
    count = 0
    while time.monotonic() < deadline and count < 5:
        time.sleep(0.05)
        with engine.connect() as conn:
            count = int(conn.execute(select(func.count()).select_from(db.CallStep)).scalar() or 0)
    assert count == 5


def test_a_batch_that_cannot_be_written_is_logged_and_dropped(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    log = db.CallLog(engine, batch_s=60)
    log.step(step("CA1"))
    db.CallStep.__table__.drop(engine)  # type: ignore[attr-defined]
    assert log.flush() == 0
    assert any("the call log missed 1 steps and 0 ends" in r.getMessage() for r in caplog.records)


def test_a_big_batch_lands_whole_in_order_with_its_empty_values(engine: Engine) -> None:
    """SQLite: several multi-row INSERTs; PostgreSQL: one INSERT of arrays (unnest)."""
    from ivr.db.hotline_tables import ROWS_PER_INSERT

    log = db.CallLog(engine, batch_s=60)
    count = ROWS_PER_INSERT * 2 + 17  # SQLite: two full statements and a short one
    written = []
    for n in range(count):
        at = NOW + timedelta(microseconds=n * 1001)
        state = None if n % 3 == 0 else "contract"
        row = calllog.Step(f"CA{n}", f"+7342200{n:04d}", at, state, None, "menu", None)
        written.append(row)
        log.step(row)
        if n % 100 == 0:
            log.end(calllog.End(f"CA{n}", f"+7342200{n:04d}", at, "completed", n))
    assert log.flush() == count + len(range(0, count, 100))
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                db.CallStep.call_sid, db.CallStep.caller, db.CallStep.at, db.CallStep.state
            ).order_by(db.CallStep.id)
        ).all()
        ends = conn.execute(select(db.CallEnd.duration_s).order_by(db.CallEnd.id)).scalars()
        assert list(ends) == list(range(0, count, 100))
    assert [tuple(r) for r in rows] == [(w.call_sid, w.caller, w.at, w.state) for w in written]
