"""Play a call as Twilio would: post the webhooks and follow their TwiML verb by verb.

`CallSession` is Twilio's side of one call. It follows `<Gather action>` and
`<Redirect>`, falls through to the next verb when a Gather gets no input (or posts empty
`Digits` when `actionOnEmptyResult` is set), does not send the finishing key in `Digits`,
stops at `<Hangup>`, `<Dial>` or the end of the document, and reports what is heard as
`Event`s. Twilio's semantics, not the app's: the tests, the bench, `ivr simulate` and
`ivr call` all follow TwiML through it. Requests are shaped and signed by
`ivr.simulate.transport`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin

from ivr.simulate.events import (
    CallError,
    Dialed,
    Ended,
    Event,
    Paused,
    Played,
    Pressed,
    Problem,
    Requested,
    Said,
    Silent,
)
from ivr.simulate.script import DEFAULT_FROM, DEFAULT_TO, KEYS
from ivr.simulate.transport import Answer, Transport, call_parameters, twilio_request

VOICE_PATH = "/voice"
MAX_REQUESTS = 200  # per call; a flow that needs more is looping
TWIML_TYPES = ("text/xml", "application/xml")


@dataclass
class PendingGather:
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


class CallSession:
    """Twilio's side of one call: posts the webhooks and plays their TwiML verb by verb.

    Between calls to `start`, `press` and `silence` the call is either waiting at a
    Gather or over. Every observable thing is passed to `on_event`; a failure that stops
    the call raises CallError. `twiml` is the last document answered, for tests that
    check the TwiML itself; `from_=None` calls with no From parameter.
    """

    def __init__(
        self,
        transport: Transport,
        on_event: Callable[[Event], None],
        *,
        from_: str | None = DEFAULT_FROM,
        to: str = DEFAULT_TO,
        auth_token: str | None = None,
        account_sid: str | None = None,
        max_requests: int = MAX_REQUESTS,
    ) -> None:
        self._transport = transport
        self._on_event = on_event
        self._auth_token = auth_token
        self._max_requests = max_requests
        self._base = call_parameters(from_, to, account_sid=account_sid)
        self._requests = 0
        self._document_url = transport.base_url + VOICE_PATH
        self._verbs: deque[ET.Element] = deque()
        self._gather: PendingGather | None = None
        self._keys = ""
        self.end_reason: str | None = None
        self.dialed: list[str] = []
        self.twiml: ET.Element | None = None  # the last TwiML document answered

    @property
    def call_sid(self) -> str:
        """Return this call's CallSid."""
        return self._base["CallSid"]

    @property
    def parameters(self) -> dict[str, str]:
        """Return the parameters every webhook of this call carries (a copy)."""
        return dict(self._base)

    @property
    def waiting(self) -> bool:
        """Tell whether a Gather is waiting for keys."""
        return self._gather is not None

    @property
    def gather(self) -> PendingGather | None:
        """Return the Gather waiting for keys, if any."""
        return self._gather

    @property
    def gather_hint(self) -> str | None:
        """Describe the waiting Gather, if any."""
        return self._gather.hint() if self._gather else None

    @property
    def ended(self) -> bool:
        """Tell whether the call is over."""
        return self.end_reason is not None

    def start(self, path: str = VOICE_PATH) -> None:
        """Answer the call: POST the voice URL, then play until a Gather waits or the call ends.

        `path` is the number's voice URL (its fallback URL, say), relative to the base URL.
        """
        self._document_url = self._transport.base_url + "/" + path.lstrip("/")
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

    def _require_gather(self, what: str) -> PendingGather:
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
        completed: PendingGather | None = None  # a Gather that its numDigits has just closed
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

    def _finish(self, gather: PendingGather, finished_on: str) -> None:
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
        request = twilio_request(method, url, params, self._auth_token)
        self._emit(Requested(method, url, self._show(url), extra.get("Digits")))
        answer = self._transport.send(*request)
        return self._verbs_of(answer, f"{method} {self._show(url)}")

    def _verbs_of(self, answer: Answer, what: str) -> list[ET.Element]:
        """Check an answer is 200 TwiML; keep it as the last document; return its verbs."""
        if answer.status != 200:
            raise CallError(
                f"{what} answered HTTP {answer.status}"
                f" ({answer.content_type or 'no Content-Type'}): {_excerpt(answer.body)}"
            )
        media_type = answer.content_type.split(";")[0].strip().lower()
        if media_type not in TWIML_TYPES:
            self._emit(
                Problem(
                    f"{what} answered Content-Type {answer.content_type or 'none'!r};"
                    " TwiML is served as text/xml"
                )
            )
        try:
            root = ET.fromstring(answer.body)
        except ET.ParseError as error:
            raise CallError(f"{what} answered no XML ({error}): {_excerpt(answer.body)}") from error
        if root.tag != "Response":
            raise CallError(
                f"{what} answered <{root.tag}>, not TwiML's <Response>: {_excerpt(answer.body)}"
            )
        self.twiml = root
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
        self._gather = PendingGather(
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


def _excerpt(body: str, limit: int = 200) -> str:
    """Shorten a body to one line for a message."""
    flat = " ".join(body.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "…")
