"""Turn a `Decimal` amount of rubles into the words the hotline speaks.

Number words come from maintained libraries, never from tables of our own:
Russian from `pytils.numeral`, English from `inflect`. This module only picks the
unit forms and joins the parts.

How amounts are spoken:

- the magnitude only: the caller decides how to present a debt, so -5 and 5 read alike;
- rubles always, kopecks only when there are some ("ноль рублей", "zero rubles");
- Russian agrees the units with the number ("двадцать один рубль одна копейка") and says
  thousands as pytils does, with the count: 1000 is "одна тысяча рублей";
- English uses American style, without "and" or commas inside a number, and joins
  rubles and kopecks with "and" ("one ruble and one kopeck").

Each library stops somewhere: pytils at 999 999 999 999 ("девятьсот девяносто девять
миллиардов ..."), inflect at 10**36 - 1 (decillions). Larger amounts raise ValueError.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from pytils import numeral

from ivr.languages import LANGUAGES

__all__ = ["amount_in_words", "digits_in_words", "preload"]

_KOPECKS_PER_RUBLE: Final = 100
_DIGITS: Final = re.compile(r"[0-9]+")

_RU_RUBLE: Final = ("рубль", "рубля", "рублей")
_RU_KOPECK: Final = ("копейка", "копейки", "копеек")


def _ru_amount(rubles: int, kopecks: int) -> str:
    """Say rubles and kopecks in Russian, each unit agreeing with its number."""
    # sum_string picks the unit form itself; "копейка" is feminine ("одна", "две").
    words = numeral.sum_string(rubles, numeral.MALE, _RU_RUBLE)
    if kopecks:
        words += " " + numeral.sum_string(kopecks, numeral.FEMALE, _RU_KOPECK)
    return str(words)


def _ru_number(number: int) -> str:
    """Say a whole number in Russian, in the masculine ("один", "два")."""
    return str(numeral.in_words_int(number))


def _en_number(number: int) -> str:
    """Say a whole number in English without "and" or commas inside it."""
    # A fresh engine per call: number_to_words keeps its progress in the engine
    # (mill_count), so an engine shared between threads can say "quadrillion" for
    # "billion". An engine costs well under a microsecond to make. The number goes in
    # as a string of digits, which inflect also takes: its annotation, numbers.Number,
    # is one mypy cannot match to int.
    # Imported here: inflect takes over a second to import (its typeguard decorators),
    # which every `ivr` command and server worker would pay even without English.
    import inflect

    words = inflect.engine().number_to_words(str(number), andword="", comma="")
    # With wantlist=False (the default) inflect returns one string.
    assert isinstance(words, str)
    return words


def preload() -> None:
    """Import the words libraries now, so that no caller waits for the first import."""
    import inflect  # noqa: F401


def _en_amount(rubles: int, kopecks: int) -> str:
    """Say rubles and kopecks in English, with the plural chosen from the number."""
    words = f"{_en_number(rubles)} {'ruble' if rubles == 1 else 'rubles'}"
    if kopecks:
        words += f" and {_en_number(kopecks)} {'kopeck' if kopecks == 1 else 'kopecks'}"
    return words


@dataclass(frozen=True)
class _Language:
    """How one language says amounts and digits, and the most rubles it can say."""

    max_rubles: int
    amount: Callable[[int, int], str]
    number: Callable[[int], str]


_LANGUAGE_TABLE: Final[Mapping[str, _Language]] = {
    # pytils names groups up to "миллиард"; its own error for more says "10**11",
    # which is wrong (it handles up to 10**12 - 1), so we check first and say it right.
    "ru-RU": _Language(max_rubles=10**12 - 1, amount=_ru_amount, number=_ru_number),
    # inflect names groups up to "decillion"; past that it raises NumOutOfRangeError,
    # which is not a ValueError.
    "en-US": _Language(max_rubles=10**36 - 1, amount=_en_amount, number=_en_number),
}

if tuple(_LANGUAGE_TABLE) != LANGUAGES:  # every language a call can be in says amounts
    raise AssertionError(f"money speaks {tuple(_LANGUAGE_TABLE)}, calls are in {LANGUAGES}")


def _language(lang: str) -> _Language:
    """Look up `lang`, or raise ValueError naming the languages we speak."""
    try:
        return _LANGUAGE_TABLE[lang]
    except KeyError:
        raise ValueError(
            f"unknown language {lang!r}: expected one of {', '.join(LANGUAGES)}"
        ) from None


def _kopecks(amount: Decimal, max_rubles: int) -> int:
    """Return the magnitude of `amount` in whole kopecks, computed exactly."""
    if not isinstance(amount, Decimal):
        # A float has already lost kopecks; refuse it rather than round it.
        raise TypeError(f"amount must be a Decimal, got {type(amount).__name__}: {amount!r}")
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # the exponent of NaN and Infinity is a letter
        raise ValueError(f"amount must be a finite number, got {amount!r}")
    # Judge the value, not its spelling: Decimal("1.230") has exponent -3 yet is
    # a whole number of kopecks. Stripping zeros from the digit tuple, unlike
    # Decimal arithmetic, cannot round.
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return 0
    exponent += len(digits) - len(significant)
    if exponent < -2:
        raise ValueError(f"amount has more than 2 decimal places: {amount!r}")
    # Compare before building the int: Decimal("1E+999999999") is a valid value
    # whose int would have a billion digits. Decimal comparison is exact.
    if amount.copy_abs() >= max_rubles + 1:
        raise ValueError(f"amount too large to say: {amount!r} (at most {max_rubles} rubles)")
    # The kopecks are the significant digits shifted left by exponent + 2 (>= 0 here).
    return int(significant + "0" * (exponent + 2))


def amount_in_words(amount: Decimal, lang: str) -> str:
    """Return the magnitude of `amount` (rubles.kopecks) in words with agreeing units.

    Raise ValueError for an unknown `lang`, an amount that is not finite, has more
    than 2 decimal places or is too large for the language, and TypeError for an
    amount that is not a Decimal.
    """
    language = _language(lang)
    rubles, kopecks = divmod(_kopecks(amount, language.max_rubles), _KOPECKS_PER_RUBLE)
    return language.amount(rubles, kopecks)


def digits_in_words(digits: str, lang: str) -> str:
    """Return each digit of `digits` as its own word, space-separated.

    "590" gives "пять девять ноль" in Russian and "five nine zero" in English.
    Raise ValueError for an unknown `lang` and for `digits` that is empty or holds
    anything but the ASCII digits 0-9.
    """
    language = _language(lang)
    # fullmatch on [0-9], not str.isdigit: isdigit also accepts "²" and "٣".
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"digits must be one or more of 0-9, got {digits!r}")
    return " ".join(_digit_word(language, digit) for digit in digits)


@functools.cache
def _digit_word(language: _Language, digit: str) -> str:
    """Say one digit; ten words a language, asked of the library once (a hot path)."""
    return language.number(int(digit))
