"""The hotline's settings: per dialed number, the language spoken and the operator to dial."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import phonenumbers

from ivr.errors import ConfigError

DEFAULT_REGION = "RU"  # how a number without a country code is read ("8 342 ...")
UNKNOWN_CALLER = "unknown"  # anonymous or unparsable callers share one lockout bucket


def e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """Normalise a phone number to E.164, or return None when it is not a number."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def caller_id(raw: str | None) -> str:
    """Return the caller's number as the lockout counts it."""
    return e164(raw) or UNKNOWN_CALLER


@dataclass(frozen=True)
class Hotline:
    """What one dialed number does."""

    language: str
    operator: str | None


@dataclass(frozen=True)
class Settings:
    """Every hotline number's settings, and the default for numbers not listed."""

    default: Hotline
    numbers: Mapping[str, Hotline] = field(default_factory=dict)

    def for_number(self, dialed: str | None) -> Hotline:
        """Return the settings of the number the caller dialed."""
        return self.numbers.get(e164(dialed) or "", self.default)


def load_settings(path: Path, languages: tuple[str, ...]) -> Settings:
    """Read the settings file; raise ConfigError saying what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read hotline settings {path}: {exc}") from None
    default = _hotline(path, "default", data.get("default", {}), languages, None)
    numbers: dict[str, Hotline] = {}
    for raw, table in data.get("numbers", {}).items():
        number = e164(raw)
        if number is None:
            raise ConfigError(f"{path}: [numbers.{raw!r}] is not a phone number")
        numbers[number] = _hotline(path, f"numbers.{raw!r}", table, languages, default)
    return Settings(default, numbers)


def _hotline(
    path: Path, where: str, table: object, languages: tuple[str, ...], base: Hotline | None
) -> Hotline:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [{where}] must be a table")
    language = table.get("language", base.language if base else languages[0])
    if language not in languages:
        raise ConfigError(f"{path}: [{where}] language {language!r} is not one of {languages}")
    raw_operator = table.get("operator", base.operator if base else "")
    operator = e164(raw_operator) if raw_operator else None
    if raw_operator and operator is None:
        raise ConfigError(f"{path}: [{where}] operator {raw_operator!r} is not a phone number")
    return Hotline(language, operator)
