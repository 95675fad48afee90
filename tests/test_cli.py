"""The `ivr` command: help everywhere, ledger commands, serve's refusal without a token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ivr import db
from ivr.cli import main
from tests.conftest import DEMO_CSV, database_url, fresh_schema


@pytest.fixture
def db_url(tmp_path: Path) -> Iterator[str]:
    url = database_url(tmp_path)
    engine = db.make_engine(url)
    fresh_schema(engine)
    engine.dispose()
    yield url


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *all_commands(main)], ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_ledger_init_demo_then_balance(db_url: str) -> None:
    runner = CliRunner()
    init = runner.invoke(main, ["ledger", "init", "--demo", "--database-url", db_url])
    assert init.exit_code == 0, init.output
    assert "27 added" in init.output  # 12 with fixed dates, 15 dated around now
    again = runner.invoke(main, ["ledger", "init", "--demo", "--database-url", db_url])
    assert "0 added, 12 already there" in again.output  # the recent ones are not made twice
    result = runner.invoke(
        main, ["ledger", "balance", "590000000034", "--database-url", db_url, "--at", "2026-11-30"]
    )
    assert result.exit_code == 0, result.output
    assert "590000000034: -350.75 RUB as of 2026-11-30T00:00:00+00:00" in result.output


def test_balance_of_a_mistyped_contract_says_why(db_url: str) -> None:
    result = CliRunner().invoke(
        main, ["ledger", "balance", "590000000017", "--database-url", db_url]
    )
    assert result.exit_code == 2
    assert "check digit is wrong" in result.output


def test_balance_of_an_unknown_contract(db_url: str) -> None:
    result = CliRunner().invoke(
        main, ["ledger", "balance", "590000000075", "--database-url", db_url]
    )
    assert result.exit_code == 1
    assert "no contract 590000000075" in result.output


def test_import_reports_counts_and_is_idempotent(db_url: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["ledger", "import", str(DEMO_CSV), "--database-url", db_url])
    assert first.exit_code == 0, first.output
    assert "12 rows: 12 entries added, 0 already in the ledger; 6 new accounts" in first.output
    second = runner.invoke(main, ["ledger", "import", str(DEMO_CSV), "--database-url", db_url])
    assert "12 rows: 0 entries added, 12 already in the ledger; 0 new accounts" in second.output


def test_import_of_a_bad_file_names_the_line_and_imports_nothing(
    db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "contract,posted_at,amount,kind,memo\n"
        "590000000018,2026-11-01T00:00:00Z,1.00,payment,\n"
        "590000000018,2026-11-01T00:00:00Z,1.00,refund,\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["ledger", "import", str(bad), "--database-url", db_url])
    assert result.exit_code == 1
    assert f"{bad}:3: kind 'refund'" in result.output
    assert "Nothing was imported" in result.output
    check = CliRunner().invoke(
        main, ["ledger", "balance", "590000000018", "--database-url", db_url]
    )
    assert "no contract" in check.output


def test_serve_refuses_to_run_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 2
    assert "TWILIO_AUTH_TOKEN is not set" in result.output
    assert "--insecure" in result.output


# --- which ledger `ivr simulate` and `ivr call` use ----------------------------------------

OWN_CONTRACT = "590000099002"  # not in the demo ledger
OWN_LEDGER = (
    "contract,posted_at,amount,kind,memo\n"
    f"{OWN_CONTRACT},2026-01-01T00:00:00+00:00,777.00,payment,the tester's own\n"
)
HEARS_OWN_BALANCE = (
    "call from=+73422000091 to=+73422195195\n"
    f"press 111{OWN_CONTRACT}#\n"
    'expect "семьсот семьдесят семь рублей"\n'
)


@pytest.fixture
def own_ledger(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tester's ledger, imported with `ivr ledger import` as IVR_DATABASE_URL names it."""
    monkeypatch.delenv("IVR_DATABASE_URL", raising=False)
    csv = tmp_path / "own.csv"
    csv.write_text(OWN_LEDGER, encoding="utf-8")
    imported = CliRunner(env={"IVR_DATABASE_URL": db_url}).invoke(
        main, ["ledger", "import", str(csv)]
    )
    assert imported.exit_code == 0, imported.output
    check = CliRunner(env={"IVR_DATABASE_URL": db_url}).invoke(
        main, ["ledger", "balance", OWN_CONTRACT]
    )
    assert f"{OWN_CONTRACT}: 777.00 RUB" in check.output, check.output
    return db_url


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "own.dtmf"
    path.write_text(HEARS_OWN_BALANCE, encoding="utf-8")
    return path


def test_simulate_uses_the_ledger_ivr_database_url_names(own_ledger: str, script: Path) -> None:
    result = CliRunner(env={"IVR_DATABASE_URL": own_ledger}).invoke(main, ["simulate", str(script)])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == f"ledger: {db.masked_url(own_ledger)} (from IVR_DATABASE_URL)"


def test_simulate_uses_the_ledger_database_url_names(own_ledger: str, script: Path) -> None:
    # The option wins over the variable.
    env = {"IVR_DATABASE_URL": "sqlite:////nowhere/at/all.sqlite3"}
    result = CliRunner(env=env).invoke(
        main, ["simulate", "--database-url", own_ledger, "--quiet", str(script)]
    )
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[0]
        == f"ledger: {db.masked_url(own_ledger)} (from --database-url)"
    )


def test_simulate_without_either_uses_a_fresh_demo_copy(own_ledger: str, script: Path) -> None:
    result = CliRunner().invoke(main, ["simulate", "--quiet", str(script)])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("ledger: a fresh copy of the demo ledger (sqlite:///")
    assert "Договор с таким номером не найден" in result.output


