"""The baseline: a bare Flask app that answers every POST with one fixed TwiML document.

It does what any webhook must (Flask routing, a ~0.9 KB `text/xml` answer, the same
gunicorn settings) and nothing the hotline does (no signature check, no form parsing,
no ledger, no words). hotline / baseline is therefore the share of the framework's
best case that the hotline keeps.

    gunicorn --chdir bench 'baseline_app:create_app()'
"""

from __future__ import annotations

from flask import Flask, Response

# The same shape and size as the hotline's balance answer (two Says, a Gather, a
# Redirect; about 900 bytes of UTF-8), written once by hand.
DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8"?><Response>'
    '<Say language="ru-RU" voice="Polly.Tatyana">Договор номер пять девять ноль ноль ноль'
    " ноль ноль ноль ноль ноль один восемь.</Say>"
    '<Say language="ru-RU" voice="Polly.Tatyana">На вашем счёте две тысячи девятьсот'
    " девятнадцать рублей семнадцать копеек.</Say>"
    '<Gather action="/voice/step?s=after_balance&amp;l=ru-RU&amp;p=1&amp;k=0&amp;'
    'c=590000000018" finishOnKey="" input="dtmf" method="POST" numDigits="1" timeout="5">'
    '<Say language="ru-RU" voice="Polly.Tatyana">Повторить: нажмите 1. Другой договор: 2.'
    " Завершить звонок: 3. Оператор: 0.</Say></Gather>"
    '<Redirect method="POST">/voice/step?s=after_balance&amp;l=ru-RU&amp;p=1&amp;k=0&amp;'
    "c=590000000018</Redirect></Response>"
).encode()


def create_app() -> Flask:
    """Create the baseline app."""
    app = Flask(__name__)

    @app.post("/", defaults={"path": ""})
    @app.post("/<path:path>")
    def answer(path: str) -> Response:
        return Response(DOCUMENT, 200, mimetype="text/xml")

    @app.get("/healthz")
    def health() -> Response:
        return Response("ok\n", 200, mimetype="text/plain")

    return app
