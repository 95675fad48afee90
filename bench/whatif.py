"""Experiment: the changes bench/PROFILE.md proposes, applied to `ivr` by monkeypatching.

Nothing here is for production. It lets the benchmark measure a proposed change before
anyone edits `ivr/`:

    .venv/bin/python bench/profile_step.py --what-if          # per request, in process
    .venv/bin/python bench/run.py --app 'whatif:create_app()' # under load (bench/ on path)

Each patch stands for one edit to `ivr/` and says which. `IVR_WHATIF` picks patches by
name (comma-separated, default all) for the gunicorn entry point. A patch whose target
has changed shape raises AttributeError rather than measuring something else.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from flask import Flask
from sqlalchemy import Engine, and_, bindparam, create_engine, event, func, insert, select
from sqlalchemy.orm import Session

Undo = Callable[[], None]


def _swap(owner: Any, name: str, new: Any) -> Undo:
    old = getattr(owner, name)  # AttributeError when the target is gone: say so, loudly
    setattr(owner, name, new)
    return lambda: setattr(owner, name, old)


def one_balance_per_step() -> Undo:
    """flow.py: `_contract_entry` looks the balance up, then `_tell_balance` looks it up
    again; pass the amount found to `_tell_balance` instead (here: remember it per step)."""
    from ivr import app

    original = app.SessionLedger.balance

    def balance(self: Any, contract: str, at: datetime) -> Decimal | None:
        memo = self.__dict__.setdefault("_bench_memo", {})
        key = (contract, at)
        if key not in memo:
            memo[key] = original(self, contract, at)
        result: Decimal | None = memo[key]
        return result

    return _swap(app.SessionLedger, "balance", balance)


def core_queries() -> Undo:
    """ledger.py: run the balance as ONE statement (accounts LEFT JOIN entries, the
    covering index serves it) and the lockout count, both built once at import with
    bindparams and executed on the session's Connection, not through the ORM."""
    from ivr import ledger

    at_type = ledger.Entry.__table__.c.posted_at.type
    balance_sql = (
        select(ledger.Account.id, func.coalesce(func.sum(ledger.Entry.amount), 0))
        .select_from(ledger.Account)
        .outerjoin(
            ledger.Entry,
            and_(
                ledger.Entry.account_id == ledger.Account.id,
                ledger.Entry.posted_at <= bindparam("at", type_=at_type),
            ),
        )
        .where(ledger.Account.contract == bindparam("contract"))
        .group_by(ledger.Account.id)
    )
    table = ledger.FailedLookup.__table__
    failures_sql = (
        select(func.count())
        .select_from(table)
        .where(
            table.c.caller == bindparam("caller"), table.c.at >= bindparam("since", type_=at_type)
        )
    )

    def balance(session: Session, contract: str, at: datetime) -> Decimal | None:
        row = session.connection().execute(balance_sql, {"contract": contract, "at": at}).first()
        return None if row is None else ledger._as_money(row[1])

    def failed_lookups_since(session: Session, caller: str, since: datetime) -> int:
        count = session.connection().scalar(failures_sql, {"caller": caller, "since": since})
        return int(count or 0)

    undo = [
        _swap(ledger, "balance", balance),
        _swap(ledger, "failed_lookups_since", failed_lookups_since),
    ]

    def undo_all() -> None:
        for u in undo:
            u()

    return undo_all


def sqlite_synchronous_normal() -> Undo:
    """ledger.py `_sqlite_pragmas`: add `PRAGMA synchronous=NORMAL`. In WAL mode that
    keeps the database consistent on a crash and skips the fsync on every commit (the
    call log's); only the last commits before a power cut can be lost."""
    from ivr import ledger

    original = ledger._sqlite_pragmas

    def pragmas(dbapi_connection: Any, record: Any) -> None:
        original(dbapi_connection, record)
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return _swap(ledger, "_sqlite_pragmas", pragmas)