def test_call_uses_the_ledger_ivr_database_url_names(own_ledger: str) -> None:
    result = CliRunner(env={"IVR_DATABASE_URL": own_ledger}).invoke(
        main, ["call"], input=f"111\n{OWN_CONTRACT}#\n"
    )
    assert result.exit_code == 0, result.output
    assert (
        result.output.splitlines()[0]
        == f"ledger: {db.masked_url(own_ledger)} (from IVR_DATABASE_URL)"
    )
    assert "семьсот семьдесят семь рублей" in result.output


def test_simulate_against_a_server_refuses_a_database_url(script: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["simulate", "--url", "http://127.0.0.1:9", "--database-url", "sqlite://", str(script)],
    )
    assert result.exit_code == 2
    assert "the server's own ledger" in result.output


# --- a setup that cannot work: one line, not a traceback -------------------------------------

PASSWORD = "s3cret-pw"
# (id, IVR_DATABASE_URL, what the line must say) for a setup that cannot work. With trust
# authentication on the test server a wrong password is not refused, so a database and a
# role that do not exist stand in for it: the same refusal by the server, after it answered.
BAD_SETUPS = [
    ("missing-driver", f"postgresql+psycopg://ivr:{PASSWORD}@127.0.0.1:5432/ledger",
     ["driver psycopg", "not installed", "pip install 'ivr-balance-hotline[postgres]'",
      "database ledger on 127.0.0.1:5432"]),
    ("driver-not-installed", f"postgresql+pg8000://ivr:{PASSWORD}@127.0.0.1:5432/ledger",
     ["driver pg8000", "pip install 'ivr-balance-hotline[postgres]'"]),
    ("unreachable", f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:1/ledger",
     ["cannot reach the ledger", "database ledger on 127.0.0.1:1", "Connection refused"]),
    ("no-such-database", f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/no_such_db",
     ["database no_such_db on 127.0.0.1:5432", 'database "no_such_db" does not exist']),
    ("no-such-role", f"postgresql+psycopg://nobody_here:{PASSWORD}@127.0.0.1:5432/postgres",
     ["as nobody_here", 'role "nobody_here" does not exist']),
    ("sqlite-folder-missing", "sqlite:////no/such/folder/ledger.sqlite3",
     ["SQLite file /no/such/folder/ledger.sqlite3", "the folder /no/such/folder does not exist"]),
    ("not-a-url", f"ivr:{PASSWORD}@db.example/ledger", ["is not a database URL"]),
    ("unknown-driver", f"postgresql+nodriver://ivr:{PASSWORD}@db.example/ledger",
     ["no driver", "postgresql+nodriver"]),
]  # fmt: skip
SERVER_SETUPS = {"unreachable", "no-such-database", "no-such-role"}  # psycopg meets a server


def commands(tmp_path: Path) -> list[list[str]]:
    dtmf = tmp_path / "one.dtmf"
    dtmf.write_text("call\npress 111\n", encoding="utf-8")
    return [
        ["ledger", "init"],
        ["ledger", "import", str(DEMO_CSV)],
        ["ledger", "balance", "590000000018"],
        ["stats"],
        ["serve", "--insecure"],
        ["simulate", str(dtmf)],
        ["call"],
    ]


def postgres_answers() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize(("case", "url", "says"), BAD_SETUPS, ids=[c[0] for c in BAD_SETUPS])
def test_a_bad_setup_is_one_line_for_every_command(
    case: str, url: str, says: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if case in SERVER_SETUPS - {"unreachable"} and not postgres_answers():
        pytest.skip("needs a PostgreSQL server on 127.0.0.1:5432")
    if case == "missing-driver":
        # Its import fails here as it does where psycopg is not installed.
        monkeypatch.setitem(sys.modules, "psycopg", None)
    for command in commands(tmp_path):
        result = CliRunner(env={"IVR_DATABASE_URL": url, "TWILIO_AUTH_TOKEN": None}).invoke(
            main, command, input=""
        )
        assert result.exit_code == 1, (command, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (command, result.exception)
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1, (command, result.output)
        (line,) = errors
        for words in [*says, "IVR_DATABASE_URL"]:
            assert words in line, (command, words, line)
        assert PASSWORD not in result.output, (command, result.output)
        assert "Traceback" not in result.output


def test_a_bad_database_url_option_names_the_option(tmp_path: Path) -> None:
    url = "sqlite:////no/such/folder/ledger.sqlite3"
    for command in commands(tmp_path):
        if command[0] in ("ledger", "stats", "serve"):
            command = [*command, "--database-url", url]
        else:
            command = [command[0], "--database-url", url, *command[1:]]
        result = CliRunner().invoke(main, command, input="")
        assert result.exit_code == 1, (command, result.output)
        assert "fix --database-url" in result.output, (command, result.output)
        assert "IVR_DATABASE_URL" not in result.output


def test_the_installed_command_says_a_missing_driver_in_one_line(tmp_path: Path) -> None:
    """The real `ivr` in a process where psycopg cannot be imported, as if not installed."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class NoPsycopg:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'psycopg':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoPsycopg())\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "IVR_DATABASE_URL": f"postgresql+psycopg://ivr:{PASSWORD}@db.example:5432/ledger",
    }
    ivr = Path(sys.executable).parent / "ivr"
    done = subprocess.run(
        [str(ivr), "ledger", "init"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "Error: the ledger in IVR_DATABASE_URL, PostgreSQL database ledger on db.example:5432 as"
        " ivr, needs the driver psycopg, which is not installed:"
        " pip install 'ivr-balance-hotline[postgres]'\n"
    )
