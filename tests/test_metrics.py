"""GET /metrics: what is counted, who may scrape, and totals across gunicorn's workers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from ivr import create_app, db
from ivr.web import metrics
from tests.conftest import (
    AUTH_TOKEN,
    DEMO_CSV,
    Caller,
    database_url,
    engine_of,
    fresh_schema,
    sign,
)
from tests.test_serve import free_port

KNOWN = "590000000018"
TOKEN = "metrics-dashboard-token-0123"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(body: str) -> Samples:
    """Parse the text format into {(sample name, sorted labels): value}."""
    found: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def make_app(tmp_path: Path, **config: object) -> Flask:
    app = create_app(
        {
            "DATABASE_URL": database_url(tmp_path),
            "AUTH_TOKEN": AUTH_TOKEN,
            "METRICS": "1",
            "DASHBOARD_TOKEN": None,
            **config,
        }
    )
    engine = engine_of(app)
    fresh_schema(engine)
    db.import_csv(engine, DEMO_CSV)
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The hotline with /metrics on and no dashboard token: the scrape is open."""
    app = make_app(tmp_path)
    yield app
    engine_of(app).dispose()


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def balance_call(client: FlaskClient) -> Caller:
    call = Caller(client)
    call.start()
    for _ in range(3):
        call.press("1")
    call.press(KNOWN)
    return call


def test_metrics_are_off_unless_asked_for(tmp_path: Path) -> None:
    app = create_app({"DATABASE_URL": database_url(tmp_path), "METRICS": ""})
    assert app.test_client().get("/metrics").status_code == 404
    engine_of(app).dispose()


def test_calls_steps_and_balances_are_counted(client: FlaskClient) -> None:
    # Counters live for the process (as Prometheus wants), so a test looks at differences.
    before = scrape(client)
    for _ in range(3):
        balance_call(client).press("3")
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ivr_calls_started_total") == 3
    assert grew("ivr_balances_told_total") == 3
    assert grew("ivr_steps_total", state="answer", outcome="menu") == 3
    assert grew("ivr_steps_total", state="contract", outcome="balance_told") == 3
    assert grew("ivr_steps_total", state="after_balance", outcome="hung_up") == 3
    assert grew("ivr_webhook_seconds_count", route="/voice") == 3
    assert grew("ivr_webhook_seconds_count", route="/voice/step") == 15
    assert grew("ivr_promised_payments_total") == 0
    assert grew("ivr_apologies_total") == 0


def test_promised_payments_are_counted_by_their_outcome(app: Flask) -> None:
    before = scrape(app.test_client())
    with app.test_request_context("/voice/step"):
        metrics.step("after_balance", "promise_taken")
    after = scrape(app.test_client())
    assert (
        value(after, "ivr_promised_payments_total") - value(before, "ivr_promised_payments_total")
        == 1
    )


def test_refusals_apologies_and_ledger_errors_are_counted(app: Flask, client: FlaskClient) -> None:
    before = scrape(client)
    assert client.post("/voice", data={"From": "+73422000001"}).status_code == 403
    call = Caller(client)
    call.start()
    for _ in range(3):
        call.press("1")
    with engine_of(app).begin() as connection:
        connection.execute(text("DROP TABLE entries"))
    call.press(KNOWN)  # the balance query fails: the caller hears the apology
    after = scrape(client)
    assert (
        value(after, "ivr_signature_refusals_total") - value(before, "ivr_signature_refusals_total")
        == 1
    )
    assert value(after, "ivr_apologies_total") - value(before, "ivr_apologies_total") == 1
    assert value(after, "ivr_ledger_errors_total") - value(before, "ivr_ledger_errors_total") == 1
    # A refused request never reached a view: no call started, no latency measured.
    assert value(after, "ivr_calls_started_total") - value(before, "ivr_calls_started_total") == 1


def test_prompt_faults_are_a_gauge_by_file(tmp_path: Path) -> None:
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree(Path(__file__).resolve().parent.parent / "prompts", prompts)
    app = make_app(tmp_path, PROMPTS_DIR=str(prompts))
    client = app.test_client()
    assert value(scrape(client), "ivr_prompt_faults", file="en-US.toml") == 0
    broken = prompts / "en-US.toml"
    broken.write_text(broken.read_text(encoding="utf-8") + "\n[[[", encoding="utf-8")
    app.extensions["ivr"].prompts.check_interval_s = 0
    assert value(scrape(client), "ivr_prompt_faults", file="en-US.toml") >= 1
    engine_of(app).dispose()


def test_with_a_dashboard_token_the_scrape_needs_it(tmp_path: Path) -> None:
    app = make_app(tmp_path, DASHBOARD_TOKEN=TOKEN)
    client = app.test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic")
    assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    allowed = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert allowed.status_code == 200
    assert "ivr_calls_started_total" in allowed.get_data(as_text=True)
    engine_of(app).dispose()


