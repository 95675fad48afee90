"""The call log's records: what each step of a call did and how the call ended, for `ivr stats`.

Pure: the web layer builds these, `ivr.db.hotline_tables` stores them (masking the contract,
and never letting a failed write break a call).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# The outcome of a step that failed inside and ended in the apology; the flow has no
# such outcome because the flow never saw the failure.
APOLOGY = "apology"
# The CallSid of a request that carried none (only unsigned, hand-made requests do).
UNKNOWN_CALL = "unknown"


@dataclass(frozen=True)
class Step:
    """One webhook step of a call, as the flow and the app saw it."""

    call_sid: str
    caller: str  # E.164, or the shared "unknown"
    at: datetime
    state: str | None  # where the keys were pressed; None when the call was just answered
    next_state: str | None  # where the call waits now; None when it ended
    outcome: str
    contract: str | None = None  # as keyed in: masked before it is stored


@dataclass(frozen=True)
class End:
    """A status Twilio reported for a call (its status callback)."""

    call_sid: str
    caller: str
    at: datetime
    status: str
    duration_s: int | None


def duration(raw: str | None) -> int | None:
    """Read Twilio's CallDuration (whole seconds), or None when it is absent or not a number."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)
