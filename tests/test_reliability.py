"""Faults and load: a hung or vanished database costs the caller an apology, never a 500.

- a hung database is the apology within 3 seconds (statement, lock and connect bounds);
- the database going away mid-run: every request still answers 200, then it recovers;
- billing appending while calls read: every balance spoken is one the ledger held.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from sqlalchemy import make_url, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from ivr import create_app, db
from ivr.contract import with_check_digit
from ivr.money import amount_in_words
from tests.conftest import AUTH_TOKEN, DEMO_CSV, Caller, Turn, engine_of, to_contract_entry

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KNOWN = "590000000018"
KNOWN_SAID = "одна тысяча двести тридцать четыре рубля пятьдесят шесть копеек"
MISTYPED = "590000000017"
APOLOGY = ["Извините, произошла техническая ошибка. Пожалуйста, позвоните позже."]
HUNG_BOUND_S = 3.0  # a correctness bound, well inside Twilio's 15-second webhook timeout
# Tests that measure a wait run on the real clock: a frozen one would also freeze the
# timeouts the drivers and the pool keep in Python (psycopg's connect_timeout, pool_timeout).


def dialect(app: Flask) -> str:
    return engine_of(app).dialect.name


def is_apology(turn: Turn) -> bool:
    return turn.said == APOLOGY and turn.verbs == ["Say", "Hangup"]


# --- a hung database --------------------------------------------------------------------


def sqlite_path(app: Flask) -> str:
    path = make_url(app.config["DATABASE_URL"]).database
    assert path
    return path


def test_sqlite_held_exclusively_gives_the_apology_in_time(app: Flask, call: Caller) -> None:
    """Another process holds the file in exclusive locking mode: even WAL readers wait."""
    if dialect(app) != "sqlite":
        pytest.skip("SQLite locking")
    to_contract_entry(call)
    # An open connection would keep the holder from its exclusive lock; a fresh worker
    # process has none either.
    engine_of(app).dispose()
    holder = sqlite3.connect(sqlite_path(app), isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("DELETE FROM failed_lookups")  # any write takes the file
        started = time.monotonic()
        turn = call.press(KNOWN)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert is_apology(turn)
    assert 1.0 < elapsed < HUNG_BOUND_S, elapsed
    again = Caller(call.app)
    to_contract_entry(again)
    assert KNOWN_SAID in again.press(KNOWN).text


def test_sqlite_writer_lock_gives_the_apology_in_time(app: Flask, call: Caller) -> None:
    """Billing holds the write lock: a failed entry must be counted, so it waits, then gives up."""
    if dialect(app) != "sqlite":
        pytest.skip("SQLite locking")
    to_contract_entry(call)
    holder = sqlite3.connect(sqlite_path(app), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        turn = call.press(MISTYPED)
        elapsed = time.monotonic() - started
        # Reads go on under WAL: another caller still hears a balance meanwhile.
        reader = Caller(call.app, caller="+73422000002")
        to_contract_entry(reader)
        assert KNOWN_SAID in reader.press(KNOWN).text
    finally:
        holder.close()
    assert is_apology(turn)
    assert db.QUERY_TIMEOUT_MS / 1000 - 0.5 < elapsed < HUNG_BOUND_S, elapsed


def test_postgresql_locked_table_gives_the_apology_in_time(app: Flask, call: Caller) -> None:
    """Another session holds ACCESS EXCLUSIVE on entries: the statement timeout cuts the wait."""
    if dialect(app) != "postgresql":
        pytest.skip("needs IVR_TEST_DATABASE_URL=postgresql+psycopg://...")
    to_contract_entry(call)
    holder = db.make_engine(app.config["DATABASE_URL"])
    with holder.connect() as connection:
        connection.execute(text("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE"))
        started = time.monotonic()
        turn = call.press(KNOWN)
        elapsed = time.monotonic() - started
        connection.rollback()
    holder.dispose()
    assert is_apology(turn)
    assert 2.0 < elapsed < HUNG_BOUND_S, elapsed
    again = Caller(call.app)
    to_contract_entry(again)
    assert KNOWN_SAID in again.press(KNOWN).text


def test_postgresql_pg_sleep_is_cut_by_the_statement_timeout(app: Flask) -> None:
    if dialect(app) != "postgresql":
        pytest.skip("needs IVR_TEST_DATABASE_URL=postgresql+psycopg://...")
    started = time.monotonic()
    with Session(engine_of(app)) as session, pytest.raises(Exception, match="statement timeout"):
        session.execute(text("SELECT pg_sleep(10)"))
    assert time.monotonic() - started < HUNG_BOUND_S


class SilentServer:
    """A TCP server that accepts connections and never says a word (a hung database host)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(timeout=5)
        for connection in self.accepted:
            connection.close()


