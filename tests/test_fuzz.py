"""Random keys and silences through the real webhooks, followed as Twilio follows TwiML.

Every answer must be HTTP 200, text/xml, TwiML made of known verbs with sane attributes,
and every call must end (a hangup or a dial) soon after the caller stops pressing keys.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from urllib.parse import parse_qsl, urlsplit

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.orm import Session

from ivr import db, flow
from ivr.prompts import voices
from tests.conftest import Caller, Turn, check_allowed_twiml

FUZZ = settings(
    max_examples=int(os.environ.get("IVR_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,  # nothing written into the work tree; a failure prints its example
    # One app and ledger for all examples on purpose: lockouts earned by one call are met
    # by the next, as on a real line.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SILENCE = None
MENU_KEYS = list("0123456789*#")
CONTRACTS = [
    "590000000018",  # known
    "590000000042",  # known
    "590000000075",  # a valid check digit, no such contract
    "590000000017",  # a wrong check digit
]
CALLERS = ["+73422000101", "+73422000102", "Anonymous", "+79991234567"]
HOTLINES = ["+73422195195", "+73422195196"]  # Russian, English
SCRIPTED_STEPS = 25

# The TwiML a hotline answer may hold: element -> attributes (names from the allowlist).
ALLOWED: dict[str, set[str]] = {
    "Response": set(),
    "Say": {"voice", "language", "loop"},
    "Play": {"loop", "digits"},
    "Gather": {"action", "method", "input", "numDigits", "finishOnKey", "timeout"},
    "Redirect": {"method"},
    "Hangup": set(),
    "Dial": set(),
}
SPOKEN = {"Say", "Play"}
DIGIT_RUN = re.compile(r"[0-9]{12}")

RUN: Counter[str] = Counter()


def check_twiml(turn: Turn) -> str:
    """Check one answer; return how the call goes on: "gather", "hangup" or "dial"."""
    root = turn.root
    assert root.tag == "Response" and not root.attrib
    check_allowed_twiml(root)  # every element and value one Twilio knows
    for element in root.iter():
        assert element.tag in ALLOWED, element.tag
        assert set(element.attrib) <= ALLOWED[element.tag], (element.tag, element.attrib)
        if element.tag == "Say":
            check_say(element)
    verbs = [el.tag for el in root]
    spoken = 0
    while spoken < len(verbs) and verbs[spoken] in SPOKEN:
        spoken += 1
    rest = verbs[spoken:]
    if rest == ["Hangup"]:
        assert spoken >= 1, "a hangup without a word"
        return "hangup"
    if rest == ["Dial"]:
        dial = root.find("Dial")
        assert dial is not None and re.fullmatch(r"\+[1-9][0-9]{6,14}", (dial.text or "").strip())
        return "dial"
    assert rest == ["Gather", "Redirect"], verbs
    check_gather(root)
    return "gather"


def check_say(say: ET.Element) -> None:
    words = say.text or ""
    assert words.strip(), "an empty <Say>"
    assert "{" not in words and "}" not in words, words  # a placeholder left unfilled
    assert not DIGIT_RUN.search(words), words  # a contract is read digit by digit
    assert len(words.encode()) <= voices.SAY_LIMIT_BYTES
    voice, language = say.get("voice"), say.get("language")
    assert voice is not None and language is not None
    assert voices.is_voice(voice) and voices.is_language(language), (voice, language)
    assert voices.fits(voice, language), (voice, language)
    assert language in flow.LANGUAGES


def check_gather(root: ET.Element) -> None:
    gather, redirect = root.find("Gather"), root.find("Redirect")
    assert gather is not None and redirect is not None
    assert (gather.get("input"), gather.get("method")) == ("dtmf", "POST")
    digits = int(gather.get("numDigits", "0"))
    finish = gather.get("finishOnKey")
    assert (digits, finish) in {(1, ""), (12, "#")}, (digits, finish)
    assert 1 <= int(gather.get("timeout", "0")) <= 30
    inside = [el.tag for el in gather]
    assert inside and set(inside) <= SPOKEN, inside  # the prompt is in the Gather: barge-in
    action = gather.get("action", "")
    assert redirect.text == action and redirect.get("method") == "POST"
    url = urlsplit(action)
    assert url.path == "/voice/step" and not url.netloc
    state = flow.Call.from_query(dict(parse_qsl(url.query)))  # raises on a bad state
    assert (state.state is flow.State.CONTRACT) == (digits == 12)


def keys_for(data: st.DataObject, gather: ET.Element) -> str | None:
    """Draw what the caller does at a Gather: keys (without the finishing #) or silence."""
    if gather.get("numDigits") == "12":
        return data.draw(
            st.one_of(
                st.just(SILENCE),
                st.sampled_from(CONTRACTS),
                st.text(alphabet="0123456789*", min_size=1, max_size=12),  # partial, then timeout
            )
        )
    # Any key, or one that leads somewhere, so that calls also get deep into the flow.
    onward = st.sampled_from(["1", "1", "2", "*"])
    return data.draw(st.one_of(st.just(SILENCE), st.sampled_from(MENU_KEYS), onward))


def one_call(client: FlaskClient, data: st.DataObject, caller: str, guesser: bool) -> None:
    """Drive one call from its start until it ends, checking every answer.

    A guesser heads straight for contract entry (1 1 1) and keys in numbers there.
    """
    hotline = data.draw(st.sampled_from(HOTLINES), label="hotline")
    scripted = data.draw(st.integers(0, SCRIPTED_STEPS), label="scripted steps")
    call = Caller(client, caller=caller, hotline=hotline)
    turn = call.start()  # asserts HTTP 200 and text/xml
    how = check_twiml(turn)
    steps = 0
    # After its scripted steps the caller is silent: the prompt limit must end the call.
    bound = scripted + flow.Limits().prompts_per_menu
    while how == "gather":
        assert steps < bound, f"the call is still going after {steps} steps"
        gather = turn.gather
        assert gather is not None
        if steps >= scripted:
            keys = SILENCE
        elif guesser and gather.get("numDigits") == "1" and steps < 3:
            keys = "1"
        elif guesser and gather.get("numDigits") == "12":
            keys = data.draw(st.sampled_from(CONTRACTS))
        else:
            keys = keys_for(data, gather)
        if keys is SILENCE:
            turn = call.silence()
        else:
            turn = call.press(keys)
        RUN["silences" if keys is SILENCE else "key presses"] += 1
        how = check_twiml(turn)
        steps += 1
    RUN["calls"] += 1
    RUN[f"ended by {how}"] += 1
    RUN["requests"] += steps + 1
    RUN["longest call"] = max(RUN["longest call"], steps + 1)
    last = turn.said[-1] if turn.said else ""
    for lang in flow.LANGUAGES:
        phrases = client.application.extensions["ivr"].prompts.get(lang).phrases
        for name in ("apology", "locked_out", "too_many_tries", "goodbye", "operator_connecting"):
            RUN[name] += last == phrases[name]


@FUZZ
@given(data=st.data())
def fuzz_calls(client: FlaskClient, data: st.DataObject) -> None:
    """One example: a few calls from one caller, each followed to its end and checked."""
    # Each example starts with no failed entries on record, so that it replays the same
    # way; its calls come from one caller, enough of them to run into the lockout.
    with Session(client.application.extensions["ivr"].engine) as session, session.begin():
        session.execute(delete(db.FailedLookup))
    caller = data.draw(st.sampled_from(CALLERS), label="caller")
    guesser = data.draw(st.booleans(), label="guesser")
    for _ in range(data.draw(st.integers(1, 4), label="calls")):
        one_call(client, data, caller, guesser)
    RUN["examples"] += 1


def test_random_calls_always_get_valid_twiml_and_end(client: FlaskClient) -> None:
    """Fuzz the webhooks, then check the run itself: enough calls, and never the apology.

    The report is part of this test, so that it asserts on its own run whether it is run
    alone, deselected with others or in any order (print it with -s).
    """
    RUN.clear()
    fuzz_calls(client)
    print(f"\nfuzz: {dict(RUN)}")
    assert RUN["examples"] >= min(FUZZ.max_examples, 100), dict(RUN)
    assert RUN["calls"] >= RUN["examples"]
    assert RUN["ended by hangup"] > 0 and RUN["key presses"] > 0 and RUN["silences"] > 0
    assert RUN["apology"] == 0, dict(RUN)
