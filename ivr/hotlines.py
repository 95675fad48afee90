"""The hotline's settings: per dialed number, the language, the voice and the operator to dial.

`data/hotline.toml`:

    [default]                      # numbers not listed below
    language = "ru-RU"
    operator = "+73422195100"      # "" for none: callers who press 0 are told so
    [numbers."+7 342 219-51-95"]   # any usual spelling; E.164 is what counts
    language = "ru-RU"
    voice = "Polly.Maxim"          # optional: replaces the prompt file's voice in ru-RU

A number's table takes what it leaves out from [default] (the voice only while the language
is the same, since a voice speaks one language).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ivr.errors import ConfigError
from ivr.phones import e164
from ivr.prompts import voices

HOTLINE_KEYS = ("language", "voice", "operator")


@dataclass(frozen=True)
class DialedLine:
    """What one dialed number does."""

    language: str
    operator: str | None
    voice: str | None = None  # replaces the prompt file's voice while speaking `language`

    def voice_for(self, language: str) -> str | None:
        """Return the voice override for prompts in `language`: none once the caller switches."""
        return self.voice if language == self.language else None


@dataclass(frozen=True)
class HotlineSettings:
    """Every hotline number's settings, and the default for numbers not listed."""

    default: DialedLine
    numbers: Mapping[str, DialedLine] = field(default_factory=dict)

    def for_number(self, dialed: str | None) -> DialedLine:
        """Return the settings of the number the caller dialed."""
        return self.numbers.get(e164(dialed) or "", self.default)


def load_settings(path: Path, languages: tuple[str, ...]) -> HotlineSettings:
    """Read the settings file; raise ConfigError saying what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read hotline settings {path}: {exc}") from None
    unknown = sorted(data.keys() - {"default", "numbers"})
    if unknown:
        raise ConfigError(f"{path}: unknown {unknown[0]!r}; expected [default] and [numbers.…]")
    default = _dialed_line(path, "default", data.get("default", {}), languages, None)
    listed = data.get("numbers", {})
    if not isinstance(listed, dict):
        raise ConfigError(f'{path}: numbers must be tables such as [numbers."+73422195195"]')
    numbers: dict[str, DialedLine] = {}
    spelt: dict[str, str] = {}
    for raw, table in listed.items():
        number = e164(raw)
        if number is None:
            raise ConfigError(f"{path}: [numbers.{raw!r}] is not a phone number")
        if number in spelt:  # two spellings of one number: which one wins would be a guess
            raise ConfigError(f"{path}: [numbers.{raw!r}] is {spelt[number]!r} again ({number})")
        spelt[number] = raw
        numbers[number] = _dialed_line(path, f"numbers.{raw!r}", table, languages, default)
    return HotlineSettings(default, numbers)


def _dialed_line(
    path: Path, where: str, table: object, languages: tuple[str, ...], base: DialedLine | None
) -> DialedLine:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    unknown = sorted(table.keys() - set(HOTLINE_KEYS))
    if unknown:
        raise ConfigError(
            f"{path}: [{where}] has {unknown[0]!r}; it takes {', '.join(HOTLINE_KEYS)}"
        )
    language = table.get("language", base.language if base else languages[0])
    if language not in languages:
        raise ConfigError(f"{path}: [{where}] language {language!r} is not one of {languages}")
    raw_operator = table.get("operator", (base.operator or "") if base else "")
    if not isinstance(raw_operator, str):
        raise ConfigError(f"{path}: [{where}] operator must be a number in quotes")
    operator = e164(raw_operator) if raw_operator else None
    if raw_operator and operator is None:
        raise ConfigError(f"{path}: [{where}] operator {raw_operator!r} is not a phone number")
    inherited = base.voice if base and base.language == language else None
    voice = _voice(path, where, table.get("voice", inherited), language)
    return DialedLine(language, operator, voice)


def _voice(path: Path, where: str, voice: object, language: str) -> str | None:
    """Check a voice override: a voice Twilio knows, able to speak the hotline's language."""
    if voice is None or voice == "":
        return None
    if not isinstance(voice, str) or not voices.is_voice(voice):
        raise ConfigError(f"{path}: [{where}] voice {voice!r} is not a Twilio voice")
    if not voices.fits(voice, language):
        raise ConfigError(f"{path}: [{where}] voice {voice!r} does not speak {language}")
    return voice
