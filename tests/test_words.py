"""Tests for ivr.money's days and dates in words, checked against independent tables.

The code says Russian counts with pytils and Russian ordinals with num2words, English
with inflect. So the oracles are: num2words for what the code does not take from it
(Russian and English cardinals, English ordinals), and tables written by hand here for
the Russian genitive ordinals, which the code does take from num2words.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from num2words import num2words

from ivr.money import (
    DAYS_SAID,
    LANGUAGES,
    YEARS_SAID,
    amount_in_words,
    date_in_words,
    days_in_words,
)

# --- days


DAYS = [
    # days, Russian, English
    (1, "один день", "one day"),
    (2, "два дня", "two days"),
    (3, "три дня", "three days"),
    (4, "четыре дня", "four days"),
    (5, "пять дней", "five days"),
    (10, "десять дней", "ten days"),
    (11, "одиннадцать дней", "eleven days"),
    (12, "двенадцать дней", "twelve days"),
    (14, "четырнадцать дней", "fourteen days"),
    (20, "двадцать дней", "twenty days"),
    (21, "двадцать один день", "twenty-one days"),
    (22, "двадцать два дня", "twenty-two days"),
    (25, "двадцать пять дней", "twenty-five days"),
    (30, "тридцать дней", "thirty days"),
    (31, "тридцать один день", "thirty-one days"),
    (100, "сто дней", "one hundred days"),
    (101, "сто один день", "one hundred one days"),
    (111, "сто одиннадцать дней", "one hundred eleven days"),
    (112, "сто двенадцать дней", "one hundred twelve days"),
    (121, "сто двадцать один день", "one hundred twenty-one days"),
    (211, "двести одиннадцать дней", "two hundred eleven days"),
    (364, "триста шестьдесят четыре дня", "three hundred sixty-four days"),
    (365, "триста шестьдесят пять дней", "three hundred sixty-five days"),
    (366, "триста шестьдесят шесть дней", "three hundred sixty-six days"),
    (999, "девятьсот девяносто девять дней", "nine hundred ninety-nine days"),
]


@pytest.mark.parametrize(("days", "ru", "en"), DAYS, ids=[str(row[0]) for row in DAYS])
def test_days_in_words(days: int, ru: str, en: str) -> None:
    assert days_in_words(days, "ru-RU") == ru
    assert days_in_words(days, "en-US") == en


@pytest.mark.parametrize(
    ("days", "ru", "en"),
    [
        (12, "Этого хватит примерно на двенадцать дней.", "That should last about twelve days."),
        (1, "Этого хватит примерно на один день.", "That should last about one day."),
        (
            21,
            "Этого хватит примерно на двадцать один день.",
            "That should last about twenty-one days.",
        ),
        (2, "Этого хватит примерно на два дня.", "That should last about two days."),
        (5, "Этого хватит примерно на пять дней.", "That should last about five days."),
    ],
)
def test_days_read_in_the_spec_sentences(days: int, ru: str, en: str) -> None:
    assert f"Этого хватит примерно на {days_in_words(days, 'ru-RU')}." == ru
    assert f"That should last about {days_in_words(days, 'en-US')}." == en


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("days", [0, -1, -21, 1000, 1001, 10**12])
def test_days_outside_the_range_said(days: int, lang: str) -> None:
    with pytest.raises(ValueError, match=f"days must be from 1 to 999, got {days}"):
        days_in_words(days, lang)


@pytest.mark.parametrize("days", [True, 1.0, 12.5, "12", Decimal("12"), None])
def test_days_that_are_not_an_int(days: object) -> None:
    with pytest.raises(TypeError, match="days must be an int"):
        days_in_words(days, "ru-RU")  # type: ignore[arg-type]


def test_days_said_is_what_callers_get() -> None:
    assert (DAYS_SAID.start, DAYS_SAID.stop) == (1, 1000)
    assert 365 in DAYS_SAID  # callers say "more than a year" only past 365


def ru_day_unit(days: int) -> str:
    """Pick the form of «день» for a count, by the textbook rule."""
    if 11 <= days % 100 <= 14:
        return "дней"
    return {1: "день", 2: "дня", 3: "дня", 4: "дня"}.get(days % 10, "дней")


def en_number(number: int) -> str:
    """Say a number with num2words, without its British "and" and its commas."""
    said = str(num2words(number, lang="en"))
    assert said and not any(c.isdigit() for c in said), said
    return said.replace(" and ", " ").replace(",", "")


def test_day_oracles_say_the_spec_examples() -> None:
    # Pins the oracles to real words, so the comparisons below can fail.
    assert [ru_day_unit(n) for n in (1, 2, 5, 11, 12, 14, 21, 22, 25, 111, 112, 121)] == [
        "день", "дня", "дней", "дней", "дней", "дней", "день", "дня", "дней", "дней", "дней",
        "день",
    ]  # fmt: skip
    assert str(num2words(21, lang="ru")) == "двадцать один"
    assert en_number(121) == "one hundred twenty-one"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_count_said_agrees_with_num2words(lang: str) -> None:
    # The whole range is small enough to check every count, not a sample.
    def oracle(days: int) -> str:
        if lang == "ru-RU":
            return f"{num2words(days, lang='ru')} {ru_day_unit(days)}"
        return f"{en_number(days)} {'day' if days == 1 else 'days'}"

    disagreements = [
        (days, said, expected)
        for days in DAYS_SAID
        if (said := days_in_words(days, lang)) != (expected := oracle(days))
    ]
    assert disagreements[:5] == []


# --- dates

# Written by hand, not taken from a library: the code takes these from num2words.
RU_DAY_GENITIVE = {
    1: "первого",
    2: "второго",
    3: "третьего",
    4: "четвёртого",
    5: "пятого",
    6: "шестого",
    7: "седьмого",
    8: "восьмого",
    9: "девятого",
    10: "десятого",
    11: "одиннадцатого",
    12: "двенадцатого",
    13: "тринадцатого",
    14: "четырнадцатого",
    15: "пятнадцатого",
    16: "шестнадцатого",
    17: "семнадцатого",
    18: "восемнадцатого",
    19: "девятнадцатого",
    20: "двадцатого",
    21: "двадцать первого",
    22: "двадцать второго",
    23: "двадцать третьего",
    24: "двадцать четвёртого",
    25: "двадцать пятого",
    26: "двадцать шестого",
    27: "двадцать седьмого",
    28: "двадцать восьмого",
    29: "двадцать девятого",
    30: "тридцатого",
    31: "тридцать первого",
}
EN_DAY_ORDINAL = {
    1: "first",
    2: "second",
    3: "third",
    4: "fourth",
    5: "fifth",
    6: "sixth",
    7: "seventh",
    8: "eighth",
    9: "ninth",
    10: "tenth",
    11: "eleventh",
    12: "twelfth",
    13: "thirteenth",
    14: "fourteenth",
    15: "fifteenth",
    16: "sixteenth",
    17: "seventeenth",
    18: "eighteenth",
    19: "nineteenth",
    20: "twentieth",
    21: "twenty-first",
    22: "twenty-second",
    23: "twenty-third",
    24: "twenty-fourth",
    25: "twenty-fifth",
    26: "twenty-sixth",
    27: "twenty-seventh",
    28: "twenty-eighth",
    29: "twenty-ninth",
    30: "thirtieth",
    31: "thirty-first",
}
RU_MONTH_GENITIVE = {
    1: "января",
    2: "февраля",
    3: "марта",
    4: "апреля",
    5: "мая",
    6: "июня",
    7: "июля",
    8: "августа",
    9: "сентября",
    10: "октября",
    11: "ноября",
    12: "декабря",
}
EN_MONTH = {
    1: "January",
    2: "February",
    3: "March",
    4: "April",
    5: "May",
    6: "June",
    7: "July",
    8: "August",
    9: "September",
    10: "October",
    11: "November",
    12: "December",
}
# The tens of a year: as an ordinal in the genitive (2040: «сорокового») and as a
# cardinal before a unit (2045: «сорок пятого»). 10 and 20 come from RU_DAY_GENITIVE.
RU_TENS_GENITIVE = {
    3: "тридцатого",
    4: "сорокового",
    5: "пятидесятого",
    6: "шестидесятого",
    7: "семидесятого",
    8: "восьмидесятого",
    9: "девяностого",
}
RU_TENS = {
    2: "двадцать",
    3: "тридцать",
    4: "сорок",
    5: "пятьдесят",
    6: "шестьдесят",
    7: "семьдесят",
    8: "восемьдесят",
    9: "девяносто",
}


def ru_year(year: int) -> str:
    """Say a year of 2000-2099 as a Russian genitive ordinal and «года», by hand."""
    assert 2000 <= year <= 2099, year
    rest = year - 2000
    tens, units = divmod(rest, 10)
    if rest == 0:
        ordinal = "двухтысячного"
    elif rest <= 20:
        ordinal = f"две тысячи {RU_DAY_GENITIVE[rest]}"
    elif units == 0:
        ordinal = f"две тысячи {RU_TENS_GENITIVE[tens]}"
    else:
        ordinal = f"две тысячи {RU_TENS[tens]} {RU_DAY_GENITIVE[units]}"
    return f"{ordinal} года"


def ru_date(day: date, with_year: bool) -> str:
    """Build the Russian date from the hand-written tables."""
    said = f"{RU_DAY_GENITIVE[day.day]} {RU_MONTH_GENITIVE[day.month]}"
    return f"{said} {ru_year(day.year)}" if with_year else said


def en_date(day: date, with_year: bool) -> str:
    """Build the English date from num2words' ordinals and numbers."""
    ordinal = str(num2words(day.day, lang="en", to="ordinal"))
    said = f"the {ordinal} of {EN_MONTH[day.month]}"
    return f"{said}, {en_number(day.year)}" if with_year else said


