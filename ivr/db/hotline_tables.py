"""The hotline's own tables: failed lookups for the lockout, and the call log.

Writing the call log must never break a call: a write that fails or waits too long is
logged and dropped, and the caller gets the answer all the same. Contract numbers are
masked here, before anything is stored.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, bindparam, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ivr import stats
from ivr.calllog import UNKNOWN_CALL, End, Step
from ivr.contract import mask
from ivr.db.engine import lock_wait, reason
from ivr.db.schema import CALL_LOG_CONTRACT_LENGTH, CallEnd, CallStep, FailedLookup, UtcDateTime
from ivr.errors import LedgerError

# The name operators know the call log's warnings by, from before it moved here.
log = logging.getLogger("ivr.calllog")

# How long a call-log write may wait for a lock: it must not hold up the caller's answer.
CALL_LOG_WAIT_MS = 500
CALL_SID_LENGTH = 64


# --- lockout ------------------------------------------------------------------------------


def record_failed_lookup(executor: Session | Connection, caller: str, at: datetime) -> None:
    """Count one failed contract entry against a caller (one INSERT, atomic on its own)."""
    executor.execute(insert(FailedLookup), {"caller": caller, "at": at})


_FAILED_LOOKUPS_SINCE = (
    select(func.count())
    .select_from(FailedLookup.__table__)
    .where(
        FailedLookup.__table__.c.caller == bindparam("caller"),
        FailedLookup.__table__.c.at >= bindparam("since", type_=UtcDateTime()),
    )
)


def failed_lookups_since(executor: Session | Connection, caller: str, since: datetime) -> int:
    """Return how many failed contract entries a caller made at or after `since`."""
    connection = executor.connection() if isinstance(executor, Session) else executor
    count = connection.scalar(_FAILED_LOOKUPS_SINCE, {"caller": caller, "since": since})
    return int(count or 0)


# --- call log: writes ---------------------------------------------------------------------


def masked_contract(digits: str | None) -> str | None:
    """Mask what the caller keyed in as a contract, cut to the column's width."""
    if digits is None:
        return None
    width = CALL_LOG_CONTRACT_LENGTH
    text = mask(digits)
    if len(text) > width:
        text = text[:2] + "*" * (width - 6) + text[-4:]
    return text


def log_step(engine: Engine, step: Step) -> bool:
    """Store one step; on any failure log it and return False instead of raising."""
    try:
        with engine.begin() as connection:
            with lock_wait(connection, CALL_LOG_WAIT_MS):
                record_call_step(
                    connection,
                    call_sid=_sid(step.call_sid),
                    caller=step.caller,
                    at=step.at,
                    state=step.state,
                    next_state=step.next_state,
                    outcome=step.outcome,
                    masked_contract=masked_contract(step.contract),
                )
    except Exception as exc:
        log.warning(
            "call %s: the call log missed a step (%s -> %s): %s",
            step.call_sid,
            step.state,
            step.outcome,
            reason(exc),
        )
        return False
    return True


def log_end(engine: Engine, end: End) -> bool:
    """Store the status Twilio reported for a call; on any failure log it and return False."""
    try:
        with engine.begin() as connection:
            with lock_wait(connection, CALL_LOG_WAIT_MS):
                record_call_end(
                    connection,
                    call_sid=_sid(end.call_sid),
                    caller=end.caller,
                    at=end.at,
                    status=end.status[:20],
                    duration_s=end.duration_s,
                )
    except Exception as exc:
        log.warning(
            "call %s: the call log missed its end (%s): %s", end.call_sid, end.status, reason(exc)
        )
        return False
    return True


def _sid(call_sid: str) -> str:
    return call_sid[:CALL_SID_LENGTH] or UNKNOWN_CALL


def record_call_step(
    executor: Connection | Session,
    *,
    call_sid: str,
    caller: str,
    at: datetime,
    state: str | None,
    next_state: str | None,
    outcome: str,
    masked_contract: str | None,
) -> None:
    """Add one step to the call log; the contract must already be masked."""
    # A Core INSERT, sent at once: every step writes one, and the ORM's unit of work
    # cost more than the row.
    executor.execute(
        insert(CallStep),
        {
            "call_sid": call_sid,
            "caller": caller,
            "at": at,
            "state": state,
            "next_state": next_state,
            "outcome": outcome,
            "contract": masked_contract,
        },
    )


