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
    return Verdict.VALID if luhn_ascii(digits.encode("ascii")) else Verdict.BAD_CHECK_DIGIT


def is_valid(digits: str) -> bool:
    """Return True for 12 ASCII digits whose last one is the Luhn check digit.

    Fast enough for the import's millions of rows (`luhn_ascii`).
    """
    return verdict(digits) is Verdict.VALID


# A digit's ASCII code -> the digit doubled, its digits summed (Luhn), as a byte value.
_LUHN_DOUBLED = bytes.maketrans(
    b"0123456789", bytes((2 * d) // 10 + (2 * d) % 10 for d in range(10))
)


def luhn_ascii(digits: bytes) -> bool:
    """Say whether ASCII digits (already checked to be digits) end in their Luhn check digit.

    The sums run in C (`bytes.translate`, `sum` of bytes): the import checks a new
    contract in one row of ten. Tested against python-stdnum's `luhn`.
    """
    kept = sum(digits[-1::-2]) - (len(digits) + 1) // 2 * ord("0")
    return (kept + sum(digits[-2::-2].translate(_LUHN_DOUBLED))) % 10 == 0


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
