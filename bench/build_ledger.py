"""Build (or reuse) a benchmark ledger of N accounts with about 10 entries each.

The tables and indexes come from `ivr.db.create_schema`, so the benchmark reads the
real schema. Rows go in with bulk inserts: `executemany` on the raw sqlite3 connection
(journal off, synchronous off, the balance index built after the load) or PostgreSQL's
COPY. A finished SQLite ledger is kept under bench/out/ with a JSON sidecar and reused
while its accounts, seed, schema and generator still match and it is under a month old.

    .venv/bin/python bench/build_ledger.py --accounts 1000000
    .venv/bin/python bench/build_ledger.py --accounts 1000 --postgres postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the project, on the path
    sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, event, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from sqlalchemy.schema import CreateIndex, CreateTable  # noqa: E402

from ivr.contract import with_check_digit  # noqa: E402
from ivr.db import Base, balance, create_schema, make_engine, totals  # noqa: E402

# Bump when the generated data changes, so cached ledgers are rebuilt.
GENERATOR_VERSION = 3
SEED = 6
MAX_AGE = timedelta(days=30)  # future-dated entries start 30 days after the build
CONTRACT_PREFIX = "59"
KINDS = ("payment", "charge", "adjustment", "promised_payment")
MEMOS = ("", "Оплата картой", "Абонентская плата", "Перерасчёт", "Обещанный платёж")
LOADED = ("accounts", "entries", "month_totals")  # filled here; the app owns the others
SAMPLES = 40  # accounts whose balances are checked against the generator after a build

Progress = Callable[[str, int, int], None]


def contract_for(account_id: int) -> str:
    """Return the contract number of benchmark account `account_id` (1-based)."""
    return with_check_digit(f"{CONTRACT_PREFIX}{account_id:09d}")


@dataclass(frozen=True)
class Sample:
    """A balance the generator knows, to check the database against."""

    contract: str
    at: str  # ISO 8601, UTC
    expected: str  # Decimal rubles


@dataclass(frozen=True)
class LedgerInfo:
    """A built ledger: where it is and what it holds."""

    url: str
    accounts: int
    entries: int
    future_entries: int
    built_at: str
    build_seconds: float
    fingerprint: str
    samples: list[Sample]

    @property
    def built(self) -> datetime:
        return datetime.fromisoformat(self.built_at)


# --- data --------------------------------------------------------------------------

# One generated entry: (posted_at as microseconds since the epoch UTC, amount in kopecks,
# index into KINDS, index into MEMOS). Plain tuples: ten million dataclasses cost seconds.
Row = tuple[int, int, int, int]
CHUNK = 20_000  # accounts per generated chunk; each chunk has its own seed


def generate(first: int, last: int, now: datetime) -> Iterator[tuple[int, list[Row]]]:
    """Yield (account id, its entries) for accounts first..last: 5-15 entries each,
    amounts with kopecks, about 5 % of them dated 1-12 months after `now`.

    Seeded by the chunk, so the data is the same however many processes generate it.
    """
    rng = random.Random(f"{SEED}:{first}")
    rand, randint = rng.random, rng.randint
    now_us = int(now.timestamp() * 1_000_000)
    past_span = 730 * 86_400 * 1_000_000
    future_min = int(MAX_AGE.total_seconds()) * 1_000_000
    future_span = 335 * 86_400 * 1_000_000
    for account_id in range(first, last + 1):
        rows = []
        for _ in range(randint(5, 15)):
            roll = rand()
            if roll < 0.45:
                kind, kopecks, memo = 1, -randint(10_000, 150_000), 2
            elif roll < 0.85:
                kind, kopecks, memo = 0, randint(10_000, 300_000), 1
            elif roll < 0.95:
                kind, kopecks, memo = 2, randint(-20_000, 20_000), 3
            else:
                kind, kopecks, memo = 3, randint(1, 5) * 10_000, 4
            if rand() < 0.05:
                posted = now_us + future_min + int(rand() * future_span)
            else:
                posted = now_us - int(rand() * past_span)
            rows.append((posted, kopecks, kind, memo if rand() < 0.7 else 0))
        yield account_id, rows


@dataclass
class Chunk:
    """A chunk of generated rows, formatted for one database."""

    accounts: list[tuple[int, str]]
    entries: list[tuple[int, str, int, str, str]]  # SQLite rows (empty for PostgreSQL)
    copy_text: str  # PostgreSQL COPY lines (empty for SQLite)
    entry_count: int
    future: int
    samples: list[Sample]


def make_chunk(first: int, last: int, accounts: int, now_iso: str, dialect: str) -> Chunk:
    """Generate and format accounts first..last (run in a worker process)."""
    now = datetime.fromisoformat(now_iso)
    now_us = int(now.timestamp() * 1_000_000)
    wanted = _sample_ids(accounts)
    chunk = Chunk([], [], "", 0, 0, [])
    lines: list[str] = []
    for account_id, rows in generate(first, last, now):
        # PostgreSQL gets its accounts in a COPY of their own, before any entry.
        chunk.accounts.append((account_id, contract_for(account_id) if dialect == "sqlite" else ""))
        if dialect == "sqlite":
            chunk.entries.extend(
                (account_id, _sqlite_time(posted), kopecks, KINDS[kind], MEMOS[memo])
                for posted, kopecks, kind, memo in rows
            )
        else:
            lines.extend(
                f"{account_id}\t{_pg_time(posted)}\t{_pg_amount(kopecks)}"
                f"\t{KINDS[kind]}\t{MEMOS[memo]}\n"
                for posted, kopecks, kind, memo in rows
            )
        chunk.entry_count += len(rows)
        chunk.future += sum(posted > now_us for posted, *_ in rows)
        if account_id in wanted:
            chunk.samples.extend(_samples_of(account_id, rows, now))
    chunk.copy_text = "".join(lines)
    return chunk


def chunks(accounts: int, now: datetime, dialect: str) -> Iterator[Chunk]:
    """Yield the ledger's chunks in order, generated by worker processes.

    The caller writes one chunk to the database while the workers make the next ones,
    so generating (Python) and inserting (the database) use both cores.
    """
    bounds = [(f, min(f + CHUNK - 1, accounts)) for f in range(1, accounts + 1, CHUNK)]
    if len(bounds) == 1:
        yield make_chunk(1, accounts, accounts, now.isoformat(), dialect)
        return
    # One generator beside the writer: on 2 cores a second one only competed with it.
    workers = 1
    pending: deque[Future[Chunk]] = deque()
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        todo = iter(bounds)
        try:
            for first, last in todo:
                pending.append(
                    pool.submit(make_chunk, first, last, accounts, now.isoformat(), dialect)
                )
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _sample_ids(accounts: int) -> set[int]:
    step = max(1, accounts // SAMPLES)
    return set(range(1, accounts + 1, step)) | {accounts}


def _samples_of(account_id: int, rows: Sequence[Row], now: datetime) -> list[Sample]:
    """Expected balances now and a year ago, as the ledger must report them."""
    out = []
    for at in (now, now - timedelta(days=365)):
        at_us = int(at.timestamp() * 1_000_000)
        total = sum(kopecks for posted, kopecks, _, _ in rows if posted <= at_us)
        out.append(Sample(contract_for(account_id), at.isoformat(), str(Decimal(total).scaleb(-2))))
    return out


_DAYS: dict[int, str] = {}


def _sqlite_time(us: int) -> str:
    # The text SQLAlchemy's SQLite DateTime stores (naive UTC), so `posted_at <= :at`
    # compares the same way it does for rows the app writes.
    seconds, micro = divmod(us, 1_000_000)
    day, second = divmod(seconds, 86_400)
    date = _DAYS.get(day)
    if date is None:
        date = _DAYS[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86_400))
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{date} {hour:02d}:{minute:02d}:{second:02d}.{micro:06d}"


def _pg_time(us: int) -> str:
    return _sqlite_time(us) + "+00"


def _pg_amount(kopecks: int) -> str:
    sign, whole = ("-", -kopecks) if kopecks < 0 else ("", kopecks)
    return f"{sign}{whole // 100}.{whole % 100:02d}"


# --- fingerprint and cache ---------------------------------------------------------


def fingerprint(engine: Engine, accounts: int) -> str:
    """Hash what makes two ledgers interchangeable: the DDL of the tables this script
    loads, size, seed, generator. Tables the app adds elsewhere do not invalidate it."""
    ddl = []
    for table in Base.metadata.sorted_tables:
        if table.name not in LOADED:
            continue
        ddl.append(str(CreateTable(table).compile(dialect=engine.dialect)))
        ddl.extend(
            str(CreateIndex(index).compile(dialect=engine.dialect))
            for index in sorted(table.indexes, key=lambda i: i.name or "")
        )
    key = json.dumps([ddl, accounts, SEED, GENERATOR_VERSION])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def refresh(engine: Engine) -> None:
    """Create the tables the app gained since the build, and empty the ones it writes
    (call log, failed lookups), so every run starts from the same ledger."""
    create_schema(engine)
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name not in LOADED:
                conn.execute(table.delete())


def sqlite_path(accounts: int) -> Path:
    return OUT / f"ledger-{accounts}.sqlite3"


def _meta_path(db: Path) -> Path:
    return db.with_suffix(".json")


def _load_meta(path: Path) -> LedgerInfo | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["samples"] = [Sample(**s) for s in data["samples"]]
        return LedgerInfo(**data)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _fresh(info: LedgerInfo | None, fp: str, now: datetime) -> bool:
    return info is not None and info.fingerprint == fp and now - info.built < MAX_AGE


def verify(info: LedgerInfo, engine: Engine | None = None) -> None:
    """Check sampled balances through `ivr.db.balance`; raise if any differs."""
    own = engine is None
    engine = engine or make_engine(info.url)
    try:
        with Session(engine) as session:
            for s in info.samples:
                got = balance(session, s.contract, datetime.fromisoformat(s.at))
                if got != Decimal(s.expected):
                    raise RuntimeError(
                        f"ledger {info.url}: balance of {s.contract} at {s.at} is {got}, "
                        f"the generator wrote {s.expected}; rebuild with --force"
                    )
    finally:
        if own:
            engine.dispose()


# --- SQLite ------------------------------------------------------------------------


def build_sqlite(accounts: int, path: Path, progress: Progress) -> LedgerInfo:
    """Write a fresh SQLite ledger at `path` (built beside it, renamed when complete)."""
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    tmp = path.with_suffix(".building")
    for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{tmp}")
    create_schema(engine)
    fp = fingerprint(engine, accounts)
    # Secondary indexes are cheaper to build once, sorted, than to grow row by row.
    deferred = [i for i in Base.metadata.tables["entries"].indexes if not i.unique]
    with engine.begin() as conn:
        for index in deferred:
            conn.execute(text(f'DROP INDEX "{index.name}"'))
        # Monthly totals once after the load, not a trigger firing per row.
        for statement in totals.drop_trigger_ddl("sqlite"):
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    engine.dispose()

    db = sqlite3.connect(tmp, isolation_level=None)
    for pragma in (
        "journal_mode=OFF",
        "synchronous=OFF",
        "locking_mode=EXCLUSIVE",
        "temp_store=MEMORY",
        "cache_size=-1000000",
    ):
        db.execute(f"PRAGMA {pragma}")
    samples: list[Sample] = []
    entries = future = done = 0
    db.execute("BEGIN")
    for chunk in chunks(accounts, now, "sqlite"):
        db.executemany("INSERT INTO accounts (id, contract) VALUES (?, ?)", chunk.accounts)
        db.executemany(
            "INSERT INTO entries (account_id, posted_at, amount, kind, memo)"
            " VALUES (?, ?, ?, ?, ?)",
            chunk.entries,
        )
        entries += chunk.entry_count
        future += chunk.future
        samples.extend(chunk.samples)
        done += len(chunk.accounts)
        progress("load", done, accounts)
    db.execute("COMMIT")
    db.close()

    engine = make_engine(f"sqlite:///{tmp}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA cache_size=-1000000")
        for n, index in enumerate(deferred, 1):
            progress("index", n - 1, len(deferred))
            index.create(conn)
            progress("index", n, len(deferred))
        totals.rebuild(conn)
        for statement in totals.trigger_ddl("sqlite"):
            conn.exec_driver_sql(statement)
        conn.commit()
        # WAL is what the app asks for on connect; set it once here so two gunicorn
        # workers do not race to switch the journal mode on their first request.
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    engine.dispose()
    # A WAL left beside the old file (a process that did not close cleanly) would be
    # replayed into the new one and corrupt it.
    for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        stale.unlink(missing_ok=True)
    os.replace(tmp, path)
    info = LedgerInfo(
        url=f"sqlite:///{path}",
        accounts=accounts,
        entries=entries,
        future_entries=future,
        built_at=now.isoformat(),
        build_seconds=round(time.perf_counter() - started, 1),
        fingerprint=fp,
        samples=samples,
    )
    verify(info)
    _meta_path(path).write_text(json.dumps(asdict(info), indent=1), encoding="utf-8")
    return info


# --- PostgreSQL --------------------------------------------------------------------

MARKER = "bench_ledger"  # a one-row table saying this database holds a benchmark ledger


def pg_engine(url: str, schema: str, bulk: bool = False) -> Engine:
    """Return the app's engine for `url`, with `schema` first on the search path.

    `bulk` lifts the app's statement timeout (seconds are enough for a webhook, not for
    COPYing ten million rows or building their index).
    """
    engine = make_engine(url)

    @event.listens_for(engine, "connect")
    def _search_path(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
            if bulk:
                cursor.execute("SET statement_timeout TO 0")
        dbapi_connection.commit()

    return engine


def build_postgres(
    accounts: int, url: str, schema: str, progress: Progress, force: bool = False
) -> LedgerInfo:
    """Load the ledger into `schema` of the database at `url` with COPY, or reuse it.

    Refuses to touch a schema that holds ledger tables but no benchmark marker, so a
    real ledger is never dropped by mistake.
    """
    started = time.perf_counter()
    now = datetime.now(UTC).replace(microsecond=0)
    engine = pg_engine(url, schema, bulk=True)
    fp = fingerprint(engine, accounts)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        tables = set(
            conn.scalars(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            )
        )
        if tables - {MARKER} and MARKER not in tables:
            raise SystemExit(
                f"{url} schema {schema!r} already has tables {sorted(tables)} and no "
                f"{MARKER!r} marker: not a benchmark ledger, refusing to drop it. "
                "Point --postgres at a scratch database."
            )
        if MARKER in tables and not force:
            row = conn.execute(text(f"SELECT info FROM {MARKER}")).scalar()
            info = _info_from_json(row) if row else None
            if _fresh(info, fp, now):
                assert info is not None
                return info
        for table in sorted(tables):
            conn.execute(text(f'DROP TABLE IF EXISTS "{schema}"."{table}" CASCADE'))
        # The marker first, empty: a build that dies half-way is still known as ours.
        conn.execute(text(f"CREATE TABLE {MARKER} (info TEXT NOT NULL)"))
    create_schema(engine)
    deferred = [i for i in Base.metadata.tables["entries"].indexes if not i.unique]
    with engine.begin() as conn:
        for index in deferred:
            conn.execute(text(f'DROP INDEX "{index.name}"'))
        for statement in totals.drop_trigger_ddl("postgresql"):
            conn.exec_driver_sql(statement)

    samples: list[Sample] = []
    entries = future = done = 0
    raw = engine.raw_connection()
    try:
        dbapi: Any = raw.driver_connection
        with dbapi.cursor() as cur:
            with cur.copy("COPY accounts (id, contract) FROM STDIN") as copy:
                for first in range(1, accounts + 1, CHUNK):
                    ids = range(first, min(first + CHUNK, accounts + 1))
                    copy.write("".join(f"{i}\t{contract_for(i)}\n" for i in ids))
                    progress("copy accounts", ids[-1], accounts)
            with cur.copy(
                "COPY entries (account_id, posted_at, amount, kind, memo) FROM STDIN"
            ) as copy:
                for chunk in chunks(accounts, now, "postgresql"):
                    copy.write(chunk.copy_text)
                    entries += chunk.entry_count
                    future += chunk.future
                    samples.extend(chunk.samples)
                    done += len(chunk.accounts)
                    progress("copy entries", done, accounts)
            # Later inserts by the app must not collide with the ids COPY set.
            cur.execute("SELECT setval(pg_get_serial_sequence('accounts', 'id'), %s)", (accounts,))
        dbapi.commit()
    finally:
        raw.close()
    with engine.begin() as conn:
        for n, index in enumerate(deferred, 1):
            index.create(conn)
            progress("index", n, len(deferred))
        totals.rebuild(conn)
        for statement in totals.trigger_ddl("postgresql"):
            conn.exec_driver_sql(statement)
    # A production ledger is vacuumed and analysed by autovacuum; do it now so the
    # balance query gets its index-only scan (visibility map) and real statistics.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE accounts"))
        conn.execute(text("VACUUM ANALYZE entries"))
        conn.execute(text("VACUUM ANALYZE month_totals"))
    info = LedgerInfo(
        url=url,
        accounts=accounts,
        entries=entries,
        future_entries=future,
        built_at=now.isoformat(),
        build_seconds=round(time.perf_counter() - started, 1),
        fingerprint=fp,
        samples=samples,
    )
    verify(info, engine)
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {MARKER} VALUES (:i)"), {"i": json.dumps(asdict(info))})
    engine.dispose()
    return info


def _info_from_json(raw: str) -> LedgerInfo | None:
    try:
        data = json.loads(raw)
        data["samples"] = [Sample(**s) for s in data["samples"]]
        return LedgerInfo(**data)
    except (ValueError, TypeError, KeyError):
        return None


# --- entry points ------------------------------------------------------------------


def terminal_progress(label: str) -> Progress:
    """Report progress on stderr: a rewritten line on a terminal, every 10 % otherwise."""
    tty = sys.stderr.isatty()
    started = time.perf_counter()
    last = [-1]

    def report(stage: str, done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if not tty and pct // 10 == last[0] // 10 and done != total:
            return
        last[0] = pct
        elapsed = time.perf_counter() - started
        line = f"{label}: {stage} {done:,}/{total:,} ({pct}%) {elapsed:.0f}s"
        if tty:
            end = "\n" if done == total else ""
            print(f"\r{line}\033[K", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return report


def ensure_ledger(
    accounts: int, postgres: str | None = None, schema: str = "public", force: bool = False
) -> LedgerInfo:
    """Return a verified ledger of `accounts` accounts, building it only when needed."""
    label = f"ledger {accounts:,} accounts"
    if postgres:
        info = build_postgres(accounts, postgres, schema, terminal_progress(label), force)
        engine = pg_engine(info.url, schema)
        try:
            refresh(engine)
            verify(info, engine)
        finally:
            engine.dispose()
        return info
    OUT.mkdir(parents=True, exist_ok=True)
    path = sqlite_path(accounts)
    now = datetime.now(UTC)
    cached = _load_meta(_meta_path(path))
    if not force and path.exists() and cached is not None:
        probe = make_engine(f"sqlite:///{path}")
        fp = fingerprint(probe, accounts)
        probe.dispose()
        if _fresh(cached, fp, now) and cached.url == f"sqlite:///{path}":
            print(f"{label}: reusing {path.relative_to(ROOT)}", file=sys.stderr)
            _refresh_sqlite(cached)
            return cached
    print(f"{label}: building {path.relative_to(ROOT)}", file=sys.stderr)
    info = build_sqlite(accounts, path, terminal_progress(label))
    _refresh_sqlite(info)
    print(
        f"{label}: {info.entries:,} entries ({info.future_entries:,} future-dated) "
        f"in {info.build_seconds:.1f}s, {path.stat().st_size / 2**20:,.0f} MiB",
        file=sys.stderr,
    )
    return info


def _refresh_sqlite(info: LedgerInfo) -> None:
    engine = make_engine(info.url)
    try:
        refresh(engine)
        verify(info, engine)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000, help="default 1000000")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="load into this PostgreSQL database (a scratch one) instead of SQLite",
    )
    parser.add_argument("--schema", default="public", help="PostgreSQL schema (default public)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cached one fits")
    args = parser.parse_args(argv)
    info = ensure_ledger(args.accounts, args.postgres, args.schema, args.force)
    print(f"{info.url}: {info.accounts:,} accounts, {info.entries:,} entries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
