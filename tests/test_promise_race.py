"""20 calls confirm a promised payment for one account at once, on gunicorn with 3 workers.

The database decides (ivr.db.selfservice): exactly one pair of entries, on SQLite and, with
IVR_TEST_DATABASE_URL, on PostgreSQL. Each call is walked to the offer first over HTTP
with ivr.simulate, then the 20 confirmations are sent together from threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ivr import db
from ivr.db.schema import PromiseGuard
from ivr.simulate import CallSession, Event, HttpTransport
from ivr.simulate.events import Said
from tests.conftest import DEMO_CSV, database_url, fresh_schema
from tests.test_serve import free_port, wait_until_up

TOKEN = "race-test-token-0123456789"
ELIGIBLE = "590000000109"
CALLS = 20


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Serve the demo ledger with `gunicorn -w 3 'ivr:create_app()'`; yield (base URL, db URL)."""
    url = database_url(tmp_path)
    engine = db.make_engine(url)
    fresh_schema(engine)
    db.load_demo(engine, DEMO_CSV)
    engine.dispose()
    port = free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "IVR_DATABASE_URL": url}
    env.pop("IVR_PUBLIC_URL", None)
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [str(gunicorn), "-w", "3", "-b", f"127.0.0.1:{port}", "ivr:create_app()"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server)
        yield base, url
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def heard(events: list[Event]) -> str:
    return " ".join(event.text for event in events if isinstance(event, Said))


def test_twenty_concurrent_confirmations_add_one_promise(gunicorn: tuple[str, str]) -> None:
    base, url = gunicorn
    calls: list[tuple[CallSession, list[Event]]] = []
    for number in range(CALLS):
        events: list[Event] = []
        session = CallSession(
            HttpTransport(base),
            events.append,
            from_=f"+734220001{number:02d}",
            auth_token=TOKEN,
        )
        session.start()
        session.press("111")
        session.press(ELIGIBLE + "#")
        session.press("5")
        assert "Подключить: нажмите 1" in heard(events), heard(events)
        calls.append((session, events))

    start = threading.Barrier(CALLS)
    confirmed: list[str] = [""] * CALLS
    failures: list[BaseException] = []

    def confirm(index: int) -> None:
        session, events = calls[index]
        before = len(events)
        start.wait()
        try:
            session.press("1")
        except BaseException as error:  # reported below, from the main thread
            failures.append(error)
        confirmed[index] = heard(events[before:])

    threads = [threading.Thread(target=confirm, args=(index,)) for index in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures

    taken = [said for said in confirmed if "Обещанный платёж подключён до" in said]
    refused = [said for said in confirmed if "Обещанный платёж уже подключён до" in said]
    others = [said for said in confirmed if said not in taken and said not in refused]
    assert len(taken) == 1, confirmed
    assert others == []  # no apology: each got a real answer

    engine = db.make_engine(url)
    try:
        with Session(engine) as session:
            account = db.find_account(session, ELIGIBLE)
            amounts = session.scalars(
                select(db.Entry.amount).where(
                    db.Entry.account_id == account, db.Entry.kind == "promised_payment"
                )
            ).all()
            guards = session.scalar(select(func.count()).select_from(PromiseGuard))
    finally:
        engine.dispose()
    assert sorted(str(amount) for amount in amounts) == ["-700.00", "700.00"]
    assert guards == 1
