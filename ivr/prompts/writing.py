"""Which alphabet a language is written in, and the sentences of a text written in another.

A voice reads its own language only: Polly.Joanna garbles or skips Russian words, and
Polly.Tatyana reads an English sentence with Russian sounds. So a prompt file holds no
Cyrillic unless its language is written in Cyrillic, and a Cyrillic language's file holds
no sentence without a Cyrillic letter. A Latin brand name or abbreviation ("Wi-Fi") inside
a Russian sentence is fine: the voice reads it as Russians say it.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

# The primary language subtags (before the "-") of Twilio's languages written in Cyrillic.
# Serbian (sr-RS) is written in both alphabets, so neither rule applies to it.
CYRILLIC_LANGUAGES = frozenset({"ru", "uk", "bg"})
EITHER_ALPHABET = frozenset({"sr"})

CYRILLIC = re.compile(r"[\u0400-\u052f\u1c80-\u1c8f\u2de0-\u2dff\ua640-\ua69f]")
LATIN = re.compile(r"[A-Za-z\u00c0-\u024f]")
# A sentence ends at . ! ? or … followed by a space; "1.5" and "т.е." stay whole.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def sentences(text: str) -> Iterator[str]:
    """Split text into its sentences, placeholders ({amount}) taken out."""
    try:
        bare = "".join(literal for literal, *_ in string.Formatter().parse(text))
    except ValueError:  # a malformed placeholder, which the checker reports on its own
        bare = text
    for sentence in _SENTENCE_END.split(bare.strip()):
        if sentence.strip():
            yield sentence.strip()


def foreign(text: str, language: str) -> str | None:
    """Say what in `text` is not in `language`'s alphabet, or None when nothing is."""
    primary = language.split("-")[0].lower()
    if primary in EITHER_ALPHABET:
        return None
    if primary not in CYRILLIC_LANGUAGES:
        words = [word for word in text.split() if CYRILLIC.search(word)]
        if not words:
            return None
        more = " …" if len(words) > 3 else ""
        return f'Cyrillic words ("{" ".join(words[:3])}{more}")'
    for sentence in sentences(text):
        if LATIN.search(sentence) and not CYRILLIC.search(sentence):
            return f'the sentence "{sentence}" has no Cyrillic letter'
    return None
