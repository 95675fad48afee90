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


# The words of an amount are its rubles' words and its kopecks' words, each said alone:
# cached apart, a million different balances share ~100 kopeck phrases and far fewer
# ruble amounts than (rubles, kopecks) pairs (a miss costs ~10 µs in Russian, ~100 µs or
# more in English).
_AMOUNT_PARTS_CACHED = 16384


def _ru_amount(rubles: int, kopecks: int) -> str:
    """Say rubles and kopecks in Russian, each unit agreeing with its number."""
    words = _ru_rubles(rubles)
    return f"{words} {_ru_kopecks(kopecks)}" if kopecks else words


@functools.lru_cache(maxsize=_AMOUNT_PARTS_CACHED)
def _ru_rubles(rubles: int) -> str:
    # sum_string picks the unit form itself.
    return str(numeral.sum_string(rubles, numeral.MALE, _RU_RUBLE))


@functools.lru_cache(maxsize=100)
def _ru_kopecks(kopecks: int) -> str:
    # "копейка" is feminine ("одна", "две").
    return str(numeral.sum_string(kopecks, numeral.FEMALE, _RU_KOPECK))


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
    words = _en_rubles(rubles)
    return f"{words} and {_en_kopecks(kopecks)}" if kopecks else words


@functools.lru_cache(maxsize=_AMOUNT_PARTS_CACHED)
def _en_rubles(rubles: int) -> str:
    return f"{_en_number(rubles)} {'ruble' if rubles == 1 else 'rubles'}"


@functools.lru_cache(maxsize=100)
def _en_kopecks(kopecks: int) -> str:
    return f"{_en_number(kopecks)} {'kopeck' if kopecks == 1 else 'kopecks'}"


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
    words = _digit_words(lang)
    # fullmatch on [0-9], not str.isdigit: isdigit also accepts "²" and "٣".
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"digits must be one or more of 0-9, got {digits!r}")
    return " ".join([words[ord(digit) - 48] for digit in digits])


@functools.cache
def _digit_words(lang: str) -> tuple[str, ...]:
    """Say the ten digits; asked of the library once a language (a hot path)."""
    language = _language(lang)
    return tuple(language.number(digit) for digit in range(10))


# Days and dates in words, for the self-service answers after the balance (issue 10).
# Appended below the amounts (import and __all__ included) while other modules were being
# restructured; fold the import and the names into the top of the module on merge.

from datetime import date, datetime  # noqa: E402

__all__ += ["DAYS_SAID", "YEARS_SAID", "date_in_words", "days_in_words"]

DAYS_SAID: Final = range(1, 1000)
"""The counts `days_in_words` says; 0 and "more than a year" are the caller's sentences."""
YEARS_SAID: Final = range(2000, 2100)
"""The years `date_in_words` says: the years the readings it chose are natural for."""

_RU_DAY: Final = ("день", "дня", "дней")
# Written out, not calendar.month_name: that follows the process's LC_TIME locale.
_EN_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _ru_days(days: int) -> str:
    """Say a count of days in Russian: "двадцать один день", "два дня", "пять дней"."""
    return str(numeral.sum_string(days, numeral.MALE, _RU_DAY))


def _en_days(days: int) -> str:
    """Say a count of days in English: "one day", "twenty-one days"."""
    import inflect  # see _en_number for why here and why a fresh engine

    return f"{_en_number(days)} {inflect.engine().plural_noun('day', days)}"


def _ru_genitive_ordinal(number: int) -> str:
    """Say an ordinal in the masculine genitive: 28 is "двадцать восьмого"."""
    # Imported here: num2words loads all its languages (about 20 ms), which commands
    # that never say a date need not pay. pytils has no ordinals; num2words has them
    # in every case, and its converters keep no state, so threads may share them.
    from num2words import num2words

    return str(num2words(number, lang="ru", to="ordinal", case="genitive"))


