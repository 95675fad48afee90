"""Contract-number rules."""

from __future__ import annotations

import pytest

from ivr.contract import Verdict, mask, verdict, with_check_digit


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        ("590000000018", Verdict.VALID),
        ("590000000017", Verdict.BAD_CHECK_DIGIT),
        ("590000000081", Verdict.BAD_CHECK_DIGIT),  # two digits swapped
        ("59000000001", Verdict.WRONG_LENGTH),
        ("5900000000181", Verdict.WRONG_LENGTH),
        ("", Verdict.WRONG_LENGTH),
        ("59000000001*", Verdict.WRONG_LENGTH),
        ("５９0000000018", Verdict.WRONG_LENGTH),  # full-width digits are not keypad digits
    ],
)
def test_verdict(digits: str, expected: Verdict) -> None:
    assert verdict(digits) is expected


def test_check_digit_is_appended() -> None:
    assert with_check_digit("59000000001") == "590000000018"
    assert all(
        verdict(with_check_digit(f"{n:011d}")) is Verdict.VALID for n in range(0, 10**6, 997)
    )


def test_check_digit_needs_eleven_digits() -> None:
    with pytest.raises(ValueError, match="11 digits"):
        with_check_digit("5900")


def test_mask_hides_the_middle() -> None:
    assert mask("590000000018") == "59******0018"
    assert mask("12345") == "*****"
