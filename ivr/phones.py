"""Phone numbers: E.164, normalised once at the edge, and the time zone of a hotline's number.

The hotline tells dates in its own time zone, the zone of the number callers dial.
phonenumbers' geocoding data knows the zone of most fixed-line area codes; for the
rest the hotline's settings name one (see `time_zone`).
"""

from __future__ import annotations

import functools
import re
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_zones

DEFAULT_REGION = "RU"  # how a number without a country code is read ("8 342 ...")
UNKNOWN_CALLER = "unknown"  # anonymous or unparsable callers share one lockout bucket


# A Russian number already in E.164, as Twilio sends From and To: phonenumbers gives it
# back unchanged (tests/test_phones.py checks every 4-digit prefix), so it is not parsed.
_RUSSIAN_E164 = re.compile(r"\+7[0-9]{10}")


def e164(raw: str | None, region: str = DEFAULT_REGION) -> str | None:
    """Normalise a phone number to E.164, or return None when it is not a number."""
    if not raw:
        return None
    if _RUSSIAN_E164.fullmatch(raw):
        return raw
    return _parsed_e164(raw, region)


@functools.lru_cache(maxsize=4096)  # every step of a call parses the same numbers again
def _parsed_e164(raw: str, region: str) -> str | None:
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



def time_zone(number_e164: str, *, default: ZoneInfo) -> ZoneInfo:
    """Return the time zone of the area `number_e164` belongs to, or `default`.

    phonenumbers names the zones of a number's area: +7 342 (Perm) is
    Asia/Yekaterinburg, +7 495 Europe/Moscow. `default` (the zone the hotline's
    settings name) is returned when that does not give one zone:

    - the number's area spans several zones: Russian mobile numbers and 8-800 numbers
      list every Russian zone, Australian mobiles every Australian one;
    - phonenumbers knows no zone for it ("Etc/Unknown"): unassigned ranges, +1 555 01xx;
    - this machine's time-zone database lacks the zone named (phonenumbers' data newer
      than tzdata's).

    phonenumbers sometimes names another place with the same standard offset, not the
    area's own zone: +7 4012 (Kaliningrad, UTC+2 all year) gives Europe/Bucharest,
    which keeps summer time. For such a number a zone set explicitly in the hotline's
    settings should win over this function.

    Raise ValueError if `number_e164` is not a number written in E.164 ("+73422000000").
    """
    try:
        number = phonenumbers.parse(number_e164, None)
    except phonenumbers.NumberParseException as error:
        raise ValueError(f"not a phone number in E.164: {number_e164!r} ({error})") from None
    # parse() also takes spaces, dashes, letters and 17 digits; the name promises E.164,
    # so a number written any other way is a caller's mistake, not something to guess at.
    written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if written != number_e164 or not phonenumbers.is_possible_number(number):
        raise ValueError(f"not a phone number in E.164: {number_e164!r}")
    zones = number_zones.time_zones_for_number(number)
    if len(zones) != 1 or zones[0] == number_zones.UNKNOWN_TIMEZONE:
        return default
    try:
        return ZoneInfo(zones[0])
    except ZoneInfoNotFoundError:
        return default
