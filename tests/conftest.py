"""Fixtures as in the Flask tutorial: `app`, `client`, `runner`, plus a signed Twilio `call`."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import Engine, text
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from ivr import create_app, ledger
from ivr.db import migrate

AUTH_TOKEN = "test-auth-token-0123456789abcdef"
BASE_URL = "http://localhost"
DEMO_CSV = Path(__file__).resolve().parent.parent / "data" / "demo_ledger.csv"
HOTLINE = "+73422195195"
CALLER = "+73422000001"


def database_url(tmp_path: Path) -> str:
    """Return the ledger URL for one test: PostgreSQL when configured, else a fresh SQLite file."""
    return os.environ.get("IVR_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'ledger.sqlite3'}"


def fresh_schema(engine: Engine) -> None:
    """Give a test an empty ledger (a shared PostgreSQL database is wiped first)."""
    with engine.begin() as connection:
        ledger.Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    migrate.bring_to_head(engine)


def engine_of(app: Flask) -> Engine:
    """Return the ledger engine an app was created with."""
    engine = app.extensions["ivr"].engine
    assert isinstance(engine, Engine)
    return engine


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The hotline on a fresh demo ledger, with signature checking on."""
    app = create_app({"DATABASE_URL": database_url(tmp_path), "AUTH_TOKEN": AUTH_TOKEN})
    engine = engine_of(app)
    fresh_schema(engine)
    ledger.import_csv(engine, DEMO_CSV)
    yield app
    engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    """Compute X-Twilio-Signature the way Twilio does."""
    return str(RequestValidator(token).compute_signature(url, params))


@dataclass
class Turn:
    """One TwiML answer, parsed."""

    response: TestResponse
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


class TwilioCall:
    """Drive one call through the webhooks as Twilio would, signing every request."""

    def __init__(self, client: FlaskClient, caller: str = CALLER, hotline: str = HOTLINE) -> None:
        self.client = client
        self.params = {
            "CallSid": "CA" + os.urandom(16).hex(),
            "AccountSid": "AC" + "0" * 32,
            "From": caller,
            "To": hotline,
            "CallStatus": "in-progress",
            "Direction": "inbound",
        }
        self.last: Turn | None = None

    def post(self, path: str, extra: dict[str, str] | None = None) -> Turn:
        params = {**self.params, **(extra or {})}
        url = urljoin(BASE_URL, path)
        response = self.client.post(
            path, data=params, headers={"X-Twilio-Signature": sign(url, params)}
        )
        assert response.status_code == 200, response.data
        assert response.mimetype == "text/xml"
        self.last = Turn(response, ET.fromstring(response.data))
        assert self.last.root.tag == "Response"
        return self.last

    def start(self) -> Turn:
        return self.post("/voice")

    def press(self, digits: str) -> Turn:
        """Press keys at the current Gather; Twilio does not send the finishing key."""
        gather = self._gather()
        finish = gather.get("finishOnKey", "#")
        if finish and digits.endswith(finish):
            digits = digits[: -len(finish)]
        return self.post(gather.get("action", ""), {"Digits": digits})

    def silence(self) -> Turn:
        """Let the Gather time out: Twilio follows the <Redirect> after it."""
        self._gather()
        assert self.last is not None
        redirect = self.last.root.find("Redirect")
        assert redirect is not None, "a Gather must be followed by a Redirect for silence"
        return self.post(redirect.text or "")

    def _gather(self) -> ET.Element:
        assert self.last is not None, "start the call first"
        gather = self.last.gather
        assert gather is not None, f"no Gather is waiting: {self.last.verbs}"
        return gather


@pytest.fixture
def call(client: FlaskClient) -> TwilioCall:
    """A new signed call to the hotline from an ordinary caller."""
    return TwilioCall(client)
