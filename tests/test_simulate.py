"""The DTMF script runner, checked against throwaway TwiML apps: one semantic a test."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from textwrap import dedent

import pytest
from click.testing import CliRunner
from flask import Flask, Response, request
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from ivr import simulate
from ivr.cli import call_command, simulate_command
from ivr.simulate import (
    CallSession,
    Event,
    HttpTransport,
    InProcessTransport,
    ScriptResult,
    Transport,
    run_interactive,
    run_script,
)
from ivr.simulate.script import (
    DEFAULT_FROM,
    DEFAULT_TO,
    Expect,
    ExpectDial,
    ExpectHangup,
    ExpectNot,
    Press,
    ScriptError,
    Silence,
    StartCall,
    parse_script,
    parse_text,
)

TOKEN = "simulate-test-token-0123456789ab"
SID = re.compile(r"(CA|AC)[0-9a-f]{32}")

# A page is TwiML verbs (wrapped in <Response>) or a function making the whole response.
Page = str | Callable[[], Response]


@dataclass(frozen=True)
class Seen:
    """One request the throwaway app received."""

    method: str
    path: str
    url: str
    query: dict[str, str]
    form: dict[str, str]
    signature: str | None

    @property
    def params(self) -> dict[str, str]:
        """Return what Twilio sent: the form for POST, the query for GET."""
        return self.form if self.method == "POST" else self.query


class TwimlApp:
    """A Flask app serving fixed TwiML by path and recording every request.

    The oracle for the player's own tests, kept tiny and apart from `ivr.simulate` on
    purpose: it only serves pages and writes down what arrived, so a wrong way of following
    TwiML in the player cannot also hide here. The other tests drive `ivr.simulate`.
    """

    def __init__(self, pages: Mapping[str, Page]) -> None:
        self.seen: list[Seen] = []
        self.app = Flask("twiml_test_app")
        self.app.add_url_rule(
            "/<path:path>", "page", self._serve, methods=["GET", "POST"], strict_slashes=False
        )
        self._pages = pages

    def _serve(self, path: str) -> Response:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                request.url,
                request.args.to_dict(),
                request.form.to_dict(),
                request.headers.get("X-Twilio-Signature"),
            )
        )
        page = self._pages[request.path]
        if callable(page):
            return page()
        return Response(f"<?xml version='1.0'?><Response>{page}</Response>", mimetype="text/xml")

    @property
    def paths(self) -> list[str]:
        return [f"{seen.method} {seen.path}" for seen in self.seen]


def run(
    pages: Mapping[str, Page], script: str, auth_token: str | None = None
) -> tuple[ScriptResult, TwimlApp]:
    """Run a script's text against a throwaway app in process."""
    twiml = TwimlApp(pages)
    result = run_script(
        parse_text(dedent(script), "t.dtmf"), InProcessTransport(twiml.app), auth_token
    )
    return result, twiml


def messages(result: ScriptResult) -> list[str]:
    return [failure.message for failure in result.failures]


MENU = '<Gather numDigits="1" action="/menu"><Say>Press 1</Say></Gather><Say>Bye</Say>'


# --- the parser -----------------------------------------------------------------------


def test_parse_every_step_into_its_dataclass() -> None:
    script = parse_text(
        dedent(
            """\
            # a whole-line comment
            call from=+73422000002 to=+73422195196   # starts the call
            expect "Здравствуйте # not a comment"
            expect-not "ошибка"
            press 590000000018#
            press "#"
            silence
            expect-dial +7 342 219-51-00
            expect-hangup
            """
        ),
        "x.dtmf",
    )
    assert script.path == "x.dtmf"
    assert script.steps == (
        StartCall(2, "call from=+73422000002 to=+73422195196", "+73422000002", "+73422195196"),
        Expect(3, 'expect "Здравствуйте # not a comment"', "Здравствуйте # not a comment"),
        ExpectNot(4, 'expect-not "ошибка"', "ошибка"),
        Press(5, "press 590000000018#", "590000000018#"),
        Press(6, 'press "#"', "#"),
        Silence(7, "silence"),
        ExpectDial(8, "expect-dial +7 342 219-51-00", "+7342219-51-00"),
        ExpectHangup(9, "expect-hangup"),
    )


