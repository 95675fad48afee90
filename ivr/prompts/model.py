"""The prompt model: a language's phrases, its voice, its recordings, and how a phrase is filled in.

One TOML file a language in the prompts folder, named after its language (`ru-RU.toml`):

    language = "ru-RU"          # a language Twilio's <Say> knows
    voice = "Polly.Tatyana"     # a Twilio voice that speaks it
    [phrases]
    balance_positive = "На вашем счёте {amount}."
    greeting = { audio = "audio/greeting-ru.wav", text = "Здравствуйте!" }

A phrase is text, or a recording: an inline table whose `audio` names a file under the
prompts folder, played with `<Play>`, and whose optional `text` says what the recording says
(for previews). A phrase the flow fills in (one with placeholders) must stay text.
`ivr.prompts.check` reads and checks the files; `ivr.prompts.library` serves them.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

# What Twilio's <Play> accepts (its documented MIME types), by file suffix.
AUDIO_TYPES: Mapping[str, str] = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".aifc": "audio/x-aifc",
    ".gsm": "audio/gsm",
    ".ulaw": "audio/ulaw",
}


# --- what a prompt file holds ---------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A phrase spoken by a recorded audio file instead of text-to-speech."""

    file: str  # under the prompts folder, with forward slashes, as the audio URL names it
    version: int  # the file's mtime: a re-recorded file gets a new URL, past Twilio's cache


@dataclass(frozen=True)
class PromptSet:
    """Every phrase of one language, with the voice that speaks them."""

    language: str
    voice: str
    phrases: Mapping[str, str]  # a recording's entry is its transcript
    audio: Mapping[str, Recording] = field(default_factory=dict)

    def render(self, phrase: str, values: Mapping[str, str]) -> str:
        """Fill a phrase's placeholders."""
        return self.phrases[phrase].format_map(values)

    def with_voice(self, voice: str | None) -> PromptSet:
        """Return this set spoken by `voice` (a hotline's override), or itself for None."""
        return replace(self, voice=voice) if voice else self


def placeholders(text: str) -> set[str]:
    """Return the names of the `{placeholders}` in a phrase."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
