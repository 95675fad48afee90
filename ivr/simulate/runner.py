"""Run DTMF scripts: play each step on a `CallSession` and check its expectations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ivr.simulate.events import (
    HANGUP_REASONS,
    CallError,
    Checked,
    Event,
    Played,
    Problem,
    Said,
    describe,
)
from ivr.simulate.player import MAX_REQUESTS, CallSession
from ivr.simulate.script import (
    Expect,
    ExpectDial,
    ExpectHangup,
    ExpectNot,
    Press,
    Script,
    Silence,
    StartCall,
    Step,
    normalize_number,
)
from ivr.simulate.transport import Transport


@dataclass(frozen=True)
class Failure:
    """A step that did not hold: where, what, and what was heard since the last step."""

    path: str
    line: int
    source: str
    message: str
    heard: tuple[str, ...] = ()
    since_line: int | None = None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}: {self.source}: {self.message}"
        if self.since_line is not None:
            heard = " / ".join(f'"{said}"' for said in self.heard) or "nothing"
            text += f"\n    heard since line {self.since_line}: {heard}"
        return text


@dataclass(frozen=True)
class ScriptResult:
    """What running a script gave: every event and every failure."""

    script: Script
    events: tuple[Event, ...]
    failures: tuple[Failure, ...]

    @property
    def passed(self) -> bool:
        """Tell whether every step held."""
        return not self.failures

    def transcript(self) -> str:
        """Render the events as readable lines."""
        return "\n".join(describe(event) for event in self.events)


@dataclass
class _ScriptRun:
    """The mutable state of one script run."""

    script: Script
    transport: Transport
    auth_token: str | None
    max_requests: int
    events: list[Event] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    session: CallSession | None = None
    step: Step | None = None
    since: Step | None = None

    def run(self) -> ScriptResult:
        """Play every step; stop at the first failure that leaves the call unusable."""
        for step in self.script.steps:
            self.step = step
            try:
                self._do(step)
            except CallError as error:
                self._fail(step, str(error))
                break
        if self.session is not None:
            self.session.hang_up()
        return ScriptResult(self.script, tuple(self.events), tuple(self.failures))

    def _do(self, step: Step) -> None:
        """Play one step."""
        match step:
            case StartCall():
                if self.session is not None:
                    self.session.hang_up()
                self._reset(step)
                self.session = CallSession(
                    self.transport,
                    self._on_event,
                    from_=step.from_,
                    to=step.to,
                    auth_token=self.auth_token,
                    max_requests=self.max_requests,
                )
                self.session.start()
            case Press(keys=keys):
                self._reset(step)
                self._session().press(keys)
            case Silence():
                self._reset(step)
                self._session().silence()
            case Expect(text=text):
                self._check(step, _contains(self.heard, text), f'"{text}" was not said')
            case ExpectNot(text=text):
                self._check(step, not _contains(self.heard, text), f'"{text}" was said')
            case ExpectHangup():
                self._check(step, *self._hangup_verdict())
            case ExpectDial(number=number):
                self._check(step, *self._dial_verdict(number))

    def _session(self) -> CallSession:
        if self.session is None:  # parse_text puts a call first; this guards hand-made Scripts
            raise CallError("no call started: the script must begin with `call`")
        return self.session

    def _hangup_verdict(self) -> tuple[bool, str]:
        reason = self._session().end_reason
        if reason in HANGUP_REASONS:
            return True, ""
        if reason is None:
            return False, "the call is still going on (a Gather is waiting)"
        return False, f"the call did not hang up: it ended by {reason}"

    def _dial_verdict(self, number: str) -> tuple[bool, str]:
        dialed = self._session().dialed
        if normalize_number(number) in map(normalize_number, dialed):
            return True, ""
        return False, f"dialed {', '.join(dialed) or 'nothing'}, not {number}"

    def _reset(self, step: Step) -> None:
        """Start a new stretch of what was heard: this step acts on the call."""
        self.heard = []
        self.since = step

    def _on_event(self, event: Event) -> None:
        self.events.append(event)
        if isinstance(event, Said):
            self.heard.append(event.text)
        elif isinstance(event, Played):
            self.heard.append(event.url)
        elif isinstance(event, Problem) and self.step is not None:
            self._fail(self.step, event.message)

    def _check(
        self, step: Expect | ExpectNot | ExpectHangup | ExpectDial, ok: bool, message: str
    ) -> None:
        self.events.append(Checked(step.line, step.source, ok))
        if not ok:
            self._fail(step, message)

    def _fail(self, step: Step, message: str) -> None:
        self.failures.append(
            Failure(
                self.script.path,
                step.line,
                step.source,
                message,
                tuple(self.heard),
                self.since.line if self.since is not None else None,
            )
        )


def _contains(heard: Sequence[str], text: str) -> bool:
    """Tell whether text was said, ignoring case and runs of whitespace."""
    return _fold(text) in _fold(" ".join(heard))


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def run_script(
    script: Script,
    transport: Transport,
    auth_token: str | None = None,
    *,
    max_requests: int = MAX_REQUESTS,
) -> ScriptResult:
    """Run a parsed script's calls through a transport and check its expectations."""
    return _ScriptRun(script, transport, auth_token, max_requests).run()


def run_scripts(
    scripts: Iterable[Script], transport: Transport, auth_token: str | None = None
) -> list[ScriptResult]:
    """Run scripts one after another through one transport; return every result."""
    return [run_script(script, transport, auth_token) for script in scripts]