def test_parse_call_defaults_and_escaped_quotes() -> None:
    script = parse_text('call\nexpect "say \\"hi\\" \\\\ bye"\n')
    assert script.steps[0] == StartCall(1, "call", DEFAULT_FROM, DEFAULT_TO)
    assert script.steps[1] == Expect(2, 'expect "say \\"hi\\" \\\\ bye"', 'say "hi" \\ bye')


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("call\nwave 1\n", 2, "unknown step 'wave'"),
        ('call\nexpect "hello\n', 2, "unterminated quote"),
        ("call\nexpect hello\n", 2, "double quotes"),
        ('call\nexpect "a"b\n', 2, "space after the closing quote"),
        ('call\nexpect ""\n', 2, "non-empty"),
        ("call\nexpect\n", 2, "missing text"),
        ("call\npress\n", 2, "missing keys"),
        ("call\npress #\n", 2, "missing keys"),  # a lone '#' after a space is a comment
        ("call\npress 12a\n", 2, "got 'a'"),
        ("call\nexpect-dial\n", 2, "missing number"),
        ("call\nsilence 5\n", 2, "silence takes no argument"),
        ("call by=+7342\n", 1, "from=NUMBER and to=NUMBER"),
        ("call from=\n", 1, "missing number after from="),
        ("call to=1 to=2\n", 1, "to= twice"),
        ("# intro\n\npress 1\ncall\n", 3, "press before any call"),
        ("# only a comment\n", 1, "no steps"),
    ],
)
def test_parse_errors_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ScriptError) as caught:
        parse_text(text, "scripts/bad.dtmf")
    assert str(caught.value).startswith(f"scripts/bad.dtmf:{line}: ")
    assert fragment in caught.value.message
    assert caught.value.line == line


def test_parse_script_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "s.dtmf"
    path.write_text("call\npress 1 # menu\n", encoding="utf-8")
    assert parse_script(path).steps[1] == Press(2, "press 1", "1")
    path.write_bytes(b"call\n\xff\n")
    with pytest.raises(ScriptError, match=r"s\.dtmf:1: not UTF-8"):
        parse_script(path)


# --- what is heard ----------------------------------------------------------------------


def test_say_is_heard_with_language_and_voice() -> None:
    pages = {"/voice": '<Say language="ru-RU" voice="Polly.Tatyana">Здравствуйте!</Say>'}
    result, _ = run(pages, 'call\nexpect "здравствуйте"\nexpect-not "ошибка"\n')
    assert result.passed, result.failures
    assert "🔊 [ru-RU Polly.Tatyana] Здравствуйте!" in result.transcript()


def test_failed_expectation_records_line_expected_and_heard() -> None:
    pages = {"/voice": "<Say>Hello there</Say><Say>Goodbye</Say>"}
    result, _ = run(pages, 'call\nexpect "balance"\nexpect-not "goodbye"\n')
    assert [(f.line, f.message) for f in result.failures] == [
        (2, '"balance" was not said'),
        (3, '"goodbye" was said'),
    ]
    assert result.failures[0].heard == ("Hello there", "Goodbye")
    assert result.failures[0].since_line == 1
    assert 'heard since line 1: "Hello there" / "Goodbye"' in str(result.failures[0])


def test_expectations_see_only_what_was_said_since_the_last_action() -> None:
    pages = {"/voice": MENU, "/menu": "<Say>Your balance</Say>"}
    result, _ = run(pages, 'call\npress 1\nexpect "balance"\nexpect-not "press 1"\n')
    assert result.passed, result.failures


# --- Gather -----------------------------------------------------------------------------


def test_gather_num_digits_submits_as_soon_as_enough_keys() -> None:
    pages = {
        "/voice": '<Gather numDigits="3" action="/got"><Say>Code</Say></Gather>',
        "/got": "<Say>Thanks</Say>",
    }
    result, twiml = run(pages, 'call\npress 123\nexpect "thanks"\n')
    assert result.passed, result.failures
    assert twiml.paths == ["POST /voice", "POST /got"]
    assert twiml.seen[1].form["Digits"] == "123"
    assert twiml.seen[1].form["FinishedOnKey"] == ""


def test_finish_key_is_not_sent_in_digits() -> None:
    pages = {"/voice": '<Gather action="/got"><Say>Contract</Say></Gather>', "/got": "<Hangup/>"}
    _, twiml = run(pages, "call\npress 590000000018#\n")
    assert twiml.seen[1].form["Digits"] == "590000000018"
    assert twiml.seen[1].form["FinishedOnKey"] == "#"


