"""What the webhooks share within one server process, and how a request finds it."""

from __future__ import annotations

import os

from flask import current_app
from twilio.request_validator import RequestValidator

from ivr import flow
from ivr.db import CallLog, Engine
from ivr.hotlines import HotlineSettings
from ivr.prompts import PromptLibrary, PromptSet

# The first step's cached TwiML: (prompt set it was made with, flow reply, document).
FirstStep = tuple[object, object, str]


class Services:
    """What the webhooks share within one server process."""

    def __init__(
        self,
        engine: Engine,
        prompts: PromptLibrary,
        settings: HotlineSettings,
        validator: RequestValidator | None,
        limits: flow.Limits,
        public_url: str | None,
        call_log: CallLog | None = None,
    ) -> None:
        self.engine = engine
        self.prompts = prompts
        self.settings = settings
        self.validator = validator
        self.limits = limits
        self.public_url = public_url.rstrip("/") if public_url else None
        self.call_log = call_log or CallLog(engine, batch_s=0)
        # The first step's TwiML depends on the language, the voice, the prompt set in
        # service and the base URL only: key -> (prompt set, reply, document).
        self.first_step: dict[tuple[str, str | None, str | None, str], FirstStep] = {}
        # Each language's prompt set in a hotline's voice: key -> (set in service, voiced).
        self._voiced: dict[tuple[str, str | None], tuple[PromptSet, PromptSet]] = {}

    def voiced(self, language: str, voice: str | None) -> PromptSet:
        """Return the prompt set in service for `language`, spoken by `voice` (None: its own).

        Made once per set and voice rather than per document: a reload makes a new set.
        """
        current = self.prompts.get(language)
        found = self._voiced.get((language, voice))
        if found is None or found[0] is not current:
            found = self._voiced[language, voice] = (current, current.with_voice(voice))
        return found[1]


def services() -> Services:
    """Return the current app's shared state."""
    state = current_app.extensions["ivr"]
    assert isinstance(state, Services)
    return state


def under_gunicorn() -> bool:
    """Say whether this is a gunicorn process (it sets SERVER_SOFTWARE for master and workers)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")
