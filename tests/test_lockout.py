"""Lockout against guessing: failed contract entries counted per caller, in the database.

Only a bad check digit or an unknown contract counts; a wrong length or a balance told
does not. Past LOCKOUT_FAILURES within LOCKOUT_MINUTES the caller is told to call later
and the call ends, whichever call, process or server asks.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlalchemy import select
from sqlalchemy.orm import Session

from ivr import create_app, db
from ivr.errors import ConfigError
from tests.conftest import AUTH_TOKEN, CALLER, Caller, Turn

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KNOWN = "590000000018"
UNKNOWN = "590000000075"  # a valid check digit, but no such contract
MISTYPED = "590000000017"  # a wrong check digit
OTHER_CALLER = "+73422000002"


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(T0) as frozen:
        assert isinstance(frozen, FrozenDateTimeFactory)
        yield frozen


def phrase(app: Flask, name: str, lang: str = "ru-RU") -> str:
    """Return a phrase as the hotline's prompt file says it."""
    return str(app.extensions["ivr"].prompts.get(lang).phrases[name])


def at_contract_entry(client: FlaskClient, caller: str = CALLER) -> Caller:
    call = Caller(client, caller=caller)
    call.start()
    call.press("1")
    call.press("1")
    turn = call.press("1")
    assert turn.gather is not None and turn.gather.get("numDigits") == "12", turn.text
    return call


def fail(client: FlaskClient, times: int, caller: str = CALLER) -> Turn:
    """Key in `times` wrong numbers in one call (at most the call's 3 tries)."""
    assert 1 <= times <= 3
    call = at_contract_entry(client, caller)
    numbers = [MISTYPED, UNKNOWN, MISTYPED]
    for number in numbers[:times]:
        turn = call.press(number + "#")
    return turn


def is_locked_out(app: Flask, client: FlaskClient, caller: str = CALLER) -> bool:
    """Try to reach contract entry; True when the hotline refuses with the lockout phrase."""
    call = Caller(client, caller=caller)
    call.start()
    call.press("1")
    call.press("1")
    turn = call.press("1")
    if turn.gather is not None:
        assert turn.gather.get("numDigits") == "12"
        return False
    assert turn.said == [phrase(app, "locked_out")]
    assert turn.verbs == ["Say", "Hangup"]
    return True


def failures_stored(app: Flask) -> list[tuple[str, datetime]]:
    with Session(app.extensions["ivr"].engine) as session:
        rows = session.execute(
            select(db.FailedLookup.caller, db.FailedLookup.at).order_by(
                db.FailedLookup.id
            )
        )
        return [(caller, at) for caller, at in rows]


def hotline(app: Flask, **config: Any) -> Flask:
    """Another app (another server process) on the same database."""
    return create_app(
        {"DATABASE_URL": app.config["DATABASE_URL"], "AUTH_TOKEN": AUTH_TOKEN, **config}
    )


