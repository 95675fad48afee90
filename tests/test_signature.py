"""X-Twilio-Signature at the edges: proxies, ports, escapes, repeated parameters, forgeries.

The URL checked must be the one Twilio requested: IVR_PUBLIC_URL when set, else the
scheme and host the app sees (after ProxyFix, when configured) and the raw request URI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict
from werkzeug.test import TestResponse

from ivr import create_app
from ivr.errors import ConfigError
from tests.conftest import AUTH_TOKEN, BASE_URL, CALLER, HOTLINE, sign

PARAMS = {"CallSid": "CA" + "5" * 32, "From": CALLER, "To": HOTLINE}
STEP = "/voice/step?s=main&l=ru-RU&p=1&k=0"
PUBLIC = "https://hotline.example"


@pytest.fixture
def hotline(app: Flask) -> Iterator[Any]:
    """Make more apps on the fixture's database, with config on top; dispose them after."""
    made: list[Flask] = []

    def make(**config: Any) -> FlaskClient:
        other = create_app(
            {"DATABASE_URL": app.config["DATABASE_URL"], "AUTH_TOKEN": AUTH_TOKEN, **config}
        )
        made.append(other)
        return other.test_client()

    yield make
    for other in made:
        other.extensions["ivr"].engine.dispose()


def post(
    client: FlaskClient,
    path: str,
    signed_url: str | None,
    params: Mapping[str, str] | MultiDict[str, str] = PARAMS,
    signed_params: Mapping[str, str] | MultiDict[str, str] | None = None,
    base_url: str = BASE_URL,
    headers: Mapping[str, str] | None = None,
    **environ: str,
) -> TestResponse:
    """POST `params` to `path`, signed (when `signed_url` is given) as Twilio would sign it."""
    sent = dict(headers or {})
    if signed_url is not None:
        sent["X-Twilio-Signature"] = sign(signed_url, signed_params or params)  # type: ignore[arg-type]
    return client.post(
        path, data=params, headers=sent, base_url=base_url, environ_overrides=environ or None
    )


def is_twiml(response: TestResponse) -> bool:
    return response.status_code == 200 and response.mimetype == "text/xml"


# --- behind a TLS-terminating proxy ------------------------------------------------------

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hotline.example"}


def test_behind_a_proxy_without_proxy_fix_the_https_signature_fails(client: FlaskClient) -> None:
    """The app sees http; Twilio signed https. Forwarded headers are not trusted by default."""
    response = post(client, "/voice", PUBLIC + "/voice", headers=FORWARDED, base_url=BASE_URL)
    assert response.status_code == 403


def test_forwarded_headers_are_ignored_unless_configured(client: FlaskClient) -> None:
    """Without PROXY_FIX a sender cannot move the checked URL with X-Forwarded-*."""
    response = post(client, "/voice", BASE_URL + "/voice", headers=FORWARDED)
    assert is_twiml(response)


@pytest.mark.parametrize("setting", [{"PROXY_FIX": 1}, {"PROXY_FIX": "yes"}, {"PROXY_FIX": "1"}])
def test_proxy_fix_honours_the_forwarded_scheme_and_host(
    hotline: Any, setting: dict[str, Any]
) -> None:
    client = hotline(**setting)
    assert is_twiml(post(client, "/voice", PUBLIC + "/voice", headers=FORWARDED))
    assert is_twiml(post(client, STEP, PUBLIC + STEP, headers=FORWARDED))
    # What the app itself sees is no longer what is checked.
    assert post(client, "/voice", BASE_URL + "/voice", headers=FORWARDED).status_code == 403


