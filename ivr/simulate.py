"""Play DTMF scripts and interactive calls against the hotline the way Twilio would.

Two parts, one way down (the script parser is `ivr.dtmf_script`):

- `CallSession`, Twilio's side of one call: it posts the webhooks, signs them, reads the
  TwiML verb by verb (Twilio's semantics, not the app's) and reports `Event`s;
- `run_script` / `run_interactive`, which drive a session from a script or a keyboard,
  and the click commands `simulate_command` and `call_command`.

A `Transport` carries the requests: `InProcessTransport` (a Flask app's test client) or
`HttpTransport` (a running server). The session does not care which.
"""

from __future__ import annotations

import atexit
import re
import secrets
import shutil
import tempfile
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlencode, urljoin, urlsplit

import click
from twilio.request_validator import (  # type: ignore[import-untyped, unused-ignore]
    RequestValidator,
)

from ivr import audio
from ivr.dtmf_script import (
    DEFAULT_FROM,
    DEFAULT_TO,
    KEYS,
    Call,
    Expect,
    ExpectDial,
    ExpectHangup,
    ExpectNot,
    Press,
    Script,
    ScriptError,
    Silence,
    Step,
    normalize_number,
    parse_script,
)
from ivr.errors import IvrError

if TYPE_CHECKING:
    from flask import Flask

VOICE_PATH = "/voice"
MAX_REQUESTS = 200  # per call; a flow that needs more is looping
TWILIO_TIMEOUT_SECONDS = 15  # Twilio gives up on a webhook after 15 s
API_VERSION = "2010-04-01"
TWIML_TYPES = ("text/xml", "application/xml")

# Ends that `expect-hangup` accepts; a transfer (Dial) or an error is not a hangup.
HANGUP_REASONS = frozenset({"hangup", "reject", "end of document"})


class CallError(IvrError):
    """The simulated call cannot go on: a bad answer from the app or a misplaced step."""


# --- what happens on a call -------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    """The simulator requested a webhook."""

    method: str
    url: str
    shown: str
    digits: str | None = None


@dataclass(frozen=True)
class Said:
    """A `<Say>` was heard."""

    text: str
    language: str
    voice: str | None = None


@dataclass(frozen=True)
class Played:
    """A `<Play>` was heard (its URL; the recording is not fetched)."""

    url: str


@dataclass(frozen=True)
class Paused:
    """A `<Pause>` was heard."""

    seconds: float


@dataclass(frozen=True)
class Pressed:
    """The caller pressed keys."""

    keys: str


@dataclass(frozen=True)
class Silent:
    """The caller pressed nothing until the Gather timed out."""

    seconds: float


@dataclass(frozen=True)
class Dialed:
    """The call was transferred by `<Dial>`."""

    number: str


@dataclass(frozen=True)
class Ended:
    """The call ended: hangup, reject, end of document, dial, caller, error."""

    reason: str


@dataclass(frozen=True)
class Problem:
    """Something the app did wrong that Twilio might survive, such as a wrong Content-Type."""

    message: str


@dataclass(frozen=True)
class Checked:
    """A script expectation was checked."""

    line: int
    source: str
    ok: bool


Event = Requested | Said | Played | Paused | Pressed | Silent | Dialed | Ended | Problem | Checked


def describe(event: Event) -> str:
    """Render one event as a transcript line."""
    match event:
        case Requested(method=method, shown=shown, digits=digits):
            return f"  ☎ {method} {shown}" + (f"  Digits={digits}" if digits is not None else "")
        case Said(text=text, language=language, voice=voice):
            return f"  🔊 [{language}{' ' + voice if voice else ''}] {text}"
        case Played(url=url):
            return f"  ♪ play {url}"
        case Paused(seconds=seconds):
            return f"  … pause {seconds:g} s"
        case Pressed(keys=keys):
            return f"  ⌨ {keys}"
        case Silent(seconds=seconds):
            return f"  … silence ({seconds:g} s)"
        case Dialed(number=number):
            return f"  ↪ Dial {number}"
        case Ended(reason=reason):
            return f"  ✖ {reason}"
        case Problem(message=message):
            return f"  ✗ {message}"
        case Checked(line=line, source=source, ok=ok):
            return f"  {'✓' if ok else '✗'} line {line}: {source}"