def _ru_date(day: date, with_year: bool) -> str:
    """Say a date the Russian way: «двадцать восьмого ноября [две тысячи ... года]»."""
    from pytils import dt

    # MONTH_NAMES holds (abbreviation, nominative, genitive) for each month.
    words = f"{_ru_genitive_ordinal(day.day)} {dt.MONTH_NAMES[day.month - 1][2]}"
    if with_year:
        words += f" {_ru_genitive_ordinal(day.year)} года"
    return words


def _en_date(day: date, with_year: bool) -> str:
    """Say a date the English way: "the twenty-eighth of November[, two thousand ...]"."""
    import inflect  # see _en_number for why here and why a fresh engine

    ordinal = inflect.engine().ordinal(_en_number(day.day))
    words = f"the {ordinal} of {_EN_MONTHS[day.month - 1]}"
    if with_year:
        words += f", {_en_number(day.year)}"
    return words


_DAYS_TABLE: Final[Mapping[str, Callable[[int], str]]] = {"ru-RU": _ru_days, "en-US": _en_days}
_DATE_TABLE: Final[Mapping[str, Callable[[date, bool], str]]] = {
    "ru-RU": _ru_date,
    "en-US": _en_date,
}


def days_in_words(days: int, lang: str) -> str:
    """Return a count of days in words, the unit agreeing: "два дня", "twelve days".

    The words are made to follow «на» and "about": «Этого хватит примерно на {days}.»,
    "That should last about {days}.". «день» is masculine and inanimate, so after «на»
    (the accusative) it reads as the nominative that pytils gives: «на один день», «на
    двадцать один день», «на два дня», «на пять дней». English: "one day", "twenty-one
    days", numbers as `amount_in_words` says them.

    Only counts in `DAYS_SAID` (1 to 999): 0 needs a sentence of its own ("less than a
    day"), and from 1000 on the accusative parts from pytils' nominative («на одну
    тысячу дней», not «одна тысяча»). Callers say "more than a year" past 365 anyway.
    Raise ValueError for an unknown `lang` or a count outside `DAYS_SAID`, and
    TypeError for a count that is not an int.
    """
    _language(lang)  # for its error naming the languages we speak
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError(f"days must be an int, got {type(days).__name__}: {days!r}")
    if days not in DAYS_SAID:
        raise ValueError(f"days must be from {DAYS_SAID.start} to {DAYS_SAID.stop - 1}, got {days}")
    return _DAYS_TABLE[lang](days)


def date_in_words(day: date, lang: str, *, with_year: bool) -> str:
    """Return the day and month of `day` in words, and its year when `with_year`.

    Russian says a date with the day as an ordinal and the month, both in the genitive:
    «двадцать восьмого ноября», «первого января»; the year is a genitive ordinal and
    «года»: «двадцать восьмого ноября две тысячи двадцать пятого года», «первого января
    двухтысячного года».

    English says "the twenty-eighth of November": with the article it reads well after
    "on" and on its own, and the ordinal is plainly heard before the month. The year
    follows a comma, as a number said like the amounts (American style, no "and"):
    "the twenty-eighth of November, two thousand twenty-five". We chose "two thousand
    twenty-five" over the also common "twenty twenty-five" because it reads the same
    way for every year of the century: 2005 is "two thousand five", never "twenty
    oh-five".

    `day` is a calendar date, already in the hotline's time zone; a datetime is refused
    (TypeError), since its date depends on a zone this function does not know. With
    the year, only years in `YEARS_SAID` (2000 to 2099), where those readings are
    the natural ones (1999 is "nineteen ninety-nine", «тысяча девятьсот ...»); other
    years raise ValueError, as does an unknown `lang`.
    """
    _language(lang)  # for its error naming the languages we speak
    if isinstance(day, datetime) or not isinstance(day, date):
        raise TypeError(f"day must be a date (not a datetime), got {type(day).__name__}: {day!r}")
    if with_year and day.year not in YEARS_SAID:
        raise ValueError(
            f"year must be from {YEARS_SAID.start} to {YEARS_SAID.stop - 1}, got {day.year}"
        )
    return _DATE_TABLE[lang](day, with_year)
