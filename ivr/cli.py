"""The `ivr` command: serve the hotline, manage the ledger, check prompts, simulate calls.

Every click command lives here, so the module runs past 400 lines: each command is short,
its length is option declarations. The simulate and call commands drive `ivr.simulate`;
they only parse options and print.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from click.core import ParameterSource
from werkzeug.serving import run_simple

from ivr import db, flow, logs, prompts, stats
from ivr.contract import CONTRACT_LENGTH, Verdict, verdict
from ivr.db.selfservice import entries_between
from ivr.errors import IvrError, LedgerError
from ivr.home import Home, home
from ivr.money import amount_in_words, digits_in_words
from ivr.selfservice import WINDOW
from ivr.simulate import audio
from ivr.simulate.events import Event
from ivr.simulate.interactive import run_interactive
from ivr.simulate.runner import ScriptResult, run_scripts
from ivr.simulate.script import DEFAULT_FROM, DEFAULT_TO, Script, ScriptError, parse_script
from ivr.simulate.transport import Target, build_target
from ivr.web import create_app

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def hotline_home() -> Home:
    """Find the home folder (ivr.home), or say in one line why there is none."""
    try:
        return home()
    except IvrError as exc:
        raise click.ClickException(str(exc)) from None


database_option = click.option(
    "--database-url",
    envvar=db.DATABASE_VARIABLE,
    default=lambda: hotline_home().database_url,
    show_default="data/ledger.sqlite3 in the hotline's home, or $IVR_DATABASE_URL",
    help="SQLAlchemy URL of the ledger.",
)


def database_setting() -> str:
    """Name where this command's --database-url came from: the option, or the variable."""
    source = click.get_current_context().get_parameter_source("database_url")
    return "--database-url" if source is ParameterSource.COMMANDLINE else db.DATABASE_VARIABLE


@contextlib.contextmanager
def open_ledger(database_url: str) -> Iterator[db.Engine]:
    """Give a command the ledger's engine, or stop it with one line saying what to fix."""
    try:
        engine = db.open_ledger(database_url, database_setting())
    except IvrError as exc:
        raise click.ClickException(str(exc)) from None
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
    # Alembic narrates every start (plugins, DDL mode); the outcome is what matters.
    logging.getLogger("alembic").setLevel(logging.WARNING)
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
    place = hotline_home()
    click.echo(f"Hotline home: {place.root}", err=True)
    with open_ledger(database_url) as engine:
        report = db.create_demo_if_missing(engine, place.demo_ledger)
        db.create_schema(engine)  # an older ledger is upgraded to the head revision
    if report is not None:
        where = db.masked_url(database_url)
        click.echo(f"Created the demo ledger ({report.rows} entries) at {where}", err=True)
    app = create_app({"DATABASE_URL": database_url})
    click.echo(f"Hotline webhooks at http://{host}:{port}/voice", err=True)
    run_simple(host, port, app, threaded=True)


# --- ledger -----------------------------------------------------------------------------


@main.group("ledger")
def ledger_group() -> None:
    """Create, load and query the ledger."""


