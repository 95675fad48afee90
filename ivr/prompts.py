"""Prompt files: load, validate and render what the hotline says; reload on change.

One TOML file a language in the prompts folder (`ru-RU.toml`, `en-US.toml`):

    language = "ru-RU"
    voice = "Polly.Tatyana"
    [phrases]
    balance_positive = "На вашем счёте {amount}."
"""

from __future__ import annotations

import logging
import string
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import PromptError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptSet:
    """Every phrase of one language, with the voice that speaks them."""

    language: str
    voice: str
    phrases: Mapping[str, str]

    def render(self, phrase: str, values: Mapping[str, str]) -> str:
        """Fill a phrase's placeholders."""
        return self.phrases[phrase].format_map(values)


def placeholders(text: str) -> set[str]:
    """Return the names of the `{placeholders}` in a phrase."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def load(path: Path, required: Mapping[str, frozenset[str]]) -> PromptSet:
    """Read and validate one prompt file; raise PromptError listing every fault."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PromptError(f"{path}: {exc}") from None
    faults: list[str] = []
    language, voice = data.get("language"), data.get("voice")
    phrases = data.get("phrases")
    if not isinstance(language, str) or not isinstance(voice, str):
        faults.append("'language' and 'voice' must be set to strings")
    if not isinstance(phrases, dict):
        raise PromptError(f"{path}: no [phrases] table")
    for name, allowed in required.items():
        text = phrases.get(name)
        if not isinstance(text, str):
            faults.append(f"phrase {name!r} is missing")
            continue
        try:
            unknown = placeholders(text) - allowed
        except ValueError as exc:
            faults.append(f"phrase {name!r}: {exc}")
            continue
        if unknown:
            faults.append(f"phrase {name!r} uses unknown placeholder(s) {sorted(unknown)}")
    if faults:
        raise PromptError(f"{path}: " + "; ".join(faults))
    assert isinstance(language, str) and isinstance(voice, str)
    return PromptSet(language, voice, {k: v for k, v in phrases.items() if isinstance(v, str)})


class PromptLibrary:
    """The prompt sets of a folder, reloaded when a file changes; a broken edit is ignored.

    A file's modification time is looked at no more than once a `check_interval_s`, so a
    request costs a dictionary look-up, not a file read.
    """

    def __init__(
        self, folder: Path, required: Mapping[str, frozenset[str]], check_interval_s: float = 1.0
    ) -> None:
        self.folder = folder
        self.required = required
        self.check_interval_s = check_interval_s
        self._sets: dict[str, PromptSet] = {}
        self._stamps: dict[str, int] = {}
        self._faults: dict[str, str] = {}
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._scan(strict=True)

    def get(self, language: str) -> PromptSet:
        """Return the last good prompt set of a language."""
        self._maybe_reload()
        try:
            return self._sets[language]
        except KeyError:
            raise PromptError(f"no prompt file for {language} in {self.folder}") from None

    @property
    def languages(self) -> list[str]:
        return sorted(self._sets)

    @property
    def faults(self) -> dict[str, str]:
        """Return the faults of files whose last edit was rejected, by file name."""
        self._maybe_reload()
        return dict(self._faults)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.check_interval_s:
            return
        with self._lock:
            if now - self._checked_at >= self.check_interval_s:
                self._scan(strict=False)
                self._checked_at = now

    def _scan(self, strict: bool) -> None:
        files = sorted(self.folder.glob("*.toml"))
        if strict and not files:
            raise PromptError(f"no prompt files (*.toml) in {self.folder}")
        for path in files:
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                continue
            if self._stamps.get(path.name) == stamp:
                continue
            self._stamps[path.name] = stamp
            try:
                prompt_set = load(path, self.required)
            except PromptError as exc:
                if strict:
                    raise
                self._faults[path.name] = str(exc)
                log.error("prompt file rejected, the last good version keeps serving: %s", exc)
                continue
            self._faults.pop(path.name, None)
            if not strict:
                log.info("prompt file reloaded: %s", path)
            self._sets[prompt_set.language] = prompt_set
