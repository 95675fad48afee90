"""TwiML as a caller hears it: every <Say> of every menu is one language, in a voice of it.

The walk explores the hotline through its webhooks, as Twilio would: from the start of a
call on each hotline number, every key (and silence) at every state of the flow, in both
languages, each answer checked. The call state rides in the action URL, so a state once
reached is explored by posting to its URL directly.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
from flask import Flask

from ivr import create_app, db, flow
from ivr.prompts import voices
from ivr.simulate import InProcessTransport
from ivr.simulate.transport import call_parameters, twilio_request
from tests.conftest import (
    AUTH_TOKEN,
    BASE_URL,
    CALLER,
    DEMO_CSV,
    Caller,
    check_allowed_twiml,
    database_url,
    engine_of,
    fresh_schema,
)

HOTLINES = ("+73422195195", "+73422195196")  # ru-RU and en-US in data/hotline.toml
MENU_KEYS = [*"0123456789*", ""]  # "" is silence: the Gather times out
CONTRACT_KEYS = [
    "590000000018",  # known, money on it
    "590000000026",  # known, zero
    "590000000034",  # known, a debt
    "590000000067",  # known, a promised payment
    "590000000075",  # well formed, nobody's
    "590000000017",  # a wrong check digit
    "5900",  # too short
    "*",
    "",
]
# The menus before a balance is told are the same whichever account was told before.
BEFORE_A_BALANCE = {flow.State.MAIN, flow.State.SUBSCRIBER, flow.State.BILLING, flow.State.CONTRACT}
# Written independently of ivr.prompts.writing, as the caller's ear would judge.
CYRILLIC = re.compile(r"[А-Яа-яЁё\u0400-\u04ff]")
LATIN = re.compile(r"[A-Za-z]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The hotline on the demo ledger, lockout out of the way of a walk of many guesses."""
    app = create_app(
        {
            "DATABASE_URL": database_url(tmp_path),
            "AUTH_TOKEN": AUTH_TOKEN,
            "LOCKOUT_FAILURES": 1_000_000,
        }
    )
    engine = engine_of(app)
    fresh_schema(engine)
    db.import_csv(engine, DEMO_CSV)
    yield app
    engine.dispose()


def check_say(say: ET.Element) -> None:
    """One language a <Say>, said by a voice that speaks it."""
    text, language, voice = say.text or "", say.get("language"), say.get("voice")
    assert language in flow.LANGUAGES, (language, text)
    assert voice is not None and voices.fits(voice, language), (voice, language, text)
    if language != "ru-RU":
        assert not CYRILLIC.search(text), f"Cyrillic in a {language} <Say> by {voice}: {text}"
    else:
        for sentence in SENTENCE_END.split(text):
            assert CYRILLIC.search(sentence) or not LATIN.search(sentence), (
                f"a sentence of no Russian in a ru-RU <Say> by {voice}: {sentence!r} of {text!r}"
            )


def answer(app: Flask, path: str, hotline: str, digits: str | None) -> ET.Element:
    """Post one signed webhook; check its answer against the allowlist, and every <Say>."""
    params = call_parameters(CALLER, hotline)
    if digits:
        params["Digits"] = digits
    request = twilio_request("POST", urljoin(BASE_URL, path), params, AUTH_TOKEN)
    got = InProcessTransport(app, BASE_URL).send(*request)
    assert got.status == 200, got.body
    root = ET.fromstring(got.body)
    check_allowed_twiml(root)
    for say in root.iter("Say"):
        check_say(say)
    return root


