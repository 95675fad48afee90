"""The Flask app: the webhooks Twilio posts to, the signature check, error handling."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, Response, abort, current_app, g, jsonify, request, send_file, url_for
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from ivr import calllog, flow, ledger, logs, money, twiml
from ivr.contract import mask
from ivr.errors import ConfigError
from ivr.money import LANGUAGES
from ivr.prompts import AUDIO_TYPES, PromptLibrary, PromptSet
from ivr.settings import Hotline as DialedLine
from ivr.settings import Settings, caller_id, load_settings
from ivr.web import dashboard, metrics  # issue 12

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'data' / 'ledger.sqlite3'}"
DEMO_LEDGER = PROJECT_ROOT / "data" / "demo_ledger.csv"
DEFAULT_PROMPTS_DIR = PROJECT_ROOT / "prompts"
TWIML = "text/xml"

# Environment variable -> config key, read over the defaults and under a test mapping.
ENVIRONMENT = {
    "IVR_DATABASE_URL": "DATABASE_URL",
    "TWILIO_AUTH_TOKEN": "AUTH_TOKEN",
    "IVR_PUBLIC_URL": "PUBLIC_URL",
    "IVR_PROMPTS_DIR": "PROMPTS_DIR",
    "IVR_SETTINGS": "SETTINGS_FILE",
    "IVR_LOCKOUT_FAILURES": "LOCKOUT_FAILURES",
    "IVR_LOCKOUT_MINUTES": "LOCKOUT_MINUTES",
    "IVR_PROXY_FIX": "PROXY_FIX",
}


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the hotline app: defaults, then IVR_* variables, then `test_config`."""
    app = Flask(__name__)
    app.config.from_mapping(
        DATABASE_URL=DEFAULT_DATABASE_URL,
        AUTH_TOKEN=None,
        PUBLIC_URL=None,
        PROMPTS_DIR=str(DEFAULT_PROMPTS_DIR),
        SETTINGS_FILE=str(PROJECT_ROOT / "data" / "hotline.toml"),
        LOCKOUT_FAILURES=5,
        LOCKOUT_MINUTES=60,
        PROXY_FIX=0,  # how many proxies in front set X-Forwarded-*; 0 trusts none
    )
    for variable, key in ENVIRONMENT.items():
        if os.environ.get(variable):
            app.config[key] = os.environ[variable]
    if test_config is not None:
        app.config.from_mapping(test_config)

    # Everything that can be prepared once is prepared here, not per request; a config
    # that cannot work fails now rather than on the first call.
    hotline = Hotline(
        engine=ledger.make_engine(app.config["DATABASE_URL"]),
        prompts=PromptLibrary(Path(app.config["PROMPTS_DIR"]), flow.PHRASES, languages=LANGUAGES),
        settings=load_settings(Path(app.config["SETTINGS_FILE"]), LANGUAGES),
        validator=RequestValidator(app.config["AUTH_TOKEN"]) if app.config["AUTH_TOKEN"] else None,
        limits=_lockout_limits(app.config["LOCKOUT_FAILURES"], app.config["LOCKOUT_MINUTES"]),
        public_url=app.config["PUBLIC_URL"],
    )
    app.extensions["ivr"] = hotline
    money.preload()  # a server pays the slow import at start, not a caller
    # Contract numbers and the token stay out of every log line, ours or a library's.
    logs.install([app.config["AUTH_TOKEN"]])
    proxies = _proxy_count(app.config["PROXY_FIX"])
    if proxies:
        # Behind a TLS-terminating proxy the app sees http; Twilio signed the https URL.
        # Trusted only when configured: anyone can send X-Forwarded-* headers.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.before_request(_check_signature)
    app.register_error_handler(Exception, _apologise)
    app.add_url_rule("/voice", view_func=answer_call, methods=["POST"])
    app.add_url_rule("/voice/step", view_func=answer_step, methods=["POST"])
    app.add_url_rule("/voice/fallback", view_func=answer_fallback, methods=["POST"])
    app.add_url_rule("/voice/status", view_func=record_status, methods=["POST"])
    app.add_url_rule("/healthz", view_func=health, methods=["GET"])
    app.add_url_rule(
        "/prompts-audio/<path:file>", "prompt_audio", view_func=prompt_audio, methods=["GET"]
    )
    dashboard.install(app)  # issue 12: GET /dashboard (IVR_DASHBOARD_TOKEN)
    metrics.install(app)  # issue 12: GET /metrics and the request counts (IVR_METRICS)
    return app


def _minutes(value: Any) -> timedelta:
    return timedelta(minutes=float(value))


def _lockout_limits(failures: Any, minutes: Any) -> flow.Limits:
    """Read the lockout settings; refuse ones that would lock out everyone or no one."""
    try:
        count, window = int(failures), _minutes(minutes)
    except (TypeError, ValueError):
        raise ConfigError(
            f"LOCKOUT_FAILURES ({failures!r}) and LOCKOUT_MINUTES ({minutes!r}) must be numbers"
        ) from None
    if count < 1 or window <= timedelta(0):
        raise ConfigError(
            f"LOCKOUT_FAILURES must be 1 or more and LOCKOUT_MINUTES above 0, got {failures!r}"
            f" and {minutes!r}"
        )
    return flow.Limits(lockout_failures=count, lockout_window=window)