@ledger_group.command("init")
@click.option("--demo", is_flag=True, help="Also load the demo entries (data/demo_*.csv).")
@database_option
def ledger_init(demo: bool, database_url: str) -> None:
    """Create the ledger's tables, or upgrade them to the newest schema (nothing is dropped)."""
    with open_ledger(database_url) as engine:
        db.create_schema(engine)
        click.echo(f"Ledger ready at {db.masked_url(database_url)}")
        if demo:
            report = db.load_demo(engine, hotline_home().demo_ledger)
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
        click.progressbar(length=1, label="Checking ", file=sys.stderr) as bar,
    ):
        db.create_schema(engine)

        def checking(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        def progress(done: int, total: int) -> None:
            if bar.label != "Importing":  # the whole file passed: the bar starts again
                bar.label, bar.pos = "Importing", 0
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        try:
            report = db.import_csv(engine, csv_file, progress=progress, checking=checking)
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
    with open_ledger(database_url) as engine:
        amount = db.read_balance(engine, contract, moment)
        if amount is None:
            where = db.masked_url(database_url)
            raise click.ClickException(f"no contract {contract} in the ledger at {where}")
        recent = entries_between(engine, contract, moment - WINDOW, moment)
        upcoming = entries_between(engine, contract, moment)
    click.echo(f"{contract}: {amount} RUB as of {moment.isoformat(timespec='seconds')}")
    # The entries behind the answers after the balance: the last 30 days, and what is
    # dated later (a promised payment's return), which the balance does not count yet.
    for title, entries in (("Entries of the last 30 days", recent), ("Upcoming", upcoming)):
        if entries:
            click.echo(f"{title}:")
        for posted_at, entry_amount, kind, memo in entries:
            when = posted_at.isoformat(timespec="seconds")
            click.echo(f"  {when}  {entry_amount:>12}  {kind:<16}  {memo}")


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
def _reaching(engine: db.Engine) -> Iterator[None]:
    """Turn a database failure into one line naming the database (without its password)."""
    try:
        yield
    except Exception as exc:
        if not db.is_database_error(exc):
            raise
        raise click.ClickException(f"{db.masked_url(str(engine.url))}: {db.reason(exc)}") from None


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

    FOLDER defaults to $IVR_PROMPTS_DIR, else prompts/ in the hotline's home. Each fault
    is printed as FILE:LINE: message.
    """
    folder = folder or hotline_home().prompts_dir
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
    help="Prompts folder.  [default: $IVR_PROMPTS_DIR, else prompts/ in the hotline's home]",
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
    folder = folder or hotline_home().prompts_dir
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
    help="Day to report, YYYY-MM-DD, in the --zone.  [default: today]",
)
@click.option(  # issue 12: the dashboard's day is in the hotline's zone; this reports the same
    "--zone",
    default="UTC",
    show_default=True,
    help="Time zone of the day and its hours (IANA name, e.g. Asia/Yekaterinburg).",
)
@database_option
def stats_command(day: datetime | None, zone: str, database_url: str) -> None:
    """Print a day's calls from the call log: outcomes, and where callers gave up."""
    try:
        where_zone = ZoneInfo(zone)
    except (ValueError, ZoneInfoNotFoundError):
        raise click.BadParameter(f"unknown time zone {zone!r}", param_hint="--zone") from None
    logs.install()
    with open_ledger(database_url) as engine:
        try:
            report = db.day_stats(
                engine, day.date() if day else datetime.now(where_zone).date(), where_zone
            )
        except LedgerError as exc:
            raise click.ClickException(
                f"cannot read the call log at {db.masked_url(str(engine.url))}: {exc}\n"
                "(`ivr ledger init` adds the call-log tables to an older ledger)"
            ) from None
    click.echo(stats.render(report))


def _expand(paths: Sequence[Path]) -> list[Path]:
    """List the scripts: files as given, folders as their *.dtmf files, sorted."""
    scripts: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(path.glob("*.dtmf"))
            if not found:
                raise click.UsageError(f"no *.dtmf scripts in {path}")
            scripts += found
        else:
            scripts.append(path)
    return scripts


def _parse_all(paths: Sequence[Path]) -> list[Script]:
    """Parse every script before any call; on syntax errors report them all and exit 2."""
    scripts: list[Script] = []
    errors: list[ScriptError] = []
    for path in paths:
        try:
            scripts.append(parse_script(path))
        except ScriptError as error:
            errors.append(error)
    if errors:
        for fault in errors:
            click.echo(str(fault), err=True)
        raise SystemExit(2)
    return scripts


def _render_audio(target: Path, events: Sequence[Event]) -> None:
    try:
        audio.render(audio.sounds_of(events), target)
    except audio.AudioError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"audio written to {target}")


_url_option = click.option(
    "--url",
    "base_url",
    metavar="BASE_URL",
    help="Base URL of a running server (e.g. http://127.0.0.1:5000); default: the app in process.",
)
_token_option = click.option(
    "--auth-token",
    envvar="TWILIO_AUTH_TOKEN",
    metavar="TOKEN",
    help="Sign requests as Twilio does [env TWILIO_AUTH_TOKEN].",
)
_database_option = click.option(
    "--database-url",
    envvar=db.DATABASE_VARIABLE,
    metavar="URL",
    help="In process only: the ledger to use [env IVR_DATABASE_URL]; with neither, a fresh"
    " copy of the demo ledger.",
)
_audio_option = click.option(
    "--audio",
    "audio_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.wav",
    help="Also render the call as heard (needs espeak-ng and sox).",
)