def walk(app: Flask) -> tuple[set[tuple[flow.State, str]], int]:
    """Explore every state reachable from a call's start; return the (state, language)s seen."""
    seen: set[tuple[flow.State, str]] = set()
    explored: set[tuple[flow.State, str, int | None]] = set()
    todo: deque[tuple[str, str]] = deque()  # (hotline, action URL)
    said = 0

    def follow(root: ET.Element, hotline: str) -> None:
        nonlocal said
        said += len(list(root.iter("Say")))
        gather = root.find("Gather")
        if gather is None:
            return
        action = gather.get("action", "")
        call = flow.Call.from_query(dict(parse_qsl(urlsplit(action).query)))
        seen.add((call.state, call.lang))
        # One visit per state, language (and account told): the prompt count only repeats.
        account = None if call.state in BEFORE_A_BALANCE else call.account
        key = (call.state, call.lang, account)
        if key not in explored:
            explored.add(key)
            todo.append((hotline, action))

    for hotline in HOTLINES:
        follow(answer(app, "/voice", hotline, None), hotline)
    while todo:
        hotline, action = todo.popleft()
        state = flow.Call.from_query(dict(parse_qsl(urlsplit(action).query))).state
        for digits in CONTRACT_KEYS if state is flow.State.CONTRACT else MENU_KEYS:
            follow(answer(app, action, hotline, digits), hotline)
    return seen, said


def test_every_say_of_every_menu_is_one_language_in_its_voice(app: Flask) -> None:
    seen, said = walk(app)
    everywhere = {(state, lang) for state in flow.State for lang in flow.LANGUAGES}
    assert everywhere <= seen, f"the walk never reached {sorted(everywhere - seen, key=str)}"
    assert said > 100  # the walk heard what it checked


@pytest.mark.parametrize("hotline", HOTLINES)
def test_the_main_menu_offers_the_other_language_in_that_languages_voice(
    app: Flask, hotline: str
) -> None:
    call = Caller(app, hotline=hotline)
    first = call.start()
    second = call.press("9")
    for turn in (first, second):
        assert turn.gather is not None
        spoken = [(say.get("language"), say.get("voice"), say.text) for say in turn.gather]
        menu_language = spoken[0][0]
        assert spoken[-1] == (
            ("en-US", "Polly.Joanna", "For English, press 9.")
            if menu_language == "ru-RU"
            else ("ru-RU", "Polly.Tatyana", "Для русского языка нажмите 9.")
        )
    languages = {first.gather[0].get("language"), second.gather[0].get("language")}  # type: ignore[index]
    assert languages == set(flow.LANGUAGES)


def test_a_lines_voice_speaks_its_language_also_in_the_offer_to_switch(
    tmp_path: Path, app: Flask
) -> None:
    settings = tmp_path / "hotline.toml"
    settings.write_text(
        '[default]\nlanguage = "ru-RU"\noperator = ""\nvoice = "Polly.Maxim"\n'
        '[numbers."+73422195196"]\nlanguage = "en-US"\nvoice = "Polly.Matthew"\n',
        encoding="utf-8",
    )
    voiced = create_app(
        {
            "DATABASE_URL": app.config["DATABASE_URL"],
            "AUTH_TOKEN": AUTH_TOKEN,
            "SETTINGS_FILE": str(settings),
        }
    )
    try:
        heard = {}
        for hotline in HOTLINES:
            call = Caller(voiced, hotline=hotline)
            for turn in (call.start(), call.press("9")):
                assert turn.gather is not None
                heard[hotline, turn.gather[0].get("language")] = [
                    (say.get("language"), say.get("voice")) for say in turn.gather
                ]
    finally:
        engine_of(voiced).dispose()
    # The line's voice speaks the line's language only; the other is the file's voice.
    assert heard == {
        ("+73422195195", "ru-RU"): [("ru-RU", "Polly.Maxim"), ("en-US", "Polly.Joanna")],
        ("+73422195195", "en-US"): [("en-US", "Polly.Joanna"), ("ru-RU", "Polly.Maxim")],
        ("+73422195196", "en-US"): [("en-US", "Polly.Matthew"), ("ru-RU", "Polly.Tatyana")],
        ("+73422195196", "ru-RU"): [("ru-RU", "Polly.Tatyana"), ("en-US", "Polly.Matthew")],
    }
