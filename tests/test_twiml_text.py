"""The TwiML written as text is, byte for byte, what twilio's `VoiceResponse` writes.

`ivr.web.twiml` writes its documents as strings (speed, issue 11); the reference below is
the renderer it replaced, built on twilio's library. Every answer of the hotline walk and
a set of awkward texts (markup characters, quotes, line breaks, empty phrases) must come
out the same both ways.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
from flask import Flask
from twilio.twiml.voice_response import Gather as TwilioGather
from twilio.twiml.voice_response import VoiceResponse

from ivr import flow
from ivr.flow import Call, Line, Reply, State
from ivr.prompts import PromptSet, Recording
from ivr.web import twiml
from tests.test_twiml import app, walk  # noqa: F401  (the fixture the walk needs)


def reference_render(
    reply: Reply,
    lang: str,
    prompts_for: twiml.PromptsFor,
    action_url: Callable[[Call], str],
    operator: str | None,
    audio_url: twiml.AudioUrl | None = None,
) -> str:
    """The renderer ivr.web.twiml had before issue 11: twilio's VoiceResponse."""
    response = VoiceResponse()
    sets: dict[str, PromptSet] = {}
    call_language = reply.next.lang if reply.next else lang

    def of(line: Line) -> PromptSet:
        language = line.language or call_language
        if language not in sets:
            sets[language] = prompts_for(language)
        return sets[language]

    def say(target: VoiceResponse | TwilioGather, lines: Iterable[Line]) -> None:
        for line in lines:
            prompts = of(line)
            recording = prompts.audio.get(line.phrase)
            if recording is not None and audio_url is not None:
                target.play(audio_url(recording.file, recording.version))
            else:
                text = prompts.render(line.phrase, line.values)
                target.say(text, voice=prompts.voice, language=prompts.language)

    say(response, reply.lines)
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
        say(gather, reply.prompt)
        response.redirect(url, method="POST")
    else:
        response.hangup()
    return str(response)


def reference_apology(prompts: PromptSet | None, audio_url: twiml.AudioUrl | None = None) -> str:
    response = VoiceResponse()
    if prompts is not None and "apology" in prompts.phrases:
        recording = prompts.audio.get("apology")
        if recording is not None and audio_url is not None:
            response.play(audio_url(recording.file, recording.version))
        else:
            text = prompts.render("apology", {})
            response.say(text, voice=prompts.voice, language=prompts.language)
    else:
        for language, voice, text in twiml.LAST_RESORT_APOLOGY:
            response.say(text, voice=voice, language=language)
    response.hangup()
    return str(response)


AWKWARD = {
    "plain": "Здравствуйте!",
    "markup": 'Tom & Jerry <b>say</b> "hi" > \'bye\'',
    "lines": "one\nline\r\nand\ta tab",
    "empty": "",
    "filled": "Balance: {amount} & {contract}",
    "apology": "Sorry & <goodbye>",
    "played": "transcript",
}
RU = PromptSet(
    "ru-RU",
    "Polly.Tatyana",
    AWKWARD,
    {"played": Recording("audio/a&b <x>.wav", 7)},
)
EN = PromptSet("en-US", 'Polly."Joanna"\n', AWKWARD)


def prompts_for(language: str) -> PromptSet:
    return RU if language == "ru-RU" else EN


def audio_url(file: str, version: int) -> str:
    return f"https://example.test/prompts-audio/{file}?v={version}&x=<\"'>"


def action_url(call: Call) -> str:
    return f"/voice/step?s={call.state.value}&l={call.lang}&p={call.prompts}&k=0&q=\"<&>\""


LINES = (
    Line("plain"),
    Line("markup"),
    Line("lines"),
    Line("empty"),
    Line("filled", {"amount": "5 < 6 & \"7\"", "contract": "\n"}),
    Line("played"),
    Line("plain", language="en-US"),
)
NEXT = Call(State.MAIN, "ru-RU")
REPLIES = [
    Reply(()),
    Reply(LINES),
    Reply(LINES, dial_operator=True),
    Reply(LINES, dial_operator=True, next=NEXT, gather=flow.Gather(1, "", 5)),
    Reply(LINES, next=NEXT, prompt=LINES, gather=flow.Gather(12, "#", 10)),
    Reply((), next=NEXT, prompt=(), gather=flow.Gather(1, "", 5)),
    Reply((Line("empty"),), next=Call(State.CONTRACT, "en-US"), gather=flow.Gather(1, "&", 5)),
]


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("operator", [None, "+73422000000", ""])
@pytest.mark.parametrize("audio", [audio_url, None])
def test_awkward_replies_render_as_twilio_would(
    reply: Reply, operator: str | None, audio: twiml.AudioUrl | None
) -> None:
    for lang in flow.LANGUAGES:
        ours = twiml.render(reply, lang, prompts_for, action_url, operator, audio)
        theirs = reference_render(reply, lang, prompts_for, action_url, operator, audio)
        assert ours == theirs


@pytest.mark.parametrize("prompts", [RU, EN, None, PromptSet("en-US", "v", {"x": "y"})])
@pytest.mark.parametrize("audio", [audio_url, None])
def test_the_apology_renders_as_twilio_would(
    prompts: PromptSet | None, audio: twiml.AudioUrl | None
) -> None:
    played = None if prompts is None else PromptSet(
        prompts.language, prompts.voice, prompts.phrases, {"apology": Recording("s.wav", 1)}
    )
    for given in (prompts, played):
        assert twiml.apology(given, audio) == reference_apology(given, audio)
    assert twiml.empty() == str(VoiceResponse())


def test_every_answer_of_the_walk_renders_as_twilio_would(
    app: Flask,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rendered = 0
    ours = twiml.render

    def both(*args: Any, **kwargs: Any) -> str:
        nonlocal rendered
        document = ours(*args, **kwargs)
        assert document == reference_render(*args, **kwargs)
        rendered += 1
        return document

    monkeypatch.setattr(twiml, "render", both)
    walk(app)
    assert rendered > 100
