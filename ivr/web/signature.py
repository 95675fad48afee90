"""The `X-Twilio-Signature` check, over the URL Twilio signed."""

from __future__ import annotations

import base64
import hmac
import logging
from urllib.parse import quote

from flask import Response, request
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

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
    if signature and _valid(validator, signed_url(), request.form, signature):
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
    payload = url + "".join(
        name + value for name in sorted(form.keys()) for value in sorted(set(form.getlist(name)))
    )
    mac = hmac.digest(validator.token, payload.encode("utf-8"), "sha1")
    if hmac.compare_digest(base64.b64encode(mac), signature.encode("utf-8")):
        return True
    return bool(validator.validate(url, form, signature))
