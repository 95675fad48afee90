"""Tests for ivr.money: amounts and digits in words, checked against a second library."""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from num2words import num2words

from ivr.languages import LANGUAGES
from ivr.money import amount_in_words, digits_in_words

RU_MAX = "999999999999.99"
RU_MAX_WORDS = (
    "девятьсот девяносто девять миллиардов девятьсот девяносто девять миллионов "
    "девятьсот девяносто девять тысяч девятьсот девяносто девять рублей "
    "девяносто девять копеек"
)
EN_MAX_WORDS = (
    "nine hundred ninety-nine billion nine hundred ninety-nine million "
    "nine hundred ninety-nine thousand nine hundred ninety-nine rubles "
    "and ninety-nine kopecks"
)

RU_WORDS = [
    ("0.45", "ноль рублей сорок пять копеек"),
    ("0.5", "ноль рублей пятьдесят копеек"),
    ("0", "ноль рублей"),
    ("0.00", "ноль рублей"),
    ("1", "один рубль"),
    ("2", "два рубля"),
    ("2.02", "два рубля две копейки"),
    ("4", "четыре рубля"),
    ("5", "пять рублей"),
    ("11", "одиннадцать рублей"),
    ("12", "двенадцать рублей"),
    ("12.12", "двенадцать рублей двенадцать копеек"),
    ("14", "четырнадцать рублей"),
    ("21", "двадцать один рубль"),
    ("21.01", "двадцать один рубль одна копейка"),
    ("22", "двадцать два рубля"),
    ("25", "двадцать пять рублей"),
    ("101", "сто один рубль"),
    ("111", "сто одиннадцать рублей"),
    ("123.45", "сто двадцать три рубля сорок пять копеек"),
    ("1000", "одна тысяча рублей"),
    ("2002", "две тысячи два рубля"),
    ("21000", "двадцать одна тысяча рублей"),
    ("1000000", "один миллион рублей"),
    ("1001000", "один миллион одна тысяча рублей"),
    ("2000000000", "два миллиарда рублей"),
    (
        "1234567.89",
        "один миллион двести тридцать четыре тысячи пятьсот шестьдесят семь рублей "
        "восемьдесят девять копеек",
    ),
    ("-123.45", "сто двадцать три рубля сорок пять копеек"),
    ("-0.01", "ноль рублей одна копейка"),
    (RU_MAX, RU_MAX_WORDS),
    ("0.01", "ноль рублей одна копейка"),
    ("0.02", "ноль рублей две копейки"),
    ("0.05", "ноль рублей пять копеек"),
    ("0.11", "ноль рублей одиннадцать копеек"),
    ("0.21", "ноль рублей двадцать одна копейка"),
    ("0.22", "ноль рублей двадцать две копейки"),
]

EN_WORDS = [
    ("0.45", "zero rubles and forty-five kopecks"),
    ("0.5", "zero rubles and fifty kopecks"),
    ("0", "zero rubles"),
    ("0.00", "zero rubles"),
    ("1", "one ruble"),
    ("1.01", "one ruble and one kopeck"),
    ("2", "two rubles"),
    ("5", "five rubles"),
    ("11", "eleven rubles"),
    ("12", "twelve rubles"),
    ("21", "twenty-one rubles"),
    ("21.01", "twenty-one rubles and one kopeck"),
    ("22", "twenty-two rubles"),
    ("25", "twenty-five rubles"),
    ("101", "one hundred one rubles"),
    ("111", "one hundred eleven rubles"),
    ("123.45", "one hundred twenty-three rubles and forty-five kopecks"),
    ("1000", "one thousand rubles"),
    ("2002", "two thousand two rubles"),
    ("21000", "twenty-one thousand rubles"),
    ("1000000", "one million rubles"),
    (
        "1234567.89",
        "one million two hundred thirty-four thousand five hundred sixty-seven rubles "
        "and eighty-nine kopecks",
    ),
    ("-123.45", "one hundred twenty-three rubles and forty-five kopecks"),
    ("-1", "one ruble"),
    (RU_MAX, EN_MAX_WORDS),
    ("1000000000000000", "one quadrillion rubles"),
    ("1000000000000000.01", "one quadrillion rubles and one kopeck"),
    ("0.01", "zero rubles and one kopeck"),
    ("0.02", "zero rubles and two kopecks"),
    ("0.05", "zero rubles and five kopecks"),
    ("0.11", "zero rubles and eleven kopecks"),
    ("0.21", "zero rubles and twenty-one kopecks"),
]

WORDS_TABLE = [
    pytest.param(amount, lang, words, id=f"{lang} {amount}")
    for lang, table in (("ru-RU", RU_WORDS), ("en-US", EN_WORDS))
    for amount, words in table
]


def test_languages() -> None:
    assert LANGUAGES == ("ru-RU", "en-US")


