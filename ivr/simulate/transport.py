"""Carry Twilio's webhook requests to the hotline: their shape, their signature, two transports.

`twilio_request` shapes one request as Twilio sends it (a GET's parameters in the query, a
POST's in the form) and signs it with `X-Twilio-Signature` when the auth token is known:
the one place the simulator, the tests and the bench sign. A `Transport` delivers it:
`InProcessTransport` hands it to the object `create_app()` returns through its test
client, `HttpTransport` sends it to a running server. `build_transport` picks one for the
commands.
"""

from __future__ import annotations

import atexit
import re
import secrets
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import (  # type: ignore[import-untyped, unused-ignore]
    RequestValidator,
)

from ivr.simulate.events import CallError

if TYPE_CHECKING:
    from flask import Flask

API_VERSION = "2010-04-01"
TWILIO_TIMEOUT_SECONDS = 15  # Twilio gives up on a webhook after 15 s
USER_AGENT = "TwilioProxy/1.1 (ivr simulate)"


# --- the request, as Twilio sends it ---------------------------------------------------


def new_sid(prefix: str) -> str:
    """Make a Twilio-shaped SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def call_parameters(
    from_: str | None,
    to: str,
    *,
    status: str = "in-progress",
    call_sid: str | None = None,
    account_sid: str | None = None,
) -> dict[str, str]:
    """Return the parameters Twilio sends with every voice webhook of a call.

    A `from_` of None sends no From at all, as a withheld number may come.
    """
    params = {
        "CallSid": call_sid or new_sid("CA"),
        "AccountSid": account_sid or new_sid("AC"),
        "From": from_ or "",
        "To": to,
        "CallStatus": status,
        "Direction": "inbound",
        "ApiVersion": API_VERSION,
    }
    if from_ is None:
        del params["From"]
    return params


def signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """Compute `X-Twilio-Signature` for a request to `url` with POST parameters `params`.

    A multi-valued mapping (werkzeug's MultiDict) is signed with every value, as Twilio does.
    """
    return str(RequestValidator(auth_token).compute_signature(url, params))


class Request(NamedTuple):
    """One webhook request as Twilio sends it; `transport.send(*request)` delivers it."""

    method: str
    url: str
    form: Mapping[str, str] | None
    headers: Mapping[str, str]


def twilio_request(
    method: str, url: str, params: Mapping[str, str], auth_token: str | None = None
) -> Request:
    """Shape a webhook request as Twilio does, signed when the auth token is known."""
    # Twilio puts a GET's parameters in the query string and signs the URL alone.
    sent_url = _with_query(url, params) if method == "GET" else url
    form = None if method == "GET" else dict(params)
    headers = {"User-Agent": USER_AGENT}
    if auth_token:
        headers["X-Twilio-Signature"] = signature(sent_url, form or {}, auth_token)
    return Request(method, sent_url, form, headers)


def _with_query(url: str, params: Mapping[str, str]) -> str:
    """Append parameters to a URL's query string."""
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


# --- the transports --------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a webhook answered."""

    status: int
    content_type: str
    body: str


class Transport(Protocol):
    """Carries the simulator's requests to the app; raises CallError if it cannot."""

    @property
    def base_url(self) -> str:
        """Return the absolute URL the webhook paths hang from (no trailing slash)."""
        ...

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Answer:
        """Send a request to the absolute `url`; `form` is the POST body, if any."""
        ...


class InProcessTransport:
    """Requests go to the app's test client, as if it were served at `base_url`."""

    def __init__(self, app: Flask, base_url: str = "http://localhost") -> None:
        self._client = app.test_client()
        self._base_url = base_url.rstrip("/")

    @property
    def base_url(self) -> str:
        """Return the URL the app pretends to be served at."""
        return self._base_url

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Answer:
        """Hand the request to the test client, keeping the URL as signed."""
        parts = urlsplit(url)
        # The query stays in the path so that the raw request URI (RAW_URI, REQUEST_URI)
        # carries it, as a real server's does; apps check signatures against it.
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        response = self._client.open(
            target,
            base_url=f"{parts.scheme}://{parts.netloc}",
            method=method,
            data=dict(form) if form is not None else None,
            headers=dict(headers),
        )
        return Answer(
            response.status_code,
            response.headers.get("Content-Type", ""),
            response.get_data(as_text=True),
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Let a 3xx reach the simulator, which reports it like any non-200."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        """Refuse to follow."""
        return None


class HttpTransport:
    """Requests go over HTTP to a running server at `base_url`."""

    def __init__(self, base_url: str, timeout: float = TWILIO_TIMEOUT_SECONDS) -> None:
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirects())

    @property
    def base_url(self) -> str:
        """Return the server's base URL."""
        return self._base_url

    def send(
        self, method: str, url: str, form: Mapping[str, str] | None, headers: Mapping[str, str]
    ) -> Answer:
        """Send the request with urllib; any HTTP status comes back as an Answer."""
        all_headers = dict(headers)
        data = None
        if form is not None:
            data = urlencode(form).encode("utf-8")
            all_headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        request = urllib.request.Request(url, data=data, headers=all_headers, method=method)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                content_type = response.headers.get("Content-Type", "")
                return Answer(
                    response.status, content_type, _decode(response.read(), content_type)
                )
        except urllib.error.HTTPError as error:
            content_type = error.headers.get("Content-Type", "")
            body = _decode(error.read(), content_type)
            error.close()
            return Answer(error.code, content_type, body)
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CallError(f"cannot reach {url}: {reason}") from error


def _decode(body: bytes, content_type: str) -> str:
    """Decode a body by the charset its Content-Type names (UTF-8 if none)."""
    match = re.search(r"charset=([\w.:-]+)", content_type, re.IGNORECASE)
    try:
        return body.decode(match.group(1) if match else "utf-8", errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


# --- the transport of `ivr simulate` and `ivr call` -----------------------------------

# The seam for the commands without --url: the app factory. None means ivr's
# create_app on the configured ledger or a throwaway demo copy; tests set their own.
app_factory: Callable[[], Flask] | None = None


@dataclass(frozen=True)
class Target:
    """Where simulated calls go, and which ledger answers them (the transcript's first line)."""

    transport: Transport
    ledger: str  # credentials masked
    close: Callable[[], None] = lambda: None  # gives back what the in-process app holds


def build_target(
    base_url: str | None,
    auth_token: str | None,
    database_url: str | None,
    setting: str = "--database-url",
) -> Target:
    """Reach a running server at `base_url`, or else build the hotline in process.

    In process the ledger is `database_url` (named by `setting`, for the one-line error of
    a ledger that cannot be opened), or a fresh copy of the demo ledger when it is None.
    """
    if base_url:
        return Target(HttpTransport(base_url), f"the one the server at {base_url} uses")
    return _in_process(auth_token, database_url, setting)


def build_transport(
    base_url: str | None, auth_token: str | None, database_url: str | None
) -> Transport:
    """Reach a running server at `base_url`, or else build the hotline in process."""
    return build_target(base_url, auth_token, database_url).transport


def _in_process(auth_token: str | None, database_url: str | None, setting: str) -> Target:
    """Build the hotline app in process, on the ledger named, else on a throwaway demo copy.

    A fresh demo ledger makes every run start alike: failed tries from an earlier run
    cannot add up to a lockout, and the demo balances are what the scripts expect.
    """
    factory = app_factory
    if factory is not None:
        app = factory()
        return Target(InProcessTransport(app), _ledger_of(app) or "the test app's own")
    from ivr import create_app
    from ivr.db import create_demo_if_missing, masked_url, open_ledger
    from ivr.home import home

    demo_ledger = home().demo_ledger  # an IvrError says in one line what to set

    if database_url is None:
        folder = tempfile.mkdtemp(prefix="ivr-simulate-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        database_url = f"sqlite:///{folder}/ledger.sqlite3"
        ledger = f"a fresh copy of the demo ledger ({database_url})"
    else:
        # Strictly: a server starts while its database is away, a simulated call gives up.
        open_ledger(database_url, setting).dispose()
        ledger = f"{masked_url(database_url)} (from {setting})"
    # A simulated call writes its call log at once: `ivr stats` may read it next.
    app = create_app(
        {
            "DATABASE_URL": database_url,
            "AUTH_TOKEN": auth_token,
            "PUBLIC_URL": None,
            "CALL_LOG_BATCH_S": 0,
        }
    )
    engine = app.extensions["ivr"].engine
    create_demo_if_missing(engine, demo_ledger)
    return Target(InProcessTransport(app), ledger, engine.dispose)


def _ledger_of(app: Flask) -> str | None:
    """Name the ledger of an app made elsewhere, if it is the hotline's."""
    services = app.extensions.get("ivr")
    engine = getattr(services, "engine", None)
    url = getattr(engine, "url", None)
    return None if url is None else str(url.render_as_string(hide_password=True))
