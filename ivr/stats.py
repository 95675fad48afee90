"""A day of calls from the call log: how many, their outcomes, and where callers gave up.

Days are UTC days unless a time zone is given (the dashboard uses the hotline's). A call
counts on a day when one of its steps was logged that day, in the hour of its first step
that day. `ivr stats` and the dashboard both show a `DayStats` built here, read through
one function (`ivr.db.day_stats`): one count.
No SQL here: `ivr.db.read_call_log` fetches the rows, this module counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Protocol

from ivr.flow import Outcome

# How a call whose last logged step left it waiting at a prompt ended: the caller put
# the phone down (Twilio logs no step for that).
LEFT_AT_PROMPT = "left_at_prompt"
ENDINGS_WITHOUT_ANSWER = {
    Outcome.GAVE_UP.value: "no answer to the prompt",
    LEFT_AT_PROMPT: "hung up",
}
# The self-service feature logs a promised payment taken by phone with this outcome;
# counted by name so that the count is there (0) before the outcome exists.
PROMISE_TAKEN = Outcome.PROMISE_TAKEN.value
MENU_STATES = frozenset({"main", "subscriber", "billing"})
# The funnel of a balance call, each stage a subset of the one before it (see `_stages`).
FUNNEL = ("greeting", "menu", "contract_keyed", "balance_told", "after_balance")
# What a caller did at the prompt after the balance that is not a choice.
NOT_A_CHOICE = frozenset({Outcome.NO_INPUT.value, Outcome.GAVE_UP.value})
OPERATOR_OUTCOMES = frozenset({Outcome.OPERATOR.value, Outcome.NO_OPERATOR.value})


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
    @property
    def at(self) -> datetime: ...
    @property
    def contract(self) -> str | None: ...  # masked


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
    zone: str = "UTC"  # the time zone the day and its hours are in
    by_hour: Counter[int] = field(default_factory=Counter)  # calls by the hour they began
    funnel: Counter[str] = field(default_factory=Counter)  # calls that reached each stage
    # What callers chose after hearing a balance (one per step): an outcome, or the menu
    # a key led to ("to_contract" for another contract).
    after_balance: Counter[str] = field(default_factory=Counter)
    operator_at: Counter[str] = field(default_factory=Counter)  # operator asked, by state

    @property
    def promises_taken(self) -> int:
        """Return how many promised payments callers took."""
        return self.outcomes[PROMISE_TAKEN]


def day_window(day: date, zone: tzinfo = UTC) -> tuple[datetime, datetime]:
    """Return the bounds [start, end) of a day in a time zone, in UTC."""
    start = datetime.combine(day, time(), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def load(read: CallLogReader, day: date, zone: tzinfo = UTC) -> DayStats:
    """Read a day's call log through `read` and summarise it."""
    start, end = day_window(day, zone)
    # A call's end is reported after its last step, possibly after midnight.
    steps, ends = read((start, end), (start, end + timedelta(days=1)))
    return summarise(day, steps, ends, zone)


def summarise(
    day: date, steps: Sequence[StepRow], ends: Sequence[EndRow], zone: tzinfo = UTC
) -> DayStats:
    """Count calls, outcomes, endings and where callers gave up; `steps` in call order."""
    by_call: dict[str, list[StepRow]] = {}
    for step in steps:
        by_call.setdefault(step.call_sid, []).append(step)
    outcomes: Counter[str] = Counter(step.outcome for step in steps)
    endings: Counter[str] = Counter()
    gave_up_at: Counter[tuple[str, str]] = Counter()
    heard = 0
    by_hour: Counter[int] = Counter()
    funnel: Counter[str] = Counter()
    after_balance: Counter[str] = Counter()
    operator_at: Counter[str] = Counter()
    for call_steps in by_call.values():
        by_hour[_hour_begun(day, call_steps, zone)] += 1
        funnel.update(_stages(call_steps))
        for step in call_steps:
            if step.state == "after_balance" and step.outcome not in NOT_A_CHOICE:
                after_balance[_choice(step)] += 1
            if step.outcome in OPERATOR_OUTCOMES:
                operator_at[step.state or "answer"] += 1
        last = call_steps[-1]
        ending = last.outcome if last.next_state is None else LEFT_AT_PROMPT
        endings[ending] += 1
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
        zone=str(zone),
        by_hour=by_hour,
        funnel=funnel,
        after_balance=after_balance,
        operator_at=operator_at,
    )


def _hour_begun(day: date, steps: Sequence[StepRow], zone: tzinfo) -> int:
    """Return the local hour of a call's first step on `day` (0 for one begun the day before)."""
    for step in steps:
        local = step.at.astimezone(zone)
        if local.date() == day:
            return local.hour
    return 0


def _stages(steps: Sequence[StepRow]) -> list[str]:
    """Return the funnel stages a call reached, in order; a later stage implies the earlier."""
    reached = {
        "greeting": True,
        "menu": any(s.state in MENU_STATES and s.next_state == "contract" for s in steps),
        "contract_keyed": any(s.state == "contract" and s.contract is not None for s in steps),
        "balance_told": any(s.outcome == Outcome.BALANCE_TOLD.value for s in steps),
        "after_balance": any(
            s.state == "after_balance" and s.outcome not in NOT_A_CHOICE for s in steps
        ),
    }
    stages: list[str] = []
    for stage in FUNNEL:
        if not reached[stage]:
            break
        stages.append(stage)
    return stages


def _choice(step: StepRow) -> str:
    """Name what a caller did at the prompt after the balance."""
    if step.outcome == Outcome.MENU.value and step.next_state is not None:
        return f"to_{step.next_state}"
    return step.outcome


def render(stats: DayStats) -> str:
    """Lay the day out for a terminal."""
    if not stats.calls:
        return f"No calls on {stats.day.isoformat()} ({stats.zone})."
    lines = [
        f"Calls on {stats.day.isoformat()} ({stats.zone}): {stats.calls}; "
        f"{stats.heard_balance} heard a balance",
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
    lines.append("Funnel (calls that got this far):")
    lines += [f"  {stage:<16}{stats.funnel[stage]:>6}" for stage in FUNNEL]
    if stats.after_balance:
        lines += ["Choices after the balance:", *_table(stats.after_balance)]
    if stats.operator_at:
        lines += ["Operator asked for at:", *_table(stats.operator_at)]
    lines.append(f"Promised payments taken: {stats.promises_taken}")
    lines.append("Calls by the hour they began:")
    lines += [f"  {hour:02d}:00{stats.by_hour[hour]:>15}" for hour in sorted(stats.by_hour)]
    return "\n".join(lines)


def _table(counts: Counter[str]) -> list[str]:
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [f"  {name:<16}{count:>6}" for name, count in ranked]
