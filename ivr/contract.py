"""Contract-number rules: length, Luhn check digit, masking, spoken form."""

from __future__ import annotations

import enum

from stdnum import luhn

CONTRACT_LENGTH = 12


class Verdict(enum.Enum):
    """What a keyed-in contract number turned out to be, before the ledger is asked."""

    VALID = "valid"
    WRONG_LENGTH = "wrong_length"
    BAD_CHECK_DIGIT = "bad_check_digit"


def verdict(digits: str) -> Verdict:
    """Tell a well-formed contract number from a mistyped one."""
    if len(digits) != CONTRACT_LENGTH or not digits.isdigit() or not digits.isascii():
        return Verdict.WRONG_LENGTH
    return Verdict.VALID if _luhn_sum_ok(digits) else Verdict.BAD_CHECK_DIGIT


def is_valid(digits: str) -> bool:
    """Return True for 12 ASCII digits whose last one is the Luhn check digit."""
    return verdict(digits) is Verdict.VALID


_DOUBLED = tuple((2 * d) // 10 + (2 * d) % 10 for d in range(10))


def luhn_ok(digits: str) -> bool:
    """Say, fast, whether `digits` is a contract: 12 ASCII digits, valid Luhn check digit.

    The same answer as `is_valid` (python-stdnum), for the import's millions of rows.
    """
    if len(digits) != CONTRACT_LENGTH or not digits.isascii() or not digits.isdigit():
        return False
    return _luhn_sum_ok(digits)


def _luhn_sum_ok(digits: str) -> bool:
    """Check the Luhn sum of ASCII digits (tested against python-stdnum's `luhn`)."""
    values = [ord(c) - 48 for c in digits]
    doubled = _DOUBLED
    total = sum(values[-1::-2]) + sum([doubled[v] for v in values[-2::-2]])
    return total % 10 == 0


def with_check_digit(prefix: str) -> str:
    """Append the Luhn check digit to an 11-digit prefix."""
    if len(prefix) != CONTRACT_LENGTH - 1 or not prefix.isdigit():
        raise ValueError(f"a contract prefix has {CONTRACT_LENGTH - 1} digits, got {prefix!r}")
    return prefix + luhn.calc_check_digit(prefix)


def mask(number: str) -> str:
    """Hide the middle of a contract number for logs: 590000000018 -> 59******0018."""
    if len(number) <= 6:
        return "*" * len(number)
    return number[:2] + "*" * (len(number) - 6) + number[-4:]
