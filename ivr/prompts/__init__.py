"""Prompt files: the model and rendering, the checker, the live-reloading library."""

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
