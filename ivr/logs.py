"""Keep contract numbers and secrets out of the logs, whoever writes the line.

A filter on the handlers (not on a logger) sees every record that reaches them,
including those propagated from other loggers: SQLAlchemy's SQL echo with its
parameters, werkzeug's request lines with the call state's query string, tracebacks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from ivr.contract import CONTRACT_LENGTH, mask

# A contract number is a run of 12 digits; a longer run may hold one, so it is masked too.
_DIGIT_RUN = re.compile(rf"(?<![0-9])[0-9]{{{CONTRACT_LENGTH},}}(?![0-9])")
SECRET_MASK = "[secret]"
# Shorter "secrets" would blank ordinary words out of every line.
MIN_SECRET_LENGTH = 6


class MaskingFilter(logging.Filter):
    """Rewrite a record so that its text holds no digit run of a contract's length nor a secret."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._formatter = logging.Formatter()

    def add_secret(self, secret: str | None) -> None:
        """Mask `secret` (an auth token) wherever it appears from now on."""
        if secret and len(secret) >= MIN_SECRET_LENGTH:
            self._secrets.add(secret)

    def mask(self, text: str) -> str:
        """Return `text` with every secret and every run of 12 or more digits masked."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, SECRET_MASK)
        return _DIGIT_RUN.sub(lambda found: mask(found.group()), text)

    def filter(self, record: logging.LogRecord) -> bool:
        # Format once here, so every handler after this one sees the masked text only.
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown, masked
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = self.mask(message)
        record.args = None
        if record.exc_info:
            text = record.exc_text or self._formatter.formatException(record.exc_info)
            record.exc_text = self.mask(text)
            # Formatters print exc_text when it is set; the exception object itself, with
            # its unmasked message and frame locals, goes no further.
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


# One filter for the process: every app created adds its token to the same set.
FILTER = MaskingFilter()
# Loggers whose records carry request lines or SQL parameters, masked where they are
# logged, whatever handler they reach later (werkzeug adds its own on first use).
SOURCE_LOGGERS = ("werkzeug", "gunicorn.access", "gunicorn.error", "sqlalchemy.engine.Engine")


def install(secrets: Iterable[str | None] = ()) -> MaskingFilter:
    """Put the masking filter on every handler now configured; add `secrets` to what it masks.

    Covers the root logger's handlers (where propagated records end up), the handlers of
    any logger that has its own (werkzeug's, Flask's, gunicorn's), and, at the source, the
    hotline's own loggers and those of `SOURCE_LOGGERS`. Calling it again is harmless, and
    picks up handlers added since. Masking twice changes nothing.
    """
    for secret in secrets:
        FILTER.add_secret(secret)
    for handler in _handlers():
        if FILTER not in handler.filters:
            handler.addFilter(FILTER)
    ours = [
        name
        for name in list(logging.Logger.manager.loggerDict)
        if name == "ivr" or name.startswith("ivr.")
    ]
    for name in (*SOURCE_LOGGERS, *ours):
        logger = logging.getLogger(name)
        if FILTER not in logger.filters:
            logger.addFilter(FILTER)
    return FILTER


def _handlers() -> list[logging.Handler]:
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in list(logging.Logger.manager.loggerDict.values())
        if isinstance(logger, logging.Logger)
    ]
    # The last resort prints WARNING and above when nothing else is configured (a bare
    # gunicorn worker), so it is masked too.
    handlers: list[logging.Handler] = [logging.lastResort] if logging.lastResort else []
    for logger in loggers:
        handlers += [handler for handler in logger.handlers if handler not in handlers]
    return handlers