def test_custom_finish_key_and_hash_as_a_digit() -> None:
    pages = {
        "/voice": '<Gather finishOnKey="*" action="/got"/>',
        "/got": '<Gather finishOnKey="" action="/last"/>',
        "/last": "<Hangup/>",
    }
    _, twiml = run(pages, "call\npress 12#*\npress 9#\nsilence\n")
    assert [seen.form.get("Digits") for seen in twiml.seen] == [None, "12#", "9#"]


def test_keys_over_two_presses_build_one_entry() -> None:
    pages = {"/voice": '<Gather action="/got"/>', "/got": "<Hangup/>"}
    _, twiml = run(pages, "call\npress 5900\npress 00000018#\n")
    assert twiml.seen[1].form["Digits"] == "590000000018"


def test_silence_falls_through_to_the_next_verb_without_a_request() -> None:
    pages = {"/voice": MENU, "/menu": "<Say>never</Say>"}
    result, twiml = run(pages, 'call\nsilence\nexpect "bye"\nexpect-hangup\n')
    assert result.passed, result.failures
    assert twiml.paths == ["POST /voice"]
    assert "… silence (5 s)" in result.transcript()


def test_silence_after_some_keys_submits_them() -> None:
    pages = {"/voice": '<Gather timeout="3" action="/got"/>', "/got": "<Hangup/>"}
    result, twiml = run(pages, "call\npress 12\nsilence\n")
    assert twiml.seen[1].form["Digits"] == "12"
    assert "… silence (3 s)" in result.transcript()


def test_silence_with_action_on_empty_result_posts_empty_digits() -> None:
    pages = {
        "/voice": '<Gather actionOnEmptyResult="true" action="/got"/><Say>fell through</Say>',
        "/got": "<Say>empty posted</Say>",
    }
    result, twiml = run(pages, 'call\nsilence\nexpect "empty posted"\nexpect-not "fell"\n')
    assert result.passed, result.failures
    assert twiml.paths == ["POST /voice", "POST /got"]
    assert twiml.seen[1].form["Digits"] == ""


def test_relative_action_is_resolved_against_the_document_url() -> None:
    pages = {
        "/voice": "<Redirect>/ivr/menu/main?s=1</Redirect>",
        "/ivr/menu/main": '<Gather numDigits="1" action="step?s=2"/>',
        "/ivr/menu/step": '<Gather numDigits="1" action="../top"/>',
        "/ivr/top": "<Hangup/>",
    }
    _, twiml = run(pages, "call\npress 12\n")
    assert [seen.url for seen in twiml.seen] == [
        "http://localhost/voice",
        "http://localhost/ivr/menu/main?s=1",
        "http://localhost/ivr/menu/step?s=2",
        "http://localhost/ivr/top",
    ]


def test_default_action_is_the_current_document_url() -> None:
    pages = {
        "/voice": "<Redirect>/menu?s=main</Redirect>",
        "/menu": '<Gather numDigits="1"><Say>Menu</Say></Gather>',
    }
    _, twiml = run(pages, "call\npress 7\n")
    assert twiml.seen[2].method == "POST"
    assert twiml.seen[2].url == "http://localhost/menu?s=main"
    assert twiml.seen[2].form["Digits"] == "7"


def test_gather_method_get_sends_parameters_in_the_query() -> None:
    pages = {
        "/voice": '<Gather numDigits="1" method="GET" action="/got?s=x"/>',
        "/got": "<Hangup/>",
    }
    _, twiml = run(pages, "call\npress 4\n")
    got = twiml.seen[1]
    assert (got.method, got.query["s"], got.query["Digits"], got.form) == ("GET", "x", "4", {})
    assert got.query["CallSid"] == twiml.seen[0].form["CallSid"]


def test_type_ahead_keys_go_to_the_next_gathers() -> None:
    pages = {
        "/voice": '<Gather numDigits="1" action="/one"><Say>Main menu</Say></Gather>',
        "/one": '<Gather numDigits="1" action="/two"><Say>Billing menu</Say></Gather>',
        "/two": '<Gather action="/three"><Say>Enter the contract</Say></Gather>',
        "/three": "<Say>Balance</Say>",
    }
    result, twiml = run(
        pages,
        'call\npress 11590000000018#\nexpect "billing menu"\n'
        'expect "enter the contract"\nexpect "balance"\n',
    )
    assert result.passed, result.failures
    assert [seen.form.get("Digits") for seen in twiml.seen] == [None, "1", "1", "590000000018"]


