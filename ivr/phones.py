"""Phone numbers in E.164, normalised once at the edge with `phonenumbers`."""

from __future__ import annotations

import functools

import phonenumbers

DEFAULT_REGION = "RU"  # how a number without a country code is read ("8 342 ...")
UNKNOWN_CALLER = "unknown"  # anonymous or unparsable callers share one lockout bucket


@functools.lru_cache(maxsize=4096)  # every step parses the same few numbers again
def e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """Normalise a phone number to E.164, or return None when it is not a number."""
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def caller_id(raw: str | None) -> str:
    """Return the caller's number as the lockout counts it."""
    return e164(raw) or UNKNOWN_CALLER
