"""What the webhooks share within one server process, and how a request finds it."""

from __future__ import annotations

from flask import current_app
from twilio.request_validator import RequestValidator

from ivr import flow
from ivr.db import Engine
from ivr.hotlines import HotlineSettings
from ivr.prompts import PromptLibrary


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
    ) -> None:
        self.engine = engine
        self.prompts = prompts
        self.settings = settings
        self.validator = validator
        self.limits = limits
        self.public_url = public_url.rstrip("/") if public_url else None


def services() -> Services:
    """Return the current app's shared state."""
    state = current_app.extensions["ivr"]
    assert isinstance(state, Services)
    return state
