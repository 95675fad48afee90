"""Turn the flow's replies into TwiML with twilio's `VoiceResponse`."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twilio.twiml.voice_response import Gather, VoiceResponse

from ivr.flow import Call, Line, Reply
from ivr.prompts import PromptSet

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
) -> str:
    """Build the TwiML document for one step of a call in language `lang`."""
    response = VoiceResponse()
    prompts = prompts_for(reply.next.lang if reply.next else lang)
    _say(response, prompts, reply.lines)
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
        _say(gather, prompts, reply.prompt)
        # A Gather that times out with no keys falls through to here, and the step
        # without Digits counts as silence.
        response.redirect(url, method="POST")
    else:
        response.hangup()
    return str(response)


def apology(prompts: PromptSet | None) -> str:
    """Build the short apology and hangup said when anything goes wrong inside."""
    response = VoiceResponse()
    if prompts is not None and "apology" in prompts.phrases:
        _say(response, prompts, (Line("apology"),))
    else:
        response.say(LAST_RESORT_APOLOGY)
    response.hangup()
    return str(response)


def empty() -> str:
    """Build a document that does nothing, for callbacks that expect no instructions."""
    return str(VoiceResponse())


def _say(target: VoiceResponse | Gather, prompts: PromptSet, lines: Iterable[Line]) -> None:
    """Speak each line: a recorded phrase with <Play>, any other with <Say> in the set's voice."""
    for line in lines:
        recording = prompts.audio.get(line.phrase)
        url = _audio_url(recording.file, recording.version) if recording else None
        if url is not None:
            target.play(url)
        else:
            text = prompts.render(line.phrase, line.values)
            target.say(text, voice=prompts.voice, language=prompts.language)


def _audio_url(file: str, version: int) -> str | None:
    """Build the absolute URL Twilio fetches a recording from; None outside a web request."""
    # Flask is asked here only: a recording's URL is the one part of a document that depends
    # on where the request came in (IVR_PUBLIC_URL behind a proxy, else the Host header).
    from flask import current_app, has_request_context, request, url_for

    if not has_request_context():
        return None
    # `v` changes with the file, so Twilio, which caches what it plays, fetches a new take.
    path = url_for("prompt_audio", file=file, v=version)
    base = current_app.config.get("PUBLIC_URL") or request.host_url
    return str(base).rstrip("/") + path
