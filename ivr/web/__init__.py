"""The web layer, the only package that knows Flask: `create_app()` and its config."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from flask import Flask
from twilio.request_validator import RequestValidator
from werkzeug.middleware.proxy_fix import ProxyFix

from ivr import db, flow, logs, money
from ivr.errors import ConfigError
from ivr.home import home
from ivr.hotlines import load_settings
from ivr.languages import LANGUAGES
from ivr.prompts import PromptLibrary
from ivr.selfservice import PromiseRules
from ivr.web import dashboard, metrics, signature, webhooks
from ivr.web.form import WebhookRequest
from ivr.web.services import Services, services, under_gunicorn

__all__ = [
    "Services",
    "create_app",
    "services",
]

# Environment variable -> config key, read over the defaults and under a test mapping.
ENVIRONMENT = {
    "IVR_DATABASE_URL": "DATABASE_URL",
    "TWILIO_AUTH_TOKEN": "AUTH_TOKEN",
    "IVR_PUBLIC_URL": "PUBLIC_URL",
    "IVR_PROMPTS_DIR": "PROMPTS_DIR",
    "IVR_SETTINGS": "SETTINGS_FILE",
    "IVR_LOCKOUT_FAILURES": "LOCKOUT_FAILURES",
    "IVR_LOCKOUT_MINUTES": "LOCKOUT_MINUTES",
    "IVR_PROXY_FIX": "PROXY_FIX",
    "IVR_CALL_LOG_BATCH_S": "CALL_LOG_BATCH_S",
    "IVR_PROMISE_MIN_RUB": "PROMISE_MIN_RUB",
    "IVR_PROMISE_MAX_RUB": "PROMISE_MAX_RUB",
    "IVR_PROMISE_DAYS": "PROMISE_DAYS",
}


# gunicorn's exit code for "the worker failed to boot": its master stops instead of
# starting the worker again and again.
GUNICORN_BOOT_ERROR = 3


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Create the hotline app: defaults, then IVR_* variables, then `test_config`.

    A setup that cannot work raises `ConfigError`; under gunicorn its message is the one
    line the worker prints (gunicorn would log a traceback first), and the server stops.
    """
    try:
        return _create_app(test_config)
    except ConfigError as error:
        if not under_gunicorn():
            raise
        print(f"Error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(GUNICORN_BOOT_ERROR) from None


def _create_app(test_config: Mapping[str, Any] | None) -> Flask:
    app = Flask(__name__)
    app.request_class = WebhookRequest
    app.config.from_mapping(
        DATABASE_URL=None,  # None: the home folder's file (ivr.home)
        AUTH_TOKEN=None,
        PUBLIC_URL=None,
        PROMPTS_DIR=None,
        SETTINGS_FILE=None,
        LOCKOUT_FAILURES=5,
        LOCKOUT_MINUTES=60,
        PROXY_FIX=0,  # how many proxies in front set X-Forwarded-*; 0 trusts none
        # Call-log rows are written in batches this often by a thread (0: in each request);
        # a crash loses at most this many seconds of rows, never a lockout count.
        CALL_LOG_BATCH_S=0.5,
        PROMISE_MIN_RUB=100,  # a promised payment: at least this many rubles,
        PROMISE_MAX_RUB=3000,  # at most this many,
        PROMISE_DAYS=5,  # returned after this many days
    )
    for variable, key in ENVIRONMENT.items():
        if os.environ.get(variable):
            app.config[key] = os.environ[variable]
    if test_config is not None:
        app.config.from_mapping(test_config)
    _home_defaults(app.config)

    # Everything that can be prepared once is prepared here, not per request; a config
    # that cannot work fails now rather than on the first call.
    # Connects once: a wrong URL, driver or password stops the start in one line.
    engine = db.open_server_ledger(app.config["DATABASE_URL"])
    app.extensions["ivr"] = Services(
        engine=engine,
        prompts=PromptLibrary(Path(app.config["PROMPTS_DIR"]), flow.PHRASES, languages=LANGUAGES),
        settings=load_settings(Path(app.config["SETTINGS_FILE"]), LANGUAGES),
        validator=RequestValidator(app.config["AUTH_TOKEN"]) if app.config["AUTH_TOKEN"] else None,
        limits=replace(
            _lockout_limits(app.config["LOCKOUT_FAILURES"], app.config["LOCKOUT_MINUTES"]),
            promise=_promise_rules(app.config),
        ),
        public_url=app.config["PUBLIC_URL"],
        call_log=db.CallLog(engine, _seconds("CALL_LOG_BATCH_S", app.config["CALL_LOG_BATCH_S"])),
    )
    money.preload()  # a server pays the slow import at start, not a caller
    # Contract numbers and the token stay out of every log line, ours or a library's.
    logs.install([app.config["AUTH_TOKEN"]])
    proxies = _proxy_count(app.config["PROXY_FIX"])
    if proxies:
        # Behind a TLS-terminating proxy the app sees http; Twilio signed the https URL.
        # Trusted only when configured: anyone can send X-Forwarded-* headers.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies
        )
    app.before_request(signature.check_signature)
    app.register_error_handler(Exception, webhooks.apologise)
    app.add_url_rule("/voice", view_func=webhooks.answer_call, methods=["POST"])
    app.add_url_rule("/voice/step", view_func=webhooks.answer_step, methods=["POST"])
    app.add_url_rule("/voice/fallback", view_func=webhooks.answer_fallback, methods=["POST"])
    app.add_url_rule("/voice/status", view_func=webhooks.record_status, methods=["POST"])
    app.add_url_rule("/healthz", view_func=webhooks.health, methods=["GET"])
    app.add_url_rule(
        "/prompts-audio/<path:file>",
        "prompt_audio",
        view_func=webhooks.prompt_audio,
        methods=["GET"],
    )
    dashboard.install(app)  # issue 12: GET /dashboard (IVR_DASHBOARD_TOKEN)
    metrics.install(app)  # issue 12: GET /metrics and the request counts (IVR_METRICS)
    if under_gunicorn():
        # A server worker keeps what it has loaded (SQLAlchemy, phonenumbers, inflect...)
        # for its life: moved out of the collector's sight, a full collection no longer
        # walks those ~100 000 objects (~50 ms, a pause every request queued behind it).
        gc.collect()
        gc.freeze()
    return app