@pytest.mark.parametrize(("amount", "lang", "words"), WORDS_TABLE)
def test_amount_in_words(amount: str, lang: str, words: str) -> None:
    assert amount_in_words(Decimal(amount), lang) == words


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("amount", ["123.45", "0.01", "5", "1000000", RU_MAX])
def test_negative_amount_is_said_as_its_magnitude(amount: str, lang: str) -> None:
    assert amount_in_words(-Decimal(amount), lang) == amount_in_words(Decimal(amount), lang)


@pytest.mark.parametrize(
    ("amount", "same_as"),
    [
        ("1.230", "1.23"),  # trailing zeros past the kopecks do not change the value
        ("1.10", "1.1"),
        ("5E+2", "500"),
        ("0E-10", "0"),
        ("-0", "0"),
        ("-0.00", "0"),
        ("1" + "0" * 20 + "E-20", "1"),
        ("12." + "0" * 5000, "12"),  # more digits than int() will parse from a string
    ],
    ids=lambda value: value[:20],
)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_any_spelling_of_a_whole_number_of_kopecks(amount: str, same_as: str, lang: str) -> None:
    assert amount_in_words(Decimal(amount), lang) == amount_in_words(Decimal(same_as), lang)


def test_largest_amounts() -> None:
    # pytils names groups up to "миллиард"; inflect up to "decillion".
    assert amount_in_words(Decimal("999999999999"), "ru-RU").startswith("девятьсот девяносто")
    # Built from a string: Decimal addition would round to 28 digits.
    largest_en = amount_in_words(Decimal(f"{10**36 - 1}.99"), "en-US")
    assert largest_en.startswith("nine hundred ninety-nine decillion nine hundred ninety-nine")
    assert largest_en.endswith("nine hundred ninety-nine rubles and ninety-nine kopecks")


@pytest.mark.parametrize(
    ("amount", "lang"),
    [
        ("1000000000000", "ru-RU"),
        ("-1000000000000", "ru-RU"),
        ("1000000000000000", "ru-RU"),
        (str(10**36), "en-US"),
        ("1E+999999999", "ru-RU"),  # must be refused before it is turned into an int
        ("1E+999999999", "en-US"),
    ],
)
def test_too_large_amount(amount: str, lang: str) -> None:
    with pytest.raises(ValueError, match="too large"):
        amount_in_words(Decimal(amount), lang)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    "amount",
    ["1.234", "0.001", "-0.005", "1E-999999999", "NaN", "-NaN", "sNaN", "Infinity", "-Infinity"],
)
def test_amount_that_is_not_whole_kopecks(amount: str, lang: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(Decimal(amount)))):
        amount_in_words(Decimal(amount), lang)


@pytest.mark.parametrize("amount", [1.5, 5, "5"])
def test_amount_that_is_not_a_decimal(amount: object) -> None:
    with pytest.raises(TypeError, match="must be a Decimal"):
        amount_in_words(amount, "ru-RU")  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["ru", "en", "", "RU-ru", "de-DE"])
def test_unknown_language(lang: str) -> None:
    with pytest.raises(ValueError, match="expected one of ru-RU, en-US"):
        amount_in_words(Decimal("1"), lang)
    with pytest.raises(ValueError, match="expected one of ru-RU, en-US"):
        digits_in_words("1", lang)


@pytest.mark.parametrize(
    ("digits", "lang", "words"),
    [
        (
            "590000000018",
            "ru-RU",
            "пять девять ноль ноль ноль ноль ноль ноль ноль ноль один восемь",
        ),
        (
            "590000000018",
            "en-US",
            "five nine zero zero zero zero zero zero zero zero one eight",
        ),
        ("0123456789", "ru-RU", "ноль один два три четыре пять шесть семь восемь девять"),
        ("0123456789", "en-US", "zero one two three four five six seven eight nine"),
        ("7", "ru-RU", "семь"),
    ],
)
def test_digits_in_words(digits: str, lang: str, words: str) -> None:
    assert digits_in_words(digits, lang) == words


@pytest.mark.parametrize("digits", ["", " 1", "1\n", "12a", "-1", "1.0", "²", "١٢"])
def test_digits_that_are_not_digits(digits: str) -> None:
    with pytest.raises(ValueError, match="digits must be"):
        digits_in_words(digits, "ru-RU")


# --- the oracle: num2words, a second library written independently of pytils and inflect.

EDGE_RUBLES = [0, 1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111, 1000, 1001, 2002, 21000]
EDGE_RUBLES += [10**6, 1_234_567, 10**9, 2 * 10**9 + 1000, 999_999_999_999]
EDGE_KOPECKS = [0, 1, 2, 5, 11, 12, 14, 21, 22, 25, 45, 50, 99]
SAMPLES = 3000


