"""The hotline's exceptions: one root, a few specific kinds."""

from __future__ import annotations


class IvrError(Exception):
    """Base of every error the hotline raises on purpose."""


class ConfigError(IvrError):
    """The configuration cannot work; raised at start-up."""


class LedgerError(IvrError):
    """The ledger cannot be read or written."""


class ImportFileError(LedgerError):
    """A ledger CSV file has a bad row; nothing of it was imported."""


class PromptError(IvrError):
    """A prompt file is missing, unreadable or fails the check."""
