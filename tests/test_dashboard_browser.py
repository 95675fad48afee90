"""The dashboard in a real browser: headless Chromium against a served app with a day of calls.

The browser logs in with basic auth (the token as the password, in the URL), the numbers
are read from the DOM it rendered and compared with `ivr stats` for the same day, and a
screenshot is saved to docs/dashboard.png for the README. Chromium comes from Debian's
`chromium` package, its Russian from `chromium-l10n` (`.ci/run` installs both); without
Chromium this test fails rather than skips, so CI cannot pass without having looked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from tests.conftest import engine_of
from tests.test_dashboard import (
    DAY,
    TOKEN,
    agree_with_the_cli,
    cli_numbers,
    dashboard_app,
    day_stats,
    expected,
    read_page,
    seed_day,
    stats_cli,
)

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "dashboard.png"
WINDOW = "1440,1920"  # a laptop's width; tall enough for the whole page


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("no chromium: apt-get install chromium (as .ci/run does)")
    return found


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = dashboard_app(tmp_path)
    yield app
    engine_of(app).dispose()


@pytest.fixture
def served(app: Flask) -> Iterator[str]:
    """Serve the app on a free port in a thread, with a day of calls in its log."""
    seed_day(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on `url`, offline, with a fresh profile."""
    command = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        "--lang=ru-RU",
        f"--window-size={WINDOW}",
        f"--user-data-dir={profile}",
        *extra,
        url,
    ]
    # On Linux Chromium takes its language from LANGUAGE, not --lang (chromium-l10n has it).
    env = {**os.environ, "LANGUAGE": "ru"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_the_dashboard_in_chromium_shows_what_ivr_stats_says(
    app: Flask, served: str, tmp_path: Path
) -> None:
    url = f"http://operator:{TOKEN}@{served}/dashboard?day={DAY}"
    dom = browse(url, tmp_path / "profile-dom", "--dump-dom").stdout
    shown = read_page(dom)
    assert shown.values == expected(day_stats(app))
    agree_with_the_cli(shown, cli_numbers(stats_cli(app)))
    assert "Звонки по часам" in shown.text

    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    browse(url, tmp_path / "profile-shot", f"--screenshot={SCREENSHOT}")
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert SCREENSHOT.stat().st_size > 20_000  # a rendered page, not a blank one


def test_chromium_without_the_token_gets_no_numbers(served: str, tmp_path: Path) -> None:
    dom = browse(f"http://{served}/dashboard?day={DAY}", tmp_path / "profile", "--dump-dom").stdout
    assert read_page(dom).values == {}