# --- transports -----------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a webhook answered."""

    status: int
    content_type: str
    body: str


class Transport(Protocol):
    """Carries the simulator's requests to the app; raises CallError if it cannot."""

    @property
    def base_url(self) -> str:
        """Return the absolute URL the webhook paths hang from (no trailing slash)."""
        ...

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Reply:
        """Send a request to the absolute `url`; `form` is the POST body, if any."""
        ...


class InProcessTransport:
    """Requests go to a Flask app's test client, as if it were served at `base_url`."""

    def __init__(self, app: Flask, base_url: str = "http://localhost") -> None:
        self._client = app.test_client()
        self._base_url = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        """Return the URL the app pretends to be served at."""
        return self._base_url

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Reply:
        """Hand the request to the test client, keeping the URL as signed."""
        parts = urlsplit(url)
        # The query stays in the path so that the raw request URI (RAW_URI, REQUEST_URI)
        # carries it, as a real server's does; apps check signatures against it.
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        response = self._client.open(
            target,
            base_url=f"{parts.scheme}://{parts.netloc}",
            method=method,
            data=dict(form) if form is not None else None,
            headers=dict(headers),
        )
        return Reply(
            response.status_code,
            response.headers.get("Content-Type", ""),
            response.get_data(as_text=True),
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Let a 3xx reach the simulator, which reports it like any non-200."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Refuse to follow."""
        return None


class HttpTransport:
    """Requests go over HTTP to a running server at `base_url`."""

    def __init__(self, base_url: str, timeout: float = TWILIO_TIMEOUT_SECONDS) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    @property
    def base_url(self) -> str:
        """Return the server's base URL."""
        return self._base_url

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Reply:
        """Send the request with urllib; any HTTP status comes back as a Reply."""
        all_headers = dict(headers)
        data = None
        if form is not None:
            data = urlencode(form).encode("utf-8")
            all_headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                content_type = response.headers.get("Content-Type", "")
                return Reply(response.status, content_type, _decode(response.read(), content_type))
        except urllib.error.HTTPError as error:
            content_type = error.headers.get("Content-Type", "")
            body = _decode(error.read(), content_type)
            error.close()
            return Reply(error.code, content_type, body)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CallError(f"cannot reach {url}: {reason}") from error


def _decode(body: bytes, content_type: str) -> str:
    """Decode a body by the charset its Content-Type names (UTF-8 if none)."""
    match = re.search(r"charset=([\w.:-]+)", content_type, re.IGNORECASE)
    try:
        return body.decode(match.group(1) if match else "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


# --- one call, Twilio's side ------------------------------------------------------------


@dataclass
class _Gather:
    """A Gather waiting for keys."""

    action: str
    method: str
    num_digits: int | None
    finish_on_key: str
    timeout: float
    action_on_empty_result: bool
    digits: str = ""

    def hint(self) -> str:
        """Say what this Gather takes, for a person at the keyboard."""
        if self.num_digits is None:
            parts = ["any number of keys"]
        else:
            parts = [f"up to {self.num_digits} key{'' if self.num_digits == 1 else 's'}"]
        if self.finish_on_key:
            parts.append(f"{self.finish_on_key} ends")
        parts.append(f"timeout {self.timeout:g} s")
        return ", ".join(parts)


def new_sid(prefix: str) -> str:
    """Make a Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


class CallSession:
    """Twilio's side of one call: posts the webhooks and plays their TwiML verb by verb.

    Between calls to `start`, `press` and `silence` the call is either waiting at a
    Gather or over. Every observable thing is passed to `on_event`; a failure that stops
    the call raises CallError.
    """

    def __init__(
        self,
        transport: Transport,
        on_event: Callable[[Event], None],
        *,
        from_: str = DEFAULT_FROM,
        to: str = DEFAULT_TO,
        auth_token: str | None = None,
        account_sid: str | None = None,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self._transport = transport
        self._on_event = on_event
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._max_requests = max_requests
        self._base = {
            "CallSid": new_sid("CA"),
            "AccountSid": account_sid or new_sid("AC"),
            "From": from_,
            "To": to,
            "Direction": "inbound",
            "ApiVersion": API_VERSION,
        }
        self._requests = 0
        self._document_url = transport.base_url + VOICE_PATH
        self._verbs: deque[ET.Element] = deque()
        self._gather: _Gather | None = None
        self._keys = ""
        self.end_reason: str | None = None
        self.dialed: list[str] = []

    @property
    def call_sid(self) -> str:
        """Return this call's CallSid."""
        return self._base["CallSid"]

    @property
    def waiting(self) -> bool:
        """Tell whether a Gather is waiting for keys."""
        return self._gather is not None

    @property
    def gather_hint(self) -> str | None:
        """Describe the waiting Gather, if any."""
        return self._gather.hint() if self._gather else None

    @property
    def ended(self) -> bool:
        """Tell whether the call is over."""
        return self.end_reason is not None

    def start(self) -> None:
        """Answer the call: POST /voice, then play until a Gather waits or the call ends."""
        self._guard(lambda: self._load("POST", self._document_url, {}, status="ringing"))

    def press(self, keys: str) -> None:
        """Press keys; what one Gather does not take goes to the next one."""
        self._require_gather(f"press {keys}")
        self._emit(Pressed(keys))
        self._keys += keys
        self._guard(self._feed)

    def silence(self) -> None:
        """Press nothing: the waiting Gather times out as on Twilio."""
        gather = self._require_gather("silence")
        self._emit(Silent(gather.timeout))
        self._guard(lambda: self._finish(gather, finished_on=""))

    def hang_up(self) -> None:
        """End the call from the caller's side."""
        if not self.ended:
            self._end("caller hung up")

    def _require_gather(self, what: str) -> _Gather:
        """Return the waiting Gather or fail: keys pressed into nothing are a script bug."""
        if self._gather is None:
            raise CallError(
                f"{what}: no Gather is waiting for keys; the call ended ({self.end_reason})"
            )
        return self._gather

    def _guard(self, action: Callable[[], None]) -> None:
        """Run an action, then play on; a CallError also ends the call."""
        try:
            action()
            self._play()
        except CallError:
            if not self.ended:
                self._end("error")
            raise

    def _feed(self) -> None:
        """Give the pressed keys to the waiting Gathers, one key at a time."""
        completed: _Gather | None = None  # a Gather that its numDigits has just closed
        while self._keys:
            key = self._keys[0]
            if completed is not None and key == completed.finish_on_key:
                # `press 590000000018#` at a numDigits=12 Gather: the '#' confirms the entry
                # the 12th digit already sent; it is not typed ahead into the next menu.
                self._keys = self._keys[1:]
                completed = None
                continue
            gather = self._gather
            if gather is None:
                break
            self._keys = self._keys[1:]
            completed = None
            if gather.finish_on_key and key == gather.finish_on_key:
                self._finish(gather, finished_on=key)
            else:
                gather.digits += key
                if gather.num_digits is not None and len(gather.digits) >= gather.num_digits:
                    completed = gather
                    self._finish(gather, finished_on="")
            # The next Gather, if any, takes the keys left: the caller typed ahead.
            self._play()
        if self._keys:
            leftover, self._keys = self._keys, ""
            raise CallError(
                f"keys {leftover!r} were left over: the call ended ({self.end_reason}) "
                "before a Gather took them"
            )

    def _finish(self, gather: _Gather, finished_on: str) -> None:
        """Close a Gather: post what it got; with nothing, the next verb plays on."""
        self._gather = None
        if gather.digits or gather.action_on_empty_result:
            params = {"Digits": gather.digits, "FinishedOnKey": finished_on}
            self._load(gather.method, gather.action, params)

    def _load(
        self, method: str, url: str, extra: Mapping[str, str], status: str = "in-progress"
    ) -> None:
        """Request a TwiML document; its verbs are played next."""
        self._verbs = deque(self._request(method, url, extra, status))
        self._document_url = url

    def _request(
        self, method: str, url: str, extra: Mapping[str, str], status: str
    ) -> list[ET.Element]:
        """Send one signed webhook request; return the verbs of the TwiML it answered."""
        if self._requests >= self._max_requests:
            raise CallError(
                f"more than {self._max_requests} requests in one call, cut: a loop? "
                f"(next was {method} {self._show(url)})"
            )
        self._requests += 1
        params = {**self._base, "CallStatus": status, **extra}
        # Twilio puts a GET's parameters in the query string and signs the URL alone.
        sent_url = _with_query(url, params) if method == "GET" else url
        form = None if method == "GET" else params
        headers = {"User-Agent": "TwilioProxy/1.1 (ivr simulate)"}
        if self._validator is not None:
            signature = self._validator.compute_signature(sent_url, form or {})
            headers["X-Twilio-Signature"] = str(signature)
        self._emit(Requested(method, url, self._show(url), extra.get("Digits")))
        reply = self._transport.send(method, sent_url, form, headers)
        return self._verbs_of(reply, f"{method} {self._show(url)}")

    def _verbs_of(self, reply: Reply, what: str) -> list[ET.Element]:
        """Check a reply is 200 TwiML; return its verbs."""
        if reply.status != 200:
            raise CallError(
                f"{what} answered HTTP {reply.status} ({reply.content_type or 'no Content-Type'}):"
                f" {_excerpt(reply.body)}"
            )
        media_type = reply.content_type.split(";")[0].strip().lower()
        if media_type not in TWIML_TYPES:
            self._emit(
                Problem(
                    f"{what} answered Content-Type {reply.content_type or 'none'!r};"
                    " TwiML is served as text/xml"
                )
            )
        try:
            root = ET.fromstring(reply.body)
        except ET.ParseError as error:
            raise CallError(f"{what} answered no XML ({error}): {_excerpt(reply.body)}") from error
        if root.tag != "Response":
            raise CallError(
                f"{what} answered <{root.tag}>, not TwiML's <Response>: {_excerpt(reply.body)}"
            )
        return list(root)

    def _play(self) -> None:
        """Play verbs until a Gather waits or the call ends (at once if either is so)."""
        if self._gather is not None or self.ended:
            return
        while self._verbs:
            verb = self._verbs.popleft()
            if verb.tag in ("Say", "Play", "Pause"):
                self._hear(verb)
            elif verb.tag == "Gather":
                self._start_gather(verb)
                return
            elif verb.tag == "Redirect":
                self._redirect(verb)
            elif verb.tag == "Dial":
                self._dial(verb)
                return
            elif verb.tag in ("Hangup", "Reject"):
                self._end(verb.tag.lower())
                return
            else:
                self._emit(Problem(f"<{verb.tag}> is not simulated; skipped"))
        self._end("end of document")

    def _hear(self, verb: ET.Element) -> None:
        """Report a Say, Play or Pause."""
        if verb.tag == "Say":
            text = " ".join("".join(verb.itertext()).split())
            self._emit(Said(text, verb.get("language", "en-US"), verb.get("voice")))
        elif verb.tag == "Play":
            self._emit(Played((verb.text or "").strip()))
        else:
            self._emit(Paused(_number(verb, "length", 1.0)))

    def _start_gather(self, verb: ET.Element) -> None:
        """Play a Gather's prompts, then wait for keys."""
        for child in verb:
            if child.tag in ("Say", "Play", "Pause"):
                # The transcript shows the prompt as started even if keys barge in.
                self._hear(child)
            else:
                self._emit(Problem(f"<{child.tag}> cannot be nested in <Gather>; skipped"))
        num_digits = verb.get("numDigits")
        if num_digits is not None and not (num_digits.isdigit() and int(num_digits) > 0):
            raise CallError(f"<Gather numDigits={num_digits!r}> is not a positive integer")
        finish = verb.get("finishOnKey", "#")
        if finish not in KEYS and finish != "":
            raise CallError(f"<Gather finishOnKey={finish!r}> is not one of 0-9, *, # or ''")
        self._gather = _Gather(
            action=self._resolve(verb.get("action")),
            method=_method(verb),
            num_digits=int(num_digits) if num_digits else None,
            finish_on_key=finish,
            timeout=_number(verb, "timeout", 5.0),
            action_on_empty_result=verb.get("actionOnEmptyResult", "false").lower() == "true",
        )

    def _redirect(self, verb: ET.Element) -> None:
        """Follow a Redirect to its URL."""
        target = (verb.text or "").strip()
        if not target:
            raise CallError("<Redirect> has no URL")
        self._load(_method(verb), self._resolve(target), {})

    def _dial(self, verb: ET.Element) -> None:
        """Transfer the call: for the script the call ends here."""
        numbers = [(verb.text or "").strip()] + [(child.text or "").strip() for child in verb]
        numbers = [number for number in numbers if number]
        if not numbers:
            raise CallError("<Dial> has no number")
        for number in numbers:
            self.dialed.append(number)
            self._emit(Dialed(number))
        self._end("transferred")

    def _end(self, reason: str) -> None:
        """End the call."""
        self._gather = None
        self._verbs.clear()
        self.end_reason = reason
        self._emit(Ended(reason))

    def _resolve(self, url: str | None) -> str:
        """Resolve a URL against the current document, as Twilio does."""
        return urljoin(self._document_url, url) if url else self._document_url

    def _show(self, url: str) -> str:
        """Shorten a URL of the app to its path and query."""
        base = self._transport.base_url
        if url == base or url.startswith(base + "/"):
            return url[len(base) :] or "/"
        return url

    def _emit(self, event: Event) -> None:
        self._on_event(event)


def _method(verb: ET.Element) -> str:
    """Return a verb's HTTP method (POST unless it says GET)."""
    method = verb.get("method", "POST").upper()
    if method not in ("GET", "POST"):
        raise CallError(f"<{verb.tag} method={method!r}> is neither GET nor POST")
    return method


def _number(verb: ET.Element, attribute: str, default: float) -> float:
    """Read a numeric attribute, falling back to Twilio's default for odd values."""
    try:
        return float(verb.get(attribute, default))
    except ValueError:
        return default


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """Append parameters to a URL's query string."""
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


def _excerpt(body: str, limit: int = 200) -> str:
    """Shorten a body to one line for a message."""
    flat = " ".join(body.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")


# --- running a script -------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """A step that did not hold: where, what, and what was heard since the last step."""

    path: str
    line: int
    source: str
    message: str
    heard: tuple[str, ...] = ()
    since_line: int | None = None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.source}: {self.message}"
        if self.since_line is not None:
            heard = " / ".join(f'"{said}"' for said in self.heard) or "nothing"
            text += f"\n    heard since line {self.since_line}: {heard}"
        return text


@dataclass(frozen=True)
class ScriptResult:
    """What running a script gave: every event and every failure."""

    script: Script
    events: tuple[Event, ...]
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        """Tell whether every step held."""
        return not self.failures

    def transcript(self) -> str:
        """Render the events as readable lines."""
        return "\n".join(describe(event) for event in self.events)


@dataclass
class _ScriptRun:
    """The mutable state of one script run."""

    script: Script
    transport: Transport
    auth_token: str | None
    max_requests: int
    events: list[Event] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    session: CallSession | None = None
    step: Step | None = None
    since: Step | None = None

    def run(self) -> ScriptResult:
        """Play every step; stop at the first failure that leaves the call unusable."""
        for step in self.script.steps:
            self.step = step
            try:
                self._do(step)
            except CallError as error:
                self._fail(step, str(error))
                break
        if self.session is not None:
            self.session.hang_up()
        return ScriptResult(self.script, tuple(self.events), tuple(self.failures))

    def _do(self, step: Step) -> None:
        """Play one step."""
        match step:
            case Call():
                if self.session is not None:
                    self.session.hang_up()
                self._reset(step)
                self.session = CallSession(
                    self.transport,
                    self._on_event,
                    from_=step.from_,
                    to=step.to,
                    auth_token=self.auth_token,
                    max_requests=self.max_requests,
                )
                self.session.start()
            case Press(keys=keys):
                self._reset(step)
                self._session().press(keys)
            case Silence():
                self._reset(step)
                self._session().silence()
            case Expect(text=text):
                self._check(step, _contains(self.heard, text), f'"{text}" was not said')
            case ExpectNot(text=text):
                self._check(step, not _contains(self.heard, text), f'"{text}" was said')
            case ExpectHangup():
                self._check(step, *self._hangup_verdict())
            case ExpectDial(number=number):
                self._check(step, *self._dial_verdict(number))

    def _session(self) -> CallSession:
        if self.session is None:  # parse_text puts a call first; this guards hand-made Scripts
            raise CallError("no call started: the script must begin with `call`")
        return self.session

    def _hangup_verdict(self) -> tuple[bool, str]:
        reason = self._session().end_reason
        if reason in HANGUP_REASONS:
            return True, ""
        if reason is None:
            return False, "the call is still going on (a Gather is waiting)"
        return False, f"the call did not hang up: it ended by {reason}"

    def _dial_verdict(self, number: str) -> tuple[bool, str]:
        dialed = self._session().dialed
        if normalize_number(number) in map(normalize_number, dialed):
            return True, ""
        return False, f"dialed {', '.join(dialed) or 'nothing'}, not {number}"

    def _reset(self, step: Step) -> None:
        """Start a new stretch of what was heard: this step acts on the call."""
        self.heard = []
        self.since = step

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Said):
            self.heard.append(event.text)
        elif isinstance(event, Played):
            self.heard.append(event.url)
        elif isinstance(event, Problem) and self.step is not None:
            self._fail(self.step, event.message)

    def _check(
        self, step: Expect | ExpectNot | ExpectHangup | ExpectDial, ok: bool, message: str
    ) -> None:
        self.events.append(Checked(step.line, step.source, ok))
        if not ok:
            self._fail(step, message)

    def _fail(self, step: Step, message: str) -> None:
        self.failures.append(
            Failure(
                self.script.path,
                step.line,
                step.source,
                message,
                tuple(self.heard),
                self.since.line if self.since is not None else None,
            )
        )


def _contains(heard: Sequence[str], text: str) -> bool:
    """Tell whether text was said, ignoring case and runs of whitespace."""
    return _fold(text) in _fold(" ".join(heard))


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def run_script(
    script: Script,
    transport: Transport,
    auth_token: str | None = None,
    *,
    max_requests: int = MAX_REQUESTS,
) -> ScriptResult:
    """Run a parsed script's calls through a transport and check its expectations."""
    return _ScriptRun(script, transport, auth_token, max_requests).run()


# --- an interactive call ----------------------------------------------------------------


@dataclass(frozen=True)
class CallRecord:
    """What an interactive call gave: its events and the error that stopped it, if any."""

    events: tuple[Event, ...]
    error: str | None = None


def run_interactive(
    transport: Transport,
    from_: str,
    to: str,
    read_keys: Callable[[], str | None],
    show: Callable[[str], None],
    auth_token: str | None = None,
) -> CallRecord:
    """Hold a call with a person: show what is said, read keys; "" is silence, None hangs up."""
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        show(describe(event))

    session = CallSession(transport, on_event, from_=from_, to=to, auth_token=auth_token)
    try:
        session.start()
        while session.waiting:
            show(f"  … waiting for keys: {session.gather_hint}")
            line = read_keys()
            keys = "".join(line.split()) if line is not None else None
            if keys is None:
                session.hang_up()
            elif not keys:
                session.silence()
            elif set(keys) <= KEYS:
                session.press(keys)
            else:
                show("  ? keys are 0-9, * and #; Enter alone is silence")
    except CallError as error:
        show(f"  ✗ {error}")
        return CallRecord(tuple(events), str(error))
    return CallRecord(tuple(events), None)


# --- audio ------------------------------------------------------------------------------


def sounds_of(events: Iterable[Event]) -> list[audio.Sound]:
    """Turn a call's events into what the caller hears, for `--audio`."""
    sounds: list[audio.Sound] = []
    for event in events:
        match event:
            case Said(text=text, language=language):
                sounds.append(audio.Speech(text, language))
            case Played():
                sounds.append(audio.Tone(440.0, 0.5))  # the recording itself is not fetched
            case Paused(seconds=seconds) | Silent(seconds=seconds):
                sounds.append(audio.Quiet(seconds))
            case Pressed(keys=keys):
                sounds.append(audio.Keys(keys))
            case Dialed():
                sounds += [audio.Tone(425.0, 1.0), audio.Quiet(1.0)]  # a ringback
            case Ended(reason=reason) if reason in HANGUP_REASONS:
                sounds += [audio.Tone(425.0, 0.35), audio.Quiet(0.35)] * 3  # busy tone
    return sounds


# --- the commands -----------------------------------------------------------------------

# The seam for `ivr simulate` and `ivr call` without --url: the Flask app factory. None
# means ivr.app.create_app, imported only when needed; tests set their own.
app_factory: Callable[[], Flask] | None = None


def _in_process_transport(auth_token: str | None, database_url: str | None) -> Transport:
    """Build the hotline app in process, on a throwaway demo ledger unless one is named.

    A fresh demo ledger makes every run start alike: failed tries from an earlier run
    cannot add up to a lockout, and the demo balances are what the scripts expect.
    """
    factory = app_factory
    if factory is not None:
        return InProcessTransport(factory())
    from ivr.app import create_app
    from ivr.home import home
    from ivr.ledger import create_demo_if_missing

    try:
        demo_ledger = home().demo_ledger
    except IvrError as error:
        raise click.ClickException(str(error)) from None

    if database_url is None:
        folder = tempfile.mkdtemp(prefix="ivr-simulate-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        database_url = f"sqlite:///{folder}/ledger.sqlite3"
    app = create_app({"DATABASE_URL": database_url, "AUTH_TOKEN": auth_token, "PUBLIC_URL": None})
    create_demo_if_missing(app.extensions["ivr"].engine, demo_ledger)
    return InProcessTransport(app)


def _transport(
    base_url: str | None, auth_token: str | None, database_url: str | None
) -> Transport:
    if base_url:
        return HttpTransport(base_url)
    return _in_process_transport(auth_token, database_url)


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
        audio.render(sounds_of(events), target)
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
    metavar="URL",
    help="In process only: the ledger to use (default: a fresh copy of the demo ledger).",
)
_audio_option = click.option(
    "--audio",
    "audio_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE.wav",
    help="Also render the call as heard (needs espeak-ng and sox).",
)


@click.command("simulate")
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
    transport = _transport(base_url, auth_token, database_url)
    results = [run_script(script, transport, auth_token) for script in scripts]
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


@click.command("call")
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
    transport = _transport(base_url, auth_token, database_url)
    record = run_interactive(transport, from_, to, _read_keys, click.echo, auth_token)
    if audio_path is not None:
        _render_audio(audio_path, record.events)
    raise SystemExit(1 if record.error else 0)


def _read_keys() -> str | None:
    """Read a line of keys from the terminal; None at end of input (Ctrl-D)."""
    try:
        return input("keys (Enter = silence, Ctrl-D = hang up)> ")
    except EOFError:
        click.echo()
        return None
