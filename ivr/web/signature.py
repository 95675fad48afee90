"""The `X-Twilio-Signature` check, over the URL Twilio signed."""

from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Response, request

from ivr.web.services import services

log = logging.getLogger(__name__)


def signed_url() -> str:
    """Return the URL Twilio signed: the public base when set, and the raw request URI."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        query = environ.get("QUERY_STRING", "")
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        raw = quote(path, encoding="latin-1")
        raw += f"?{query}" if query else ""
    # WSGI hands the request line's bytes over as latin-1 text; the signature is over those
    # bytes, which a non-ASCII (unescaped) URI only gets back by undoing that.
    try:
        raw = raw.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        pass  # a server that already gave real text
    base = services().public_url or request.host_url.rstrip("/")
    return base + raw


def check_signature() -> Response | None:
    """Refuse a /voice request without a good signature (when a token is configured)."""
    validator = services().validator
    if validator is None or not request.path.startswith("/voice"):
        return None
    signature = request.headers.get("X-Twilio-Signature", "")
    if signature and validator.validate(signed_url(), request.form, signature):
        return None
    log.warning("refused a request to %s: missing or wrong X-Twilio-Signature", request.path)
    return Response("Forbidden: bad or missing X-Twilio-Signature\n", 403, mimetype="text/plain")
