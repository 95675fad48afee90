"""The `ivr` command: serve the hotline, manage the ledger, check prompts, simulate calls."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from werkzeug.serving import run_simple

from ivr import audio, calllog, flow, ledger, logs, prompts, stats
from ivr.app import DEFAULT_DATABASE_URL, DEFAULT_PROMPTS_DIR, DEMO_LEDGER, create_app
from ivr.contract import CONTRACT_LENGTH, Verdict, verdict
from ivr.errors import IvrError
from ivr.money import amount_in_words, digits_in_words
from ivr.simulate import call_command, simulate_command

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

database_option = click.option(
    "--database-url",
    envvar="IVR_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default="data/ledger.sqlite3, or $IVR_DATABASE_URL",
    help="SQLAlchemy URL of the ledger.",
)


@contextlib.contextmanager
def open_ledger(database_url: str) -> Iterator[Engine]:
    """Give a command the ledger's engine, and close its connections when it is done."""
    engine = ledger.make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Balance hotline for Twilio Voice: a caller presses 1 three times and hears a balance."""
    # Quiet by default so transcripts stay readable; `serve` logs every call.
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)


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
    logging.getLogger().setLevel(logging.INFO)
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
    with open_ledger(database_url) as engine:
        report = ledger.create_demo_if_missing(engine, DEMO_LEDGER)
        ledger.create_schema(engine)  # an older ledger is upgraded to the head revision
    if report is not None:
        click.echo(f"Created the demo ledger ({report.rows} entries) at {database_url}", err=True)
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
    """Create the ledger's tables, or upgrade them to the newest schema (nothing is dropped)."""
    with open_ledger(database_url) as engine:
        ledger.create_schema(engine)
        click.echo(f"Ledger ready at {database_url}")
        if demo:
            report = ledger.import_csv(engine, DEMO_LEDGER)
            click.echo(
                f"Demo entries: {report.added} added, {report.already_present} already there"
            )


@ledger_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@database_option
def ledger_import(csv_file: Path, database_url: str) -> None:
    """Load entries from CSV_FILE (contract,posted_at,amount,kind,memo), all or nothing."""
    with (
        open_ledger(database_url) as engine,
        click.progressbar(length=1, label="Importing", file=sys.stderr) as bar,
    ):
        ledger.create_schema(engine)

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
    with open_ledger(database_url) as engine, Session(engine) as session:
        amount = ledger.balance(session, contract, moment)
    if amount is None:
        raise click.ClickException(f"no contract {contract} in the ledger at {database_url}")
    click.echo(f"{contract}: {amount} RUB as of {moment.isoformat(timespec='seconds')}")


# --- db ---------------------------------------------------------------------------------


@main.group("db")
def db_group() -> None:
    """Upgrade the database schema with the migrations shipped in the package."""
    # The commands import ivr.db.migrate themselves: Alembic costs every other command
    # a fifth of its start-up time.


@db_group.command("upgrade")
@database_option
def db_upgrade(database_url: str) -> None:
    """Bring the database to the newest schema; back it up first. Safe to rerun."""
    from ivr.db import migrate

    with open_ledger(database_url) as engine, _reaching(engine):
        before = migrate.current(engine)
        outcome = migrate.bring_to_head(engine)
    head = migrate.head()
    done = {
        migrate.Outcome.CURRENT: f"Already at revision {head} (head)",
        migrate.Outcome.CREATED: f"Created the tables at revision {head}",
        migrate.Outcome.ADOPTED: f"Adopted a database from before migrations: now at {head}",
        migrate.Outcome.UPGRADED: f"Upgraded from revision {before} to {head}",
    }
    click.echo(done[outcome])


@db_group.command("current")
@database_option
def db_current(database_url: str) -> None:
    """Print the database's schema revision; exit 1 unless it is the newest (head)."""
    from ivr.db import migrate

    with open_ledger(database_url) as engine, _reaching(engine):
        revision = migrate.current(engine)
    if revision == migrate.head():
        click.echo(f"{revision} (head)")
        return
    click.echo(f"{revision or 'none'} (the newest is {migrate.head()}: run `ivr db upgrade`)")
    sys.exit(1)


@db_group.command("revision")
@click.option("-m", "--message", required=True, help="What the revision does, e.g. 'promises'.")
@click.option("--against", metavar="URL", help="A database at head to compare the models with.")
def db_revision(message: str, against: str | None) -> None:
    """Write the next migration from the models (for developers; review the file).

    By default the models are compared with a scratch SQLite database built by the
    migrations; see the docstring of ivr/db/migrate.py.
    """
    from ivr.db import migrate

    click.echo(f"Wrote {migrate.new_revision(message, against)}")


@contextlib.contextmanager
def _reaching(engine: Engine) -> Iterator[None]:
    """Turn a database failure into one line naming the database (without its password)."""
    try:
        yield
    except SQLAlchemyError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise click.ClickException(f"{where}: {calllog.reason(exc)}") from None


# --- prompts ----------------------------------------------------------------------------

SAMPLE_AMOUNT = "123.45"
SAMPLE_CONTRACT = "590000000018"

prompts_folder = click.Path(file_okay=False, path_type=Path)


@main.group("prompts")
def prompts_group() -> None:
    """Check and preview the prompt files: what the hotline says, in each language."""