def _home_defaults(config: dict[str, Any]) -> None:
    """Give the files not configured otherwise their place in the home folder.

    Looked up only when needed: with every file configured, no home folder is made.
    """
    keys = ("DATABASE_URL", "PROMPTS_DIR", "SETTINGS_FILE")
    if all(config[key] for key in keys):
        return
    place = home()
    defaults = (place.database_url, str(place.prompts_dir), str(place.settings_file))
    for key, default in zip(keys, defaults, strict=True):
        config[key] = config[key] or default


def _seconds(key: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a number of seconds, got {value!r}") from None
    if not 0 <= seconds <= 60:
        raise ConfigError(f"{key} must be between 0 and 60 seconds, got {value!r}")
    return seconds


def _minutes(value: Any) -> timedelta:
    return timedelta(minutes=float(value))


def _lockout_limits(failures: Any, minutes: Any) -> flow.Limits:
    """Read the lockout settings; refuse ones that would lock out everyone or no one."""
    try:
        count, window = int(failures), _minutes(minutes)
    except (TypeError, ValueError):
        raise ConfigError(
            f"LOCKOUT_FAILURES ({failures!r}) and LOCKOUT_MINUTES ({minutes!r}) must be numbers"
        ) from None
    if count < 1 or window <= timedelta(0):
        raise ConfigError(
            f"LOCKOUT_FAILURES must be 1 or more and LOCKOUT_MINUTES above 0, got {failures!r}"
            f" and {minutes!r}"
        )
    return flow.Limits(lockout_failures=count, lockout_window=window)


def _promise_rules(config: Mapping[str, Any]) -> PromiseRules:
    """Read the promised payment's settings; refuse ones no promise could be taken under."""
    raw = {key: config[key] for key in ("PROMISE_MIN_RUB", "PROMISE_MAX_RUB", "PROMISE_DAYS")}
    try:
        low = Decimal(str(raw["PROMISE_MIN_RUB"]).strip())
        high = Decimal(str(raw["PROMISE_MAX_RUB"]).strip())
        days = int(str(raw["PROMISE_DAYS"]).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"the PROMISE_* settings must be numbers, got {raw}") from None
    if not all(value.is_finite() and value == value.to_integral_value() for value in (low, high)):
        raise ConfigError(f"PROMISE_MIN_RUB and PROMISE_MAX_RUB must be whole rubles, got {raw}")
    try:
        return PromiseRules(min_rub=low, max_rub=high, days=days)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _proxy_count(value: Any) -> int:
    """Read PROXY_FIX: a number of proxies, or yes/no for one or none."""
    words = {"": 0, "false": 0, "no": 0, "off": 0, "true": 1, "yes": 1, "on": 1}
    text = str(value).strip().lower()
    if text in words:
        return words[text]
    if text.isdigit():
        return int(text)
    raise ConfigError(f"PROXY_FIX must be a number of proxies or yes/no, got {value!r}")
