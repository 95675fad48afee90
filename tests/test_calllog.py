"""The call log, `ivr stats`, and masking: what is kept about calls, and what never is."""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from ivr import db, flow, logs, stats
from ivr.cli import main
from ivr.db import hotline_tables
from tests.conftest import (
    AUTH_TOKEN,
    BASE_URL,
    CALLER,
    Caller,
    engine_of,
    sign,
    to_contract_entry,
)

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = T0.date()
KNOWN = "590000000018"
UNKNOWN = "590000000075"
MISTYPED = "590000000017"
DEMO_CONTRACTS = [f"5900000000{n}" for n in ("18", "26", "34", "42", "59", "67")]


@pytest.fixture
def clock() -> Iterator[FrozenDateTimeFactory]:
    with freeze_time(T0) as frozen:
        assert isinstance(frozen, FrozenDateTimeFactory)
        yield frozen


Row = tuple[str | None, str | None, str, str | None]


def logged_steps(app: Flask, call: Caller | None = None) -> list[Row]:
    """Return (state, next state, outcome, contract) of the logged steps, of one call or all."""
    query = select(db.CallStep).order_by(db.CallStep.id)
    if call is not None:
        query = query.where(db.CallStep.call_sid == call.call_sid)
    with Session(engine_of(app)) as session:
        return [(s.state, s.next_state, s.outcome, s.contract) for s in session.scalars(query)]


# --- what each step leaves in the call log ----------------------------------------------


def test_every_step_is_logged_with_its_outcome_and_a_masked_contract(
    app: Flask, call: Caller, clock: FrozenDateTimeFactory
) -> None:
    to_contract_entry(call)
    call.press(MISTYPED)
    call.press(UNKNOWN + "#")
    call.press(KNOWN)
    call.press("1")  # repeat
    call.press("3")  # end the call
    assert logged_steps(app, call) == [
        (None, "main", "menu", None),
        ("main", "subscriber", "menu", None),
        ("subscriber", "billing", "menu", None),
        ("billing", "contract", "menu", None),
        ("contract", "contract", "wrong_number", "59******0017"),
        ("contract", "contract", "unknown_contract", "59******0075"),
        ("contract", "after_balance", "balance_told", "59******0018"),
        ("after_balance", "after_balance", "balance_told", "59******0018"),
        ("after_balance", None, "hung_up", None),
    ]
    with Session(engine_of(app)) as session:
        rows = session.scalars(select(db.CallStep)).all()
    assert {(row.call_sid, row.caller, row.at) for row in rows} == {
        (call.call_sid, CALLER, T0)
    }


@pytest.mark.parametrize(
    ("keys", "last"),
    [
        (["silence"], ("main", "main", "no_input", None)),
        (["7"], ("main", "main", "invalid_key", None)),
        (["silence", "7", "silence"], ("main", None, "gave_up", None)),
        (["1", "0"], ("subscriber", None, "operator", None)),
        (["1", "1", "1", "5900#"], ("contract", "contract", "wrong_number", "****")),
        (
            ["1", "1", "1", MISTYPED, MISTYPED, UNKNOWN],
            ("contract", None, "too_many_tries", "59******0075"),
        ),
        (
            ["1", "1", "1", KNOWN, "silence", "silence", "silence"],
            ("after_balance", None, "gave_up", None),
        ),
    ],
)
def test_each_outcome_is_logged(
    app: Flask, call: Caller, clock: FrozenDateTimeFactory, keys: list[str], last: Row
) -> None:
    call.start()
    for key in keys:
        call.silence() if key == "silence" else call.press(key)
    steps = logged_steps(app, call)
    assert len(steps) == len(keys) + 1
    assert steps[-1] == last


def test_a_wrong_length_is_masked_too(app: Flask, call: Caller) -> None:
    to_contract_entry(call)
    call.press("5900000")
    assert logged_steps(app, call)[-1][3] == "59*0000"  # six of seven digits at most