def test_finish_key_after_a_full_entry_confirms_it_and_is_not_typed_ahead() -> None:
    pages = {
        "/voice": '<Gather numDigits="12" action="/got"><Say>Contract</Say></Gather>',
        "/got": '<Gather numDigits="1" finishOnKey="" action="/menu"><Say>Menu</Say></Gather>',
        "/menu": "<Hangup/>",
    }
    result, twiml = run(pages, 'call\npress 590000000018#\npress "#"\n')
    assert result.passed, result.failures
    assert [seen.form.get("Digits") for seen in twiml.seen] == [None, "590000000018", "#"]


def test_press_with_no_gather_waiting_fails_and_stops_the_script() -> None:
    pages = {"/voice": "<Say>Closed</Say>"}
    result, twiml = run(pages, 'call\npress 1\nexpect "never checked"\n')
    assert [(f.line, f.message) for f in result.failures] == [
        (2, "press 1: no Gather is waiting for keys; the call ended (end of document)")
    ]
    assert twiml.paths == ["POST /voice"]


def test_keys_left_over_when_the_call_ends_fail() -> None:
    pages = {"/voice": '<Gather numDigits="1" action="/bye"/>', "/bye": "<Hangup/>"}
    result, twiml = run(pages, "call\npress 12\n")
    assert messages(result) == [
        "keys '2' were left over: the call ended (hangup) before a Gather took them"
    ]
    assert twiml.seen[1].form["Digits"] == "1"


def test_silence_after_the_call_ended_fails() -> None:
    result, _ = run({"/voice": "<Hangup/>"}, "call\nsilence\n")
    assert messages(result) == ["silence: no Gather is waiting for keys; the call ended (hangup)"]


# --- Redirect, Dial, Hangup, end of document --------------------------------------------


def test_redirect_follows_with_its_method() -> None:
    pages = {
        "/voice": '<Redirect method="GET">/other?a=1</Redirect><Say>skipped</Say>',
        "/other": "<Redirect>/third</Redirect>",
        "/third": "<Say>Arrived</Say>",
    }
    result, twiml = run(pages, 'call\nexpect "arrived"\nexpect-not "skipped"\n')
    assert result.passed, result.failures
    assert twiml.paths == ["POST /voice", "GET /other", "POST /third"]
    assert twiml.seen[1].query["a"] == "1"


def test_dial_ends_the_call_and_expect_dial_compares_numbers() -> None:
    pages = {"/voice": "<Say>Connecting</Say><Dial>+7 342 219-51-00</Dial><Say>never</Say>"}
    result, _ = run(
        pages,
        'call\nexpect-dial +73422195100\nexpect-dial "+7 (342) 219-51-01"\nexpect-not "never"\n'
        "expect-hangup\n",
    )
    assert [(f.line, f.message) for f in result.failures] == [
        (3, "dialed +7 342 219-51-00, not +7 (342) 219-51-01"),
        (5, "the call did not hang up: it ended by transferred"),
    ]
    assert "↪ Dial +7 342 219-51-00" in result.transcript()


def test_dial_with_a_nested_number() -> None:
    pages = {"/voice": "<Dial><Number>+73422195100</Number></Dial>"}
    result, _ = run(pages, "call\nexpect-dial +7-342-219-51-00\n")
    assert result.passed, result.failures


def test_hangup_ends_the_call_and_skips_the_rest() -> None:
    pages = {"/voice": "<Say>Bye</Say><Hangup/><Say>after hangup</Say>"}
    result, _ = run(pages, 'call\nexpect "bye"\nexpect-not "after"\nexpect-hangup\n')
    assert result.passed, result.failures
    assert result.transcript().endswith(
        '✖ hangup\n  ✓ line 2: expect "bye"\n'
        '  ✓ line 3: expect-not "after"\n'
        "  ✓ line 4: expect-hangup"
    )


def test_end_of_document_ends_the_call() -> None:
    result, _ = run({"/voice": "<Say>Bye</Say>"}, "call\nexpect-hangup\n")
    assert result.passed, result.failures
    assert "✖ end of document" in result.transcript()