DATE_ORACLES = {"ru-RU": ru_date, "en-US": en_date}

DATES = [
    # date, Russian, English
    (date(2025, 11, 28), "двадцать восьмого ноября", "the twenty-eighth of November"),
    (date(2025, 1, 1), "первого января", "the first of January"),
    (date(2025, 12, 31), "тридцать первого декабря", "the thirty-first of December"),
    (date(2025, 12, 7), "седьмого декабря", "the seventh of December"),
    (date(2024, 2, 29), "двадцать девятого февраля", "the twenty-ninth of February"),
    (date(2025, 3, 2), "второго марта", "the second of March"),
    (date(2025, 4, 3), "третьего апреля", "the third of April"),
    (date(2025, 5, 4), "четвёртого мая", "the fourth of May"),
    (date(2025, 6, 11), "одиннадцатого июня", "the eleventh of June"),
    (date(2025, 7, 12), "двенадцатого июля", "the twelfth of July"),
    (date(2025, 8, 13), "тринадцатого августа", "the thirteenth of August"),
    (date(2025, 9, 20), "двадцатого сентября", "the twentieth of September"),
    (date(2025, 10, 23), "двадцать третьего октября", "the twenty-third of October"),
    (date(2025, 11, 30), "тридцатого ноября", "the thirtieth of November"),
    (date(2025, 10, 22), "двадцать второго октября", "the twenty-second of October"),
]

