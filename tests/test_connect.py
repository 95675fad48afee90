"""Opening the ledger: a setup that cannot work is one line saying what, where and what to fix."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from ivr import create_app, db
from ivr.errors import ConfigError
from tests.conftest import database_url

PASSWORD = "s3cret-pw"


def test_a_good_ledger_opens_and_holds_no_connection(tmp_path: Path) -> None:
    engine = db.open_ledger(database_url(tmp_path))
    try:
        assert engine.pool.checkedout() == 0  # nothing a forked worker could share
        with engine.connect():
            pass
    finally:
        engine.dispose()


def test_an_in_memory_ledger_is_not_connected_to_ahead(tmp_path: Path) -> None:
    engine = db.open_ledger("sqlite://")
    assert engine.url.database is None
    engine.dispose()


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "sqlite:////no/such/folder/ledger.sqlite3",
            "cannot open the ledger, SQLite file /no/such/folder/ledger.sqlite3: the folder"
            " /no/such/folder does not exist; create it or fix IVR_DATABASE_URL",
        ),
        (
            f"postgresql+pg8000://ivr:{PASSWORD}@db.example/ledger",
            "the ledger in IVR_DATABASE_URL, PostgreSQL database ledger on db.example as ivr,"
            " needs the driver pg8000, which is not installed: pip install pg8000, or write"
            " IVR_DATABASE_URL as postgresql+psycopg://… and"
            " pip install 'ivr-balance-hotline[postgres]'",
        ),
        (
            f"ivr:{PASSWORD}@db.example/ledger",
            "IVR_DATABASE_URL is not a database URL ('ivr:***@db.example/ledger'): write it like"
            " postgresql+psycopg://user@host:5432/database or sqlite:///path/ledger.sqlite3",
        ),
    ],
    ids=["sqlite-folder-missing", "driver-not-installed", "not-a-url"],
)
def test_a_ledger_that_cannot_be_opened_is_one_line(url: str, line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        db.open_ledger(url)
    assert str(refused.value) == line
    assert PASSWORD not in str(refused.value)


def test_a_missing_psycopg_says_which_extra_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if it were not installed
    with pytest.raises(ConfigError) as refused:
        db.open_ledger(
            f"postgresql+psycopg://ivr:{PASSWORD}@db.example:5432/ledger", "--database-url"
        )
    assert str(refused.value) == (
        "the ledger in --database-url, PostgreSQL database ledger on db.example:5432 as ivr,"
        " needs the driver psycopg, which is not installed:"
        " pip install 'ivr-balance-hotline[postgres]'"
    )


def test_an_unreachable_server_is_told_apart() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(db.LedgerUnreachable) as unreachable:
        db.open_ledger(f"postgresql+psycopg://ivr:{PASSWORD}@127.0.0.1:1/ledger")
    assert str(unreachable.value) == (
        "cannot reach the ledger, PostgreSQL database ledger on 127.0.0.1:1 as ivr:"
        " Connection refused; check IVR_DATABASE_URL"
    )


def test_create_app_refuses_a_ledger_it_cannot_open(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "ledger.sqlite3"
    with pytest.raises(ConfigError, match="the folder .*no-such-folder does not exist"):
        create_app({"DATABASE_URL": f"sqlite:///{missing}", "AUTH_TOKEN": None})


def test_create_app_starts_while_the_server_is_away(caplog: pytest.LogCaptureFixture) -> None:
    """A worker restarting during a database outage comes up and apologises to callers."""
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://ivr:{PASSWORD}@127.0.0.1:1/ledger"
    with caplog.at_level(logging.WARNING):
        app = create_app({"DATABASE_URL": url, "AUTH_TOKEN": None})
    app.extensions["ivr"].engine.dispose()
    (record,) = [r for r in caplog.records if r.name == "ivr.db.connect"]
    assert record.getMessage() == (
        "cannot reach the ledger, PostgreSQL database ledger on 127.0.0.1:1 as ivr: Connection"
        " refused; check IVR_DATABASE_URL; starting anyway, callers hear the apology until it"
        " answers"
    )


def test_masked_url_hides_only_the_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    assert db.masked_url(url) == url
    assert db.masked_url(f"postgresql+psycopg://ivr:{PASSWORD}@db.example:5432/ledger") == (
        "postgresql+psycopg://ivr:***@db.example:5432/ledger"
    )
    assert db.masked_url(f"no url://ivr:{PASSWORD}@db") == "no url://ivr:***@db"