def test_expect_hangup_fails_while_a_gather_waits() -> None:
    result, _ = run({"/voice": MENU}, "call\nexpect-hangup\n")
    assert messages(result) == ["the call is still going on (a Gather is waiting)"]


# --- broken answers -----------------------------------------------------------------------


def test_redirect_loop_is_cut() -> None:
    result, twiml = run({"/voice": "<Redirect>/voice</Redirect>"}, "call\nexpect-hangup\n")
    assert len(twiml.seen) == simulate.MAX_REQUESTS
    assert [f.line for f in result.failures] == [1]
    assert result.failures[0].message.startswith("more than 200 requests in one call, cut")


def test_non_200_is_reported_with_status_and_body() -> None:
    pages: dict[str, Page] = {
        "/voice": lambda: Response("Internal oops", 500, mimetype="text/plain")
    }
    result, _ = run(pages, "call\n")
    assert messages(result) == [
        "POST /voice answered HTTP 500 (text/plain; charset=utf-8): 'Internal oops'"
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("<html><body>hi</body></html>", "answered <html>, not TwiML's <Response>"),
        ("not xml at all", "answered no XML"),
    ],
)
def test_a_body_that_is_not_twiml_is_reported(body: str, fragment: str) -> None:
    pages: dict[str, Page] = {"/voice": lambda: Response(body, mimetype="text/xml")}
    result, _ = run(pages, "call\n")
    assert len(result.failures) == 1
    assert fragment in result.failures[0].message


def test_wrong_content_type_is_reported_but_the_call_goes_on() -> None:
    pages: dict[str, Page] = {"/voice": lambda: Response("<Response><Say>Hi</Say></Response>")}
    result, _ = run(pages, 'call\nexpect "hi"\n')
    assert messages(result) == [
        "POST /voice answered Content-Type 'text/html; charset=utf-8'; TwiML is served as text/xml"
    ]


# --- what Twilio sends -------------------------------------------------------------------


def test_twilio_parameters_are_sent() -> None:
    pages = {"/voice": MENU, "/menu": "<Hangup/>"}
    _, twiml = run(pages, "call from=+73422000009 to=+73422195196\npress 1\ncall\n")
    first, second, other_call = (seen.form for seen in twiml.seen)
    assert SID.fullmatch(first["CallSid"]) and first["CallSid"].startswith("CA")
    assert SID.fullmatch(first["AccountSid"]) and first["AccountSid"].startswith("AC")
    assert (first["From"], first["To"]) == ("+73422000009", "+73422195196")
    assert (first["CallStatus"], second["CallStatus"]) == ("ringing", "in-progress")
    assert (first["Direction"], first["ApiVersion"]) == ("inbound", "2010-04-01")
    assert "Digits" not in first and second["Digits"] == "1"
    assert second["CallSid"] == first["CallSid"]
    assert other_call["CallSid"] != first["CallSid"]
    assert (other_call["From"], other_call["To"]) == (
        DEFAULT_FROM,
        DEFAULT_TO,
    )


def test_requests_are_signed_when_the_token_is_known() -> None:
    pages = {
        "/voice": '<Gather numDigits="1" action="/menu?s=main"/>',
        "/menu": '<Gather numDigits="1" method="GET" action="/get?s=2"/>',
        "/get": "<Hangup/>",
    }
    _, twiml = run(pages, "call\npress 1\npress 2\n", auth_token=TOKEN)
    validator = RequestValidator(TOKEN)
    assert [seen.method for seen in twiml.seen] == ["POST", "POST", "GET"]
    for seen in twiml.seen:
        assert seen.signature
        assert validator.validate(seen.url, seen.form, seen.signature), seen.url
    assert not RequestValidator("another-token").validate(
        twiml.seen[0].url, twiml.seen[0].form, twiml.seen[0].signature
    )


def test_in_process_requests_carry_the_raw_uri_with_its_query() -> None:
    twiml = TwimlApp({})
    seen: list[tuple[str, str]] = []

    @twiml.app.before_request
    def record_raw_uri() -> Response:
        seen.append((request.environ["RAW_URI"], request.environ["REQUEST_URI"]))
        return Response("<Response><Hangup/></Response>", mimetype="text/xml")

    transport = InProcessTransport(twiml.app)
    transport.send("POST", "http://localhost/voice/step?s=main&l=ru-RU", {}, {})
    assert seen == [("/voice/step?s=main&l=ru-RU", "/voice/step?s=main&l=ru-RU")]


