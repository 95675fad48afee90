"""The hotline installed as a deployer does: from a built wheel, run outside the checkout.

The wheel is built offline from a copy of the sources (`--no-build-isolation`, with the
setuptools of the test extra; a copy, so no stale `build/` of the checkout gets in) and
installed with `--no-deps` into a fresh venv. Its dependencies come from this venv through
a .pth file rather than from the package index: seconds instead of a minute, no network,
and exactly the versions the rest of the suite runs on. Nothing of the checkout is on the
fresh venv's path: it must find its files in its home folder, filled from the wheel.
"""

from __future__ import annotations

import os
import shutil
import site
import socket
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
# What a build needs; a file the build also needs and this list lacks fails it loudly.
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "ivr", "prompts", "data"]
SCRIPT = """\
call from=+73422000001 to=+73422195195
expect "Здравствуйте"
press 1
press 1
press 1
press 590000000018#
expect "рубл"
"""


@dataclass(frozen=True)
class Installed:
    """A fresh venv with the wheel installed, and a place outside the checkout to run it."""

    venv: Path
    site_packages: Path
    workdir: Path

    def ivr(self, *args: str, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run the installed `ivr` command as a user whose home directory is `home`."""
        return subprocess.run(
            [str(self.venv / "bin" / "ivr"), *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=user_environment(home),
            timeout=60,
        )


def user_environment(home: Path) -> dict[str, str]:
    """Return this environment as a new user's: their own HOME, no IVR_* settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("IVR_") and name not in ("PYTHONPATH", "XDG_DATA_HOME")
    }
    env["HOME"] = str(home)
    return env


def package_files(installed: Installed) -> set[Path]:
    """List the installed package's files, less the bytecode Python caches next to them."""
    package = installed.site_packages / "ivr"
    return {path for path in package.rglob("*") if "__pycache__" not in path.parts}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    sources = root / "sources"
    sources.mkdir()
    for name in SOURCES:
        source = REPOSITORY / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.sqlite3*", "_defaults")
            shutil.copytree(source, sources / name, ignore=ignore)
        else:
            shutil.copy2(source, sources / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-w", str(root / "wheels"), str(sources)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (root / "wheels").glob("ivr_balance_hotline-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    site_packages = Path(where.stdout.strip())
    # After the install, so that pip saw only the fresh venv.
    (site_packages / "suite_dependencies.pth").write_text("\n".join(site.getsitepackages()))
    workdir = root / "elsewhere"
    workdir.mkdir()
    return Installed(venv, site_packages, workdir)


@pytest.fixture
def user_home(tmp_path: Path) -> Path:
    home = tmp_path / "user"
    home.mkdir()
    return home


def test_the_installed_package_is_the_wheel_not_the_checkout(
    installed: Installed, user_home: Path
) -> None:
    python = installed.venv / "bin" / "python"
    found = subprocess.run(
        [str(python), "-c", "import ivr; print(ivr.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed.workdir,
        env=user_environment(user_home),
        check=True,
    )
    assert Path(found.stdout.strip()).parent == installed.site_packages / "ivr"
    assert (installed.site_packages / "ivr" / "_defaults" / "prompts" / "ru-RU.toml").is_file()


def test_prompts_check_fills_the_users_home_with_the_default_files(
    installed: Installed, user_home: Path
) -> None:
    before = package_files(installed)
    result = installed.ivr("prompts", "check", home=user_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 files OK" in result.stdout
    home = user_home / ".local" / "share" / "ivr-hotline"
    shipped = [Path("prompts/ru-RU.toml"), Path("prompts/en-US.toml"), Path("data/hotline.toml")]
    shipped += [Path("data/demo_ledger.csv"), Path("data/demo_recent.csv")]
    for name in shipped:
        assert (home / name).read_bytes() == (REPOSITORY / name).read_bytes()
    assert package_files(installed) == before  # nothing written into site-packages


def test_simulate_completes_a_call_in_process(installed: Installed, user_home: Path) -> None:
    script = installed.workdir / "balance.dtmf"
    script.write_text(SCRIPT, encoding="utf-8")
    result = installed.ivr("simulate", str(script), home=user_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 0 failed" in result.stdout
    assert "одна тысяча двести тридцать четыре рубля" in result.stdout


def test_call_reads_keys_and_speaks_the_balance(installed: Installed, user_home: Path) -> None:
    result = installed.ivr("call", home=user_home, stdin="1\n1\n1\n590000000018#\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "одна тысяча двести тридцать четыре рубля" in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(installed: Installed, user_home: Path) -> Iterator[tuple[str, Path]]:
    """`ivr serve --insecure` of the installed package; the URL and its stderr's file."""
    port = free_port()
    log = user_home / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [str(installed.venv / "bin" / "ivr"), "serve", "--insecure", "--port", str(port)],
            cwd=installed.workdir,
            env=user_environment(user_home),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "ivr serve did not come up"
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield base, log
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_answers_a_call_from_the_users_home(
    served: tuple[str, Path], user_home: Path
) -> None:
    base, log = served
    request = urllib.request.Request(
        base + "/voice", data=b"From=%2B73422000001&To=%2B73422195195&CallSid=CA1"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        root = ET.fromstring(response.read())
    said = " ".join(say.text or "" for say in root.iter("Say"))
    assert "Здравствуйте" in said
    home = user_home / ".local" / "share" / "ivr-hotline"
    assert f"Hotline home: {home}" in log.read_text()
    assert (home / "data" / "ledger.sqlite3").is_file()  # the demo ledger, made on first run