DATES_WITH_YEAR = [
    (
        date(2025, 11, 28),
        "двадцать восьмого ноября две тысячи двадцать пятого года",
        "the twenty-eighth of November, two thousand twenty-five",
    ),
    (date(2000, 1, 1), "первого января двухтысячного года", "the first of January, two thousand"),
    (
        date(2001, 3, 3),
        "третьего марта две тысячи первого года",
        "the third of March, two thousand one",
    ),
    (
        date(2005, 5, 5),
        "пятого мая две тысячи пятого года",
        "the fifth of May, two thousand five",
    ),
    (
        date(2010, 10, 10),
        "десятого октября две тысячи десятого года",
        "the tenth of October, two thousand ten",
    ),
    (
        date(2011, 11, 11),
        "одиннадцатого ноября две тысячи одиннадцатого года",
        "the eleventh of November, two thousand eleven",
    ),
    (
        date(2020, 2, 29),
        "двадцать девятого февраля две тысячи двадцатого года",
        "the twenty-ninth of February, two thousand twenty",
    ),
    (
        date(2021, 12, 21),
        "двадцать первого декабря две тысячи двадцать первого года",
        "the twenty-first of December, two thousand twenty-one",
    ),
    (
        date(2023, 8, 23),
        "двадцать третьего августа две тысячи двадцать третьего года",
        "the twenty-third of August, two thousand twenty-three",
    ),
    (
        date(2040, 4, 2),
        "второго апреля две тысячи сорокового года",
        "the second of April, two thousand forty",
    ),
    (
        date(2090, 9, 30),
        "тридцатого сентября две тысячи девяностого года",
        "the thirtieth of September, two thousand ninety",
    ),
    (
        date(2099, 12, 31),
        "тридцать первого декабря две тысячи девяносто девятого года",
        "the thirty-first of December, two thousand ninety-nine",
    ),
]