def test_a_database_host_that_never_answers_gives_the_apology_in_time(tmp_path: Path) -> None:
    """The connect timeout: TCP connects, the server never speaks."""
    pytest.importorskip("psycopg")
    server = SilentServer()
    try:
        app = create_app(
            {
                "DATABASE_URL": f"postgresql+psycopg://ivr@127.0.0.1:{server.port}/ledger",
                "AUTH_TOKEN": AUTH_TOKEN,
                "CALL_LOG_BATCH_S": 0,
            }
        )
        call = Caller(app.test_client())
        started = time.monotonic()
        greeting = call.start()  # needs no ledger; its call-log write gives up
        greeted_in = time.monotonic() - started
        started = time.monotonic()
        # Pressing 1 at the billing menu: the lockout check is the first to need the ledger.
        turn = call.post("/voice/step?s=billing&l=ru-RU&p=1&k=0", {"Digits": "1"})
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert greeting.gather is not None and greeted_in < HUNG_BOUND_S, greeted_in
    assert is_apology(turn)
    assert db.CONNECT_TIMEOUT_S - 0.5 < elapsed < HUNG_BOUND_S, elapsed
    assert server.accepted, "the app never reached the silent server"


def test_a_request_waiting_for_a_pooled_connection_is_bounded_too(app: Flask) -> None:
    """Under load every pooled connection is busy: a step must not queue past the bound."""
    call = Caller(app.test_client())
    call.start()
    call.press("1")
    call.press("1")
    engine = engine_of(app)
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    # Every connection the pool will give: pool_size + max_overflow (10, kept by make_engine).
    held = [engine.connect() for _ in range(pool.size() + 10)]
    result: list[Turn] = []
    # Pressing 1 at the billing menu needs the ledger (the lockout check).
    thread = threading.Thread(target=lambda: result.append(call.press("1")), daemon=True)
    try:
        thread.start()
        thread.join(timeout=HUNG_BOUND_S + 0.5)
        answered_in_time = not thread.is_alive()
    finally:
        for connection in held:
            connection.close()
        thread.join(timeout=40)
    assert answered_in_time
    assert result and is_apology(result[0])


def test_the_next_step_takes_the_connection_returned_last(app: Flask) -> None:
    """A step and a call-log batch on two connections: the step after goes on the batch's.

    The connection that just committed is the warm one (a SQLite reader's page cache is
    emptied by other connections' commits), so the pool hands out the one returned last.
    """
    engine = engine_of(app)
    step = engine.connect()
    step.execute(text("SELECT 1"))
    batch = engine.connect()
    with batch.begin():
        batch.execute(text("SELECT 1"))
    step_driver = step.connection.driver_connection
    batch_driver = batch.connection.driver_connection
    assert step_driver is not batch_driver
    step.close()  # the step returns its connection first, then the batch its own
    batch.close()
    with engine.connect() as following:
        assert following.connection.driver_connection is batch_driver


# --- the database goes away in the middle of a run of calls -------------------------------


class Relay:
    """A TCP relay between the app and PostgreSQL that a test can cut and restore."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.listener: socket.socket | None = None
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break every open one."""
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)
            self.listener.close()
            self.listener = None
        with self.lock:
            open_sockets, self.sockets = self.sockets, set()
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class Outage:
    """Takes the database away from an app and gives it back, counting the faults."""

    app: Flask
    cut: Callable[[], None]
    restore: Callable[[], None]
    faults: int = 0

    def begin(self) -> None:
        self.faults += 1
        self.cut()

    def end(self) -> None:
        self.restore()


