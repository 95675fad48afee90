"""Render a simulated call as the caller would hear it: speech, silences and key tones.

`sounds_of` turns a call's events into sounds; `render` writes them to a wav file.

Offline and free: espeak-ng speaks each `<Say>` in its language, sox makes the silences
and the DTMF tones and joins everything into one wav file at a phone line's rate.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import IvrError
from ivr.simulate.events import (
    HANGUP_REASONS,
    Dialed,
    Ended,
    Event,
    Paused,
    Played,
    Pressed,
    Said,
    Silent,
)

INSTALL_HINT = "apt-get install espeak-ng sox"
TOOLS = ("espeak-ng", "sox")

# A phone line's rate; every piece is made at it, because sox joins only equal formats.
SAMPLE_RATE = 8000
_FORMAT = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16"]

KEY_SECONDS = 0.15
KEY_GAP_SECONDS = 0.1
_VOLUME = "0.5"  # two tones summed must not clip

# Rows and columns of the keypad (ITU-T Q.23).
_DTMF: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477),
}  # fmt: skip

# Twilio language tags whose region espeak-ng has a voice for; others use the language.
_VOICES = {"en-us": "en-us", "en-gb": "en-gb", "pt-br": "pt-br", "es-mx": "es-419"}


class AudioError(IvrError):
    """The call cannot be rendered to audio: a tool is missing or failed."""


@dataclass(frozen=True)
class Speech:
    """Text spoken by the hotline in a language (a BCP 47 tag, as in `<Say language>`)."""

    text: str
    language: str = "en-US"


@dataclass(frozen=True)
class Quiet:
    """Nothing heard for a while: a `<Pause>` or the caller's silence."""

    seconds: float


@dataclass(frozen=True)
class Keys:
    """Keys the caller pressed, heard as their DTMF tones."""

    keys: str


@dataclass(frozen=True)
class Tone:
    """A plain tone: ringback, busy, or a stand-in for a recording that cannot be fetched."""

    frequency: float
    seconds: float


Sound = Speech | Quiet | Keys | Tone


def require_tools() -> None:
    """Raise AudioError naming what to install when espeak-ng or sox is missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise AudioError(
            f"{' and '.join(missing)} not found: rendering a call to audio needs espeak-ng "
            f"and sox; install them with `{INSTALL_HINT}`"
        )


def espeak_voice(language: str) -> str:
    """Pick espeak-ng's voice for a Twilio language tag: ru-RU -> ru, en-US -> en-us."""
    tag = language.strip().lower().replace("_", "-")
    return _VOICES.get(tag, tag.split("-")[0] or "en")


def render(sounds: Sequence[Sound], out: Path) -> None:
    """Write the sounds one after another into the wav file `out`."""
    require_tools()
    with tempfile.TemporaryDirectory(prefix="ivr-audio-") as tmp:
        folder = Path(tmp)
        pieces: list[Path] = []
        for sound in sounds:
            pieces.extend(_render_sound(sound, folder, len(pieces)))
        if not pieces:
            pieces.append(_quiet(0.1, folder / "empty.wav"))
        _run(["sox", *map(str, pieces), str(out)])


def _render_sound(sound: Sound, folder: Path, index: int) -> list[Path]:
    """Make the wav pieces of one sound, named from `index` on."""
    match sound:
        case Speech(text=text, language=language):
            return [_speech(text, language, folder / f"{index:05d}.wav")] if text.strip() else []
        case Quiet(seconds=seconds):
            return [_quiet(seconds, folder / f"{index:05d}.wav")] if seconds > 0 else []
        case Tone(frequency=frequency, seconds=seconds):
            return [_tone((frequency,), seconds, folder / f"{index:05d}.wav")]
        case Keys(keys=keys):
            return _keys(keys, folder, index)


def _speech(text: str, language: str, out: Path) -> Path:
    """Speak the text with espeak-ng, then bring it to the common format."""
    raw = out.with_suffix(".raw.wav")
    # Text goes through stdin so that a text starting with "-" is never read as an option.
    _run(["espeak-ng", "-v", espeak_voice(language), "-w", str(raw), "--stdin"], text)
    _run(["sox", str(raw), *_FORMAT, str(out)])
    return out


def _quiet(seconds: float, out: Path) -> Path:
    """Make `seconds` of silence."""
    _run(["sox", "-n", *_FORMAT, str(out), "trim", "0", f"{seconds:.3f}"])
    return out


def _tone(frequencies: tuple[float, ...], seconds: float, out: Path) -> Path:
    """Make the frequencies sound together for `seconds`."""
    synth = ["synth", f"{seconds:.3f}", "sine", f"{frequencies[0]:g}"]
    for frequency in frequencies[1:]:
        synth += ["sine", "mix", f"{frequency:g}"]
    _run(["sox", "-n", *_FORMAT, str(out), *synth, "vol", _VOLUME])
    return out


def _keys(keys: str, folder: Path, index: int) -> list[Path]:
    """Make each key's two DTMF tones followed by a short gap."""
    pieces: list[Path] = []
    for offset, key in enumerate(keys):
        name = f"{index:05d}-{offset:03d}"
        if key in _DTMF:
            pieces.append(_tone(_DTMF[key], KEY_SECONDS, folder / f"{name}.wav"))
        pieces.append(_quiet(KEY_GAP_SECONDS, folder / f"{name}-gap.wav"))
    return pieces


def _run(command: list[str], stdin: str | None = None) -> None:
    """Run a tool; turn its failure into an AudioError that quotes its message."""
    try:
        finished = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError as error:
        raise AudioError(f"{command[0]} not found: install it with `{INSTALL_HINT}`") from error
    if finished.returncode != 0:
        message = (finished.stderr or finished.stdout).strip() or f"exit {finished.returncode}"
        raise AudioError(f"{command[0]} failed: {message}")


def sounds_of(events: Iterable[Event]) -> list[Sound]:
    """Turn a call's events into what the caller hears, for `--audio`."""
    sounds: list[Sound] = []
    for event in events:
        match event:
            case Said(text=text, language=language):
                sounds.append(Speech(text, language))
            case Played():
                sounds.append(Tone(440.0, 0.5))  # the recording itself is not fetched
            case Paused(seconds=seconds) | Silent(seconds=seconds):
                sounds.append(Quiet(seconds))
            case Pressed(keys=keys):
                sounds.append(Keys(keys))
            case Dialed():
                sounds += [Tone(425.0, 1.0), Quiet(1.0)]  # a ringback
            case Ended(reason=reason) if reason in HANGUP_REASONS:
                sounds += [Tone(425.0, 0.35), Quiet(0.35)] * 3  # busy tone
    return sounds