def _proxy_count(value: Any) -> int:
    """Read PROXY_FIX: a number of proxies, or yes/no for one or none."""
    words = {"": 0, "false": 0, "no": 0, "off": 0, "true": 1, "yes": 1, "on": 1}
    text = str(value).strip().lower()
    if text in words:
        return words[text]
    if text.isdigit():
        return int(text)
    raise ConfigError(f"PROXY_FIX must be a number of proxies or yes/no, got {value!r}")


class Hotline:
    """What the webhooks share within one server process."""

    def __init__(
        self,
        engine: Engine,
        prompts: PromptLibrary,
        settings: Settings,
        validator: RequestValidator | None,
        limits: flow.Limits,
        public_url: str | None,
    ) -> None:
        self.engine = engine
        self.prompts = prompts
        self.settings = settings
        self.validator = validator
        self.limits = limits
        self.public_url = public_url.rstrip("/") if public_url else None


def hotline() -> Hotline:
    """Return the current app's shared state."""
    state = current_app.extensions["ivr"]
    assert isinstance(state, Hotline)
    return state


class SessionLedger:
    """The flow's view of the ledger through one database session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._accounts: dict[str, int] = {}  # contract -> account id, found this step

    def balance(self, contract: str, at: datetime) -> Decimal | None:
        account = self.account_of(contract)
        return None if account is None else ledger.account_balance(self.session, account, at)

    def account_of(self, contract: str) -> int | None:
        if contract not in self._accounts:
            account = ledger.find_account(self.session, contract)
            if account is None:
                return None
            self._accounts[contract] = account
        return self._accounts[contract]

    def contract_of(self, account: int) -> str | None:
        return ledger.contract_of(self.session, account)

    def failures_since(self, caller: str, since: datetime) -> int:
        return ledger.failed_lookups_since(self.session, caller, since)

    def record_failure(self, caller: str, at: datetime) -> None:
        ledger.record_failed_lookup(self.session, caller, at)
        self.session.flush()


# --- signature --------------------------------------------------------------------------


def signed_url() -> str:
    """Return the URL Twilio signed: the public base when set, and the raw request URI."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        raw = quote(path, encoding="latin-1")
        raw += f"?{query}" if query else ""
    # WSGI hands the request line's bytes over as latin-1 text; the signature is over those
    # bytes, which a non-ASCII (unescaped) URI only gets back by undoing that.
    try:
        raw = raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        pass  # a server that already gave real text
    base = hotline().public_url or request.host_url.rstrip("/")
    return base + raw


def _check_signature() -> Response | None:
    validator = hotline().validator
    if validator is None or not request.path.startswith("/voice"):
        return None
    signature = request.headers.get("X-Twilio-Signature", "")
    if signature and validator.validate(signed_url(), request.form, signature):
        return None
    log.warning("refused a request to %s: missing or wrong X-Twilio-Signature", request.path)
    return Response("Forbidden: bad or missing X-Twilio-Signature\n", 403, mimetype="text/plain")


# --- webhooks ---------------------------------------------------------------------------


def answer_call() -> Response:
    """Answer a new call with the greeting and the main menu."""
    language = dialed_line().language
    with StepContext() as ctx:
        reply = flow.start(language, ctx)
    response = _twiml(reply, language)
    _log_step(ctx, None, reply)
    return response


def answer_step() -> Response:
    """Answer the keys pressed at a Gather (or its silence)."""
    call = flow.Call.from_query(request.args)
    with StepContext() as ctx:
        reply = flow.step(call, request.form.get("Digits"), ctx)
        if reply.contract is not None:
            log.info(
                "call %s: contract %s -> %s",
                request.form.get("CallSid", "?"),
                mask(reply.contract),
                reply.outcome.value,
            )
    # The ledger session is committed (a failed entry counts) before the call log is
    # written, and the call log cannot take the answer away.
    response = _twiml(reply, call.lang)
    _log_step(ctx, call.state, reply)
    return response


def answer_fallback() -> Response:
    """Apologise without touching the ledger (Twilio's fallback URL)."""
    return _xml(twiml.apology(_prompts_or_none(dialed_line().language), _audio_url))


def record_status() -> Response:
    """Log the end of a call and keep it in the call log (Twilio's status callback)."""
    form = request.form
    caller = caller_id(form.get("From"))
    log.info(
        "call %s from %s ended: %s after %s s",
        form.get("CallSid", "?"),
        caller,
        form.get("CallStatus", "?"),
        form.get("CallDuration", "?"),
    )
    calllog.record_end(
        hotline().engine,
        call_sid=form.get("CallSid") or calllog.UNKNOWN_CALL,
        caller=caller,
        at=datetime.now(UTC),
        status=form.get("CallStatus") or "unknown",
        duration_s=calllog.duration(form.get("CallDuration")),
    )
    return _xml(twiml.empty())