@pytest.mark.parametrize(("day", "ru", "en"), DATES, ids=[str(row[0]) for row in DATES])
def test_date_in_words(day: date, ru: str, en: str) -> None:
    assert date_in_words(day, "ru-RU", with_year=False) == ru
    assert date_in_words(day, "en-US", with_year=False) == en


@pytest.mark.parametrize(
    ("day", "ru", "en"), DATES_WITH_YEAR, ids=[str(row[0]) for row in DATES_WITH_YEAR]
)
def test_date_in_words_with_year(day: date, ru: str, en: str) -> None:
    assert date_in_words(day, "ru-RU", with_year=True) == ru
    assert date_in_words(day, "en-US", with_year=True) == en


def test_dates_read_in_the_spec_sentences() -> None:
    payment, on = Decimal("500"), date(2025, 11, 28)
    ru = f"Последний платёж: {amount_in_words(payment, 'ru-RU')}, "
    ru += f"{date_in_words(on, 'ru-RU', with_year=False)}."
    en = f"Your last payment: {amount_in_words(payment, 'en-US')}, "
    en += f"on {date_in_words(on, 'en-US', with_year=False)}."
    assert ru == "Последний платёж: пятьсот рублей, двадцать восьмого ноября."
    assert en == "Your last payment: five hundred rubles, on the twenty-eighth of November."
    promise_ends = date_in_words(date(2025, 12, 7), "ru-RU", with_year=False)
    assert f"Обещанный платёж уже подключён до {promise_ends}." == (
        "Обещанный платёж уже подключён до седьмого декабря."
    )


EDGE_DAYS = [1, 2, 3, 11, 12, 13, 21, 22, 23, 29, 30, 31]


def edge_dates() -> list[date]:
    """Return each edge day of the month in each month that has it (2024: a leap year)."""
    dates = []
    for month in range(1, 13):
        for day in EDGE_DAYS:
            try:
                dates.append(date(2024, month, day))
            except ValueError:  # no such day in that month
                continue
    return dates


def test_edge_dates_cover_every_month_and_day() -> None:
    dates = edge_dates()
    assert {d.month for d in dates} == set(range(1, 13))
    assert {d.day for d in dates} == set(EDGE_DAYS)
    assert {d.month for d in dates if d.day == 31} == {1, 3, 5, 7, 8, 10, 12}
    assert len(dates) == 12 * 12 - 1 - 5  # no 30 February, five months without a 31st