def core_call_log() -> Undo:
    """calllog.py `record_step`: one Core INSERT in `engine.begin()` on an engine of its
    own whose connections already wait at most CALL_LOG_WAIT_MS for a lock (SQLite's
    `timeout`, PostgreSQL's statement_timeout), instead of Session + add + flush + commit
    wrapped in two `PRAGMA busy_timeout` statements per write (ledger.lock_wait)."""
    from ivr import calllog, ledger

    statement = insert(ledger.CallStep.__table__)
    original = calllog.record_step
    engines: dict[str, Engine] = {}

    def log_engine(engine: Engine) -> Engine:
        url = engine.url.render_as_string(hide_password=False)
        if url not in engines:
            wait_ms = ledger.CALL_LOG_WAIT_MS
            if url.startswith("sqlite"):
                log = create_engine(url, connect_args={"timeout": wait_ms / 1000})
                event.listen(log, "connect", ledger._sqlite_pragmas)
                event.listen(log, "connect", _busy_timeout(wait_ms))
            else:
                options = f"-c statement_timeout={wait_ms}"
                log = create_engine(url, connect_args={"options": options})
            engines[url] = log
        return engines[url]

    def record_step(engine: Engine, step: Any) -> bool:
        try:
            with log_engine(engine).begin() as conn:
                conn.execute(
                    statement,
                    {
                        "call_sid": calllog._sid(step.call_sid),
                        "caller": step.caller,
                        "at": step.at,
                        "state": step.state,
                        "next_state": step.next_state,
                        "outcome": step.outcome,
                        "contract": calllog.masked_contract(step.contract),
                    },
                )
        except Exception:
            return original(engine, step)  # let the real one log the failure
        return True

    undo = _swap(calllog, "record_step", record_step)

    def undo_all() -> None:
        undo()
        for log in engines.values():
            log.dispose()

    return undo_all


def _busy_timeout(ms: int) -> Callable[[Any, Any], None]:
    def set_timeout(dbapi_connection: Any, _record: Any) -> None:
        # After ledger's own pragmas, which set the webhook-wide bound.
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(ms)}")

    return set_timeout


def cached_phone_numbers() -> Undo:
    """settings.py: `@functools.lru_cache(maxsize=4096)` on `e164` (a pure function of
    its arguments); the hotline parses From and To on every step."""
    from ivr import settings

    return _swap(settings, "e164", functools.lru_cache(maxsize=4096)(settings.e164))


def cached_digit_words() -> Undo:
    """money.py `digits_in_words`: look the ten digit words of each language up in a table
    made once (from the same library) instead of asking pytils/inflect for every digit."""
    from ivr import flow

    original = flow.digits_in_words

    @functools.lru_cache(maxsize=64)
    def word(digit: str, lang: str) -> str:
        return original(digit, lang)

    def digits_in_words(digits: str, lang: str) -> str:
        if not digits:
            return original(digits, lang)  # let it raise as it does
        return " ".join(word(digit, lang) for digit in digits)

    return _swap(flow, "digits_in_words", digits_in_words)


PATCHES: Mapping[str, Callable[[], Undo]] = {
    "one_balance_per_step": one_balance_per_step,
    "core_queries": core_queries,
    "sqlite_synchronous_normal": sqlite_synchronous_normal,
    "core_call_log": core_call_log,
    "cached_phone_numbers": cached_phone_numbers,
    "cached_digit_words": cached_digit_words,
}


def apply(names: list[str]) -> list[Undo]:
    """Apply the named patches, in order; return their undos."""
    return [PATCHES[name]() for name in names]


def create_app() -> Flask:
    """The hotline with the patches in IVR_WHATIF (default: all) applied, for gunicorn."""
    chosen = os.environ.get("IVR_WHATIF", ",".join(PATCHES))
    apply([name for name in chosen.split(",") if name])
    from ivr import create_app as real_create_app

    return real_create_app(None)
