"""The `ivr` command: serve the hotline, manage the ledger, check prompts, simulate calls."""

from __future__ import annotations

import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.orm import Session

from ivr import ledger
from ivr.app import DEFAULT_DATABASE_URL, PROJECT_ROOT, create_app
from ivr.contract import Verdict, verdict
from ivr.errors import IvrError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEMO_LEDGER = PROJECT_ROOT / "data" / "demo_ledger.csv"

database_option = click.option(
    "--database-url",
    envvar="IVR_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default="data/ledger.sqlite3, or $IVR_DATABASE_URL",
    help="SQLAlchemy URL of the ledger.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Balance hotline for Twilio Voice: a caller presses 1 three times and hears a balance."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


# --- serve ------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--insecure",
    is_flag=True,
    help="Run without TWILIO_AUTH_TOKEN: webhooks accept unsigned requests (trying out only).",
)
@database_option
def serve(host: str, port: int, insecure: bool, database_url: str) -> None:
    """Run the webhook server (creates the demo ledger on first run)."""
    token = os.environ.get("TWILIO_AUTH_TOKEN")
    if not token and not insecure:
        raise click.UsageError(
            "TWILIO_AUTH_TOKEN is not set, so Twilio's signatures cannot be checked.\n"
            "Set it to your account's auth token, or pass --insecure to try the hotline locally."
        )
    if not token:
        click.secho(
            "WARNING: running with --insecure: signature checking is OFF and anyone who can reach"
            " this server can drive calls. Never expose it like this.",
            fg="red",
            bold=True,
            err=True,
        )
    engine = ledger.make_engine(database_url)
    if not ledger.has_schema(engine):
        ledger.create_schema(engine)
        report = ledger.import_csv(engine, DEMO_LEDGER)
        click.echo(f"Created the demo ledger ({report.rows} entries) at {database_url}", err=True)
    engine.dispose()
    from werkzeug.serving import run_simple

    app = create_app({"DATABASE_URL": database_url})
    click.echo(f"Hotline webhooks at http://{host}:{port}/voice", err=True)
    run_simple(host, port, app, threaded=True)


# --- ledger -----------------------------------------------------------------------------


@main.group("ledger")
def ledger_group() -> None:
    """Create, load and query the ledger."""


@ledger_group.command("init")
@click.option("--demo", is_flag=True, help=f"Also load the demo entries of {DEMO_LEDGER.name}.")
@database_option
def ledger_init(demo: bool, database_url: str) -> None:
    """Create the ledger's tables (nothing is dropped)."""
    engine = ledger.make_engine(database_url)
    ledger.create_schema(engine)
    click.echo(f"Ledger ready at {database_url}")
    if demo:
        report = ledger.import_csv(engine, DEMO_LEDGER)
        click.echo(f"Demo entries: {report.added} added, {report.already_present} already there")


@ledger_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@database_option
def ledger_import(csv_file: Path, database_url: str) -> None:
    """Load entries from CSV_FILE (contract,posted_at,amount,kind,memo), all or nothing."""
    engine = ledger.make_engine(database_url)
    ledger.create_schema(engine)
    with click.progressbar(length=1, label="Importing", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        try:
            report = ledger.import_csv(engine, csv_file, progress=progress)
        except IvrError as exc:
            message = f"{exc}\nNothing was imported; fix the file and rerun."
            raise click.ClickException(message) from None
    click.echo(
        f"{report.rows} rows: {report.added} entries added, {report.already_present} already "
        f"in the ledger; {report.accounts_added} new accounts"
    )


@ledger_group.command("balance")
@click.argument("contract")
@click.option(
    "--at",
    "at",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d"]),
    help="Moment of the balance (default: now).",
)
@database_option
def ledger_balance(contract: str, at: datetime | None, database_url: str) -> None:
    """Print a contract's balance as the hotline would tell it."""
    found = verdict(contract)
    if found is not Verdict.VALID:
        raise click.BadParameter(
            "a contract number is 12 digits whose last is a Luhn check digit"
            + (" (the check digit is wrong)" if found is Verdict.BAD_CHECK_DIGIT else ""),
            param_hint="CONTRACT",
        )
    if at is None:
        moment = datetime.now(UTC)
    else:  # a date or a time without an offset is read as UTC
        moment = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)
    with Session(ledger.make_engine(database_url)) as session:
        amount = ledger.balance(session, contract, moment)
    if amount is None:
        raise click.ClickException(f"no contract {contract} in the ledger at {database_url}")
    click.echo(f"{contract}: {amount} RUB as of {moment.isoformat(timespec='seconds')}")


def _register_tester_commands() -> None:
    from ivr.simulate import call_command, simulate_command

    main.add_command(simulate_command, "simulate")
    main.add_command(call_command, "call")


_register_tester_commands()