def test_proxy_fix_from_the_environment(hotline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_PROXY_FIX", "1")
    client = hotline()
    assert is_twiml(post(client, "/voice", PUBLIC + "/voice", headers=FORWARDED))


def test_proxy_fix_with_only_the_scheme_forwarded(hotline: Any) -> None:
    """nginx often passes Host through and adds only X-Forwarded-Proto."""
    client = hotline(PROXY_FIX=1)
    headers = {"X-Forwarded-Proto": "https"}
    response = post(
        client,
        "/voice",
        PUBLIC + "/voice",
        headers=headers,
        base_url=PUBLIC.replace("https", "http"),
    )
    assert is_twiml(response)


def test_proxy_fix_counts_the_proxies_it_trusts(hotline: Any) -> None:
    """Two proxies: the client-facing scheme is the second value from the right."""
    headers = {"X-Forwarded-Proto": "https, http", "X-Forwarded-Host": "hotline.example, inner"}
    one = hotline(PROXY_FIX=1)
    assert post(one, "/voice", PUBLIC + "/voice", headers=headers).status_code == 403
    two = hotline(PROXY_FIX=2)
    assert is_twiml(post(two, "/voice", PUBLIC + "/voice", headers=headers))


def test_proxy_fix_does_not_let_a_signature_for_another_host_through(hotline: Any) -> None:
    client = hotline(PROXY_FIX=1)
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}
    response = post(client, "/voice", PUBLIC + "/voice", headers=headers)
    assert response.status_code == 403


def test_public_url_needs_no_proxy_fix(hotline: Any) -> None:
    client = hotline(PUBLIC_URL=PUBLIC + "/")  # a trailing slash is forgiven
    assert is_twiml(post(client, STEP, PUBLIC + STEP))
    assert post(client, STEP, BASE_URL + STEP).status_code == 403


@pytest.mark.parametrize("value", ["maybe", "-1", "1.5"])
def test_a_proxy_fix_setting_that_cannot_work_fails_at_start(hotline: Any, value: str) -> None:
    with pytest.raises(ConfigError, match="PROXY_FIX"):
        hotline(PROXY_FIX=value)


# --- ports ------------------------------------------------------------------------------


def test_a_port_in_the_url(client: FlaskClient) -> None:
    base = "http://localhost:8080"
    assert is_twiml(post(client, STEP, base + STEP, base_url=base))
    assert post(client, STEP, "http://localhost:9090" + STEP, base_url=base).status_code == 403


def test_a_port_behind_the_proxy(hotline: Any) -> None:
    client = hotline(PROXY_FIX=1)
    headers = {**FORWARDED, "X-Forwarded-Port": "8443"}
    signed = "https://hotline.example:8443" + STEP
    assert is_twiml(post(client, STEP, signed, headers=headers))
    assert (
        post(client, STEP, "https://hotline.example:9443" + STEP, headers=headers).status_code
        == 403
    )


def test_the_default_port_written_out_or_not(hotline: Any) -> None:
    """Twilio may sign https://host/ while the proxy passes host:443, or the other way."""
    client = hotline(PROXY_FIX=1)
    with_port = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hotline.example:443"}
    assert is_twiml(post(client, "/voice", PUBLIC + "/voice", headers=with_port))
    assert is_twiml(post(client, "/voice", PUBLIC + ":443/voice", headers=FORWARDED))


# --- the raw request URI ----------------------------------------------------------------

ESCAPED = STEP + "&note=a%2Bb%20c%D1%8F%3D"  # "a+b cя=" escaped as Twilio would pass it


def test_escapes_in_the_query_are_checked_as_sent(client: FlaskClient) -> None:
    assert is_twiml(post(client, ESCAPED, BASE_URL + ESCAPED))


@pytest.mark.parametrize(
    "decoded",
    [
        STEP + "&note=a+b cя=",  # fully decoded
        STEP + "&note=a%2Bb+c%D1%8F%3D",  # re-encoded the form way (space as +)
        STEP + "&note=a%2bb%20c%d1%8f%3d",  # lower-case escapes
    ],
)
def test_a_signature_over_a_re_decoded_query_is_refused(client: FlaskClient, decoded: str) -> None:
    assert post(client, ESCAPED, BASE_URL + decoded).status_code == 403


def test_escapes_in_the_path_are_checked_as_sent(client: FlaskClient) -> None:
    raw = "/voice/st%65p?s=main&l=ru-RU&p=1&k=0"
    assert is_twiml(post(client, raw, BASE_URL + raw))
    assert post(client, raw, BASE_URL + STEP).status_code == 403


def test_unicode_escaped_in_the_url_is_checked_escaped(client: FlaskClient) -> None:
    escaped = STEP + "&who=%D0%9F%D0%B5%D1%80%D0%BC%D1%8C"
    assert is_twiml(post(client, escaped, BASE_URL + escaped))
    assert post(client, escaped, BASE_URL + STEP + "&who=Пермь").status_code == 403


