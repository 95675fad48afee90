"""Prompt files: the model and rendering, the checker, the live-reloading library.

The names below are re-exported lazily, so that `python -m ivr.prompts.voices` runs the
voices module without the package having imported it first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ivr.prompts.check import (
        CheckedFile,
        Fault,
        FolderReport,
        KeyLines,
        check_file,
        check_folder,
        load,
        report,
    )
    from ivr.prompts.library import PromptLibrary
    from ivr.prompts.model import AUDIO_TYPES, PromptSet, Recording, placeholders

_HOMES = {
    "CheckedFile": "check",
    "Fault": "check",
    "FolderReport": "check",
    "KeyLines": "check",
    "check_file": "check",
    "check_folder": "check",
    "load": "check",
    "report": "check",
    "PromptLibrary": "library",
    "AUDIO_TYPES": "model",
    "PromptSet": "model",
    "Recording": "model",
    "placeholders": "model",
}

__all__ = [
    "AUDIO_TYPES",
    "CheckedFile",
    "Fault",
    "FolderReport",
    "KeyLines",
    "PromptLibrary",
    "PromptSet",
    "Recording",
    "check_file",
    "check_folder",
    "load",
    "placeholders",
    "report",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"ivr.prompts.{home}"), name)
