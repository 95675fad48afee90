"""What happens on a simulated call: the events a `CallSession` reports, and their transcript."""

from __future__ import annotations

from dataclasses import dataclass

from ivr.errors import IvrError

# Ends that `expect-hangup` accepts; a transfer (Dial) or an error is not a hangup.
HANGUP_REASONS = frozenset({"hangup", "reject", "end of document"})


class CallError(IvrError):
    """The simulated call cannot go on: a bad answer from the app or a misplaced step."""


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