@pytest.mark.parametrize("with_year", [False, True])
@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("day", edge_dates(), ids=str)
def test_edge_dates(day: date, lang: str, with_year: bool) -> None:
    assert date_in_words(day, lang, with_year=with_year) == DATE_ORACLES[lang](day, with_year)


def test_date_oracles_say_the_spec_examples() -> None:
    # Pins the hand-built oracles to the examples, so the comparisons can fail.
    day = date(2025, 11, 28)
    assert ru_date(day, False) == "двадцать восьмого ноября"
    assert ru_date(day, True) == "двадцать восьмого ноября две тысячи двадцать пятого года"
    assert en_date(day, True) == "the twenty-eighth of November, two thousand twenty-five"
    assert [ru_year(y) for y in (2000, 2013, 2020, 2030, 2047)] == [
        "двухтысячного года",
        "две тысячи тринадцатого года",
        "две тысячи двадцатого года",
        "две тысячи тридцатого года",
        "две тысячи сорок седьмого года",
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_day_of_the_month(lang: str) -> None:
    said = [date_in_words(date(2025, 1, n), lang, with_year=False) for n in range(1, 32)]
    expected = [DATE_ORACLES[lang](date(2025, 1, n), False) for n in range(1, 32)]
    assert said == expected
    if lang == "en-US":  # the hand table as well as num2words
        assert said == [f"the {EN_DAY_ORDINAL[n]} of January" for n in range(1, 32)]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_year_said(lang: str) -> None:
    said = [date_in_words(date(year, 6, 15), lang, with_year=True) for year in YEARS_SAID]
    expected = [DATE_ORACLES[lang](date(year, 6, 15), True) for year in YEARS_SAID]
    assert [(s, e) for s, e in zip(said, expected, strict=True) if s != e][:5] == []


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("year", [1, 1970, 1999, 2100, 9999])
def test_year_outside_the_range_said(year: int, lang: str) -> None:
    day = date(year, 3, 1)
    with pytest.raises(ValueError, match=f"year must be from 2000 to 2099, got {year}"):
        date_in_words(day, lang, with_year=True)
    # Without the year, any year will do.
    assert date_in_words(day, lang, with_year=False) == DATE_ORACLES[lang](day, False)


@pytest.mark.parametrize(
    "day", [datetime(2025, 11, 28, 12, 0), "2025-11-28", 20251128, None], ids=repr
)
def test_date_that_is_not_a_date(day: object) -> None:
    with pytest.raises(TypeError, match=r"day must be a date \(not a datetime\)"):
        date_in_words(day, "ru-RU", with_year=False)  # type: ignore[arg-type]


def test_with_year_must_be_named() -> None:
    with pytest.raises(TypeError):
        date_in_words(date(2025, 1, 1), "ru-RU", True)  # type: ignore[misc]


@pytest.mark.parametrize("lang", ["ru", "en", "", "RU-ru", "de-DE"])
def test_unknown_language(lang: str) -> None:
    with pytest.raises(ValueError, match="expected one of ru-RU, en-US"):
        days_in_words(1, lang)
    with pytest.raises(ValueError, match="expected one of ru-RU, en-US"):
        date_in_words(date(2025, 1, 1), lang, with_year=False)


@settings(max_examples=500, deadline=None)
@given(
    day=st.dates(
        min_value=date(YEARS_SAID.start, 1, 1), max_value=date(YEARS_SAID.stop - 1, 12, 31)
    ),
    lang=st.sampled_from(LANGUAGES),
    with_year=st.booleans(),
)
def test_any_date_agrees_with_the_oracles(day: date, lang: str, with_year: bool) -> None:
    assert date_in_words(day, lang, with_year=with_year) == DATE_ORACLES[lang](day, with_year)
