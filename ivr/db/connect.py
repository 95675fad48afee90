"""Open the configured ledger, or say in one line why it cannot be opened.

A deployer's mistake (no driver installed, a URL that is not one, a wrong password, a
database or role that does not exist, an SQLite file in a folder that does not exist)
becomes a `ConfigError` saying what is wrong, where (host and database, never the
password) and which setting to fix, instead of a driver's traceback. A server that does
not answer is told apart (`LedgerUnreachable`): a command gives up, while a server process
starts anyway and apologises to callers until the database is back, so that a database
blip during a worker restart cannot take the whole hotline down.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from ivr.db.engine import make_engine
from ivr.errors import ConfigError

log = logging.getLogger(__name__)

DATABASE_VARIABLE = "IVR_DATABASE_URL"
POSTGRES_EXTRA = "pip install 'ivr-balance-hotline[postgres]'"
# The drivers the project's `postgres` extra installs (psycopg 3, as `postgresql+psycopg://`).
EXTRA_DRIVERS = frozenset({"psycopg", "psycopg_binary", "psycopg_c"})
# Words of a server that answered and refused: a fault of the settings, not of the network.
_REFUSALS = ("password", "authentication", "does not exist", "permission denied")


class LedgerUnreachable(ConfigError):
    """The ledger's database server did not answer (refused, timed out, unknown host)."""


def open_ledger(url: str, setting: str = DATABASE_VARIABLE) -> Engine:
    """Create the ledger's engine and connect once; raise ConfigError naming `setting`.

    The connection is given back to the pool's dispose, so that a server forking workers
    after this (gunicorn --preload) shares no connection with them.
    """
    parsed = _parse(url, setting)
    where = describe_ledger(parsed)
    fix = f"; check {setting}"
    if parsed.get_backend_name() == "sqlite":
        folder = _sqlite_folder(parsed)
        if folder is not None and not folder.is_dir():
            raise ConfigError(
                f"cannot open the ledger, {where}: the folder {folder} does not exist;"
                f" create it or fix {setting}"
            )
    try:
        engine = make_engine(url)
    except ModuleNotFoundError as error:
        raise ConfigError(_missing_driver(parsed, error.name or str(error), setting)) from None
    except NoSuchModuleError:
        raise ConfigError(
            f"SQLAlchemy has no driver for {parsed.drivername!r} ({where}): the ledger takes"
            f" postgresql+psycopg://… or sqlite:///…; fix {setting}"
        ) from None
    if _in_memory(parsed):
        return engine
    try:
        with engine.connect():
            pass
    except DBAPIError as error:
        engine.dispose()
        why = _server_reason(error)
        if parsed.get_backend_name() != "sqlite" and not any(w in why for w in _REFUSALS):
            raise LedgerUnreachable(f"cannot reach the ledger, {where}: {why}{fix}") from None
        raise ConfigError(f"cannot open the ledger, {where}: {why}{fix}") from None
    engine.dispose()
    return engine


def open_server_ledger(url: str, setting: str = DATABASE_VARIABLE) -> Engine:
    """Open the ledger for a server: refuse a wrong setup, but start while it is unreachable."""
    try:
        return open_ledger(url, setting)
    except LedgerUnreachable as error:
        log.warning("%s; starting anyway, callers hear the apology until it answers", error)
        return make_engine(url)


def describe_ledger(url: URL) -> str:
    """Name a ledger as a person would look for it: the engine, host, database and user."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        database = url.database or ""
        if _in_memory(url):
            return "SQLite in memory"
        return f"SQLite file {Path(database).absolute()}"
    name = {"postgresql": "PostgreSQL"}.get(backend, backend)
    host = f"{url.host or 'localhost'}" + (f":{url.port}" if url.port else "")
    user = f" as {url.username}" if url.username else ""
    return f"{name} database {url.database or '(none named)'} on {host}{user}"


def masked_url(url: str) -> str:
    """Return a URL fit to print: its password, if any, replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: mask what stands where one would be
        head, at, host = url.rpartition("@")
        scheme, separator, userinfo = head.rpartition("://")
        if not at or ":" not in userinfo:
            return url
        return f"{scheme}{separator}{userinfo.split(':', 1)[0]}:***@{host}"


def _parse(url: str, setting: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{setting} is not a database URL ({masked_url(url)!r}): write it like"
            " postgresql+psycopg://user@host:5432/database or sqlite:///path/ledger.sqlite3"
        ) from None


def _missing_driver(url: URL, module: str, setting: str) -> str:
    what = (
        f"the ledger in {setting}, {describe_ledger(url)}, needs the driver {module},"
        " which is not installed"
    )
    if url.get_backend_name() == "postgresql" and url.get_driver_name() in EXTRA_DRIVERS:
        return f"{what}: {POSTGRES_EXTRA}"
    if url.get_backend_name() == "postgresql":
        return (
            f"{what}: pip install {module}, or write {setting} as postgresql+psycopg://…"
            f" and {POSTGRES_EXTRA}"
        )
    return f"{what}: pip install {module}, or fix {setting}"


def _sqlite_folder(url: URL) -> Path | None:
    if _in_memory(url) or (url.database or "").startswith("file:"):
        return None  # a URI filename (file:…?mode=…) is the driver's to read
    return Path(url.database or "").absolute().parent


def _in_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _server_reason(error: DBAPIError) -> str:
    """Say in a few words what the driver said: 'Connection refused', 'role "x" does not exist'."""
    text = str(error.orig).strip()
    first = text.splitlines()[0] if text else type(error.orig).__name__
    # psycopg: 'connection failed: connection to server at "h", port 5432 failed: FATAL:  …'
    reason = first.rsplit(" failed: ", 1)[-1]
    return " ".join(reason.removeprefix("FATAL:").split()) or first
