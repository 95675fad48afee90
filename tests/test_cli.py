"""The `ivr` command: help everywhere, ledger commands, serve's refusal without a token."""

from __future__ import annotations

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