def test_unicode_sent_unescaped_is_checked_as_the_bytes_sent(client: FlaskClient) -> None:
    """A request line with raw UTF-8: the signature covers those bytes, not an escaped form."""
    raw = STEP + "&who=Пермь"
    assert is_twiml(post(client, raw, BASE_URL + raw))
    escaped = STEP + "&who=%D0%9F%D0%B5%D1%80%D0%BC%D1%8C"
    assert post(client, raw, BASE_URL + escaped).status_code == 403


def test_without_a_raw_uri_the_query_is_still_taken_as_sent(client: FlaskClient) -> None:
    """A server that passes no RAW_URI/REQUEST_URI: the path is re-quoted, the query kept."""
    response = post(client, ESCAPED, BASE_URL + ESCAPED, RAW_URI="", REQUEST_URI="")
    assert is_twiml(response)
    decoded = STEP + "&note=a+b cя="
    assert post(client, ESCAPED, BASE_URL + decoded, RAW_URI="", REQUEST_URI="").status_code == 403


# --- parameters -------------------------------------------------------------------------


def test_repeated_form_parameters_are_all_signed(client: FlaskClient) -> None:
    params = MultiDict([*PARAMS.items(), ("Digits", "1"), ("Tag", "b"), ("Tag", "a")])
    assert is_twiml(post(client, STEP, BASE_URL + STEP, params=params))
    first_only = {**PARAMS, "Digits": "1", "Tag": "b"}
    response = post(client, STEP, BASE_URL + STEP, params=params, signed_params=first_only)
    assert response.status_code == 403


def test_an_added_parameter_is_refused(client: FlaskClient) -> None:
    sent = {**PARAMS, "Digits": "590000000018"}
    assert post(client, STEP, BASE_URL + STEP, params=sent, signed_params=PARAMS).status_code == 403


# --- missing, wrong, or made for something else -------------------------------------------


@pytest.mark.parametrize("path", ["/voice", STEP, "/voice/status", "/voice/fallback"])
def test_every_webhook_refuses_a_missing_or_empty_signature(client: FlaskClient, path: str) -> None:
    assert post(client, path, None).status_code == 403
    empty = client.post(path, data=PARAMS, headers={"X-Twilio-Signature": ""})
    assert empty.status_code == 403
    assert empty.mimetype == "text/plain"


@pytest.mark.parametrize(
    "signature",
    [
        "not-base64!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        sign(BASE_URL + "/voice", PARAMS, "other-token"),
    ],
)
def test_a_wrong_signature_is_refused(client: FlaskClient, signature: str) -> None:
    response = client.post("/voice", data=PARAMS, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403


@pytest.mark.parametrize(
    "signed_for",
    [
        BASE_URL + "/voice/fallback",  # another webhook
        "http://elsewhere.example/voice",  # another host
        "https://localhost/voice",  # another scheme
        BASE_URL + "/voice?x=1",  # another query
        BASE_URL + "/voice/",  # another path, barely
    ],
)
def test_a_request_signed_for_another_url_is_refused(client: FlaskClient, signed_for: str) -> None:
    assert post(client, "/voice", signed_for).status_code == 403


def test_the_call_state_cannot_be_tampered_with(client: FlaskClient) -> None:
    """A caller out of tries cannot reset them: the state rides in the signed URL."""
    used_up = "/voice/step?s=contract&l=ru-RU&p=1&k=2"
    reset = "/voice/step?s=contract&l=ru-RU&p=1&k=0"
    params = {**PARAMS, "Digits": "590000000075"}
    assert post(client, reset, BASE_URL + used_up, params=params).status_code == 403
    assert is_twiml(post(client, used_up, BASE_URL + used_up, params=params))


def test_a_refusal_is_logged_without_the_token(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert post(client, STEP, "http://elsewhere.example" + STEP).status_code == 403
    refusals = [r for r in caplog.records if "refused a request" in r.getMessage()]
    assert [r.levelno for r in refusals] == [logging.WARNING]
    assert AUTH_TOKEN not in caplog.text


def test_health_is_not_a_webhook(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200
