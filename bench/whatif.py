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


def core_queries() -> Undo:
    """ledger.py: build the read queries once, at import, with bindparams, and run them on
    the session's Connection (Core) instead of building an ORM select per call and
    running it through `Session.scalar`. Patches whichever of `find_account`,
    `account_balance`, `balance` (one statement: accounts LEFT JOIN entries) and
    `failed_lookups_since` the app has."""
    from ivr import ledger

    at_type = ledger.Entry.__table__.c.posted_at.type
    account, entry = ledger.Account.__table__, ledger.Entry.__table__
    find_sql = select(account.c.id).where(account.c.contract == bindparam("contract"))
    sum_sql = select(func.coalesce(func.sum(entry.c.amount), 0)).where(
        entry.c.account_id == bindparam("account"),
        entry.c.posted_at <= bindparam("at", type_=at_type),
    )
    balance_sql = (
        select(account.c.id, func.coalesce(func.sum(entry.c.amount), 0))
        .select_from(account)
        .outerjoin(
            entry,
            and_(
                entry.c.account_id == account.c.id,
                entry.c.posted_at <= bindparam("at", type_=at_type),
            ),
        )
        .where(account.c.contract == bindparam("contract"))
        .group_by(account.c.id)
    )
    failed = ledger.FailedLookup.__table__
    failures_sql = (
        select(func.count())
        .select_from(failed)
        .where(
            failed.c.caller == bindparam("caller"),
            failed.c.at >= bindparam("since", type_=at_type),
        )
    )

    def find_account(session: Session, contract: str) -> int | None:
        found: int | None = session.connection().scalar(find_sql, {"contract": contract})
        return found

    def account_balance(session: Session, account_id: int, at: datetime) -> Decimal:
        total = session.connection().scalar(sum_sql, {"account": account_id, "at": at})
        return ledger._as_money(total)

    def balance(session: Session, contract: str, at: datetime) -> Decimal | None:
        row = session.connection().execute(balance_sql, {"contract": contract, "at": at}).first()
        return None if row is None else ledger._as_money(row[1])

    def failed_lookups_since(session: Session, caller: str, since: datetime) -> int:
        count = session.connection().scalar(failures_sql, {"caller": caller, "since": since})
        return int(count or 0)

    replacements = {
        "find_account": find_account,
        "account_balance": account_balance,
        "balance": balance,
        "failed_lookups_since": failed_lookups_since,
    }
    undo = [_swap(ledger, name, new) for name, new in replacements.items() if hasattr(ledger, name)]

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

    statement = insert(ledger.Base.metadata.tables["call_steps"])
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

    original: Callable[[str, str], str] = getattr(flow, "digits_in_words")  # noqa: B009

    @functools.lru_cache(maxsize=64)
    def word(digit: str, lang: str) -> str:
        return original(digit, lang)

    def digits_in_words(digits: str, lang: str) -> str:
        if not digits:
            return original(digits, lang)  # let it raise as it does
        return " ".join(word(digit, lang) for digit in digits)

    return _swap(flow, "digits_in_words", digits_in_words)


PATCHES: Mapping[str, Callable[[], Undo]] = {
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
