"""Self-service after the balance: days left, the last payment, the promised payment.

The rules alone (ivr.selfservice), then through signed calls on the demo ledger and on
ledgers made for one moment with freezegun; the exactly-once write and the fault between
its two inserts. The concurrent confirmations against gunicorn are in test_promise_race.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from freezegun import freeze_time
from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.orm import Session

from ivr import create_app, db
from ivr.cli import main
from ivr.db import selfservice as queries
from ivr.db.schema import PromiseGuard
from ivr.errors import ConfigError, ImportFileError
from ivr.selfservice import (
    Payment,
    PromiseFacts,
    PromiseRules,
    Refusal,
    Terms,
    days_left,
    judge,
)
from tests.conftest import AUTH_TOKEN, Caller, database_url, engine_of, fresh_schema

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RULES = PromiseRules()

DAYS_LEFT = "590000000083"  # 1350.00, 650 charged in 30 days: 62 days
PAID_YESTERDAY = "590000000091"  # 700.00 paid a day ago
ELIGIBLE = "590000000109"  # a debt of 50.00 and 650 charged: a promise of 700
RUNNING = "590000000117"  # a promise returned in 3 days
NEVER_PAID = "590000000125"
OVER_MAX = "590000000133"
RECENT = "590000000141"  # a promise taken 12 days ago, returned


# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("balance", "charges", "days"),
    [
        ("1350.00", "650.00", 62),
        ("50.00", "650.00", 2),
        ("21.66", "650.00", 0),  # 21.67 a day
        ("21.67", "650.00", 1),
        ("0.00", "650.00", None),
        ("-5.00", "650.00", None),
        ("100.00", "0.00", None),
        ("10000.00", "30.00", 10000),
    ],
)
def test_days_left(balance: str, charges: str, days: int | None) -> None:
    assert days_left(Decimal(balance), Decimal(charges)) == days


def facts(balance: str, charges: str, **more: object) -> PromiseFacts:
    return PromiseFacts(Decimal(balance), Decimal(charges), **more)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "verdict"),
    [
        (facts("-50.00", "650.00"), Terms(Decimal("700.00"), NOW + timedelta(days=5))),
        (facts("10.00", "650.00"), Terms(Decimal("650.00"), NOW + timedelta(days=5))),
        (facts("-0.01", "0.00"), Terms(Decimal("100.00"), NOW + timedelta(days=5))),  # the minimum
        (facts("-10.50", "650.25"), Terms(Decimal("661.00"), NOW + timedelta(days=5))),  # round up
        (facts("-100.00", "2900.00"), Terms(Decimal("3000.00"), NOW + timedelta(days=5))),
        (facts("-100.01", "2900.00"), Refusal.OVER_MAX),
        (facts("650.00", "650.00"), Refusal.NOT_NEEDED),
        (facts("0.00", "0.00"), Refusal.NOT_NEEDED),
        (facts("-50.00", "650.00", running_until=NOW + timedelta(seconds=1)), Refusal.RUNNING),
        (
            facts("-50.00", "650.00", running_until=NOW),
            Terms(Decimal("700.00"), NOW + timedelta(days=5)),
        ),
        (facts("-50.00", "650.00", last_taken_at=NOW - timedelta(days=29)), Refusal.RECENT),
        (
            facts("-50.00", "650.00", last_taken_at=NOW - timedelta(days=30)),
            Terms(Decimal("700.00"), NOW + timedelta(days=5)),
        ),
    ],
)
def test_judge(given: PromiseFacts, verdict: Terms | Refusal) -> None:
    assert judge(given, NOW, RULES) == verdict


# --- through calls on the demo ledger -------------------------------------------------------


def to_balance(call: Caller, contract: str, english: bool = False) -> str:
    call.start()
    if english:
        call.press("9")
    call.press("111")
    return call.press(contract + "#").text


def entries_of(app: Flask, contract: str, kind: str = "promised_payment") -> list[db.Entry]:
    with Session(engine_of(app)) as session:
        account = db.find_account(session, contract)
        rows = session.scalars(
            select(db.Entry).where(db.Entry.account_id == account, db.Entry.kind == kind)
        )
        return list(rows)


def test_days_left_follow_a_positive_balance(call: Caller) -> None:
    said = to_balance(call, DAYS_LEFT)
    assert "На вашем счёте одна тысяча триста пятьдесят рублей." in said
    assert "Этого хватит примерно на шестьдесят два дня." in said


def test_days_left_in_english(app: Flask) -> None:
    said = to_balance(Caller(app), PAID_YESTERDAY, english=True)
    assert "That should last about two days." in said


@pytest.mark.parametrize("contract", ["590000000018", ELIGIBLE, "590000000026"])
def test_no_estimate_without_recent_charges_or_money(call: Caller, contract: str) -> None:
    assert "хватит" not in to_balance(call, contract)


def test_menu_after_the_balance_names_four_and_five(call: Caller) -> None:
    to_balance(call, DAYS_LEFT)
    gather = call.last.gather if call.last else None
    assert gather is not None
    prompt = " ".join(say.text or "" for say in gather.iter("Say"))
    assert "Последний платёж: 4" in prompt and "Обещанный платёж: 5" in prompt


def test_last_payment_yesterday(call: Caller) -> None:
    to_balance(call, PAID_YESTERDAY)
    turn = call.press("4")
    yesterday = (datetime.now(UTC) - timedelta(days=1)).astimezone(db_zone())
    assert f"Последний платёж: семьсот рублей, {ru_day_month(yesterday)}." in turn.text
    assert turn.gather is not None  # the after-balance menu again


def test_never_paid_is_said(app: Flask) -> None:
    call = Caller(app)
    to_balance(call, NEVER_PAID)
    assert "Платежей по этому договору пока не было." in call.press("4").text
    english = Caller(app)
    to_balance(english, NEVER_PAID, english=True)
    assert "There have been no payments on this contract yet." in english.press("4").text


def db_zone() -> object:
    from ivr.flow import DEFAULT_ZONE

    return DEFAULT_ZONE


def ru_day_month(moment: datetime) -> str:
    from ivr.money import date_in_words

    return date_in_words(moment.date(), "ru-RU", with_year=False)


@pytest.mark.parametrize(
    ("contract", "phrase"),
    [
        (RUNNING, "Обещанный платёж уже подключён до"),
        (RECENT, "Следующий можно будет подключить с"),
        (OVER_MAX, "не может быть больше, чем три тысячи рублей"),
        (DAYS_LEFT, "Обещанный платёж не нужен"),
    ],
)
def test_a_refused_promise_says_its_rule(call: Caller, contract: str, phrase: str) -> None:
    to_balance(call, contract)
    turn = call.press("5")
    assert phrase in turn.text
    assert turn.gather is not None


def test_take_a_promise(app: Flask, call: Caller) -> None:
    to_balance(call, ELIGIBLE)
    offer = call.press("5")
    assert "обещанный платёж: семьсот рублей до" in offer.text
    taken = call.press("1")
    assert "Обещанный платёж подключён до" in taken.text
    assert "На вашем счёте шестьсот пятьдесят рублей." in taken.text
    entries = entries_of(app, ELIGIBLE)
    assert sorted(entry.amount for entry in entries) == [Decimal("-700.00"), Decimal("700.00")]
    back, credit = sorted(entries, key=lambda entry: entry.amount)
    assert back.posted_at - credit.posted_at == timedelta(days=5)
    assert all(call.call_sid in entry.memo for entry in entries)
    # The balance told after the promise is the ledger's, the return not counted yet.
    assert db.read_balance(engine_of(app), ELIGIBLE, datetime.now(UTC)) == Decimal("650.00")
    assert "уже подключён" in call.press("5").text


def test_star_cancels_the_offer(app: Flask, call: Caller) -> None:
    to_balance(call, ELIGIBLE)
    call.press("5")
    turn = call.press("*")
    assert turn.gather is not None and "Обещанный платёж: 5" in turn.text
    assert entries_of(app, ELIGIBLE) == []


def test_the_same_signed_confirmation_twice_adds_one_promise(app: Flask, call: Caller) -> None:
    to_balance(call, ELIGIBLE)
    call.press("5")
    first = call.send_digits("1")  # Twilio's retry posts the very same request again
    again = call.send_digits("1")
    assert first.said == again.said
    assert "подключён до" in again.text
    assert len(entries_of(app, ELIGIBLE)) == 2


def test_a_confirmation_the_database_refuses_is_told_the_promise_runs(app: Flask) -> None:
    """Both calls pass the flow's check; the guard lets only the first write."""
    first, second = Caller(app), Caller(app, caller="+73422000002")
    for call in (first, second):
        to_balance(call, ELIGIBLE)
        call.press("5")
    assert "подключён до" in first.press("1").text
    assert "уже подключён до" in second.press("1").text
    assert len(entries_of(app, ELIGIBLE)) == 2
    with Session(engine_of(app)) as session:
        assert session.scalar(select(func.count()).select_from(PromiseGuard)) == 1