def test_five_failures_across_calls_lock_the_caller_out(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    first = fail(client, 3)  # the call's own limit ends it
    assert first.said[-1] == phrase(app, "too_many_tries")
    assert not is_locked_out(app, client)
    call = at_contract_entry(client)
    fourth = call.press(UNKNOWN)
    assert fourth.said[0] == phrase(app, "unknown_contract")
    assert fourth.gather is not None
    fifth = call.press(MISTYPED)
    assert fifth.said == [phrase(app, "bad_check_digit"), phrase(app, "locked_out")]
    assert fifth.verbs == ["Say", "Say", "Hangup"]
    assert is_locked_out(app, client)
    assert failures_stored(app) == [("+73422000001", T0)] * 5
    # Someone else's number is not touched.
    assert not is_locked_out(app, client, caller=OTHER_CALLER)


def test_four_failures_leave_the_caller_in(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    fail(client, 3)
    fail(client, 1)
    assert not is_locked_out(app, client)
    call = at_contract_entry(client)
    assert "одна тысяча двести тридцать четыре рубля" in call.press(KNOWN).text


def test_wrong_lengths_and_good_numbers_do_not_count(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    for _ in range(4):
        call = at_contract_entry(client)
        assert call.press("5900#").said[0].startswith("Номер договора состоит из 12")
        assert call.send_digits("59000000001800").gather is not None  # the app stops at 12
        told = call.press(KNOWN)
        assert "одна тысяча двести тридцать четыре рубля" in told.text
        assert "Введите номер договора" in call.press("2").text
        call.press(KNOWN)
    assert failures_stored(app) == []
    assert not is_locked_out(app, client)


def test_a_locked_caller_gets_no_balance_from_a_prompt_opened_before(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    waiting = at_contract_entry(client)
    fail(client, 3)
    fail(client, 2)
    turn = waiting.press(KNOWN)
    assert turn.said == [phrase(app, "locked_out")]
    assert "рубл" not in turn.text


def test_a_locked_caller_cannot_ask_for_another_contract(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    call = at_contract_entry(client)
    call.press(KNOWN)
    fail(client, 3)
    fail(client, 2)
    assert call.press("1").said[1].startswith("На вашем счёте")  # repeating costs nothing
    turn = call.press("2")  # another contract
    assert turn.said == [phrase(app, "locked_out")]
    assert turn.verbs == ["Say", "Hangup"]


@pytest.mark.parametrize(
    ("later", "locked"),
    [
        (timedelta(minutes=59, seconds=59), True),
        (timedelta(minutes=60), True),  # the window includes its edge
        (timedelta(minutes=60, seconds=1), False),
        (timedelta(days=1), False),
    ],
)
def test_the_lockout_lasts_the_window(
    app: Flask,
    client: FlaskClient,
    clock: FrozenDateTimeFactory,
    later: timedelta,
    locked: bool,
) -> None:
    fail(client, 3)
    fail(client, 2)
    clock.move_to(T0 + later)
    assert is_locked_out(app, client) is locked


def test_the_window_slides(app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory) -> None:
    fail(client, 3)  # at T0
    clock.move_to(T0 + timedelta(minutes=30))
    fail(client, 2)  # at T0+30: five within the hour
    assert is_locked_out(app, client)
    clock.move_to(T0 + timedelta(minutes=61))  # the first three are out of the window
    assert not is_locked_out(app, client)
    fail(client, 2)
    assert not is_locked_out(app, client)  # 2 + 2 within the hour
    fail(client, 1)
    assert is_locked_out(app, client)
    clock.move_to(T0 + timedelta(minutes=91))  # those at T0+30 are out too
    assert not is_locked_out(app, client)


@pytest.mark.parametrize(
    "callers",
    [
        ["Anonymous", "", "+266696687", "client:alice", None],  # None: no From at all
        ["Restricted", "not a number"],
    ],
)
def test_anonymous_callers_share_one_bucket(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory, callers: list[str | None]
) -> None:
    def call_as(raw: str | None) -> Caller:
        return Caller(client, caller=raw)  # None: no From parameter at all

    for n in range(5):
        call = call_as(callers[n % len(callers)])
        call.start()
        for key in "111":
            call.press(key)
        turn = call.press(MISTYPED)
    assert turn.said[-1] == phrase(app, "locked_out")
    assert {caller for caller, _ in failures_stored(app)} == {"unknown"}
    for raw in callers:
        call = call_as(raw)
        call.start()
        call.press("1")
        call.press("1")
        assert call.press("1").said == [phrase(app, "locked_out")]
    assert not is_locked_out(app, client)  # a caller with a number is not in that bucket


def test_one_number_written_three_ways_is_one_caller(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    fail(client, 2, caller="+7 342 200-00-01")
    fail(client, 2, caller="8 (342) 200-00-01")
    fail(client, 1, caller="+73422000001")
    assert {caller for caller, _ in failures_stored(app)} == {"+73422000001"}
    assert is_locked_out(app, client, caller="83422000001")


def test_a_lockout_earned_on_one_server_holds_on_another(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    other = hotline(app)
    other_client = other.test_client()
    fail(client, 3)
    assert not is_locked_out(other, other_client)
    fail(other_client, 2)
    assert is_locked_out(app, client)
    assert is_locked_out(other, other_client)
    clock.move_to(T0 + timedelta(minutes=61))
    assert not is_locked_out(app, client)
    assert not is_locked_out(other, other_client)
    other.extensions["ivr"].engine.dispose()


def test_lockout_settings_come_from_the_environment(
    app: Flask, clock: FrozenDateTimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_LOCKOUT_FAILURES", "2")
    monkeypatch.setenv("IVR_LOCKOUT_MINUTES", "5")
    strict = create_app({"DATABASE_URL": app.config["DATABASE_URL"], "AUTH_TOKEN": AUTH_TOKEN})
    client = strict.test_client()
    turn = fail(client, 2)
    assert turn.said == [phrase(app, "unknown_contract"), phrase(app, "locked_out")]
    clock.move_to(T0 + timedelta(minutes=5))
    assert is_locked_out(strict, client)
    clock.move_to(T0 + timedelta(minutes=5, seconds=1))
    assert not is_locked_out(strict, client)
    # The default app on the same database still needs five.
    clock.move_to(T0)
    assert not is_locked_out(app, app.test_client())
    strict.extensions["ivr"].engine.dispose()


@pytest.mark.parametrize(
    ("failures", "minutes"), [(0, 60), (-1, 60), (5, 0), (5, -10), ("many", 60), (5, "an hour")]
)
def test_settings_that_cannot_work_fail_at_start(
    app: Flask, failures: object, minutes: object
) -> None:
    with pytest.raises(ConfigError, match="LOCKOUT"):
        hotline(app, LOCKOUT_FAILURES=failures, LOCKOUT_MINUTES=minutes)
