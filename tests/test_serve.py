"""`ivr serve` as a real process: a DTMF script over HTTP with signature checking on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr import db
from ivr.simulate import HttpTransport, run_script
from ivr.simulate.script import parse_script
from tests.conftest import DEMO_CSV, database_url, fresh_schema

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
TOKEN = "serve-test-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(base: str, server: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"ivr serve exited with {server.returncode}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("ivr serve did not come up")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    url = database_url(tmp_path)
    engine = db.make_engine(url)
    fresh_schema(engine)
    db.import_csv(engine, DEMO_CSV)
    engine.dispose()
    port = free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKEN, "IVR_DATABASE_URL": url}
    env.pop("IVR_PUBLIC_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "ivr", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base, server)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_script_passes_over_http_with_signing(served: str) -> None:
    result = run_script(parse_script(SCRIPTS / "happy_path_ru.dtmf"), HttpTransport(served), TOKEN)
    assert result.passed, result.transcript()
    assert "пятьдесят шесть копеек" in result.transcript()


def test_the_served_hotline_refuses_an_unsigned_request(served: str) -> None:
    request = urllib.request.Request(served + "/voice", data=b"From=%2B73422000001")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 403


def test_a_script_signed_with_the_wrong_token_fails(served: str) -> None:
    script = parse_script(SCRIPTS / "debt.dtmf")
    result = run_script(script, HttpTransport(served), "not-the-token")
    assert not result.passed
    assert "403" in result.transcript() or any("403" in str(f) for f in result.failures)


# --- a production server with a ledger it cannot use ----------------------------------------


def test_gunicorn_with_a_ledger_it_cannot_open_stops_at_start_with_one_line(
    tmp_path: Path,
) -> None:
    """gunicorn 'ivr:create_app()' fails to boot saying why in one line, with no traceback."""
    env = {
        **os.environ,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "IVR_DATABASE_URL": f"sqlite:///{tmp_path / 'no-such-folder' / 'ledger.sqlite3'}",
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    done = subprocess.run(
        [str(gunicorn), "--bind", f"127.0.0.1:{free_port()}", "--workers", "1", "ivr:create_app()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    line = (
        f"cannot open the ledger, SQLite file {tmp_path / 'no-such-folder' / 'ledger.sqlite3'}:"
        f" the folder {tmp_path / 'no-such-folder'} does not exist; create it or fix"
        " IVR_DATABASE_URL"
    )
    # The worker says why in one line, as the commands do, and no traceback comes with it.
    assert f"Error: {line}" in done.stderr.splitlines(), done.stderr
    assert "Traceback" not in done.stderr
    assert "Worker failed to boot" in done.stderr
