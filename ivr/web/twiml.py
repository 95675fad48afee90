"""Turn the flow's replies into TwiML: the documents twilio's `VoiceResponse` writes.

Written as text, not built as `VoiceResponse` elements and serialised by ElementTree,
which cost more than the rest of a step's Python: the output is the same, byte for byte
(tests/test_twiml.py renders every answer of a walk both ways and compares). The rules
copied from twilio and ElementTree: the declaration, then attributes sorted by name,
text escaped (& < >) and attribute values escaped (& < > " and CR, LF, TAB as character
references), an element with neither text nor children written as `<Name ... />`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from ivr.flow import Call, Line, Reply
from ivr.prompts import PromptSet

# (file, version) -> the absolute URL Twilio fetches a recorded phrase from.
AudioUrl = Callable[[str, int], str]

# Each set of prompts a reply's lines may need, by language; fetched once a document.
PromptsFor = Callable[[str], PromptSet]

# Said when even the prompt files cannot be read: each language in its own <Say> and voice.
LAST_RESORT_APOLOGY: tuple[tuple[str, str, str], ...] = (
    ("ru-RU", "Polly.Tatyana", "Извините, произошла техническая ошибка. Позвоните позже."),
    ("en-US", "Polly.Joanna", "Sorry, something went wrong. Please call again later."),
)

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
HANGUP = "<Hangup />"


def render(
    reply: Reply,
    lang: str,
    prompts_for: PromptsFor,
    action_url: Callable[[Call], str],
    operator: str | None,
    audio_url: AudioUrl | None = None,
) -> str:
    """Build the TwiML document for one step of a call in language `lang`.

    A line in another language (the offer to switch) is said from that language's prompts,
    in its voice: `prompts_for` gives each language's set with the dialed line's voice.
    """
    prompts = _Languages(prompts_for, reply.next.lang if reply.next else lang)
    parts = [DECLARATION, "<Response>"]
    _say(parts, prompts, reply.lines, audio_url)
    if reply.dial_operator and operator:
        parts.append(_element("Dial", {}, operator))
    elif reply.next is not None and reply.gather is not None:
        url = action_url(reply.next)
        gather = reply.gather
        attribute = _escape_attribute(url)
        inside: list[str] = []
        _say(inside, prompts, reply.prompt, audio_url)
        # The attributes in name order, as `_element` sorts them.
        head = (
            f'<Gather action="{attribute}"'
            f' finishOnKey="{_escape_attribute(gather.finish_on_key)}" input="dtmf"'
            f' method="POST" numDigits="{gather.num_digits}" timeout="{gather.timeout_s}"'
        )
        parts.append(f"{head}>{''.join(inside)}</Gather>" if inside else head + " />")
        # A Gather that times out with no keys falls through to here, and the step
        # without Digits counts as silence.
        parts.append(_element("Redirect", {"method": "POST"}, url))
    else:
        parts.append(HANGUP)
    parts.append("</Response>")
    return "".join(parts)


def apology(prompts: PromptSet | None, audio_url: AudioUrl | None = None) -> str:
    """Build the short apology and hangup said when anything goes wrong inside."""
    parts = [DECLARATION, "<Response>"]
    if prompts is not None and "apology" in prompts.phrases:
        only = prompts  # the apology is said in the language it was asked for
        _say(parts, _Languages(lambda _: only, only.language), (Line("apology"),), audio_url)
    else:
        for language, voice, text in LAST_RESORT_APOLOGY:
            parts.append(_element("Say", {"language": language, "voice": voice}, text))
    parts.append(HANGUP)
    parts.append("</Response>")
    return "".join(parts)


def empty() -> str:
    """Build a document that does nothing, for callbacks that expect no instructions."""
    return DECLARATION + "<Response />"


class _Languages:
    """The prompt sets one document speaks from: the call's language, and any a line names."""

    def __init__(self, prompts_for: PromptsFor, call_language: str) -> None:
        self._prompts_for = prompts_for
        self._call_language = call_language
        self._sets: dict[str, PromptSet] = {}

    def of(self, line: Line) -> PromptSet:
        """Return the prompts a line is said from."""
        language = line.language or self._call_language
        found = self._sets.get(language)
        if found is None:
            found = self._sets[language] = self._prompts_for(language)
        return found


def _say(
    parts: list[str],
    languages: _Languages,
    lines: Iterable[Line],
    audio_url: AudioUrl | None,
) -> None:
    """Speak each line: a recorded phrase with <Play>, any other with <Say> in its set's voice.

    Each line is its own <Say>, in the language and voice of the file its phrase comes from.
    Without `audio_url` (no web request to build a URL from) a recording's transcript is said.
    """
    for line in lines:
        prompts = languages.of(line)
        recording = prompts.audio.get(line.phrase)
        if recording is not None and audio_url is not None:
            parts.append(_element("Play", {}, audio_url(recording.file, recording.version)))
        else:
            head = _say_head(prompts.language, prompts.voice)
            text = prompts.render(line.phrase, line.values)
            parts.append(f"{head}{_escape_text(text)}</Say>" if text else head[:-1] + " />")


@functools.lru_cache(maxsize=64)  # a few languages and voices
def _say_head(language: str, voice: str) -> str:
    """The opening <Say> tag of a language and voice, as `_element` writes it."""
    return _element("Say", {"language": language, "voice": voice}, None)[:-3] + ">"


def _element(
    name: str, attributes: dict[str, str], text: str | None, children: Iterable[str] = ()
) -> str:
    """Write one element as ElementTree writes twilio's: sorted attributes, escaped text."""
    head = "<" + name + "".join(
        f' {key}="{_escape_attribute(attributes[key])}"' for key in sorted(attributes)
    )
    inner = _escape_text(text) if text else ""
    inner += "".join(children)
    return f"{head}>{inner}</{name}>" if inner else head + " />"


def _escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _escape_attribute(text: str) -> str:
    text = _escape_text(text)
    if '"' in text:
        text = text.replace('"', "&quot;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if "\n" in text:
        text = text.replace("\n", "&#10;")
    if "\t" in text:
        text = text.replace("\t", "&#09;")
    return text
