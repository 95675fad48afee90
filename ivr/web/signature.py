"""The `X-Twilio-Signature` check, over the URL Twilio signed."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from flask import Response, request
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from ivr.web.services import services
from ivr.web.twilio_request import twilio_request

log = logging.getLogger(__name__)


def signed_url(environ: Mapping[str, Any], base_url: str) -> str:
    """Return the URL Twilio signed: the public base when set, and the raw request URI."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        raw = quote(path, encoding="latin-1")
        raw += f"?{query}" if query else ""
    # WSGI hands the request line's bytes over as latin-1 text; the signature is over those
    # bytes, which a non-ASCII (unescaped) URI only gets back by undoing that.
    if not raw.isascii():
        try:
            raw = raw.encode("latin-1").decode("utf-8", "replace")
        except UnicodeEncodeError:
            pass  # a server that already gave real text
    return base_url + raw


def check_signature() -> Response | None:
    """Refuse a /voice request without a good signature (when a token is configured)."""
    validator = services().validator
    if validator is None or not request.path.startswith("/voice"):
        return None
    incoming = twilio_request()
    environ = incoming.request.environ
    signature = environ.get("HTTP_X_TWILIO_SIGNATURE", "")
    if signature and _valid(
        validator, signed_url(environ, incoming.base_url), incoming.form, signature
    ):
        return None
    log.warning("refused a request to %s: missing or wrong X-Twilio-Signature", request.path)
    return Response("Forbidden: bad or missing X-Twilio-Signature\n", 403, mimetype="text/plain")


def _valid(
    validator: RequestValidator, url: str, form: MultiDict[str, str], signature: str
) -> bool:
    """Check a signature: over the URL as requested first, else as twilio's validator does.

    Twilio signs the URL it requested followed by each parameter's name and values, in
    name order (HMAC-SHA1 with the auth token, base64). twilio's `validate` always computes
    two signatures, the URL with and without its port; a request signed over the URL as
    requested is answered after one. Anything else gets twilio's own check, unchanged.
    """
    parts = [url]
    for name, values in sorted(form.lists()):
        for value in sorted(set(values)) if len(values) > 1 else values:
            parts += (name, value)
    payload = "".join(parts)
    mac = _keyed(validator.token).copy()
    mac.update(payload.encode("utf-8"))
    if hmac.compare_digest(base64.b64encode(mac.digest()), signature.encode("utf-8")):
        return True
    return bool(validator.validate(url, form, signature))


@functools.lru_cache(maxsize=8)
def _keyed(token: bytes) -> hmac.HMAC:
    """The HMAC-SHA1 keyed with the auth token, copied for each request.

    A copy skips the key schedule; and unlike the one-shot `hmac.digest`, which lets go
    of the GIL for every call, it keeps it for a short message, so a step does not wait
    for the call-log thread to hand it back.
    """
    return hmac.new(token, digestmod=hashlib.sha1)
