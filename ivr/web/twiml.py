"""Turn the flow's replies into TwiML with twilio's `VoiceResponse`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.flow import Call, Line, Reply
from ivr.prompts import PromptSet

# (file, version) -> the absolute URL Twilio fetches a recorded phrase from.
AudioUrl = Callable[[str, int], str]

# Said when even the prompt files cannot be read: both languages, no voice attribute.
LAST_RESORT_APOLOGY = (
    "Извините, произошла техническая ошибка. Sorry, something went wrong. Please call again later."
)


def render(
    reply: Reply,
    lang: str,
    prompts_for: Callable[[str], PromptSet],
    action_url: Callable[[Call], str],
    operator: str | None,
    audio_url: AudioUrl | None = None,
) -> str:
    """Build the TwiML document for one step of a call in language `lang`."""
    response = VoiceResponse()
    prompts = prompts_for(reply.next.lang if reply.next else lang)
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
        _say(response, prompts, (Line("apology"),), audio_url)
    else:
        response.say(LAST_RESORT_APOLOGY)
    response.hangup()
    return str(response)


def empty() -> str:
    """Build a document that does nothing, for callbacks that expect no instructions."""
    return str(VoiceResponse())


def _say(
    target: VoiceResponse | Gather,
    prompts: PromptSet,
    lines: Iterable[Line],
    audio_url: AudioUrl | None,
) -> None:
    """Speak each line: a recorded phrase with <Play>, any other with <Say> in the set's voice.

    Without `audio_url` (no web request to build a URL from) a recording's transcript is said.
    """
    for line in lines:
        recording = prompts.audio.get(line.phrase)
        if recording is not None and audio_url is not None:
            target.play(audio_url(recording.file, recording.version))
        else:
            text = prompts.render(line.phrase, line.values)
            target.say(text, voice=prompts.voice, language=prompts.language)