def test_a_fault_between_the_two_inserts_leaves_neither(
    app: Flask, call: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = queries._add_entry
    added: list[Decimal] = []

    def failing(session: Session, account: int, at: datetime, amount: Decimal, memo: str) -> None:
        if added:
            raise RuntimeError("injected fault between the two inserts")
        real(session, account, at, amount, memo)
        added.append(amount)

    monkeypatch.setattr(queries, "_add_entry", failing)
    to_balance(call, ELIGIBLE)
    call.press("5")
    turn = call.press("1")
    assert added == [Decimal("700.00")]
    assert "техническая ошибка" in turn.text and turn.ends_call
    assert entries_of(app, ELIGIBLE) == []
    with Session(engine_of(app)) as session:
        assert session.scalar(select(func.count()).select_from(PromiseGuard)) == 0
    monkeypatch.undo()
    again = Caller(app)
    to_balance(again, ELIGIBLE)
    again.press("5")
    assert "подключён до" in again.press("1").text  # nothing half-written stands in the way


def test_the_call_log_records_the_answers(app: Flask, call: Caller) -> None:
    to_balance(call, ELIGIBLE)
    call.press("4")
    call.press("5")
    call.press("1")
    call.press("5")
    with Session(engine_of(app)) as session:
        outcomes = list(
            session.scalars(
                select(db.CallStep.outcome)
                .where(db.CallStep.call_sid == call.call_sid)
                .order_by(db.CallStep.id)
            )
        )
    told = ["last_payment_told", "promise_offered", "promise_taken", "refused:running"]
    assert outcomes[-4:] == told
    report = CliRunner().invoke(main, ["stats", "--database-url", app.config["DATABASE_URL"]])
    assert report.exit_code == 0, report.output
    assert "Promised payments taken: 1" in report.output
    assert "refused:running" in report.output


def test_ledger_balance_shows_the_promise_and_its_return(app: Flask, call: Caller) -> None:
    to_balance(call, ELIGIBLE)
    call.press("5")
    call.press("1")
    result = CliRunner().invoke(
        main, ["ledger", "balance", ELIGIBLE, "--database-url", app.config["DATABASE_URL"]]
    )
    assert result.exit_code == 0, result.output
    assert "650.00 RUB" in result.output.splitlines()[0]
    upcoming = result.output.split("Upcoming:")[1]
    assert "-700.00  promised_payment" in upcoming and call.call_sid in upcoming


# --- settings -------------------------------------------------------------------------------


def test_promise_settings_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_PROMISE_MAX_RUB", "500")
    monkeypatch.setenv("IVR_PROMISE_DAYS", "7")
    app = create_app({"DATABASE_URL": database_url(tmp_path), "AUTH_TOKEN": AUTH_TOKEN})
    rules = app.extensions["ivr"].limits.promise
    assert rules == PromiseRules(Decimal(100), Decimal(500), 7)
    engine_of(app).dispose()


@pytest.mark.parametrize(
    "bad",
    [
        {"PROMISE_DAYS": "0"},
        {"PROMISE_DAYS": "five"},
        {"PROMISE_MIN_RUB": "5000"},
        {"PROMISE_MIN_RUB": "0"},
        {"PROMISE_MAX_RUB": "100.50"},
        {"PROMISE_MAX_RUB": "NaN"},
    ],
)
def test_unworkable_promise_settings_fail_at_start(tmp_path: Path, bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        create_app({"DATABASE_URL": database_url(tmp_path), "AUTH_TOKEN": AUTH_TOKEN, **bad})


# --- time: ledgers made for one moment ------------------------------------------------------

CONTRACT = "590000000083"


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[Flask]:
    """The hotline on an empty ledger, for entries placed around a frozen moment."""
    app = create_app({"DATABASE_URL": database_url(tmp_path), "AUTH_TOKEN": AUTH_TOKEN})
    fresh_schema(engine_of(app))
    yield app
    engine_of(app).dispose()


def post(app: Flask, tmp_path: Path, *rows: tuple[str, str, str]) -> None:
    """Import entries of CONTRACT: (posted_at ISO, amount, kind)."""
    csv = tmp_path / f"entries-{len(list(tmp_path.iterdir()))}.csv"
    lines = ["contract,posted_at,amount,kind,memo"]
    lines += [f"{CONTRACT},{at},{amount},{kind}," for at, amount, kind in rows]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db.import_csv(engine_of(app), csv)


@pytest.mark.parametrize(
    ("charge_at", "counted"),
    [
        ("2026-10-31T12:00:00+00:00", False),  # exactly 30 days before the call
        ("2026-10-31T12:00:01+00:00", True),
        ("2026-11-30T12:00:00+00:00", True),  # at the very moment of the call
        ("2026-11-30T12:00:01+00:00", False),  # after it
    ],
)
def test_the_thirty_day_window(bare: Flask, tmp_path: Path, charge_at: str, counted: bool) -> None:
    post(bare, tmp_path, ("2026-10-01T00:00:00+00:00", "1000.00", "payment"))
    post(bare, tmp_path, (charge_at, "-300.00", "charge"))
    with freeze_time(NOW):
        said = to_balance(Caller(bare), CONTRACT)
    if counted:
        assert "Этого хватит примерно на семьдесят дней." in said  # 700 / (300 / 30)
    else:
        assert "хватит" not in said


@pytest.mark.parametrize(
    ("now", "until"),
    [
        ("2026-11-28T10:00:00+00:00", "до третьего декабря."),  # the next month
        ("2026-12-29T10:00:00+00:00", "до третьего января две тысячи двадцать седьмого года."),
        ("2026-12-26T20:00:00+00:00", "до первого января две тысячи двадцать седьмого года."),
    ],
)
def test_the_term_ends_in_the_next_month_or_year(
    bare: Flask, tmp_path: Path, now: str, until: str
) -> None:
    moment = datetime.fromisoformat(now)
    post(bare, tmp_path, ((moment - timedelta(days=3)).isoformat(), "-650.00", "charge"))
    with freeze_time(moment):
        call = Caller(bare)
        to_balance(call, CONTRACT)
        assert until.replace(".", "") in call.press("5").text
        assert f"Обещанный платёж подключён {until}" in call.press("1").text


@pytest.mark.parametrize(
    ("paid_at", "day"),
    [
        ("2026-11-27T18:59:59+00:00", "двадцать седьмого ноября"),  # 23:59:59 in Yekaterinburg
        ("2026-11-27T19:00:00+00:00", "двадцать восьмого ноября"),  # 00:00:00 there
    ],
)
def test_a_payment_near_midnight_is_dated_in_the_hotlines_zone(
    bare: Flask, tmp_path: Path, paid_at: str, day: str
) -> None:
    post(bare, tmp_path, (paid_at, "500.00", "payment"))
    with freeze_time(NOW):
        call = Caller(bare)
        to_balance(call, CONTRACT)
        assert f"Последний платёж: пятьсот рублей, {day}." in call.press("4").text


def test_a_payment_of_another_year_says_the_year(bare: Flask, tmp_path: Path) -> None:
    post(bare, tmp_path, ("2025-12-31T18:30:00+00:00", "500.00", "payment"))  # 23:30 there
    post(bare, tmp_path, ("2027-01-01T00:00:00+00:00", "900.00", "payment"))  # not yet posted
    with freeze_time(NOW):
        call = Caller(bare)
        to_balance(call, CONTRACT, english=True)
        said = call.press("4").text
    last = "Your last payment: five hundred rubles, on the thirty-first of December, two thousand"
    assert f"{last} twenty-five." in said


# --- the demo's relative dates --------------------------------------------------------------


def test_demo_offsets_are_placed_around_now(bare: Flask, tmp_path: Path) -> None:
    recent = tmp_path / "demo_recent.csv"
    recent.write_text(
        f"contract,posted_at,amount,kind,memo\n{CONTRACT},-1d,5.00,payment,\n"
        f"{CONTRACT},+2h,-1.00,charge,\n",
        encoding="utf-8",
    )
    report = db.demo.import_recent(engine_of(bare), recent, NOW)
    assert report.added == 2
    assert db.read_balance(engine_of(bare), CONTRACT, NOW) == Decimal("5.00")
    assert db.read_balance(engine_of(bare), CONTRACT, NOW + timedelta(hours=2)) == Decimal("4.00")
    assert db.demo.import_recent(engine_of(bare), recent, NOW + timedelta(days=1)).added == 0


def test_a_demo_offset_that_is_not_one_is_refused(bare: Flask, tmp_path: Path) -> None:
    recent = tmp_path / "demo_recent.csv"
    recent.write_text(
        f"contract,posted_at,amount,kind,memo\n{CONTRACT},yesterday,5.00,payment,\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError, match=r"demo_recent.csv:2: posted_at must be an offset"):
        db.demo.import_recent(engine_of(bare), recent, NOW)


# --- flat in the account's history (issue 11, revision 0006) -----------------------------


def test_last_payment_and_promises_read_their_kinds_index_not_the_history(
    engine: Engine,
) -> None:
    """Ten years of daily charges after one payment and one promise: each query's plan
    reads its kind's partial index (so the charges are never read), and answers right."""
    old = NOW - timedelta(days=3651)
    with engine.begin() as connection:
        account = connection.execute(
            insert(db.Account).values(contract="590000000018").returning(db.Account.id)
        ).scalar_one()
        rows = [(old, Decimal("5000.00"), "payment"), (old, Decimal("300.00"), PROMISED)]
        rows += [(old + timedelta(days=5), Decimal("-300.00"), PROMISED)]
        rows += [(NOW - timedelta(days=d), Decimal("-10.00"), "charge") for d in range(3650)]
        connection.execute(
            insert(db.Entry),
            [
                {"account_id": account, "posted_at": at, "amount": amount, "kind": kind}
                for at, amount, kind in rows
            ],
        )
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ANALYZE entries")
    with engine.connect() as connection:
        assert queries.last_payment(connection, account, NOW) == Payment(old, Decimal("5000.00"))
        facts = queries.promise_facts(connection, account, NOW)
        assert (facts.last_taken_at, facts.running_until) == (old, None)
        params = {"account": account, "at": NOW}
        for statement, index in [
            (queries._LAST_PAYMENT, "ix_entries_account_payments"),
            (queries._LAST_TAKEN, "ix_entries_account_promises"),
            (queries._RUNNING_UNTIL, "ix_entries_account_promises"),
        ]:
            assert index in plan_of(connection, statement, params)


PROMISED = queries.PROMISED_PAYMENT


def plan_of(connection: Connection, statement: Any, params: dict[str, Any]) -> str:
    """The database's own plan of a statement, as text (EXPLAIN QUERY PLAN / EXPLAIN)."""
    dialect = connection.dialect
    compiled = statement.compile(dialect=dialect)
    sql, values = compiled.string, compiled.construct_params(params)
    for bind, name in compiled.bind_names.items():  # the types' conversions, as execute does
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None and values[name] is not None:
            values[name] = convert(values[name])
    if connection.dialect.name == "sqlite":
        ordered = tuple(values[name] for name in compiled.positiontup or ())
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ordered).all()
        return "\n".join(str(row[-1]) for row in rows)
    rows = connection.exec_driver_sql("EXPLAIN " + sql, values).all()
    return "\n".join(str(row[0]) for row in rows)