@pytest.fixture
def outage(app: Flask, tmp_path: Path) -> Iterator[Outage]:
    """An app whose database can vanish: SQLite's folder moves away; PostgreSQL's link is cut."""
    if dialect(app) == "sqlite":
        folder = tmp_path / "db"
        folder.mkdir()
        flaky = create_app(
            {
                "DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
                "AUTH_TOKEN": AUTH_TOKEN,
                "CALL_LOG_BATCH_S": 0,
            }
        )
        db.create_schema(engine_of(flaky))
        db.import_csv(engine_of(flaky), DEMO_CSV)

        def cut() -> None:
            folder.rename(tmp_path / "db-gone")
            # The pooled connections keep the unlinked file open (POSIX): a process that
            # starts or reconnects now finds no database. Drop them as a worker restart would.
            engine_of(flaky).dispose()

        def restore() -> None:
            (tmp_path / "db-gone").rename(folder)

        yield Outage(flaky, cut, restore)
        engine_of(flaky).dispose()
        return
    url = make_url(app.config["DATABASE_URL"])
    relay = Relay(url.host or "127.0.0.1", url.port or 5432)
    relay.start()
    proxied = url.set(host="127.0.0.1", port=relay.port)
    flaky = create_app(
        {
            "DATABASE_URL": proxied.render_as_string(hide_password=False),
            "AUTH_TOKEN": AUTH_TOKEN,
            "CALL_LOG_BATCH_S": 0,
        }
    )
    yield Outage(flaky, relay.cut, relay.start)
    engine_of(flaky).dispose()
    relay.cut()


@dataclass
class Tally:
    requests: int = 0
    apologies: int = 0
    balances: int = 0
    said: list[list[str]] = field(default_factory=list)


def one_call(client: FlaskClient, tally: Tally, caller: str = "+73422000001") -> Turn:
    """Call, press 1 1 1 and the contract; stop at the first turn that ends the call."""
    call = Caller(client, caller=caller)
    turn = call.start()
    tally.requests += 1
    for keys in ("1", "1", "1", KNOWN):
        turn = call.press(keys)  # asserts 200 and text/xml
        tally.requests += 1
        if turn.ends_call:
            break
    if is_apology(turn):
        tally.apologies += 1
    elif KNOWN_SAID in turn.text:
        tally.balances += 1
    tally.said.append(turn.said)
    return turn


def test_the_database_goes_away_mid_run_and_comes_back(outage: Outage) -> None:
    client = outage.app.test_client()
    tally = Tally()
    for _ in range(10):
        assert KNOWN_SAID in one_call(client, tally).text
    waiting = Caller(client, caller="+73422000002")
    to_contract_entry(waiting)
    outage.begin()
    assert is_apology(waiting.press(KNOWN))  # a call caught mid-way
    for _ in range(20):
        assert is_apology(one_call(client, tally))
    assert client.get("/healthz").status_code == 200
    fallback = Caller(client).start("/voice/fallback")
    assert is_apology(fallback)
    outage.end()
    for _ in range(10):
        assert KNOWN_SAID in one_call(client, tally).text
    assert (tally.balances, tally.apologies) == (20, 20)
    # The call log kept the calls before and after, and nothing of the outage.
    with Session(engine_of(outage.app)) as session:
        outcomes = session.scalars(select(db.CallStep.outcome)).all()
    assert outcomes.count("balance_told") == 20
    assert "apology" not in outcomes
    print(f"\nfault run: {outage.faults} outage, {tally.requests} requests, all 200")


def test_a_second_outage_and_a_second_recovery(outage: Outage) -> None:
    client = outage.app.test_client()
    tally = Tally()
    for _ in range(2):
        assert KNOWN_SAID in one_call(client, tally).text
        outage.begin()
        assert is_apology(one_call(client, tally))
        outage.end()
    assert KNOWN_SAID in one_call(client, tally).text
    assert outage.faults == 2


