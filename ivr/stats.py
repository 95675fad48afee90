"""A day of calls from the call log: how many, their outcomes, and where callers gave up.

Days are UTC days. A call counts on a day when one of its steps was logged that day.
No SQL here: `ivr.db.read_call_log` fetches the rows, this module counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from ivr.flow import Outcome

# How a call whose last logged step left it waiting at a prompt ended: the caller put
# the phone down (Twilio logs no step for that).
LEFT_AT_PROMPT = "left_at_prompt"
ENDINGS_WITHOUT_ANSWER = {
    Outcome.GAVE_UP.value: "no answer to the prompt",
    LEFT_AT_PROMPT: "hung up",
}


class StepRow(Protocol):
    """A call-log step as the summary reads it."""

    @property
    def call_sid(self) -> str: ...
    @property
    def state(self) -> str | None: ...
    @property
    def next_state(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...


class EndRow(Protocol):
    """A status Twilio reported, as the summary reads it."""

    @property
    def call_sid(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def duration_s(self) -> int | None: ...


Window = tuple[datetime, datetime]
# Reads the call log: the steps in one window and the ends in another.
CallLogReader = Callable[[Window, Window], tuple[Sequence[StepRow], Sequence[EndRow]]]


@dataclass(frozen=True)
class DayStats:
    """What the call log says about one day."""

    day: date
    calls: int = 0
    heard_balance: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)  # over every step
    endings: Counter[str] = field(default_factory=Counter)  # one per call: its last step
    # Calls that ended without a balance, by the state the caller left and how.
    gave_up_at: Counter[tuple[str, str]] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # Twilio's last word per call
    talk_time_s: int = 0
    promises_taken: int = 0  # calls that took a promised payment


def day_window(day: date) -> tuple[datetime, datetime]:
    """Return the UTC bounds [start, end) of a day."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def load(read: CallLogReader, day: date) -> DayStats:
    """Read a day's call log through `read` and summarise it."""
    start, end = day_window(day)
    # A call's end is reported after its last step, possibly after midnight.
    steps, ends = read((start, end), (start, end + timedelta(days=1)))
    return summarise(day, steps, ends)


def summarise(day: date, steps: Sequence[StepRow], ends: Sequence[EndRow]) -> DayStats:
    """Count calls, outcomes, endings and where callers gave up; `steps` in call order."""
    by_call: dict[str, list[StepRow]] = {}
    for step in steps:
        by_call.setdefault(step.call_sid, []).append(step)
    outcomes: Counter[str] = Counter(step.outcome for step in steps)
    endings: Counter[str] = Counter()
    gave_up_at: Counter[tuple[str, str]] = Counter()
    heard = promises = 0
    for call_steps in by_call.values():
        last = call_steps[-1]
        ending = last.outcome if last.next_state is None else LEFT_AT_PROMPT
        endings[ending] += 1
        if any(step.outcome == Outcome.PROMISE_TAKEN.value for step in call_steps):
            promises += 1
        if any(step.outcome == Outcome.BALANCE_TOLD.value for step in call_steps):
            heard += 1
        elif ending in ENDINGS_WITHOUT_ANSWER:
            where = last.state if ending == Outcome.GAVE_UP.value else last.next_state
            gave_up_at[(where or "answer", ENDINGS_WITHOUT_ANSWER[ending])] += 1
    # Twilio may report a call more than once; its last word counts.
    last_status = {end.call_sid: end for end in ends if end.call_sid in by_call}
    return DayStats(
        day=day,
        calls=len(by_call),
        heard_balance=heard,
        outcomes=outcomes,
        endings=endings,
        gave_up_at=gave_up_at,
        statuses=Counter(end.status for end in last_status.values()),
        talk_time_s=sum(end.duration_s or 0 for end in last_status.values()),
        promises_taken=promises,
    )


def render(stats: DayStats) -> str:
    """Lay the day out for a terminal."""
    if not stats.calls:
        return f"No calls on {stats.day.isoformat()} (UTC)."
    lines = [
        f"Calls on {stats.day.isoformat()} (UTC): {stats.calls}; "
        f"{stats.heard_balance} heard a balance",
        *([f"Promised payments taken: {stats.promises_taken}"] if stats.promises_taken else []),
        "Step outcomes:",
        *_table(stats.outcomes),
        "How calls ended (their last step):",
        *_table(stats.endings),
        "Where callers gave up without hearing a balance:",
    ]
    if stats.gave_up_at:
        ranked = sorted(stats.gave_up_at.items(), key=lambda item: (-item[1], item[0]))
        lines += [f"  {state:<16}{count:>6}  ({how})" for (state, how), count in ranked]
    else:
        lines.append("  nowhere")
    if stats.statuses:
        average = stats.talk_time_s / sum(stats.statuses.values())
        lines += ["Call statuses from Twilio:", *_table(stats.statuses)]
        lines.append(f"  talk time {stats.talk_time_s} s, {average:.0f} s a call on average")
    return "\n".join(lines)


def _table(counts: Counter[str]) -> list[str]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [f"  {name:<16}{count:>6}" for name, count in ranked]
