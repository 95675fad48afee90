"""The languages a call can be in, in the order the language key cycles through them."""

from __future__ import annotations

from typing import Final

LANGUAGES: Final = ("ru-RU", "en-US")


def other_language(lang: str) -> str:
    """Return the language after `lang`, as the language key switches to it."""
    return LANGUAGES[(LANGUAGES.index(lang) + 1) % len(LANGUAGES)]
