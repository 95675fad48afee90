"""Phone numbers: E.164 at the edge, one lockout bucket for callers without a number."""

from __future__ import annotations

from ivr.phones import caller_id, e164


def test_e164_and_caller_id() -> None:
    assert e164("8 (342) 219-51-95") == "+73422195195"
    assert e164("not a number") is None and e164(None) is None
    assert caller_id("+7 342 200-00-01") == "+73422000001"
    assert caller_id("anonymous") == caller_id(None) == "unknown"
