"""Profile the deepest webhook step (contract digits -> balance) in process.

    .venv/bin/python bench/profile_step.py                # the 1 000 000-account ledger
    .venv/bin/python bench/profile_step.py --accounts 1000 --requests 500

Calls the hotline through Flask's test client with signed requests (signature checking
on), for random existing contracts, and reports:
 - start-up: `import ivr` in a fresh interpreter and `create_app()`;
 - per request, unprofiled: the deepest step and the first step (/voice);
 - per request, under cProfile: cumulative time of the parts that matter (signature,
   queries, call-log write, commit, words, TwiML, prompt reloads, engine creation);
 - a pyinstrument call tree (when pyinstrument is installed) in bench/out/.
Findings go to bench/PROFILE.md by hand; this script only measures.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
for entry in (ROOT, BENCH):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

import build_ledger  # noqa: E402
from run import (  # noqa: E402
    SignedRequest,
    contract_step_path,
    deepest_requests,
    first_step_requests,
)

BASE = "http://127.0.0.1:8001"
TOKEN = "profile-token"

# label -> (file part, function name) patterns; the largest cumulative time among the
# matches counts, so a function that calls another of the same label is not added twice.
WATCH: dict[str, list[tuple[str, str]]] = {
    "whole request (test client)": [("werkzeug/test.py", "open")],
    "signature check, form read included": [("ivr/web/signature.py", "check_signature")],
    "form parsing (request.form)": [
        ("werkzeug/formparser.py", "parse"),
        ("ivr/web/__init__.py", "_load_form_data"),
    ],
    "contract lookup (LedgerView._read_compiled)": [("ivr/db/ledger.py", "_read_compiled")],
    "lockout query (failed_lookups_since)": [("ivr/db/hotline_tables.py", "failed_lookups_since")],
    "balance query (ledger.balance), all calls": [("ivr/db/ledger.py", "balance")],
    "call-log write (db.log_step)": [("ivr/db/hotline_tables.py", "log_step")],
    "session commit (Session.commit)": [("orm/session.py", "commit")],
    "SQL execution (Connection._execute_context)": [("engine/base.py", "_execute_context")],
    "SQLite driver (sqlite3 execute)": [("~", "<method 'execute' of 'sqlite3.Cursor' objects>")],
    "PostgreSQL driver (psycopg execute)": [("psycopg/cursor.py", "execute")],
    "SQLite commit (sqlite3 commit)": [("~", "<method 'commit' of 'sqlite3.Connection' objects>")],
    "connection checkout (pool connect)": [("sqlalchemy/pool/base.py", "_checkout")],
    "new DB connection (pool _create_connection)": [("pool/base.py", "__connect")],
    "engine creation (create_engine)": [("sqlalchemy/engine/create.py", "create_engine")],
    "amount in words (money.amount_in_words)": [("ivr/money.py", "amount_in_words")],
    "digits in words (money.digits_in_words)": [("ivr/money.py", "digits_in_words")],
    "flow (flow.step)": [("ivr/flow.py", "step")],
    "TwiML (twiml.render)": [("ivr/web/twiml.py", "render")],
    "prompt reload check (PromptLibrary._maybe_reload)": [
        ("ivr/prompts/library.py", "_maybe_reload")
    ],
    "prompt file parsing (tomllib.loads)": [("tomllib/_parser.py", "loads")],
    "phone number parsing (phonenumbers.parse)": [("phonenumbers/phonenumberutil.py", "parse")],
    "imports during requests (importlib _find_and_load)": [
        ("<frozen importlib._bootstrap>", "_find_and_load")
    ],
    "logging (Logger._log)": [("logging/__init__.py", "_log")],
}


def make_caller(client: Any, check: str) -> Callable[[SignedRequest], None]:
    def call(r: SignedRequest) -> None:
        response = client.post(
            r.path,
            data=r.body,
            content_type="application/x-www-form-urlencoded",
            headers={"X-Twilio-Signature": r.signature},
        )
        body = response.get_data(as_text=True)
        if response.status_code != 200 or check not in body:
            raise SystemExit(f"{r.path}: {response.status_code}\n{body[:500]}")

    return call


def timed(call: Callable[[SignedRequest], None], requests: Sequence[SignedRequest]) -> list[float]:
    times = []
    for r in requests:
        started = time.perf_counter()
        call(r)
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(label: str, times: Sequence[float]) -> str:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"{label}: mean {sum(times) / len(times):.2f} ms, p50 {median(times):.2f} ms, "
        f"p99 {p99:.2f} ms ({len(times)} requests)"
    )


def round_trips(
    engine: Any, call: Callable[[SignedRequest], None], requests: Sequence[SignedRequest]
) -> str:
    """Count what a step sends to the database: statements, BEGIN/COMMIT/ROLLBACK, checkouts.

    Counted at the driver, so statements run on the driver's cursor (the contract step's
    compiled lookup) count too: SQLite's trace callback sees every statement SQLite runs,
    pysqlite's implicit BEGIN and COMMIT included; on PostgreSQL psycopg's cursor
    executes are counted, and SQLAlchemy's transaction events stand in for BEGIN/COMMIT.
    The call-log batch (a background thread) is flushed first and left out: it is
    one INSERT per batch of steps, not per step.
    """
    from sqlalchemy import event

    call_log = next(iter(_apps)).extensions["ivr"].call_log if _apps else None
    if call_log is not None:
        call_log.flush()
    counts: Counter[str] = Counter()

    def count(text: str) -> None:
        if threading.current_thread() is threading.main_thread():
            counts[text.split(None, 1)[0].upper()] += 1

    sqlite = engine.dialect.name == "sqlite"
    hooks: list[tuple[Any, str, Any]] = [
        (engine.pool, "checkout", lambda *a: counts.update(["pool checkout"])),
    ]
    if sqlite:
        hooks += [
            (engine.pool, "checkout", lambda dbapi, *a: dbapi.set_trace_callback(count)),
            (engine.pool, "checkin", lambda dbapi, *a: dbapi and dbapi.set_trace_callback(None)),
        ]
    else:
        hooks += [
            (engine, "begin", lambda conn: counts.update(["BEGIN (SQLAlchemy transaction)"])),
            (engine, "commit", lambda conn: counts.update(["COMMIT"])),
            (engine, "rollback", lambda conn: counts.update(["ROLLBACK"])),
        ]
    patched = None
    if not sqlite:
        import psycopg

        patched = psycopg.Cursor.execute

        def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            count(str(query))
            return patched(self, query, *args, **kwargs)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
    for target, name, fn in hooks:
        event.listen(target, name, fn)
    try:
        for r in requests:
            call(r)
    finally:
        for target, name, fn in hooks:
            event.remove(target, name, fn)
        if patched is not None:
            import psycopg

            psycopg.Cursor.execute = patched  # type: ignore[method-assign]
    if call_log is not None:
        call_log.flush()
    n = len(requests)
    return ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(counts.items())) or "none"


_apps: list[Any] = []


def import_cost() -> str:
    code = "import time; t = time.perf_counter(); import ivr; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    seconds = float(out.stdout.strip().splitlines()[-1])
    detail = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ivr"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    rows = []
    for line in detail.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((int(parts[1]), parts[2].rstrip()))
    top = sorted(rows, reverse=True)[:12]
    listing = "\n".join(f"    {us / 1000:8.1f} ms  {name}" for us, name in top)
    return f"`import ivr` in a fresh interpreter: {seconds * 1000:.0f} ms; cumulative:\n{listing}"


def watched(stats: pstats.Stats, requests: int) -> list[tuple[str, float, int]]:
    """Return (label, cumulative ms per request, calls per request) for WATCH."""
    table: Any = stats.stats  # type: ignore[attr-defined]
    rows = []
    for label, patterns in WATCH.items():
        best_ct, best_calls = 0.0, 0
        for (file, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            for part, name in patterns:
                if part in file and func == name and ct > best_ct:
                    best_ct, best_calls = ct, nc
        rows.append((label, best_ct * 1000 / requests, round(best_calls / requests)))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--database-url", help="profile against this ledger instead")
    args = parser.parse_args(argv)
    print(import_cost())
    url = args.database_url or build_ledger.ensure_ledger(args.accounts).url
    started = time.perf_counter()
    from ivr import create_app

    app = create_app({"DATABASE_URL": url, "AUTH_TOKEN": TOKEN, "PUBLIC_URL": BASE})
    _apps.append(app)
    print(f"create_app(): {(time.perf_counter() - started) * 1000:.0f} ms (ivr already imported)")
    from ivr.simulate import InProcessTransport

    # The contract step's URL is found by walking a call, as bench/run.py does.
    path = contract_step_path(InProcessTransport(app, BASE), TOKEN)
    client = app.test_client()
    deep = make_caller(client, "рубл")
    first = make_caller(client, "<Gather")
    n = args.requests
    deepest = deepest_requests(BASE, TOKEN, path, args.accounts, n, seed=3)
    firsts = first_step_requests(BASE, TOKEN, n, seed=4)
    for r in deepest[:200]:  # warm: connections, caches, first-call imports
        deep(r)
    for r in firsts[:200]:
        first(r)

    print(summary("deepest step, unprofiled", timed(deep, deepest)))
    print(summary("first step, unprofiled", timed(first, firsts)))
    engine = app.extensions["ivr"].engine
    for label, caller, requests in (("deepest", deep, deepest), ("first", first, firsts)):
        trips = round_trips(engine, caller, requests[:200])
        print(f"{label} step, database work per request: {trips}")

    profiler = cProfile.Profile()
    profiler.enable()
    for r in deepest:
        deep(r)
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"\ndeepest step under cProfile (inflates call-heavy code), per request, n={n}:")
    print(f"{'':52} {'ms':>7} {'calls':>5}")
    for label, ms, calls in watched(stats, n):
        if calls:
            print(f"  {label:50} {ms:7.3f} {calls:5d}")
    OUT.mkdir(parents=True, exist_ok=True)
    stats.dump_stats(OUT / "profile-deepest.pstats")

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("\n(pyinstrument not installed: pip install pyinstrument for a call tree)")
        return 0
    sampler = Profiler(interval=0.0002)
    sampler.start()
    for r in deepest:
        deep(r)
    sampler.stop()
    text = sampler.output_text(unicode=True, color=False)
    (OUT / "profile-deepest.txt").write_text(text, encoding="utf-8")
    (OUT / "profile-deepest.html").write_text(sampler.output_html(), encoding="utf-8")
    print(f"\npyinstrument tree: {OUT / 'profile-deepest.txt'} (and .html)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
