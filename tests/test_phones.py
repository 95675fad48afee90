"""Phone numbers: E.164 at the edge, one lockout bucket for callers without a number."""

from __future__ import annotations

from ivr.phones import caller_id, e164


def test_e164_and_caller_id() -> None:
    assert e164("8 (342) 219-51-95") == "+73422195195"
    assert e164("not a number") is None and e164(None) is None
    assert caller_id("+7 342 200-00-01") == "+73422000001"
    assert caller_id("anonymous") == caller_id(None) == "unknown"


def test_a_russian_e164_number_comes_back_unchanged_as_phonenumbers_would_give_it() -> None:
    """The fast path (no parsing for "+7" and ten digits) gives what phonenumbers gives."""
    import random

    from ivr.phones import _parsed_e164

    rng = random.Random(7)
    for prefix in range(10_000):  # every 4-digit start: area codes, mobile ranges, 8-800
        number = f"+7{prefix:04d}{rng.randrange(10**6):06d}"
        assert e164(number) == number == _parsed_e164(number, "RU")
    for other in ("+7342219519", "+734221951950", "+7 3422195195", "+7３４２２１９５１９５"):
        assert e164(other) == _parsed_e164(other, "RU")
