"""One of Twilio's webhook requests as the handlers need it, read through Flask once.

A step consults the form, the shared services, the dialed line and the base URL a dozen
times between the signature check, the flow, the TwiML and the call log. Each of those
went through one of Flask's context proxies (`request`, `g`, `current_app`), about a
microsecond apiece; read once into a `TwilioRequest`, they are plain attributes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import tzinfo

from flask import Request, g, url_for
from flask.globals import request_ctx
from werkzeug.datastructures import MultiDict

from ivr import flow
from ivr.hotlines import DialedLine
from ivr.phones import caller_id, e164, time_zone
from ivr.prompts import PromptSet
from ivr.web.services import Services, services


@dataclass(frozen=True, slots=True)
class TwilioRequest:
    """A webhook request: its form, the process's services, the dialed hotline's settings."""

    request: Request
    shared: Services
    form: MultiDict[str, str]
    line: DialedLine
    base_url: str  # IVR_PUBLIC_URL, else the scheme and host the request came to; no "/"

    @property
    def caller(self) -> str:
        """The caller's number in E.164, or "unknown" (withheld)."""
        return caller_id(self.form.get("From"))

    @property
    def call_sid(self) -> str:
        return self.form.get("CallSid", "")

    @property
    def zone(self) -> tzinfo:
        """The time zone of the dialed hotline's number, in which dates are told."""
        return _zone_of(e164(self.form.get("To")))

    def prompts_for(self, language: str) -> PromptSet:
        """Return the prompts of a language, in the voice the dialed hotline asks for."""
        return self.shared.voiced(language, self.line.voice_for(language))

    def audio_url(self, file: str, version: int) -> str:
        """Build the absolute URL Twilio fetches a recorded phrase from."""
        return recording_url(self.base_url, file, version)


def base_url(shared: Services, request: Request) -> str:
    """Return the URL Twilio reaches us at: IVR_PUBLIC_URL, else the request's host."""
    return shared.public_url or request.host_url.rstrip("/")


def recording_url(base: str, file: str, version: int) -> str:
    """Build the absolute URL Twilio fetches a recorded phrase from."""
    # `v` changes with the file, so Twilio, which caches what it plays, fetches a new
    # take; the base is the public URL behind a proxy, else the host the request came to.
    return base + url_for("prompt_audio", file=file, v=version)


def twilio_request() -> TwilioRequest:
    """Return this request's `TwilioRequest`, read on first use and kept in `g`."""
    found: TwilioRequest | None = g.get("ivr_request")
    if found is None:
        request = request_ctx.request
        shared = services()
        form = request.form
        found = g.ivr_request = TwilioRequest(
            request=request,
            shared=shared,
            form=form,
            line=shared.settings.for_number(form.get("To")),
            base_url=base_url(shared, request),
        )
    return found


@functools.lru_cache(maxsize=256)  # a few hotline numbers, asked every step
def _zone_of(dialed: str | None) -> tzinfo:
    if dialed is None:
        return flow.DEFAULT_ZONE
    return time_zone(dialed, default=flow.DEFAULT_ZONE)
