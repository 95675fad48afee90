"""Time `ivr ledger import` (ivr.db.import_csv) on a generated billing export.

    .venv/bin/python bench/import_bench.py --entries 1000000
    .venv/bin/python bench/import_bench.py --entries 10000000 --postgres postgresql+psycopg://...

Writes a CSV of about `--entries` rows (the bench generator: ~10 entries per account, 5 %
future-dated) under bench/out/ (cached), imports it into an empty ledger (a fresh SQLite
file, or the PostgreSQL schema `bench_import`, dropped and recreated), and reports entries
per second. Then it imports the same file again, which must add nothing (idempotent).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
for entry in (ROOT, ROOT / "bench"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import build_ledger  # noqa: E402
from build_ledger import KINDS, MEMOS, contract_for  # noqa: E402
from sqlalchemy import Engine, event, text  # noqa: E402

from ivr.db import create_schema, import_csv, make_engine  # noqa: E402

SCHEMA = "bench_import"
TARGET = 150_000  # entries/s, issue 11


@dataclass(frozen=True)
class ImportResult:
    entries: int
    seconds: float
    again_seconds: float
    again_added: int
    # Seconds per SQL statement of the first import (its first 50 characters), summed.
    statements: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def csv_for(entries: int) -> Path:
    """Write (once) a billing export of about `entries` rows; return its path."""
    accounts = max(1, entries // 10)
    path = OUT / f"import-{accounts}.csv"
    if path.exists():
        return path
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime(2026, 11, 30, tzinfo=UTC)
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write("contract,posted_at,amount,kind,memo\n")
        for first in range(1, accounts + 1, build_ledger.CHUNK):
            last = min(first + build_ledger.CHUNK - 1, accounts)
            lines = []
            for account_id, rows in build_ledger.generate(first, last, now):
                contract = contract_for(account_id)
                for posted, kopecks, kind, memo in rows:
                    sign, whole = ("-", -kopecks) if kopecks < 0 else ("", kopecks)
                    stamp = build_ledger._sqlite_time(posted).replace(" ", "T") + "+00:00"
                    lines.append(
                        f"{contract},{stamp},{sign}{whole // 100}.{whole % 100:02d},"
                        f"{KINDS[kind]},{MEMOS[memo]}\n"
                    )
            out.write("".join(lines))
    tmp.replace(path)
    return path


def time_import(entries: int, postgres: str | None = None, quiet: bool = False) -> ImportResult:
    """Import the generated file into an empty ledger twice; time both."""
    path = csv_for(entries)
    if postgres:
        engine = build_ledger.pg_engine(postgres, SCHEMA, bulk=True)
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{SCHEMA}"'))
    else:
        db_path = OUT / "import-bench.sqlite3"
        for leftover in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
            leftover.unlink(missing_ok=True)
        engine = make_engine(f"sqlite:///{db_path}")
    progress = None if quiet else build_ledger.terminal_progress("import")
    try:
        create_schema(engine)
        statements = _timed_statements(engine)
        started = time.perf_counter()
        report = import_csv(
            engine, path, (lambda d, t: progress("rows", d, t)) if progress else None
        )
        seconds = time.perf_counter() - started
        timed = dict(statements)
        statements.clear()
        started = time.perf_counter()
        again = import_csv(engine, path)
        again_seconds = time.perf_counter() - started
    finally:
        if postgres:
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
        engine.dispose()
    return ImportResult(report.added, seconds, again_seconds, again.added, timed)


def _timed_statements(engine: Engine) -> dict[str, float]:
    """Sum the time of each statement the engine runs (not COPY's or executemany's data)."""
    spent: dict[str, float] = {}

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, *_args: Any) -> None:
        conn.info["import_bench_started"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        key = " ".join(statement.split())[:50]
        took = time.perf_counter() - conn.info.pop("import_bench_started")
        spent[key] = spent.get(key, 0.0) + took

    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--postgres", metavar="URL")
    parser.add_argument(
        "--phases", action="store_true", help="also print the time of the import's statements"
    )
    args = parser.parse_args()
    result = time_import(args.entries, args.postgres)
    verdict = "met" if result.rate >= TARGET else "MISSED"
    print(
        f"import: {result.entries:,} entries in {result.seconds:.1f} s = {result.rate:,.0f} "
        f"entries/s (target >= {TARGET:,}: {verdict}); again: {result.again_added} added "
        f"in {result.again_seconds:.1f} s"
    )
    if args.phases:
        for statement, seconds in sorted(result.statements.items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {seconds:6.2f} s  {statement}")
        rest = result.seconds - sum(result.statements.values())
        print(f"  {rest:6.2f} s  the rest: checking and staging the file, the commit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