def test_sweep_removes_the_directories_of_servers_gone(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    mine = tmp_path / f"ivr-metrics-{os.getpid()}-{metrics._started(os.getpid())}"
    stale = tmp_path / f"ivr-metrics-{gone.pid}-123"
    reused = tmp_path / f"ivr-metrics-{os.getpid()}-1"  # same pid, another start time
    other = tmp_path / "something-else"
    for directory in (mine, stale, reused, other):
        directory.mkdir()
    assert sorted(metrics.sweep(tmp_path)) == sorted([stale, reused])
    assert mine.exists() and other.exists()


def test_the_master_is_gunicorns_own_not_a_guess_from_a_command_line() -> None:
    from gunicorn.arbiter import Arbiter
    from gunicorn.workers.base import Worker

    def load(self: object) -> int | None:  # where gunicorn calls create_app from
        return metrics._gunicorn_master()

    worker = object.__new__(Worker)
    worker.ppid = 4242  # gunicorn gives each worker its master's pid
    assert load(worker) == 4242
    assert load(object.__new__(Arbiter)) == os.getpid()  # --preload: the master itself
    assert metrics._gunicorn_master() is None  # not under gunicorn


# --- gunicorn: several workers, one set of totals ------------------------------------------

WORKERS = 2
ROUND = 24  # calls sent at once, from a pool of threads
ALL_WORKERS_WITHIN_S = 30
# Runs gunicorn under a parent whose command line names gunicorn, as `tini -- gunicorn …`,
# a start script or supervisord would; passes SIGTERM on.
WRAPPER = (
    "import signal, subprocess, sys; server = subprocess.Popen(sys.argv[1:]);"
    " signal.signal(signal.SIGTERM, lambda *_: server.terminate()); sys.exit(server.wait())"
)


def post_signed(base: str, path: str, params: dict[str, str]) -> int:
    signature = sign(base + path, params)
    request = urllib.request.Request(
        base + path,
        data=urllib.parse.urlencode(params).encode(),
        headers={"X-Twilio-Signature": signature, "Connection": "close"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return int(response.status)


def answer_calls(base: str, first: int, count: int) -> None:
    """Start `count` calls at once (POST /voice), from 8 threads."""

    def start(number: int) -> int:
        params = {
            "CallSid": f"CA{number:032d}",
            "From": f"+7342200{number:04d}",
            "To": "+73422195195",
            "CallStatus": "ringing",
        }
        return post_signed(base, "/voice", params)

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(start, range(first, first + count))) == [200] * count


def calls_by_process(directory: Path) -> dict[int, float]:
    """Read each process's own count of answered calls from its file in the directory."""
    from prometheus_client.multiprocess import MultiProcessCollector

    found: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for metric in MultiProcessCollector.merge([str(path)]):
            for sample in metric.samples:
                if sample.name == "ivr_calls_started_total":
                    found[pid] = found.get(pid, 0.0) + sample.value
    return found


def wait_for(base: str, server: subprocess.Popen[bytes], pidfile: Path) -> int:
    """Wait until gunicorn answers; return its master's pid (from --pid)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1):
                return int(pidfile.read_text())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise AssertionError("gunicorn did not come up")


@pytest.mark.parametrize(
    "mode", ["no-dir", "no-dir-preload", "no-dir-preload-wrapped", "deployer-dir"]
)
def test_gunicorn_workers_add_up(tmp_path: Path, mode: str) -> None:
    url = database_url(tmp_path)
    engine = db.make_engine(url)
    fresh_schema(engine)
    engine.dispose()
    temp = tmp_path / "tmp"  # where the app makes its directory when none is given
    temp.mkdir()
    env = {
        **os.environ,
        "IVR_DATABASE_URL": url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "IVR_METRICS": "1",
        "TMPDIR": str(temp),
    }
    for variable in ("IVR_PUBLIC_URL", "IVR_DASHBOARD_TOKEN", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(variable, None)
    if mode == "deployer-dir":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "deployer")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    pidfile = tmp_path / "gunicorn.pid"
    command = [sys.executable, "-m", "gunicorn", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    command += ["--pid", str(pidfile), "--log-level", "debug"]
    command += ["--preload"] if "preload" in mode else []
    command = [sys.executable, "-c", WRAPPER, *command] if "wrapped" in mode else command
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as errors:
        server = subprocess.Popen(
            [*command, "ivr:create_app()"], env=env, stderr=errors, stdout=subprocess.DEVNULL
        )
    try:
        master = wait_for(base, server, pidfile)
        if mode == "deployer-dir":
            directory = tmp_path / "deployer"
            assert list(temp.glob("ivr-metrics-*")) == []
        else:
            # One directory, named after the master (not after the master's parent).
            directory = temp / f"ivr-metrics-{master}-{metrics._started(master)}"
            assert list(temp.glob("ivr-metrics-*")) == [directory]
        # /healthz answered when the first worker was ready; the other may be still booting
        # (gunicorn forks it up to 0.1 s later; without --preload it loads the app itself),
        # and a sync worker takes every connection waiting when it is done with one. So one
        # worker may take a whole round: rounds go on until each worker has answered some.
        calls = 0
        deadline = time.monotonic() + ALL_WORKERS_WITHIN_S
        while True:
            answer_calls(base, calls, ROUND)
            calls += ROUND
            workers = {pid for pid, n in calls_by_process(directory).items() if n and pid != master}
            if len(workers) == WORKERS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        scrapes = []
        for _ in range(6):  # each scrape is served by one worker or the other
            with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
                scrapes.append(samples(response.read().decode()))
    finally:
        server.terminate()
        server.wait(timeout=30)
        # pytest shows this only when the test fails.
        print(f"gunicorn's stderr ({log}), its end:\n{log.read_text(errors='replace')[-6000:]}")
    # Every worker answered calls, and each one's own count is part of the total.
    by_process = calls_by_process(directory)
    print(f"{calls} calls in rounds of {ROUND}, answered by process: {by_process}")
    assert len({pid for pid, n in by_process.items() if n}) == WORKERS, by_process
    assert master not in by_process or by_process[master] == 0  # --preload: its file, zeros
    assert sum(by_process.values()) == calls
    # So every scrape, whichever worker served it, says the sum, not one worker's count.
    for found in scrapes:
        assert value(found, "ivr_calls_started_total") == calls
        assert value(found, "ivr_steps_total", state="answer", outcome="menu") == calls
        assert value(found, "ivr_webhook_seconds_count", route="/voice") == calls
