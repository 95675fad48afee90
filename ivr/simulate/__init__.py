"""One simulated Twilio: play calls against the hotline as Twilio would.

- `events`: what happens on a call (`Event`s) and their transcript lines;
- `transport`: a webhook request as Twilio shapes and signs it, carried in process (the
  app's test client) or over HTTP;
- `player`: `CallSession`, Twilio's side of one call, which follows the TwiML;
- `script`: the DTMF script parser; `runner`: runs scripts and checks them;
- `interactive`: `ivr call`'s loop; `audio`: a call rendered to a wav file.

The click commands `ivr simulate` and `ivr call` live in `ivr.cli`.
"""

from ivr.simulate.events import HANGUP_REASONS, CallError, Event, describe
from ivr.simulate.interactive import CallRecord, run_interactive
from ivr.simulate.player import MAX_REQUESTS, VOICE_PATH, CallSession, PendingGather
from ivr.simulate.runner import Failure, ScriptResult, run_script, run_scripts
from ivr.simulate.script import Script, ScriptError, parse_script, parse_text
from ivr.simulate.transport import (
    Answer,
    HttpTransport,
    InProcessTransport,
    Target,
    Transport,
    build_target,
    build_transport,
    signature,
    twilio_request,
)

__all__ = [
    "HANGUP_REASONS",
    "MAX_REQUESTS",
    "VOICE_PATH",
    "Answer",
    "CallError",
    "CallRecord",
    "CallSession",
    "Event",
    "Failure",
    "HttpTransport",
    "InProcessTransport",
    "PendingGather",
    "Script",
    "ScriptError",
    "ScriptResult",
    "Target",
    "Transport",
    "build_target",
    "build_transport",
    "describe",
    "parse_script",
    "parse_text",
    "run_interactive",
    "run_script",
    "run_scripts",
    "signature",
    "twilio_request",
]