def test_requests_are_unsigned_without_a_token() -> None:
    _, twiml = run({"/voice": "<Hangup/>"}, "call\n")
    assert twiml.seen[0].signature is None


# --- the HTTP transport ----------------------------------------------------------------------


@contextmanager
def serving(twiml: TwimlApp) -> Iterator[str]:
    """Serve a throwaway TwiML app over real HTTP on a free port; yield its base URL."""
    server = make_server("127.0.0.1", 0, twiml.app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def http_server() -> Iterator[tuple[str, TwimlApp]]:
    twiml = TwimlApp({"/voice": MENU, "/menu": "<Say>Over HTTP</Say><Hangup/>"})
    with serving(twiml) as base_url:
        yield base_url, twiml


def test_http_transport_runs_the_same_script_signed(http_server: tuple[str, TwimlApp]) -> None:
    base_url, twiml = http_server
    script = parse_text('call\npress 1\nexpect "over http"\nexpect-hangup\n')
    result = run_script(script, HttpTransport(base_url + "/"), TOKEN)
    assert result.passed, result.failures
    assert twiml.seen[1].form["Digits"] == "1"
    assert twiml.seen[1].url == f"{base_url}/menu"
    validator = RequestValidator(TOKEN)
    assert all(validator.validate(s.url, s.form, s.signature) for s in twiml.seen)


def test_http_transport_reports_a_redirect_instead_of_following_it() -> None:
    twiml = TwimlApp({"/voice": lambda: Response("moved", 302, {"Location": "/elsewhere"})})
    with serving(twiml) as base_url:
        result = run_script(parse_text("call\n"), HttpTransport(base_url))
    assert len(result.failures) == 1
    assert result.failures[0].message.startswith("POST /voice answered HTTP 302")
    assert twiml.paths == ["POST /voice"]


@contextmanager
def refused_port() -> Iterator[int]:
    """Yield a port that is bound but never listens, so connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def test_http_transport_reports_an_unreachable_server() -> None:
    with refused_port() as port:
        result = run_script(parse_text("call\n"), HttpTransport(f"http://127.0.0.1:{port}"))
    assert len(result.failures) == 1
    assert result.failures[0].message.startswith(f"cannot reach http://127.0.0.1:{port}/voice")


# --- an interactive call ------------------------------------------------------------------


def test_run_interactive_shows_prompts_and_reads_keys() -> None:
    twiml = TwimlApp({"/voice": MENU, "/menu": "<Say>Chosen</Say><Hangup/>"})
    typed = iter(["x", " 1 "])
    shown: list[str] = []
    record = run_interactive(
        InProcessTransport(twiml.app),
        "+73422000001",
        "+73422195195",
        lambda: next(typed),
        shown.append,
    )
    assert record.error is None
    assert twiml.seen[1].form["Digits"] == "1"
    assert "  🔊 [en-US] Press 1" in shown
    assert "  ? keys are 0-9, * and #; Enter alone is silence" in shown
    assert shown[-2:] == ["  🔊 [en-US] Chosen", "  ✖ hangup"]


def test_run_interactive_enter_is_silence_and_none_hangs_up() -> None:
    twiml = TwimlApp({"/voice": '<Gather action="/got"/><Gather action="/got"/>'})
    typed = iter(["", None])
    events: list[str] = []
    record = run_interactive(
        InProcessTransport(twiml.app), "+1", "+2", lambda: next(typed), events.append
    )
    assert record.error is None
    assert twiml.paths == ["POST /voice"]
    assert "  … silence (5 s)" in events
    assert events[-1] == "  ✖ caller hung up"


# --- the click commands ------------------------------------------------------------------------


@pytest.fixture
def hotline(monkeypatch: pytest.MonkeyPatch) -> TwimlApp:
    """Plug a throwaway app in as the in-process app of the commands."""
    twiml = TwimlApp(
        {
            "/voice": '<Say language="ru-RU">Здравствуйте</Say>' + MENU,
            "/menu": "<Say>Баланс сто рублей</Say><Hangup/>",
        }
    )
    monkeypatch.setattr("ivr.simulate.transport.app_factory", lambda: twiml.app)
    return twiml


def write(path: Path, text: str) -> Path:
    path.write_text(dedent(text), encoding="utf-8")
    return path


def test_simulate_command_passes(hotline: TwimlApp, tmp_path: Path) -> None:
    script = write(tmp_path / "ok.dtmf", 'call\nexpect "здравствуйте"\npress 1\nexpect "рубл"\n')
    result = CliRunner().invoke(simulate_command, [str(script)])
    assert result.exit_code == 0, result.output
    assert "  ⌨ 1" in result.output
    assert result.output.splitlines()[-1] == "1 passed, 0 failed"


def test_simulate_command_fails_with_expected_and_heard(hotline: TwimlApp, tmp_path: Path) -> None:
    script = write(tmp_path / "bad.dtmf", 'call\npress 1\nexpect "задолженность"\n')
    result = CliRunner().invoke(simulate_command, ["--quiet", str(script)])
    assert result.exit_code == 1
    assert f'{script}:3: expect "задолженность": "задолженность" was not said' in result.output
    assert 'heard since line 2: "Баланс сто рублей"' in result.output
    assert "☎" not in result.output  # --quiet drops the transcript, not the failures
    assert result.output.splitlines()[-1] == "0 passed, 1 failed"


def test_simulate_command_runs_a_folder_in_order(hotline: TwimlApp, tmp_path: Path) -> None:
    write(tmp_path / "b.dtmf", 'call\nexpect "нет такого"\n')
    write(tmp_path / "a.dtmf", 'call\nexpect "здравствуйте"\n')
    write(tmp_path / "notes.txt", "not a script")
    result = CliRunner().invoke(simulate_command, [str(tmp_path)])
    assert result.exit_code == 1
    verdicts = [line for line in result.output.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert verdicts == [f"PASS {tmp_path / 'a.dtmf'}", f"FAIL {tmp_path / 'b.dtmf'}"]
    assert result.output.splitlines()[-1] == "1 passed, 1 failed"


def test_simulate_command_syntax_error_exits_2_before_any_call(
    hotline: TwimlApp, tmp_path: Path
) -> None:
    good = write(tmp_path / "good.dtmf", "call\n")
    bad = write(tmp_path / "bad.dtmf", "call\npress\n")
    result = CliRunner().invoke(simulate_command, [str(good), str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:2: missing keys" in result.output
    assert hotline.seen == []


def test_simulate_command_signs_with_the_env_token(
    hotline: TwimlApp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    script = write(tmp_path / "ok.dtmf", "call\n")
    result = CliRunner().invoke(simulate_command, [str(script)])
    assert result.exit_code == 0, result.output
    seen = hotline.seen[0]
    assert seen.signature is not None
    assert RequestValidator(TOKEN).validate(seen.url, seen.form, seen.signature)


def test_call_command_is_interactive(hotline: TwimlApp) -> None:
    result = CliRunner().invoke(call_command, ["--from", "+73422000005"], input="1\n")
    assert result.exit_code == 0, result.output
    assert "🔊 [ru-RU] Здравствуйте" in result.output
    assert "🔊 [en-US] Баланс сто рублей" in result.output
    assert hotline.seen[0].form["From"] == "+73422000005"
    assert hotline.seen[1].form["Digits"] == "1"


def test_call_command_hangs_up_at_end_of_input(hotline: TwimlApp) -> None:
    result = CliRunner().invoke(call_command, [], input="")
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("✖ caller hung up")


# --- the transport protocol ----------------------------------------------------------------


def test_both_transports_satisfy_the_protocol() -> None:
    transports: list[Transport] = [
        InProcessTransport(Flask("x")),
        HttpTransport("http://127.0.0.1:9/"),
    ]
    assert [t.base_url for t in transports] == ["http://localhost", "http://127.0.0.1:9"]


def test_call_session_reports_events_in_order() -> None:
    twiml = TwimlApp({"/voice": '<Pause length="2"/><Play>http://x/beep.mp3</Play>' + MENU})
    events: list[Event] = []
    session = CallSession(InProcessTransport(twiml.app), events.append)
    session.start()
    assert session.waiting and session.gather_hint == "up to 1 key, # ends, timeout 5 s"
    assert [simulate.describe(e) for e in events] == [
        "  ☎ POST /voice",
        "  … pause 2 s",
        "  ♪ play http://x/beep.mp3",
        "  🔊 [en-US] Press 1",
    ]