def record_call_end(
    executor: Connection | Session,
    *,
    call_sid: str,
    caller: str,
    at: datetime,
    status: str,
    duration_s: int | None,
) -> None:
    """Add a status Twilio reported for a call to the call log."""
    executor.execute(
        insert(CallEnd),
        {
            "call_sid": call_sid,
            "caller": caller,
            "at": at,
            "status": status,
            "duration_s": duration_s,
        },
    )


# --- call log: batched writes ----------------------------------------------------------

# Rows kept in memory at most while the database cannot take them; beyond, the oldest go.
CALL_LOG_BUFFER_ROWS = 20_000


class CallLog:
    """The call log's writer: at once (`batch_s` = 0) or in batches by a background thread.

    Batched, a step only appends its row to a list in memory; a thread of the server
    process writes what piled up every `batch_s` seconds in one transaction, and at the
    process's normal exit. A crash (or SIGKILL) of the process loses at most the rows of
    the last `batch_s` seconds; the lockout counts and promises never go this way. A
    batch that fails is logged with its size and dropped, as a single row was before.
    """

    def __init__(self, engine: Engine, batch_s: float) -> None:
        self.engine = engine
        self.batch_s = batch_s
        self._rows: deque[Step | End] = deque(maxlen=CALL_LOG_BUFFER_ROWS)
        self._wake = threading.Event()
        self._write_lock = threading.Lock()
        self._owner: int | None = None  # the pid whose thread writes: gunicorn forks
        # A forked child starts clean: new lock, no rows (its parent writes those).
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))

    def step(self, step: Step) -> None:
        """Keep one step (never raises)."""
        if self.batch_s <= 0:
            log_step(self.engine, step)
        else:
            self._add(step)

    def end(self, end: End) -> None:
        """Keep the status Twilio reported for a call (never raises)."""
        if self.batch_s <= 0:
            log_end(self.engine, end)
        else:
            self._add(end)

    def _add(self, row: Step | End) -> None:
        if self._owner is None:  # set by this process's thread; a fork clears it
            self._start()
        self._rows.append(row)

    def _start(self) -> None:
        """Start this process's writer thread (a forked worker starts its own)."""
        with self._write_lock:
            if self._owner == os.getpid():
                return
            self._owner = os.getpid()
            thread = threading.Thread(target=self._run, name="ivr-call-log", daemon=True)
            thread.start()
            atexit.register(self.flush)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.batch_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Write every row kept so far in one transaction; return how many were written."""
        with self._write_lock:
            rows: list[Step | End] = []
            while self._rows:
                rows.append(self._rows.popleft())
            if not rows:
                return 0
            steps = [_step_values(r) for r in rows if isinstance(r, Step)]
            ends = [_end_values(r) for r in rows if isinstance(r, End)]
            try:
                with self.engine.begin() as connection:
                    with lock_wait(connection, CALL_LOG_WAIT_MS * 4):
                        if steps:
                            _insert_many(connection, _CALL_STEPS, steps)
                        if ends:
                            _insert_many(connection, _CALL_ENDS, ends)
            except Exception as exc:
                log.warning(
                    "the call log missed %d steps and %d ends: %s",
                    len(steps),
                    len(ends),
                    reason(exc),
                )
                return 0
            return len(rows)


def _table(model: type[CallStep | CallEnd]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_CALL_STEPS, _CALL_ENDS = _table(CallStep), _table(CallEnd)

# Rows per INSERT statement of a batch: 7 values a row stays far below SQLite's 32 766
# parameters and PostgreSQL's 65 535.
ROWS_PER_INSERT = 500


def _insert_many(connection: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts of the same columns) in a few statements.

    SQLite: multi-row VALUES statements of `ROWS_PER_INSERT` rows instead of the driver's
    executemany, which binds and steps each row from Python and lets go of the GIL for
    every one of them, so a batch of a busy second's steps took turns with the requests
    ~1 000 times. PostgreSQL: one statement whose parameters are a column's values each
    (`unnest` of arrays); psycopg parses a statement of 3 500 placeholders anew each
    time (~20 µs a row of the worker's CPU), seven arrays it dumps in C. The values go
    through the columns' own bind conversions, as `Connection.execute` does.
    """
    dialect = connection.dialect
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    convert = [column.type.dialect_impl(dialect).bind_processor(dialect) for column in columns]
    if dialect.name == "postgresql" and dialect.driver == "psycopg":  # %b is psycopg 3's
        _insert_unnest(connection, table, columns, convert, rows)
        return
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    head = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES "
    one_row = "(" + ", ".join([marker] * len(names)) + ")"
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        values: list[Any] = []
        for row in chunk:
            for name, processor in zip(names, convert, strict=True):
                value = row[name]
                values.append(value if processor is None or value is None else processor(value))
        connection.exec_driver_sql(head + ", ".join([one_row] * len(chunk)), tuple(values))


