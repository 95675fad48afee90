"""Hold a simulated call with a person at the keyboard (`ivr call`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ivr.simulate.events import CallError, Event, describe
from ivr.simulate.player import CallSession
from ivr.simulate.script import KEYS
from ivr.simulate.transport import Transport


@dataclass(frozen=True)
class CallRecord:
    """What an interactive call gave: its events and the error that stopped it, if any."""

    events: tuple[Event, ...]
    error: str | None = None


def run_interactive(
    transport: Transport,
    from_: str,
    to: str,
    read_keys: Callable[[], str | None],
    show: Callable[[str], None],
    auth_token: str | None = None,
) -> CallRecord:
    """Hold a call with a person: show what is said, read keys; "" is silence, None hangs up."""
    events: list[Event] = []

    def on_event(event: Event) -> None:
        events.append(event)
        show(describe(event))

    session = CallSession(transport, on_event, from_=from_, to=to, auth_token=auth_token)
    try:
        session.start()
        while session.waiting:
            show(f"  … waiting for keys: {session.gather_hint}")
            line = read_keys()
            keys = "".join(line.split()) if line is not None else None
            if keys is None:
                session.hang_up()
            elif not keys:
                session.silence()
            elif set(keys) <= KEYS:
                session.press(keys)
            else:
                show("  ? keys are 0-9, * and #; Enter alone is silence")
    except CallError as error:
        show(f"  ✗ {error}")
        return CallRecord(tuple(events), str(error))
    return CallRecord(tuple(events), None)
