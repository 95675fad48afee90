"""Twilio's urlencoded form, read from the server's stream and split in one step."""

from __future__ import annotations

import re
from urllib.parse import unquote

from flask import Request


class WebhookRequest(Request):
    """Flask's request, with Twilio's urlencoded form read in one step.

    werkzeug's form parser builds a parser object, wraps the stream twice and dispatches
    on the content type for every request: more than half of a webhook's form reading.
    The result is the same: a body of a stated length (up to `FAST_FORM_BYTES`) is read
    from the server's stream, decoded as UTF-8 and split as `parse_qsl` does
    (`split_form`); anything else (multipart, no length, a big body) goes to werkzeug.
    """

    def _load_form_data(self) -> None:
        if "form" in self.__dict__:
            return
        environ = self.environ
        kind = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        length = environ.get("CONTENT_LENGTH", "")
        limit = min(FAST_FORM_BYTES, self.max_content_length or FAST_FORM_BYTES)
        if kind != FORM_TYPE or not length.isdigit() or int(length) > limit:
            super()._load_form_data()
            return
        body = environ["wsgi.input"].read(int(length))
        self.__dict__["form"] = self.parameter_storage_class(split_form(body.decode()))
        self.__dict__["files"] = self.parameter_storage_class()


FORM_TYPE = "application/x-www-form-urlencoded"
FAST_FORM_BYTES = 64 * 1024  # Twilio's webhooks send ~1 KB; a bigger body goes to werkzeug


def split_form(body: str) -> list[tuple[str, str]]:
    """Split an urlencoded body as `parse_qsl(body, keep_blank_values=True)` does.

    Only names and values holding "%" or "+" are unquoted (parse_qsl's unquote returns
    the others unchanged after a call and a scan); undecodable escapes are kept as
    werkzeug keeps them.
    """
    items = []
    for pair in body.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "%" in name or "+" in name:
            name = _unquote(name.replace("+", " "))
        if "%" in value or "+" in value:
            value = _unquote(value.replace("+", " "))
        items.append((name, value))
    return items


_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def _unquote(text: str) -> str:
    """Undo %-escapes as `unquote` does: a regular expression for ASCII text, else `unquote`.

    Twilio escapes everything but letters and digits ("%2B7342..."); each escape becomes
    its byte (as a latin-1 character), and the bytes are read as UTF-8. Escapes that do
    not make UTF-8 go to `unquote`, which keeps them as werkzeug does.
    """
    if text.isascii():
        try:
            return _ESCAPE.sub(_byte_of, text).encode("latin-1").decode("utf-8")
        except UnicodeDecodeError:
            pass
    return unquote(text, errors="werkzeug.url_quote")


def _byte_of(escape: re.Match[str]) -> str:
    return chr(int(escape[1], 16))
