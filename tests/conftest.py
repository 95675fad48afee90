"""Fixtures as in the Flask tutorial: `app`, `client`, plus a signed Twilio `call`.

The `call` goes through `ivr.simulate`, the one simulated Twilio, with signing on.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text

from ivr import create_app, db
from ivr.db import migrate
from ivr.simulate import VOICE_PATH, CallSession, Event, InProcessTransport, signature
from ivr.simulate.events import Problem, Requested
from ivr.simulate.transport import twilio_request

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
BASE_URL = "http://localhost"
DEMO_CSV = Path(__file__).resolve().parent.parent / "data" / "demo_ledger.csv"
# A copy of shared/twiml-allowlist.json kept with the tests (tests/data/README.md says why).
TWIML_ALLOWLIST = Path(__file__).resolve().parent / "data" / "twiml-allowlist.json"
HOTLINE = "+73422195195"
CALLER = "+73422000001"


BARE = {"Hangup", "Leave"}  # TwiML verbs without attributes


def twiml_allowlist() -> dict[str, Any]:
    """Read the TwiML allowlist: element -> attribute -> type, and type -> allowed values."""
    data = json.loads(TWIML_ALLOWLIST.read_text(encoding="utf-8"))  # missing: the test fails
    assert isinstance(data, dict) and set(data) == {"attributes", "enums"}
    return data


def check_allowed_twiml(root: ET.Element) -> None:
    """Assert every element and attribute of a TwiML document is one the allowlist names."""
    allowlist = twiml_allowlist()
    assert root.tag == "Response" and not root.attrib
    for element in root.iter():
        if element is root:
            continue
        # The typings list the elements that take attributes; these two take none.
        allowed = allowlist["attributes"].get(element.tag, {} if element.tag in BARE else None)
        assert allowed is not None, f"<{element.tag}> is not TwiML"
        for name, value in element.attrib.items():
            kind = allowed.get(name)
            assert kind is not None, f"<{element.tag} {name}> is not an attribute of it"
            enum = allowlist["enums"].get(kind.removesuffix("[]"))
            values = value.split() if kind.endswith("[]") else [value]
            if enum is not None:
                assert set(values) <= set(enum), f"<{element.tag} {name}={value!r}>"
            elif kind == "number":
                assert all(v.lstrip("-").replace(".", "", 1).isdigit() for v in values), value
            elif kind == "boolean":
                assert value in ("true", "false"), value


def database_url(tmp_path: Path) -> str:
    """Return the ledger URL for one test: PostgreSQL when configured, else a fresh SQLite file."""
    return os.environ.get("IVR_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'db.sqlite3'}"


def fresh_schema(engine: Engine) -> None:
    """Give a test an empty ledger (a shared PostgreSQL database is wiped first)."""
    with engine.begin() as connection:
        db.Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    migrate.bring_to_head(engine)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An empty ledger at the head revision, for tests of the db layer without the app."""
    engine = db.make_engine(database_url(tmp_path))
    fresh_schema(engine)
    yield engine
    engine.dispose()


def engine_of(app: Flask) -> Engine:
    """Return the ledger engine an app was created with."""
    engine = app.extensions["ivr"].engine
    assert isinstance(engine, Engine)
    return engine


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The hotline on a fresh demo ledger, with signature checking on."""
    # The call log written in each request, so a test reads it right after (the batched
    # writer has tests of its own).
    app = create_app(
        {"DATABASE_URL": database_url(tmp_path), "AUTH_TOKEN": AUTH_TOKEN, "CALL_LOG_BATCH_S": 0}
    )
    engine = engine_of(app)
    fresh_schema(engine)
    db.load_demo(engine, DEMO_CSV)  # and data/demo_recent.csv, dated around now
    yield app
    engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """Compute X-Twilio-Signature the way Twilio does (for hand-made, forged requests)."""
    return signature(url, params, token)


@dataclass
class Turn:
    """The TwiML document a step of the call was answered with, parsed."""

    root: ET.Element

    @property
    def said(self) -> list[str]:
        """Every <Say> text in document order, nested ones included."""
        return [el.text or "" for el in self.root.iter("Say")]

    @property
    def text(self) -> str:
        return " ".join(self.said)

    @property
    def gather(self) -> ET.Element | None:
        return self.root.find("Gather")

    @property
    def verbs(self) -> list[str]:
        return [el.tag for el in self.root]

    @property
    def dialed(self) -> str | None:
        dial = self.root.find("Dial")
        return None if dial is None else (dial.text or "").strip()

    @property
    def ends_call(self) -> bool:
        return self.gather is None and self.root.find("Redirect") is None


class Caller:
    """A signed call driven by ivr.simulate's player; each step returns the TwiML it got.

    The player follows the TwiML as Twilio does; this only checks that every step was
    answered with a new, well-typed document and hands that document to the test.
    """

    def __init__(
        self, app: Flask | FlaskClient, caller: str | None = CALLER, hotline: str = HOTLINE
    ) -> None:
        self.app = app.application if isinstance(app, FlaskClient) else app
        self.transport = InProcessTransport(self.app, BASE_URL)
        self.events: list[Event] = []
        self.session = CallSession(
            self.transport,
            self.events.append,
            from_=caller,
            to=hotline,
            auth_token=AUTH_TOKEN,
        )
        self.last: Turn | None = None

    @property
    def call_sid(self) -> str:
        return self.session.call_sid

    def start(self, path: str = VOICE_PATH) -> Turn:
        """Answer the call at its voice URL (or another, such as the fallback URL)."""
        return self._step(lambda: self.session.start(path))

    def press(self, keys: str) -> Turn:
        """Press keys and wait: keys a Gather still holds are submitted at its timeout."""

        def press() -> None:
            self.session.press(keys)
            if self.session.gather is not None and self.session.gather.digits:
                self.session.silence()

        return self._step(press)

    def silence(self) -> Turn:
        """Let the waiting Gather time out."""
        return self._step(self.session.silence)

    def send_digits(self, digits: str) -> Turn:
        """Post Digits to the waiting Gather's action as given, even what Twilio never sends.

        For the app's defences (more keys than numDigits); the call is not followed on.
        """
        gather = self.session.gather
        assert gather is not None, "no Gather is waiting"
        return self.post(gather.action, {"Digits": digits})

    def post(self, path: str, extra: dict[str, str] | None = None) -> Turn:
        """Post one signed webhook outside the call's TwiML (a status callback): not played."""
        params = {**self.session.parameters, **(extra or {})}
        request = twilio_request("POST", urljoin(BASE_URL, path), params, AUTH_TOKEN)
        answer = self.transport.send(*request)
        assert answer.status == 200, answer.body
        assert answer.content_type.split(";")[0] == "text/xml", answer.content_type
        self.last = Turn(ET.fromstring(answer.body))
        assert self.last.root.tag == "Response"
        return self.last

    def _step(self, action: Callable[[], None]) -> Turn:
        before = len(self.events)
        action()
        new = self.events[before:]
        problems = [event for event in new if isinstance(event, Problem)]
        assert not problems, problems
        assert any(isinstance(event, Requested) for event in new), "no webhook was requested"
        assert self.session.twiml is not None
        self.last = Turn(self.session.twiml)
        return self.last


def to_contract_entry(call: Caller, english: bool = False) -> None:
    """Walk a call to the contract entry: 1, 1, 1 (after 9 for English)."""
    call.start()
    if english:
        call.press("9")
    for _ in range(3):
        call.press("1")


@pytest.fixture
def call(app: Flask) -> Caller:
    """A new signed call to the hotline from an ordinary caller."""
    return Caller(app)