@prompts_group.command("check")
@click.argument("folder", required=False, type=prompts_folder, envvar="IVR_PROMPTS_DIR")
def prompts_check(folder: Path | None) -> None:
    """Check every prompt file as the server does; exit 1 on any fault.

    FOLDER defaults to $IVR_PROMPTS_DIR, else prompts/. Each fault is printed as
    FILE:LINE: message.
    """
    folder = folder or DEFAULT_PROMPTS_DIR
    found = prompts.check_folder(folder, flow.PHRASES, flow.LANGUAGES)
    for fault in found.faults:
        click.echo(str(fault))
    if found.faults:
        count = len(found.faults)
        click.echo(f"{count} fault{'' if count == 1 else 's'} in {folder}", err=True)
        sys.exit(1)
    click.echo(f"{len(found.files)} files OK")


@prompts_group.command("say")
@click.argument("phrase")
@click.option("--lang", "language", help="Language of the prompt file.  [default: ru-RU]")
@click.option("--amount", help=f"Rubles for {{amount}}, e.g. -650.00.  [default: {SAMPLE_AMOUNT}]")
@click.option("--contract", help=f"Contract for {{contract}}.  [default: {SAMPLE_CONTRACT}]")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also speak it into this .wav file (espeak-ng and sox).",
)
@click.option(
    "--dir",
    "folder",
    type=prompts_folder,
    envvar="IVR_PROMPTS_DIR",
    help="Prompts folder.  [default: $IVR_PROMPTS_DIR, else prompts/]",
)
def prompts_say(
    phrase: str,
    language: str | None,
    amount: str | None,
    contract: str | None,
    output: Path | None,
    folder: Path | None,
) -> None:
    """Print PHRASE as the hotline says it, filled in; -o also speaks it into a .wav file."""
    folder = folder or DEFAULT_PROMPTS_DIR
    language = language or flow.LANGUAGES[0]
    path = folder / f"{language}.toml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in folder.glob("*.toml"))) or "none"
        raise click.BadParameter(f"no {path} (languages there: {have})", param_hint="--lang")
    if phrase not in flow.PHRASES:
        close = difflib.get_close_matches(phrase, list(flow.PHRASES), n=1)
        hint = f"did you mean {close[0]}?" if close else "the phrases: " + ", ".join(flow.PHRASES)
        raise click.BadParameter(f"the hotline has no phrase {phrase!r}; {hint}")
    checked = prompts.check_file(path, flow.PHRASES)
    if checked.prompt_set is None:
        raise click.ClickException(
            f"{path.name} has faults, fix them first:\n{prompts.report(checked.faults)}"
        )
    prompt_set = checked.prompt_set
    values = _sample_values(flow.PHRASES[phrase], language, amount, contract)
    click.echo(prompt_set.render(phrase, values))
    recording = prompt_set.audio.get(phrase)
    if recording is not None:
        click.echo(f"(a recording: {folder / recording.file})", err=True)
    if output is None:
        return
    if recording is not None:
        # A recording is heard as it is: copy it rather than speak its transcript.
        source = folder / recording.file
        if source.suffix.lower() != output.suffix.lower():
            raise click.BadParameter(f"the recording is a {source.suffix} file", param_hint="-o")
        shutil.copyfile(source, output)
    else:
        try:
            audio.render([audio.Speech(prompt_set.render(phrase, values), language)], output)
        except audio.AudioError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"Wrote {output}", err=True)


def _sample_values(
    needs: frozenset[str], language: str, amount: str | None, contract: str | None
) -> dict[str, str]:
    """Fill a phrase's placeholders as the flow would, from the options or sample values."""
    for name, given in (("amount", amount), ("contract", contract)):
        if given is not None and name not in needs:
            click.echo(f"note: this phrase has no {{{name}}}; --{name} is not used", err=True)
    values = {name: "{" + name + "}" for name in needs}  # one the flow adds later shows as is
    if "amount" in needs:
        try:
            values["amount"] = amount_in_words(Decimal(amount or SAMPLE_AMOUNT), language)
        except (InvalidOperation, ValueError) as exc:
            raise click.BadParameter(f"{amount!r}: {exc}", param_hint="--amount") from None
    if "contract" in needs:
        digits = contract or SAMPLE_CONTRACT
        if not digits.isdigit():
            raise click.BadParameter(f"{digits!r} is not digits", param_hint="--contract")
        values["contract"] = digits_in_words(digits, language)
    if "length" in needs:
        values["length"] = str(CONTRACT_LENGTH)
    return values


# --- stats ------------------------------------------------------------------------------


@main.command("stats")
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="UTC day to report, YYYY-MM-DD.  [default: today]",
)
@database_option
def stats_command(day: datetime | None, database_url: str) -> None:
    """Print a day's calls from the call log: outcomes, and where callers gave up."""
    logs.install()
    engine = ledger.make_engine(database_url)
    # The URL as SQLAlchemy prints it: without the password.
    where = engine.url.render_as_string(hide_password=True)
    try:
        with Session(engine) as session:
            report = stats.load(session, day.date() if day else datetime.now(UTC).date())
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"cannot read the call log at {where}: {calllog.reason(exc)}\n"
            "(`ivr ledger init` adds the call-log tables to an older ledger)"
        ) from None
    finally:
        engine.dispose()
    click.echo(stats.render(report))


main.add_command(simulate_command, "simulate")
main.add_command(call_command, "call")