def health() -> Response:
    """Report whether the prompt files are good: HTTP 200 either way, "degraded" on a fault.

    A refused prompt edit leaves the hotline speaking the last good text, so the process is
    fit to take calls; a 503 would make a load balancer drop every instance at once (they
    share the prompts folder) and take the line down over a typo. Alert on "degraded".
    """
    faults = hotline().prompts.faults
    body = {"status": "ok" if not faults else "degraded", "prompt_faults": faults}
    return jsonify(body)


def prompt_audio(file: str) -> Response:
    """Serve a recorded phrase to Twilio's <Play>: only a file a prompt set in service names."""
    # The URL only selects among the files the checked prompt sets name; it never becomes a
    # path itself, so "../" leads nowhere.
    path = hotline().prompts.recording(file)
    if path is None:
        abort(404)
    # Its URL carries the file's version, so a long cache is safe: a new take gets a new URL.
    return send_file(path, mimetype=AUDIO_TYPES[path.suffix.lower()], max_age=86400)


class StepContext:
    """Open a ledger session for one step and build the flow's context; commit at the end."""

    def __enter__(self) -> flow.Context:
        state = hotline()
        self.session = Session(state.engine)
        return flow.Context(
            caller=caller_id(request.form.get("From")),
            now=datetime.now(UTC),
            ledger=SessionLedger(self.session),
            operator_available=dialed_line().operator is not None,
            limits=state.limits,
        )

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None:
                self.session.commit()
        finally:
            self.session.close()


def dialed_line() -> DialedLine:
    """Return the settings of the number this request's caller dialed, read once a request."""
    if "ivr_line" not in g:
        g.ivr_line = hotline().settings.for_number(request.form.get("To"))
    line: DialedLine = g.ivr_line
    return line


def _log_step(ctx: flow.Context, state: flow.State | None, reply: flow.Reply) -> None:
    """Keep the step in the call log (never raises)."""
    metrics.step(state.value if state is not None else None, reply.outcome.value)  # issue 12
    _record_step(
        caller=ctx.caller,
        at=ctx.now,
        state=state.value if state is not None else None,
        next_state=reply.next.state.value if reply.next is not None else None,
        outcome=reply.outcome.value,
        contract=reply.contract,
    )


def _record_step(
    *,
    caller: str,
    at: datetime,
    state: str | None,
    next_state: str | None,
    outcome: str,
    contract: str | None = None,
) -> None:
    calllog.record_step(
        hotline().engine,
        calllog.Step(
            call_sid=request.form.get("CallSid") or calllog.UNKNOWN_CALL,
            caller=caller,
            at=at,
            state=state,
            next_state=next_state,
            outcome=outcome,
            contract=contract,
        ),
    )


def _twiml(reply: flow.Reply, lang: str) -> Response:
    document = twiml.render(
        reply,
        lang,
        prompts_for=_prompts_for,
        action_url=_action_url,
        operator=dialed_line().operator,
        audio_url=_audio_url,
    )
    return _xml(document)


def _audio_url(file: str, version: int) -> str:
    """Build the absolute URL Twilio fetches a recorded phrase from."""
    # `v` changes with the file, so Twilio, which caches what it plays, fetches a new take;
    # the base is the public URL behind a proxy, else the host the request came to.
    path = url_for("prompt_audio", file=file, v=version)
    return (hotline().public_url or request.host_url.rstrip("/")) + path


def _action_url(call: flow.Call) -> str:
    return "/voice/step?" + urlencode(call.to_query())


def _xml(document: str) -> Response:
    return Response(document, 200, mimetype=TWIML)


def _prompts_for(language: str) -> PromptSet:
    """Return the prompts of a language, in the voice the dialed hotline asks for."""
    voice = dialed_line().voice_for(language)
    return hotline().prompts.get(language).with_voice(voice)


def _prompts_or_none(language: str) -> PromptSet | None:
    try:
        return _prompts_for(language)
    except Exception:
        log.exception("no prompts to apologise with")
        return None


def _apologise(error: Exception) -> Response | HTTPException:
    """Turn any failure inside a webhook into the caller's apology, with HTTP 200."""
    if isinstance(error, HTTPException):
        return error
    metrics.apology(error)  # issue 12
    log.error("a webhook failed, the caller hears the apology: %s", _describe(error))
    language = request.args.get("l") or hotline().settings.default.language
    document = twiml.apology(_prompts_or_none(language), _audio_url)
    # When the database is what failed, another write to it would only add its timeout
    # to the caller's wait; the line above is the record.
    if request.endpoint in ("answer_call", "answer_step") and not isinstance(
        error, SQLAlchemyError
    ):
        _log_apology()
    return _xml(document)


def _log_apology() -> None:
    """Keep a step that ended in the apology in the call log (never raises)."""
    try:
        state: str | None = flow.State(request.args.get("s")).value
    except ValueError:
        state = None  # a missing or unreadable state; never store what the URL held
    _record_step(
        caller=caller_id(request.form.get("From")),
        at=datetime.now(UTC),
        state=state,
        next_state=None,
        outcome=calllog.APOLOGY,
    )


def _describe(error: Exception) -> str:
    """Name an error without its message's details, which may hold caller input."""
    return f"{type(error).__module__}.{type(error).__qualname__}"