def sample_amounts(max_digits: int) -> list[tuple[Decimal, int, int]]:
    """Return (amount, rubles, kopecks) triples: edge values, then random ones.

    The rubles and kopecks are the integers the amount was built from, so the oracle
    does not depend on how the code under test splits a Decimal.
    """
    rng = random.Random(2026)
    pairs = [(r, k) for r in EDGE_RUBLES for k in EDGE_KOPECKS]
    while len(pairs) < SAMPLES:
        # Pick the length first, so that small and large magnitudes are equally common.
        length = rng.randint(0, max_digits)
        rubles = rng.randrange(10**length) if length else 0
        kopecks = rng.choice([0, rng.randrange(100)])
        pairs.append((rubles, kopecks))
    triples = []
    for rubles, kopecks in pairs:
        sign = rng.choice(["", "-"])
        # Whole amounts come both as "5" and as "5.00", the way the ledger writes them.
        if kopecks == 0 and rng.random() < 0.5:
            text = f"{sign}{rubles}"
        else:
            text = f"{sign}{rubles}.{kopecks:02d}"
        triples.append((Decimal(text), rubles, kopecks))
    return triples


def ru_oracle(rubles: int, kopecks: int) -> str:
    """Say the amount with num2words, in the shape amount_in_words uses."""
    said = num2words(Decimal(f"{rubles}.{kopecks:02d}"), lang="ru", to="currency", currency="RUB")
    # num2words writes "<rubles> <unit>, <kopecks> <unit>" and always says the kopecks;
    # unpacking fails the test if that shape ever changes.
    rubles_part, kopecks_part = said.split(", ")
    assert rubles_part.split()[-1] in ("рубль", "рубля", "рублей"), said
    assert kopecks_part.split()[-1] in ("копейка", "копейки", "копеек"), said
    if kopecks == 0:
        assert kopecks_part == "ноль копеек", said
        return str(rubles_part)
    return f"{rubles_part} {kopecks_part}"


def en_number(number: int) -> str:
    """Say a number with num2words, without its British "and" and its commas."""
    said = str(num2words(number, lang="en"))
    assert said and not any(c.isdigit() for c in said), said
    return said.replace(" and ", " ").replace(",", "")


def en_oracle(rubles: int, kopecks: int) -> str:
    """Build the English phrase from num2words' numbers."""
    said = f"{en_number(rubles)} {'ruble' if rubles == 1 else 'rubles'}"
    if kopecks:
        said += f" and {en_number(kopecks)} {'kopeck' if kopecks == 1 else 'kopecks'}"
    return said


def test_oracles_say_the_spec_examples() -> None:
    # Pins the normalisation to real words, so the comparisons below can fail.
    assert ru_oracle(123, 45) == "сто двадцать три рубля сорок пять копеек"
    assert ru_oracle(21, 1) == "двадцать один рубль одна копейка"
    assert ru_oracle(5, 0) == "пять рублей"
    assert ru_oracle(0, 0) == "ноль рублей"
    assert en_oracle(123, 45) == "one hundred twenty-three rubles and forty-five kopecks"
    assert en_oracle(1, 1) == "one ruble and one kopeck"
    assert en_oracle(1_234_567, 89) == (
        "one million two hundred thirty-four thousand five hundred sixty-seven rubles "
        "and eighty-nine kopecks"
    )


def test_sample_amounts_cover_small_and_large() -> None:
    lengths = {len(str(rubles)) for _, rubles, _ in sample_amounts(36)}
    assert lengths == set(range(1, 37))
    signs = {amount < 0 for amount, rubles, _ in sample_amounts(12) if rubles}
    assert signs == {True, False}


@pytest.mark.parametrize(
    ("lang", "max_digits", "oracle"),
    [("ru-RU", 12, ru_oracle), ("en-US", 36, en_oracle)],
)
def test_agrees_with_num2words(
    lang: str, max_digits: int, oracle: Callable[[int, int], str]
) -> None:
    disagreements = [
        (amount, said, expected)
        for amount, rubles, kopecks in sample_amounts(max_digits)
        if (said := amount_in_words(amount, lang)) != (expected := oracle(rubles, kopecks))
    ]
    assert disagreements[:5] == []


def test_english_from_many_threads() -> None:
    # inflect keeps a counter in its engine while it works; a shared engine mixes up
    # the scale words of calls running side by side.
    expected = {
        Decimal("987654321012.34"): (
            "nine hundred eighty-seven billion six hundred fifty-four million "
            "three hundred twenty-one thousand twelve rubles and thirty-four kopecks"
        ),
        Decimal("1234567891"): (
            "one billion two hundred thirty-four million five hundred sixty-seven thousand "
            "eight hundred ninety-one rubles"
        ),
    }
    amounts = list(expected) * 1500
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, so that a race shows up
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            said = list(pool.map(amount_in_words, amounts, ["en-US"] * len(amounts)))
    finally:
        sys.setswitchinterval(interval)
    assert [(a, s) for a, s in zip(amounts, said, strict=True) if s != expected[a]] == []