@main.command("simulate")
@click.argument(
    "paths",
    metavar="SCRIPT...",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, path_type=Path),
)
@_url_option
@_token_option
@_database_option
@click.option("--quiet", is_flag=True, help="Print only failures and the summary.")
@_audio_option
def simulate_command(
    paths: tuple[Path, ...],
    base_url: str | None,
    auth_token: str | None,
    database_url: str | None,
    quiet: bool,
    audio_path: Path | None,
) -> None:
    """Run DTMF scripts (files, or folders of *.dtmf) against the hotline.

    Exit 0 if every expectation held, 1 if any failed, 2 on a script syntax error.
    """
    scripts = _parse_all(_expand(paths))
    if audio_path is not None:
        _require_audio_tools()
    target = _target(base_url, auth_token, database_url)
    click.echo(f"ledger: {target.ledger}")
    try:
        results = run_scripts(scripts, target.transport, auth_token)
    finally:
        target.close()
    for result in results:
        _report(result, quiet)
    failed = sum(not result.passed for result in results)
    if audio_path is not None:
        _render_audio(audio_path, [event for result in results for event in result.events])
    click.echo(f"{len(results) - failed} passed, {failed} failed")
    raise SystemExit(1 if failed else 0)


def _report(result: ScriptResult, quiet: bool) -> None:
    """Print a script's transcript (unless quiet), its verdict and its failures."""
    path = result.script.path
    if not quiet:
        click.echo(f"▶ {path}")
        click.echo(result.transcript())
    click.echo(f"{'PASS' if result.passed else 'FAIL'} {path}")
    for failure in result.failures:
        click.echo(f"  {failure}")


def _require_audio_tools() -> None:
    try:
        audio.require_tools()
    except audio.AudioError as error:
        raise click.ClickException(str(error)) from error


@main.command("call")
@click.option(
    "--from",
    "from_",
    default=DEFAULT_FROM,
    show_default=True,
    metavar="NUMBER",
    help="The caller's number.",
)
@click.option(
    "--to",
    default=DEFAULT_TO,
    show_default=True,
    metavar="NUMBER",
    help="The hotline number dialed.",
)
@_url_option
@_token_option
@_database_option
@_audio_option
def call_command(
    from_: str,
    to: str,
    base_url: str | None,
    auth_token: str | None,
    database_url: str | None,
    audio_path: Path | None,
) -> None:
    """Call the hotline from the terminal: hear the prompts, type keys, Enter for silence."""
    if audio_path is not None:
        _require_audio_tools()
    target = _target(base_url, auth_token, database_url)
    click.echo(f"ledger: {target.ledger}")
    try:
        record = run_interactive(target.transport, from_, to, _read_keys, click.echo, auth_token)
    finally:
        target.close()
    if audio_path is not None:
        _render_audio(audio_path, record.events)
    raise SystemExit(1 if record.error else 0)


def _target(base_url: str | None, auth_token: str | None, database_url: str | None) -> Target:
    """Build where the simulated call goes; a setup that cannot work is one line.

    Explicit configuration wins: --database-url, then IVR_DATABASE_URL; with neither, a
    fresh copy of the demo ledger. A server at --url answers from its own ledger.
    """
    setting = database_setting()
    if base_url and database_url and setting == "--database-url":
        raise click.UsageError(
            "--database-url is for calls in process; with --url the server's own ledger answers"
        )
    try:
        return build_target(base_url, auth_token, None if base_url else database_url, setting)
    except IvrError as error:
        raise click.ClickException(str(error)) from None


def _read_keys() -> str | None:
    """Read a line of keys from the terminal; None at end of input (Ctrl-D)."""
    try:
        return input("keys (Enter = silence, Ctrl-D = hang up)> ")
    except EOFError:
        click.echo()
        return None