def test_locked_out_is_logged(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    for numbers in ([MISTYPED] * 3, [UNKNOWN] * 2):
        guesser = Caller(client)
        to_contract_entry(guesser)
        for number in numbers:
            guesser.press(number)
    assert logged_steps(app, guesser)[-1] == ("contract", None, "locked_out", "59******0075")
    again = Caller(client)
    to_contract_entry(again)
    assert logged_steps(app, again)[-1] == ("billing", None, "locked_out", None)


def test_a_failure_inside_is_logged_as_the_apology(
    app: Flask, call: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    call.start()
    call.press("1")

    def broken(*args: object) -> flow.Reply:
        raise RuntimeError("a bug")

    monkeypatch.setattr(flow, "step", broken)
    turn = call.press("1")
    assert turn.verbs == ["Say", "Hangup"]
    assert logged_steps(app, call)[-1] == ("subscriber", None, "apology", None)


def test_a_garbled_state_is_logged_without_what_the_url_held(
    app: Flask, client: FlaskClient
) -> None:
    path = f"/voice/step?s={KNOWN}&l=ru-RU"
    params = {"From": CALLER, "CallSid": "CAgarbled"}
    response = client.post(
        path, data=params, headers={"X-Twilio-Signature": sign(BASE_URL + path, params)}
    )
    assert response.status_code == 200
    assert logged_steps(app) == [(None, None, "apology", None)]


def test_the_status_callback_records_how_the_call_ended(
    app: Flask, call: Caller, clock: FrozenDateTimeFactory
) -> None:
    call.start()
    call.post("/voice/status", {"CallStatus": "completed", "CallDuration": "42"})
    call.post("/voice/status", {"CallStatus": "busy", "CallDuration": "soon"})
    with Session(engine_of(app)) as session:
        ends = session.scalars(select(db.CallEnd).order_by(db.CallEnd.id)).all()
    assert [(e.call_sid, e.caller, e.at, e.status, e.duration_s) for e in ends] == [
        (call.call_sid, CALLER, T0, "completed", 42),
        (call.call_sid, CALLER, T0, "busy", None),
    ]


def test_the_table_refuses_a_whole_contract_number(app: Flask) -> None:
    with Session(engine_of(app)) as session, pytest.raises(IntegrityError):
        db.record_call_step(
            session,
            call_sid="CA1",
            caller=CALLER,
            at=T0,
            state="contract",
            next_state=None,
            outcome="balance_told",
            masked_contract=KNOWN,
        )
        session.flush()


@pytest.mark.parametrize(
    ("keyed", "stored"),
    [
        (KNOWN, "59******0018"),
        ("12", "**"),
        ("1234567", "12*4567"),
        ("1" * 40, "11" + "*" * 14 + "1111"),
        (None, None),
    ],
)
def test_masked_contract(keyed: str | None, stored: str | None) -> None:
    assert db.masked_contract(keyed) == stored


def test_a_window_reads_whole_calls_that_had_a_step_inside_it(app: Flask) -> None:
    """Steps of a call that crossed the window's edge come too; a call wholly outside, not."""
    start = T0
    end = T0 + timedelta(days=1)
    steps = [
        ("CA-crossed-start", start - timedelta(minutes=3)),  # answered before the window
        ("CA-crossed-start", start + timedelta(minutes=1)),
        ("CA-crossed-end", end - timedelta(seconds=30)),
        ("CA-crossed-end", end + timedelta(minutes=2)),  # ended after the window
        ("CA-inside", start + timedelta(hours=5)),
        ("CA-before", start - timedelta(minutes=1)),  # wholly outside, near the edge
        ("CA-after", end),  # the window is half-open: `end` is outside
        ("CA-long-ago", start - timedelta(days=3)),
    ]
    with Session(engine_of(app)) as session:
        for sid, at in reversed(steps):  # stored out of order: the read sorts
            db.record_call_step(
                session,
                call_sid=sid,
                caller=CALLER,
                at=at,
                state="main",
                next_state="main",
                outcome="menu",
                masked_contract=None,
            )
        session.commit()
        read = db.call_steps_between(session, start, end)
    assert [(step.call_sid, step.at) for step in read] == sorted(
        (sid, at) for sid, at in steps if sid.startswith(("CA-crossed", "CA-inside"))
    )


# --- recording never breaks a call ------------------------------------------------------


def test_a_call_log_that_cannot_be_written_takes_nothing_from_the_caller(
    app: Flask, call: Caller, caplog: pytest.LogCaptureFixture
) -> None:
    with engine_of(app).begin() as connection:
        connection.execute(text("DROP TABLE call_steps"))
    to_contract_entry(call)
    assert call.press(MISTYPED).said[0].startswith("Похоже")
    told = call.press(KNOWN)
    assert "одна тысяча двести тридцать четыре рубля" in told.text
    missed = [r for r in caplog.records if "the call log missed a step" in r.getMessage()]
    assert len(missed) == 6
    assert all(r.levelno == logging.WARNING for r in missed)
    # The lockout count lives in the step's own transaction, untouched by the call log.
    with Session(engine_of(app)) as session:
        assert db.failed_lookups_since(session, CALLER, T0 - timedelta(days=3650)) == 1


def test_a_call_log_write_that_raises_is_logged_and_the_call_goes_on(
    app: Flask, call: Caller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(hotline_tables, "record_call_step", explode)
    monkeypatch.setattr(hotline_tables, "record_call_end", explode)
    to_contract_entry(call)
    assert "рубл" in call.press(KNOWN).text
    assert call.post("/voice/status", {"CallStatus": "completed"}).verbs == []
    messages = [r.getMessage() for r in caplog.records if r.name == "ivr.calllog"]
    assert len(messages) == 6
    assert messages[-1].endswith("the call log missed its end (completed): RuntimeError: disk full")


def test_a_locked_call_log_costs_the_caller_half_a_second_at_most(
    app: Flask, call: Caller
) -> None:
    """Another connection holds the call-log table: the answer still comes, promptly."""
    to_contract_entry(call)
    engine = engine_of(app)
    holder = db.make_engine(app.config["DATABASE_URL"])
    with holder.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("LOCK TABLE call_steps IN ACCESS EXCLUSIVE MODE"))
        else:  # SQLite has one writer; a balance lookup only reads, so it is not blocked
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        started = time.monotonic()
        told = call.press(KNOWN)
        elapsed = time.monotonic() - started
        connection.rollback()
    holder.dispose()
    assert "одна тысяча двести тридцать четыре рубля" in told.text
    assert db.CALL_LOG_WAIT_MS / 1000 <= elapsed < 1.5
    assert logged_steps(app, call)[-1][2] == "menu"  # the balance step is the one missed
    # The pooled connection got its usual wait back: a lookup is not cut short later.
    with Session(engine) as session:
        if engine.dialect.name == "sqlite":
            wait = session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar()
            assert wait == db.QUERY_TIMEOUT_MS
        else:
            wait = session.connection().exec_driver_sql("SHOW statement_timeout").scalar()
            assert wait == f"{db.QUERY_TIMEOUT_MS}ms"


# --- ivr stats --------------------------------------------------------------------------


def make_a_day(client: FlaskClient, clock: FrozenDateTimeFactory) -> None:
    """Six calls on DAY and one the day before."""
    clock.move_to(T0 - timedelta(days=1))
    yesterday = Caller(client)
    yesterday.start()
    yesterday.press("0")
    clock.move_to(T0)
    told_then_pressed_3 = Caller(client)
    to_contract_entry(told_then_pressed_3)
    told_then_pressed_3.press(KNOWN)
    told_then_pressed_3.press("3")
    told_then_pressed_3.post("/voice/status", {"CallStatus": "completed", "CallDuration": "40"})
    told_then_left = Caller(client, caller="+73422000002")
    to_contract_entry(told_then_left)
    told_then_left.press("590000000042")
    told_then_left.post("/voice/status", {"CallStatus": "completed", "CallDuration": "35"})
    silent = Caller(client, caller="+73422000003")
    silent.start()
    for _ in range(3):
        silent.silence()
    silent.post("/voice/status", {"CallStatus": "completed", "CallDuration": "21"})
    left_at_entry = Caller(client, caller="+73422000004")
    to_contract_entry(left_at_entry)
    left_at_entry.post("/voice/status", {"CallStatus": "completed", "CallDuration": "24"})
    wrong_thrice = Caller(client, caller="+73422000005")
    to_contract_entry(wrong_thrice)
    for number in (MISTYPED, UNKNOWN, "5900#"):
        wrong_thrice.press(number)
    silent_in_billing = Caller(client, caller="+73422000006")
    silent_in_billing.start()
    silent_in_billing.press("1")
    silent_in_billing.press("1")
    silent_in_billing.press("7")
    silent_in_billing.silence()
    silent_in_billing.silence()


EXPECTED_DAY = """\
Calls on 2026-11-30 (UTC): 6; 2 heard a balance
Step outcomes:
  menu                20
  no_input             3
  balance_told         2
  gave_up              2
  hung_up              1
  invalid_key          1
  too_many_tries       1
  unknown_contract     1
  wrong_number         1
How calls ended (their last step):
  gave_up              2
  left_at_prompt       2
  hung_up              1
  too_many_tries       1
Where callers gave up without hearing a balance:
  billing              1  (no answer to the prompt)
  contract             1  (hung up)
  main                 1  (no answer to the prompt)
Call statuses from Twilio:
  completed            4
  talk time 120 s, 30 s a call on average
Funnel (calls that got this far):
  greeting             6
  menu                 4
  contract_keyed       3
  balance_told         2
  after_balance        1
Choices after the balance:
  hung_up              1
Promised payments taken: 0
Calls by the hour they began:
  12:00              6"""


def test_stats_count_a_day_of_calls(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory
) -> None:
    make_a_day(client, clock)
    url = app.config["DATABASE_URL"]
    result = CliRunner().invoke(main, ["stats", "--day", "2026-11-30", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == EXPECTED_DAY
    today = CliRunner().invoke(main, ["stats", "--database-url", url])  # DAY is today
    assert today.output.strip() == EXPECTED_DAY
    before = CliRunner().invoke(main, ["stats", "--day", "2026-11-29", "--database-url", url])
    assert before.output.splitlines()[0] == "Calls on 2026-11-29 (UTC): 1; 0 heard a balance"
    assert "  operator             1" in before.output
    empty = CliRunner().invoke(main, ["stats", "--day", "2026-12-01", "--database-url", url])
    assert empty.output.strip() == "No calls on 2026-12-01 (UTC)."


def test_stats_without_a_call_log_say_what_to_do(app: Flask) -> None:
    with engine_of(app).begin() as connection:
        connection.execute(text("DROP TABLE call_steps"))
    url = app.config["DATABASE_URL"]
    result = CliRunner().invoke(main, ["stats", "--day", "2026-11-30", "--database-url", url])
    assert result.exit_code == 1
    assert "cannot read the call log" in result.output
    assert "ivr ledger init" in result.output


def step_row(
    sid: str, minute: int, state: str | None, nxt: str | None, outcome: str
) -> db.CallStep:
    return db.CallStep(
        call_sid=sid,
        caller=CALLER,
        at=T0 + timedelta(minutes=minute),
        state=state,
        next_state=nxt,
        outcome=outcome,
        contract=None,
    )


def test_summarise_tells_where_callers_without_a_balance_left() -> None:
    steps = [
        step_row("A", 0, None, "main", "menu"),  # hung up at the greeting
        step_row("B", 0, None, "main", "menu"),
        step_row("B", 1, "main", None, "apology"),  # not a caller giving up
        step_row("C", 0, None, "main", "menu"),
        step_row("C", 1, "main", "subscriber", "menu"),
        step_row("C", 2, "subscriber", "subscriber", "no_input"),  # hung up after silence
    ]
    summary = stats.summarise(DAY, steps, [])
    assert summary.calls == 3
    assert summary.heard_balance == 0
    assert summary.endings == {"left_at_prompt": 2, "apology": 1}
    assert summary.gave_up_at == {("main", "hung up"): 1, ("subscriber", "hung up"): 1}
    assert summary.statuses == {}


# --- masking ------------------------------------------------------------------------------


def test_the_filter_masks_records_that_propagate_from_any_logger(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("some.library").debug("auth=%s contract=%s", AUTH_TOKEN, KNOWN)
    logging.getLogger("ivr.web.deep").info("run of digits 12345678901234567 stays masked")
    try:
        raise ValueError(f"contract {KNOWN} is broken")
    except ValueError:
        logging.getLogger("another").exception("while looking up %s", "590000000026")
    assert KNOWN not in caplog.text
    assert "590000000026" not in caplog.text
    assert AUTH_TOKEN not in caplog.text
    assert "auth=[secret] contract=59******0018" in caplog.text
    assert "12***********4567" in caplog.text
    assert "ValueError: contract 59******0018 is broken" in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


def test_no_log_line_or_call_log_row_holds_a_contract_or_the_token(
    app: Flask, client: FlaskClient, clock: FrozenDateTimeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # Someone debugging turns SQL echo on: every statement and its parameters are logged.
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    used = set(DEMO_CONTRACTS) | {MISTYPED, UNKNOWN, "5900000000181"}
    for contract in DEMO_CONTRACTS:
        call = Caller(client, caller="+73422000009")
        to_contract_entry(call)
        assert "рубл" in call.press(contract).text
        call.press("1")
        call.post("/voice/status", {"CallStatus": "completed", "CallDuration": "30"})
    wrong = Caller(client)
    to_contract_entry(wrong)
    wrong.press(MISTYPED)
    wrong.press(UNKNOWN)
    wrong.send_digits("5900000000181")  # 13 digits: not a contract, but one is in it
    # A state URL that holds a contract where a language belongs: the apology's prompt
    # lookup fails with that text in its exception, and the traceback is logged.
    path = f"/voice/step?s=main&l={KNOWN}&p=1&k=0"
    params = {"From": CALLER, "Digits": "1"}
    headers = {"X-Twilio-Signature": sign(BASE_URL + path, params)}
    assert client.post(path, data=params, headers=headers).status_code == 200
    # The apology on a broken ledger, mid-call.
    broken = Caller(client)
    to_contract_entry(broken)
    with engine_of(app).begin() as connection:
        connection.execute(text("DROP TABLE entries"))
    assert broken.press(KNOWN).verbs == ["Say", "Hangup"]
    stats_run = CliRunner().invoke(
        main, ["stats", "--day", DAY.isoformat(), "--database-url", app.config["DATABASE_URL"]]
    )
    assert stats_run.exit_code == 0, stats_run.output
    assert "balance_told" in stats_run.output

    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "SELECT accounts.id" in logged  # SQL echo was on
    assert "59******0018" in logged  # and contracts were logged, masked
    assert "a webhook failed" in logged and "Traceback" in logged
    with Session(engine_of(app)) as session:
        rows = session.execute(select(db.CallStep.__table__)).all()
    kept = "\n".join(" ".join(str(value) for value in row) for row in rows)
    assert "59******0017" in kept and "59*******0181" in kept
    for secret in sorted(used) + [AUTH_TOKEN]:
        assert secret not in logged, secret
        assert secret not in kept, secret
        assert secret not in stats_run.output, secret


def test_the_access_log_of_a_real_server_is_masked(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    """werkzeug logs each request line with the call state's query string: no contract in it."""
    caplog.set_level(logging.INFO)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        path = "/voice/step?" + urlencode({"s": "contract", "l": "ru-RU", "p": 1, "k": 0})
        params = {"From": CALLER, "CallSid": "CAreal", "Digits": KNOWN}
        request = urllib.request.Request(
            base + path,
            data=urlencode(params).encode(),
            headers={"X-Twilio-Signature": sign(base + path, params)},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            answer = response.read().decode()
            assert "рубл" in answer
            repeat_url = ET.fromstring(answer).find("Gather").get("action")  # type: ignore[union-attr]
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    access = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    assert any("s=contract" in line and " 200 " in line for line in access), access
    # The repeat option names the account by its id, not the contract number.
    assert "a=" in repeat_url and KNOWN not in repeat_url
    assert KNOWN not in caplog.text


def test_a_handler_added_after_the_app_still_gets_masked_lines(app: Flask) -> None:
    """werkzeug gives its logger a handler of its own on first use, when nothing else logs."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    werkzeug = logging.getLogger("werkzeug")
    handler = Collect()
    werkzeug.addHandler(handler)
    werkzeug.propagate = False
    try:
        werkzeug.warning('"POST /voice/step?s=after_balance&c=%s HTTP/1.1" 200 -', KNOWN)
    finally:
        werkzeug.removeHandler(handler)
        werkzeug.propagate = True
    assert lines == ['"POST /voice/step?s=after_balance&c=59******0018 HTTP/1.1" 200 -']


def test_install_is_idempotent_and_keeps_every_token() -> None:
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logs.install(["first-token-abcdef"])
        logs.install(["second-token-abcdef", None, "short"])
        assert handler.filters.count(logs.FILTER) == 1
        masked = logs.FILTER.mask("first-token-abcdef second-token-abcdef short")
        assert masked == "[secret] [secret] short"
    finally:
        root.removeHandler(handler)


def test_day_window_is_a_utc_day() -> None:
    start, end = stats.day_window(date(2026, 3, 29))
    assert (start, end) == (
        datetime(2026, 3, 29, tzinfo=UTC),
        datetime(2026, 3, 30, tzinfo=UTC),
    )