def test_postgresql_killed_connections_are_replaced_unnoticed(app: Flask, call: Caller) -> None:
    """pg_terminate_backend on the app's connections: the step retries its read once."""
    if dialect(app) != "postgresql":
        pytest.skip("needs IVR_TEST_DATABASE_URL=postgresql+psycopg://...")
    to_contract_entry(call)
    engine = engine_of(app)
    # The app's own connections only: take every idle one out of its pool at once.
    pool = engine.pool
    assert isinstance(pool, QueuePool)
    pooled = [engine.connect() for _ in range(pool.checkedin())]
    pids = [c.execute(text("SELECT pg_backend_pid()")).scalar_one() for c in pooled]
    for connection in pooled:
        connection.close()
    killer = db.make_engine(app.config["DATABASE_URL"])
    with killer.connect() as connection:
        killed = connection.execute(
            text(
                "SELECT count(*) FROM unnest(CAST(:pids AS int[])) AS pid"
                " WHERE pg_terminate_backend(pid)"
            ),
            {"pids": pids},
        ).scalar()
    killer.dispose()
    assert pids and killed == len(pids)
    assert KNOWN_SAID in call.press(KNOWN).text


# --- billing appends while calls read -----------------------------------------------------

WRITERS, APPENDS, READERS, READS = 4, 40, 4, 8
BASE = Decimal("100.00")


@freeze_time(T0, tick=True)  # ticking: the pool and drivers keep their timeouts
def test_balances_read_during_appends_are_ones_the_ledger_held(app: Flask) -> None:
    """Each append is +1.00 to one contract: a spoken balance is BASE + k, k appends committed.

    k may not be below the appends committed before the call asked, nor above those
    started before it answered; an entry dated tomorrow never counts.
    """
    contract = with_check_digit("59000000100")
    engine = engine_of(app)
    with Session(engine) as session, session.begin():
        account = db.Account(contract=contract)
        session.add(account)
        session.flush()
        session.add(
            db.Entry(
                account_id=account.id,
                posted_at=T0 - timedelta(days=1),
                amount=BASE,
                kind="payment",
                memo="",
            )
        )
        account_id = account.id
    total = WRITERS * APPENDS
    said_to_k = {
        f"На вашем счёте {amount_in_words(BASE + k, 'ru-RU')}.": k for k in range(total + 1)
    }
    billing = db.make_engine(app.config["DATABASE_URL"])
    lock = threading.Lock()
    counts = {"started": 0, "committed": 0}
    errors: list[BaseException] = []
    heard: list[list[int]] = [[] for _ in range(READERS)]

    def bill() -> None:
        try:
            for n in range(APPENDS):
                with lock:
                    counts["started"] += 1
                with Session(billing) as session, session.begin():
                    session.add(
                        db.Entry(
                            account_id=account_id,
                            posted_at=T0 - timedelta(hours=1),
                            amount=Decimal("1.00"),
                            kind="payment",
                            memo=f"{n}",
                        )
                    )
                    if n % 10 == 0:  # dated tomorrow: must not count today
                        session.add(
                            db.Entry(
                                account_id=account_id,
                                posted_at=T0 + timedelta(days=1),
                                amount=Decimal("1000.00"),
                                kind="payment",
                                memo="",
                            )
                        )
                with lock:
                    counts["committed"] += 1
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    def read(index: int) -> None:
        try:
            client = app.test_client()
            for _ in range(READS):
                call = Caller(client, caller=f"+7342200010{index}")
                to_contract_entry(call)
                with lock:
                    low = counts["committed"]
                turn = call.press(contract)
                with lock:
                    high = counts["started"]
                k = said_to_k.get(turn.said[1])
                assert k is not None, turn.said
                assert low <= k <= high, (low, k, high)
                heard[index].append(k)
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=bill) for _ in range(WRITERS)]
    threads += [threading.Thread(target=read, args=(i,)) for i in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    billing.dispose()
    assert not errors, errors
    assert all(len(ks) == READS for ks in heard)
    assert all(ks == sorted(ks) for ks in heard), heard  # never backwards for one reader
    last = Caller(app.test_client())
    to_contract_entry(last)
    assert said_to_k[last.press(contract).said[1]] == total
    with Session(engine) as session:
        assert db.balance(session, contract, T0) == BASE + total
    spread = sorted({k for ks in heard for k in ks})
    print(
        f"\nconcurrent run ({dialect(app)}): {total} appends, {READERS * READS} balances read,"
        f" {len(spread)} distinct, from {spread[0]} to {spread[-1]}"
    )
