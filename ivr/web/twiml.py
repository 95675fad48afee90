"""Turn the flow's replies into TwiML with twilio's `VoiceResponse`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twilio.twiml.voice_response import Gather, VoiceResponse

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
    response = VoiceResponse()
    prompts = _Languages(prompts_for, reply.next.lang if reply.next else lang)
    _say(response, prompts, reply.lines, audio_url)
    if reply.dial_operator and operator:
        response.dial(operator)
    elif reply.next is not None and reply.gather is not None:
        url = action_url(reply.next)
        gather = response.gather(
            input="dtmf",
            action=url,
            method="POST",
            num_digits=reply.gather.num_digits,
            finish_on_key=reply.gather.finish_on_key,
            timeout=reply.gather.timeout_s,
        )
        _say(gather, prompts, reply.prompt, audio_url)
        # A Gather that times out with no keys falls through to here, and the step
        # without Digits counts as silence.
        response.redirect(url, method="POST")
    else:
        response.hangup()
    return str(response)


def apology(prompts: PromptSet | None, audio_url: AudioUrl | None = None) -> str:
    """Build the short apology and hangup said when anything goes wrong inside."""
    response = VoiceResponse()
    if prompts is not None and "apology" in prompts.phrases:
        only = prompts  # the apology is said in the language it was asked for
        _say(response, _Languages(lambda _: only, only.language), (Line("apology"),), audio_url)
    else:
        for language, voice, text in LAST_RESORT_APOLOGY:
            response.say(text, voice=voice, language=language)
    response.hangup()
    return str(response)


def empty() -> str:
    """Build a document that does nothing, for callbacks that expect no instructions."""
    return str(VoiceResponse())


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
    target: VoiceResponse | Gather,
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
            target.play(audio_url(recording.file, recording.version))
        else:
            text = prompts.render(line.phrase, line.values)
            target.say(text, voice=prompts.voice, language=prompts.language)