def _insert_unnest(
    connection: Connection,
    table: Table,
    columns: Sequence[Column[Any]],
    convert: Sequence[Callable[[Any], Any] | None],
    rows: Sequence[dict[str, Any]],
) -> None:
    """INSERT `rows` on PostgreSQL as one `INSERT ... SELECT * FROM unnest(arrays)`."""
    dialect = connection.dialect
    arrays = []
    for column, processor in zip(columns, convert, strict=True):
        values = [row[column.name] for row in rows]
        if processor is not None:
            values = [value if value is None else processor(value) for value in values]
        arrays.append(values)
    # %b: sent in binary, which psycopg writes in C (its text arrays quote each value in Python).
    casts = ", ".join(f"%b::{column.type.compile(dialect)}[]" for column in columns)
    names = ", ".join(column.name for column in columns)
    statement = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({casts})"
    connection.exec_driver_sql(statement, tuple(arrays))


def _reset_after_fork(ref: weakref.ref[CallLog]) -> None:
    writer = ref()
    if writer is not None:
        writer._write_lock = threading.Lock()
        writer._wake = threading.Event()
        writer._rows.clear()
        writer._owner = None


def _step_values(step: Step) -> dict[str, Any]:
    return {
        "call_sid": _sid(step.call_sid),
        "caller": step.caller,
        "at": step.at,
        "state": step.state,
        "next_state": step.next_state,
        "outcome": step.outcome,
        "contract": masked_contract(step.contract),
    }


def _end_values(end: End) -> dict[str, Any]:
    return {
        "call_sid": _sid(end.call_sid),
        "caller": end.caller,
        "at": end.at,
        "status": end.status[:20],
        "duration_s": end.duration_s,
    }


# --- call log: reads ----------------------------------------------------------------------


# The longest a call's steps can lie apart: Twilio ends a call after 4 hours, its default
# time limit, which the hotline does not raise (a call that reaches the operator sends no
# more steps at all).
CALL_SPAN = timedelta(hours=4)


def call_steps_between(session: Session, start: datetime, end: datetime) -> list[CallStep]:
    """Return the call-log steps of calls that had a step in [start, end), call by call in order.

    Read by time (`ix_call_steps_at`), widened by `CALL_SPAN` on each side, then kept by
    call. There is no index on the CallSid: a random key made every logged step a random
    B-tree insert, most of the call log's cost to a webhook step (revision 0004).
    """
    rows = session.scalars(
        select(CallStep).where(CallStep.at >= start - CALL_SPAN, CallStep.at < end + CALL_SPAN)
    )
    steps = list(rows)
    inside = {step.call_sid for step in steps if start <= step.at < end}
    kept = [step for step in steps if step.call_sid in inside]
    kept.sort(key=lambda step: (step.call_sid, step.at, step.id))
    return kept


def call_ends_between(session: Session, start: datetime, end: datetime) -> list[CallEnd]:
    """Return the statuses Twilio reported in [start, end), oldest first."""
    rows = session.scalars(
        select(CallEnd)
        .where(CallEnd.at >= start, CallEnd.at < end)
        .order_by(CallEnd.at, CallEnd.id)
    )
    return list(rows)


def read_call_log(
    engine: Engine, steps_in: tuple[datetime, datetime], ends_in: tuple[datetime, datetime]
) -> tuple[Sequence[CallStep], Sequence[CallEnd]]:
    """Return the call log's steps and ends in two windows; raise LedgerError on failure."""
    try:
        with Session(engine) as session:
            return call_steps_between(session, *steps_in), call_ends_between(session, *ends_in)
    except SQLAlchemyError as exc:
        raise LedgerError(reason(exc)) from None


def day_stats(engine: Engine, day: date, zone: tzinfo = UTC) -> stats.DayStats:
    """Return a day of the call log, counted: what `ivr stats` prints and the dashboard shows.

    The one way both read it, so that they cannot disagree. Raise LedgerError on failure.
    """
    return stats.load(functools.partial(read_call_log, engine), day, zone)
