"""Twilio's form read in one step: the same items as werkzeug's parser, or werkzeug's."""

from __future__ import annotations

import io
import random
from urllib.parse import parse_qsl

from werkzeug.test import EnvironBuilder

from ivr.web.form import FAST_FORM_BYTES, WebhookRequest, split_form


def test_the_form_splits_as_parse_qsl_does() -> None:
    """`split_form` against the stdlib on awkward bodies: escapes, "+", blanks, bad UTF-8."""
    pieces = ["a", "B", "0", "=", "&", "+", "%20", "%2B", "%26", "%3D", "%D0%94", "%D0", "%zz",
              "%", "Digits", "CallSid", "Д", " ", "&&", "==", ";"]  # fmt: skip
    rng = random.Random(3)
    bodies = ["", "&", "=", "a", "a=", "=b", "a=b=c", "From=%2B73422000001&To=%2B7342"]
    bodies += [
        "".join(rng.choice(pieces) for _ in range(rng.randrange(1, 14))) for _ in range(5000)
    ]
    for body in bodies:
        expected = parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote")
        assert split_form(body) == expected, body


def test_a_form_without_a_stated_length_or_of_another_type_still_reads() -> None:
    """Bodies the one-step reader leaves to werkzeug: chunked (no length), multipart, big."""
    body = b"From=%2B73422000001&Digits=1+2"
    chunked = {
        "REQUEST_METHOD": "POST",
        "CONTENT_TYPE": "application/x-www-form-urlencoded; charset=utf-8",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,  # no Content-Length: the server ends the stream
    }
    assert WebhookRequest(chunked).form.to_dict() == {"From": "+73422000001", "Digits": "1 2"}
    multipart = EnvironBuilder(method="POST", data={"From": "+73422000001", "Digits": "12"})
    multipart.files.add_file("f", io.BytesIO(b"x"), "x.txt")
    read = WebhookRequest(multipart.get_environ())
    assert read.mimetype == "multipart/form-data"
    assert read.form.to_dict() == {"From": "+73422000001", "Digits": "12"}
    read.close()  # its uploaded file
    big = "Memo=" + "x" * FAST_FORM_BYTES + "&Digits=7"
    environ = EnvironBuilder(
        method="POST", data=big, content_type="application/x-www-form-urlencoded"
    ).get_environ()
    assert WebhookRequest(environ).form["Digits"] == "7"
