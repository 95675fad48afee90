"""The webhooks Twilio posts to, and the apology any failure inside them turns into."""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, datetime
from urllib.parse import quote_plus

from flask import Response, abort, jsonify, request, send_file
from werkzeug.exceptions import HTTPException

from ivr import calllog, db, flow
from ivr.contract import mask
from ivr.phones import caller_id
from ivr.prompts import AUDIO_TYPES, PromptSet
from ivr.web import metrics, twiml
from ivr.web.services import Services, services
from ivr.web.twilio_request import TwilioRequest, base_url, recording_url, twilio_request

log = logging.getLogger(__name__)

TWIML_TYPE = "text/xml; charset=utf-8"


def answer_call() -> Response:
    """Answer a new call with the greeting and the main menu."""
    incoming = twilio_request()
    language = incoming.line.language
    with db.StepUnit(incoming.shared.engine) as unit:  # reads nothing: touches no connection
        ctx = _context(incoming, unit.ledger)
        reply = flow.start(language, ctx)
        unit.record(reply.failed_try)
    response = _xml(_first_twiml(incoming, reply, language))
    _log_step(incoming, ctx, None, reply)
    return response


def _first_twiml(incoming: TwilioRequest, reply: flow.Reply, language: str) -> str:
    """Render the first step's TwiML once per language, voice, prompt set and base URL.

    Every call starts the same way, so the document is reused while the prompt set in
    service (a reload makes a new one) and the reply stay the same.
    """
    shared = incoming.shared
    key = (language, incoming.line.voice_for(language), incoming.line.operator, incoming.base_url)
    prompts = shared.prompts.get(language)
    cached = shared.first_step.get(key)
    if cached is not None and cached[0] is prompts and cached[1] == reply:
        return cached[2]
    document = _render(incoming, reply, language)
    shared.first_step[key] = (prompts, reply, document)
    return document


def answer_step() -> Response:
    """Answer the keys pressed at a Gather (or its silence)."""
    incoming = twilio_request()
    call = _call_state(incoming.request.environ.get("QUERY_STRING", ""))
    digits = incoming.form.get("Digits")
    with db.StepUnit(incoming.shared.engine) as unit:
        ctx = _context(incoming, unit.ledger)
        if call.state is flow.State.CONTRACT and digits:
            # The contract step asks the lockout count, then the balance: one statement.
            since = ctx.now - ctx.limits.lockout_window
            unit.ledger.expect_lookup(ctx.caller, since, digits, ctx.now)
        reply = flow.step(call, digits, ctx)
        unit.record(reply.failed_try)
        if reply.promise is not None and not unit.write_promise(reply.promise):
            reply = flow.promise_not_written(call, ctx)  # another step holds the promise
        if reply.contract is not None and log.isEnabledFor(logging.INFO):
            log.info(
                "call %s: contract %s -> %s",
                ctx.call_sid or "?",
                mask(reply.contract),
                reply.outcome.value,
            )
    # The ledger session is committed (a failed entry counts) before the call log is
    # written, and the call log cannot take the answer away.
    response = _xml(_render(incoming, reply, call.lang))
    _log_step(incoming, ctx, call.state, reply)
    return response


@functools.lru_cache(maxsize=4096)  # calls in the same state send the same query string
def _call_state(query: str) -> flow.Call:
    """Read the call state from the query string (a bad one raises, and is not kept)."""
    return flow.Call.from_query(request.args)


def answer_fallback() -> Response:
    """Apologise without touching the ledger (Twilio's fallback URL)."""
    incoming = twilio_request()
    return _xml(twiml.apology(_prompts_or_none(incoming.line.language), incoming.audio_url))


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
    services().call_log.end(
        calllog.End(
            call_sid=form.get("CallSid") or calllog.UNKNOWN_CALL,
            caller=caller,
            at=datetime.now(UTC),
            status=form.get("CallStatus") or "unknown",
            duration_s=calllog.duration(form.get("CallDuration")),
        ),
    )
    return _xml(twiml.empty())


def health() -> Response:
    """Report whether the prompt files are good: HTTP 200 either way, "degraded" on a fault.

    A refused prompt edit leaves the hotline speaking the last good text, so the process is
    fit to take calls; a 503 would make a load balancer drop every instance at once (they
    share the prompts folder) and take the line down over a typo. Alert on "degraded".
    """
    faults = services().prompts.faults
    body = {"status": "ok" if not faults else "degraded", "prompt_faults": faults}
    return jsonify(body)


