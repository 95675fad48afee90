"""Rendering a simulated call to a wav file with espeak-ng and sox."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask, Response

from ivr.cli import simulate_command
from ivr.simulate import audio
from ivr.simulate import events as call_events

TOOLS_MISSING = any(shutil.which(tool) is None for tool in audio.TOOLS)
needs_tools = pytest.mark.skipif(
    TOOLS_MISSING, reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)"
)


def soxi(flag: str, path: Path) -> str:
    """Ask soxi one fact about a sound file."""
    return subprocess.run(
        ["soxi", flag, str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def duration(path: Path) -> float:
    return float(soxi("-D", path))


@pytest.mark.parametrize(
    ("language", "voice"),
    [("ru-RU", "ru"), ("en-US", "en-us"), ("en-GB", "en-gb"), ("de-DE", "de"), ("fr", "fr")],
)
def test_espeak_voice_for_twilio_languages(language: str, voice: str) -> None:
    assert audio.espeak_voice(language) == voice


def test_missing_tools_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(audio.AudioError, match="apt-get install espeak-ng sox") as caught:
        audio.render([audio.Speech("hello")], Path("never.wav"))
    assert str(caught.value).startswith("espeak-ng and sox not found")


@needs_tools
def test_render_a_tiny_call(tmp_path: Path) -> None:
    out = tmp_path / "call.wav"
    audio.render(
        [
            audio.Speech("Здравствуйте! Для абонентов нажмите 1.", "ru-RU"),
            audio.Keys("1"),
            audio.Quiet(0.5),
            audio.Speech("Your balance is one ruble.", "en-US"),
        ],
        out,
    )
    assert (soxi("-r", out), soxi("-c", out)) == (str(audio.SAMPLE_RATE), "1")
    # Two spoken sentences take well over a second beyond the key and the pause.
    assert duration(out) > 0.25 + 0.5 + 1.5


@needs_tools
def test_keys_and_silence_have_exact_lengths(tmp_path: Path) -> None:
    out = tmp_path / "keys.wav"
    audio.render([audio.Keys("12#"), audio.Quiet(1.0), audio.Tone(425.0, 0.5)], out)
    expected = 3 * (audio.KEY_SECONDS + audio.KEY_GAP_SECONDS) + 1.0 + 0.5
    assert duration(out) == pytest.approx(expected, abs=0.01)


@needs_tools
def test_a_failing_tool_is_reported(tmp_path: Path) -> None:
    with pytest.raises(audio.AudioError, match="espeak-ng failed"):
        audio.render([audio.Speech("hi", "xx-XX")], tmp_path / "x.wav")


@needs_tools
def test_simulate_audio_option_writes_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Flask("audio_test_app")

    @app.post("/voice")
    def voice() -> Response:
        twiml = '<Response><Say language="ru-RU">Здравствуйте</Say><Pause length="1"/></Response>'
        return Response(twiml, mimetype="text/xml")

    monkeypatch.setattr("ivr.simulate.transport.app_factory", lambda: app)
    script = tmp_path / "s.dtmf"
    script.write_text('call\nexpect "здравствуйте"\n', encoding="utf-8")
    out = tmp_path / "call.wav"
    result = CliRunner().invoke(simulate_command, [str(script), "--audio", str(out)])
    assert result.exit_code == 0, result.output
    assert f"audio written to {out}" in result.output
    # The greeting, the one-second pause and the busy tone of the hangup.
    assert duration(out) > 1.0 + 6 * 0.35 + 0.3


def test_sounds_of_a_call() -> None:
    events: list[call_events.Event] = [
        call_events.Requested("POST", "http://localhost/voice", "/voice"),
        call_events.Said("Привет", "ru-RU", "Polly.Tatyana"),
        call_events.Paused(2.0),
        call_events.Pressed("1#"),
        call_events.Silent(5.0),
        call_events.Dialed("+73422195100"),
        call_events.Ended("transferred"),
    ]
    assert audio.sounds_of(events) == [
        audio.Speech("Привет", "ru-RU"),
        audio.Quiet(2.0),
        audio.Keys("1#"),
        audio.Quiet(5.0),
        audio.Tone(425.0, 1.0),
        audio.Quiet(1.0),
    ]
