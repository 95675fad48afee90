"""The call log: what each step of a call did and how the call ended, for `ivr stats`.

Writing it must never break a call: a write that fails or waits too long is logged
and dropped, and the caller gets the answer all the same. Contract numbers are masked
here, before anything is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from ivr import ledger
from ivr.contract import mask

log = logging.getLogger(__name__)

# The outcome of a step that failed inside and ended in the apology; the flow has no
# such outcome because the flow never saw the failure.
APOLOGY = "apology"
# The CallSid of a request that carried none (only unsigned, hand-made requests do).
UNKNOWN_CALL = "unknown"
CALL_SID_LENGTH = 64


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


def masked_contract(digits: str | None) -> str | None:
    """Mask what the caller keyed in as a contract, cut to the column's width."""
    if digits is None:
        return None
    width = ledger.CALL_LOG_CONTRACT_LENGTH
    text = mask(digits)
    if len(text) > width:
        text = text[:2] + "*" * (width - 6) + text[-4:]
    return text


def record_step(engine: Engine, step: Step) -> bool:
    """Store one step; on any failure log it and return False instead of raising."""
    try:
        with engine.begin() as connection:
            with ledger.lock_wait(connection, ledger.CALL_LOG_WAIT_MS):
                ledger.record_call_step(
                    connection,
                    call_sid=_sid(step.call_sid),
                    caller=step.caller,
                    at=step.at,
                    state=step.state,
                    next_state=step.next_state,
                    outcome=step.outcome,
                    masked_contract=masked_contract(step.contract),
                )
    except Exception as exc:
        log.warning(
            "call %s: the call log missed a step (%s -> %s): %s",
            step.call_sid,
            step.state,
            step.outcome,
            reason(exc),
        )
        return False
    return True


def record_end(
    engine: Engine,
    call_sid: str,
    caller: str,
    at: datetime,
    status: str,
    duration_s: int | None,
) -> bool:
    """Store the status Twilio reported for a call; on any failure log it and return False."""
    try:
        with engine.begin() as connection:
            with ledger.lock_wait(connection, ledger.CALL_LOG_WAIT_MS):
                ledger.record_call_end(
                    connection,
                    call_sid=_sid(call_sid),
                    caller=caller,
                    at=at,
                    status=status[:20],
                    duration_s=duration_s,
                )
    except Exception as exc:
        log.warning("call %s: the call log missed its end (%s): %s", call_sid, status, reason(exc))
        return False
    return True


def duration(raw: str | None) -> int | None:
    """Read Twilio's CallDuration (whole seconds), or None when it is absent or not a number."""
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return None
    return int(raw)


def reason(error: BaseException) -> str:
    """Say why a write failed in one short line (the log filter masks what it holds)."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    name = type(error).__qualname__
    return f"{name}: {first[:200]}" if first else name


def _sid(call_sid: str) -> str:
    return call_sid[:CALL_SID_LENGTH] or UNKNOWN_CALL