def prompt_audio(file: str) -> Response:
    """Serve a recorded phrase to Twilio's <Play>: only a file a prompt set in service names."""
    # The URL only selects among the files the checked prompt sets name; it never becomes a
    # path itself, so "../" leads nowhere.
    path = services().prompts.recording(file)
    if path is None:
        abort(404)
    # Its URL carries the file's version, so a long cache is safe: a new take gets a new URL.
    return send_file(path, mimetype=AUDIO_TYPES[path.suffix.lower()], max_age=86400)


def _context(incoming: TwilioRequest, ledger: flow.Ledger) -> flow.Context:
    """Build what the flow may consult this step: the caller, the moment, the ledger view."""
    return flow.Context(
        caller=incoming.caller,
        now=datetime.now(UTC),
        ledger=ledger,
        operator_available=incoming.line.operator is not None,
        limits=incoming.shared.limits,
        call_sid=incoming.call_sid,
        zone=incoming.zone,
    )


def _log_step(
    incoming: TwilioRequest, ctx: flow.Context, state: flow.State | None, reply: flow.Reply
) -> None:
    """Keep the step in the call log (never raises)."""
    metrics.step(state.value if state is not None else None, reply.outcome.value)  # issue 12
    incoming.shared.call_log.step(
        calllog.Step(
            call_sid=ctx.call_sid or calllog.UNKNOWN_CALL,
            caller=ctx.caller,
            at=ctx.now,
            state=state.value if state is not None else None,
            next_state=reply.next.state.value if reply.next is not None else None,
            outcome=reply.outcome.value,
            contract=reply.contract,
        ),
    )


def _render(incoming: TwilioRequest, reply: flow.Reply, lang: str) -> str:
    return twiml.render(
        reply,
        lang,
        prompts_for=incoming.prompts_for,
        action_url=_action_url,
        operator=incoming.line.operator,
        audio_url=incoming.audio_url,
    )


# What quote_plus leaves as it is: a value made of these needs no quoting.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def _action_url(call: flow.Call) -> str:
    """Build the next step's URL: what urlencode gives, without quoting plain values."""
    query = call.to_query()
    return "/voice/step?" + "&".join(
        f"{key}={value if _URL_SAFE.fullmatch(value) else quote_plus(value)}"
        for key, value in query.items()
    )


def _xml(document: str | bytes) -> Response:
    # The whole Content-Type, so werkzeug need not work out the charset of a mimetype.
    return Response(document, 200, content_type=TWIML_TYPE)


def _prompts_or_none(language: str) -> PromptSet | None:
    try:
        return twilio_request().prompts_for(language)
    except Exception:
        log.exception("no prompts to apologise with")
        return None


def apologise(error: Exception) -> Response | HTTPException:
    """Turn any failure inside a webhook into the caller's apology, with HTTP 200."""
    if isinstance(error, HTTPException):
        return error
    metrics.apology(error)  # issue 12
    log.error("a webhook failed, the caller hears the apology: %s", _describe(error))
    shared = services()
    language = request.args.get("l") or shared.settings.default.language
    # The request's own form may be what failed: the recordings' base from the request line.
    base = base_url(shared, request)
    document = twiml.apology(_prompts_or_none(language), functools.partial(recording_url, base))
    # When the database is what failed, another write to it would only add its timeout
    # to the caller's wait; the line above is the record.
    if request.endpoint in ("answer_call", "answer_step") and not db.is_database_error(error):
        _log_apology(shared)
    return _xml(document)


def _log_apology(shared: Services) -> None:
    """Keep a step that ended in the apology in the call log (never raises)."""
    try:
        state: str | None = flow.State(request.args.get("s")).value
    except ValueError:
        state = None  # a missing or unreadable state; never store what the URL held
    form = request.form
    shared.call_log.step(
        calllog.Step(
            call_sid=form.get("CallSid") or calllog.UNKNOWN_CALL,
            caller=caller_id(form.get("From")),
            at=datetime.now(UTC),
            state=state,
            next_state=None,
            outcome=calllog.APOLOGY,
        ),
    )


def _describe(error: Exception) -> str:
    """Name an error without its message's details, which may hold caller input."""
    return f"{type(error).__module__}.{type(error).__qualname__}"
