"""Prometheus metrics: `GET /metrics` when `IVR_METRICS=1`, counted across server processes.

Under gunicorn each worker counts for itself, so prometheus_client's multiprocess mode is
always used under gunicorn: every worker writes its counts to files in one directory and a
scrape, served by any worker, adds them all up.

- `PROMETHEUS_MULTIPROC_DIR` set by the deployer: used as it is. prometheus_client's rule
  applies: empty it before the server starts (e.g. `ExecStartPre=` in systemd).
- Not set, under gunicorn: a directory per gunicorn master is made in the temp folder,
  `ivr-metrics-<master pid>-<its start time>`. Without `--preload` each worker runs
  `create_app` after the fork and takes its master's pid from gunicorn's worker object;
  with `--preload` the master runs it (inside gunicorn's arbiter) and sets the variable,
  which the workers inherit. Which of the two is running is read from gunicorn's own
  objects on the call stack, never guessed from a command line: the master's parent
  (a shell, tini, supervisord, pytest) may well mention gunicorn in its own. Directories
  of masters that are no longer running are removed when the next one starts.
- Not set, one process (`ivr serve`, tests): plain in-process counters.

prometheus_client decides between in-process and file-backed values when it is first
imported, so it is imported here only in `install`, after the directory is settled.

Protection: with `IVR_DASHBOARD_TOKEN` set, /metrics wants the same token (basic or
bearer, see the dashboard); without it /metrics is open, as Prometheus expects on an
internal port. Never expose an open /metrics to the internet.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask, Response, current_app, g, request

from ivr import db, flow
from ivr.prompts import PromptLibrary
from ivr.stats import PROMISE_TAKEN
from ivr.web import dashboard
from ivr.web.services import services, under_gunicorn

if TYPE_CHECKING:
    from types import FrameType

    from prometheus_client import CollectorRegistry, Counter, Histogram
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DIR_PREFIX = "ivr-metrics-"
# Webhook latency: most steps take milliseconds; Twilio gives up on a webhook at 15 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class Metrics:
    """The hotline's metrics in this process (created once, shared by every app in it)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(name, doc, labelnames=tuple(labels), registry=registry)

        self.registry = registry
        self.calls_started = counter("ivr_calls_started", "Calls answered (POST /voice).")
        self.steps = counter(
            "ivr_steps", "Webhook steps by the state keys were pressed in and the outcome.",
            ("state", "outcome"),
        )  # fmt: skip
        self.balances_told = counter("ivr_balances_told", "Balances told to callers.")
        self.promised_payments = counter(
            "ivr_promised_payments", "Promised payments taken by phone."
        )
        self.apologies = counter(
            "ivr_apologies", "Webhook failures the caller heard an apology for."
        )
        self.ledger_errors = counter("ivr_ledger_errors", "Apologies caused by a database error.")
        self.refused = counter(
            "ivr_signature_refusals", "Webhook requests refused with 403 (bad or no signature)."
        )
        self.latency: Histogram = Histogram(
            "ivr_webhook_seconds",
            "Time to answer a webhook, by route.",
            labelnames=("route",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


_metrics: Metrics | None = None


def install(app: Flask) -> None:
    """Serve /metrics and count requests when METRICS (IVR_METRICS) is on."""
    app.config.setdefault("METRICS", os.environ.get("IVR_METRICS", ""))
    if str(app.config["METRICS"]).strip().lower() not in ("1", "true", "yes", "on"):
        return
    global _metrics
    if _metrics is None:
        _metrics = _create()
    app.extensions["ivr_metrics"] = _metrics
    app.before_request(_start_clock)
    app.after_request(_count_request)
    app.add_url_rule("/metrics", "metrics", view_func=scrape, methods=["GET"])


def _create() -> Metrics:
    """Settle the multiprocess directory, then import prometheus_client and make the metrics."""
    directory = multiprocess_dir()
    if directory is not None:
        os.environ[MULTIPROC_ENV] = str(directory)
    from prometheus_client import CollectorRegistry, values

    if directory is not None and values.ValueClass is values.MutexValue:
        # Imported before the variable was set (by some other module): counting per
        # process would make every scrape wrong, so refuse to start instead.
        raise RuntimeError(
            "prometheus_client was imported before the metrics directory was set; "
            f"set {MULTIPROC_ENV} in the environment of the server"
        )
    return Metrics(CollectorRegistry(auto_describe=True))


def multiprocess_dir() -> Path | None:
    """Return the directory the server's processes share their counts in, None for one process."""
    given = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given)
    if not under_gunicorn():
        return None
    master = _gunicorn_master()
    if master is None:
        master = os.getpid()
        log.warning(
            "cannot tell this process's gunicorn master: /metrics counts this process only;"
            " set %s to a directory the server's processes share",
            MULTIPROC_ENV,
        )
    root = Path(tempfile.gettempdir())
    sweep(root)
    directory = root / f"{DIR_PREFIX}{master}-{_started(master)}"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def sweep(root: Path) -> list[Path]:
    """Remove the metrics directories of gunicorn masters that are no longer running."""
    removed = []
    for directory in root.glob(f"{DIR_PREFIX}*"):
        pid, _, started = directory.name.removeprefix(DIR_PREFIX).partition("-")
        if not pid.isdigit() or (_alive(int(pid)) and _started(int(pid)) == started):
            continue
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _gunicorn_master() -> int | None:
    """Return the pid of the gunicorn master loading the app in this process, None if unknown.

    gunicorn loads the app either in a worker after the fork (`Worker.init_process`, any
    worker class), and the worker knows its master as `ppid`, or with `--preload` in the
    master itself before it forks (`Arbiter.setup`). Whichever of the two is on the call
    stack says which; the parent's command line would not (`tini -- gunicorn …` is the
    parent of a master, not one).
    """
    arbiter = getattr(sys.modules.get("gunicorn.arbiter"), "Arbiter", None)
    worker = getattr(sys.modules.get("gunicorn.workers.base"), "Worker", None)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        owner = frame.f_locals.get("self")
        if worker is not None and isinstance(owner, worker):
            ppid = getattr(owner, "ppid", None)
            return ppid if isinstance(ppid, int) else os.getppid()
        if arbiter is not None and isinstance(owner, arbiter):
            return os.getpid()
        frame = frame.f_back
    return None


def _started(pid: int) -> str:
    """Return a process's start time (clock ticks after boot), so a reused pid differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


# --- counting ------------------------------------------------------------------------------


def _current() -> Metrics | None:
    """Return the metrics when the current app counts, else None."""
    if _metrics is None:  # no app of this process counts: skip the app lookup (every step)
        return None
    found = current_app.extensions.get("ivr_metrics")
    return found if isinstance(found, Metrics) else None


def step(state: str | None, outcome: str) -> None:
    """Count one webhook step of a call (hook: where the app logs a step)."""
    counted = _current()
    if counted is None:
        return
    counted.steps.labels(state or "answer", outcome).inc()
    if outcome == flow.Outcome.BALANCE_TOLD.value:
        counted.balances_told.inc()
    elif outcome == PROMISE_TAKEN:
        counted.promised_payments.inc()


def apology(error: BaseException) -> None:
    """Count a webhook failure that ended in the apology (hook: the app's error handler)."""
    counted = _current()
    if counted is None or not request.path.startswith("/voice"):
        return
    counted.apologies.inc()
    if db.is_database_error(error):
        counted.ledger_errors.inc()


def _start_clock() -> None:
    g.ivr_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    counted = _current()
    if counted is None or not request.path.startswith("/voice"):
        return response
    if response.status_code == 403:
        counted.refused.inc()  # the signature check refused it before any view ran
        return response
    started = g.pop("ivr_started", None)
    if started is not None:
        route = request.url_rule.rule if request.url_rule is not None else "other"
        counted.latency.labels(route).observe(time.perf_counter() - started)
    if request.path == "/voice" and response.status_code == 200:
        counted.calls_started.inc()
    return response


# --- the scrape ----------------------------------------------------------------------------


def scrape() -> Response:
    """Answer Prometheus: every process's counts added up, and this process's prompt faults."""
    expected = dashboard.token()
    if expected is not None and not dashboard.authorised(expected):
        return dashboard.challenge()
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    counted = _current()
    assert counted is not None
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(counted.registry)
    registry.register(PromptFaults(services().prompts))
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})


class PromptFaults:
    """A gauge read at scrape time: the faults of prompt files whose last edit was refused."""

    def __init__(self, library: PromptLibrary) -> None:
        self.library = library

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        gauge = GaugeMetricFamily(
            "ivr_prompt_faults",
            "Faults in prompt files the server refused to reload (it speaks the last good one).",
            labels=["file"],
        )
        for name, found in self.library.faults.items():
            gauge.add_metric([name], len(found))
        yield gauge
