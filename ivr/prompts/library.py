"""The prompt library the server reads: live reload on an edit, the last good version kept."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from ivr.errors import PromptError
from ivr.prompts.check import Fault, check_file, folder_files, report
from ivr.prompts.model import PromptSet

log = logging.getLogger(__name__)

# --- the library the server reads -------------------------------------------------------------

Stamp = tuple[tuple[int, int] | None, ...]


def _stamp(paths: Sequence[Path]) -> Stamp:
    """Say when and how big each file is, so any edit (or removal) changes the stamp."""
    stamps: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


class PromptLibrary:
    """The prompt sets of a folder, reloaded when a file changes; a broken edit is ignored.

    A file's modification time is looked at no more than once a `check_interval_s`, so a
    request costs a dictionary look-up, not a file read. At start-up any fault raises
    PromptError; later, a file with a fault is refused, logged and reported by `faults`,
    while its last good version keeps serving.
    """

    def __init__(
        self,
        folder: Path,
        required: Mapping[str, frozenset[str]],
        check_interval_s: float = 1.0,
        languages: Collection[str] = (),
    ) -> None:
        self.folder = folder
        self.required = required
        self.check_interval_s = check_interval_s
        self.required_languages = tuple(languages)
        self._sets: dict[str, PromptSet] = {}
        self._stamps: dict[str, Stamp] = {}  # by file name
        self._watched: dict[str, tuple[Path, ...]] = {}  # file name -> its recordings
        self._file_faults: dict[str, tuple[Fault, ...]] = {}
        self._folder_faults: dict[str, tuple[Fault, ...]] = {}
        self._recordings: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._scan(strict=True)
        self._checked_at = time.monotonic()

    def get(self, language: str) -> PromptSet:
        """Return the last good prompt set of a language."""
        self._maybe_reload()
        try:
            return self._sets[language]
        except KeyError:
            raise PromptError(f"no prompt file for {language} in {self.folder}") from None

    @property
    def languages(self) -> list[str]:
        """Return the languages that have a good prompt set."""
        return sorted(self._sets)

    @property
    def faults(self) -> dict[str, list[str]]:
        """Return, by file name, the faults of files whose last edit was refused or is gone."""
        self._maybe_reload()
        merged = {**self._folder_faults, **self._file_faults}
        return {name: [str(f) for f in faults] for name, faults in sorted(merged.items())}

    def recording(self, file: str) -> Path | None:
        """Return the audio file that a prompt set in service plays as `file`, if any."""
        self._maybe_reload()
        return self._recordings.get(file)

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.check_interval_s:
            return
        with self._lock:
            if now - self._checked_at < self.check_interval_s:
                return
            try:
                self._scan(strict=False)
            except Exception:  # a bug in here must not cost callers the last good prompts
                log.exception("looking for edited prompt files failed; the loaded ones serve on")
            finally:
                self._checked_at = now

    def _scan(self, strict: bool) -> None:
        paths, folder_faults = folder_files(self.folder, self.required_languages)
        refused: list[Fault] = []
        for path in paths:
            before = _stamp((path,))
            if self._stamps.get(path.name) == before + _stamp(self._watched.get(path.name, ())):
                continue
            checked = check_file(path, self.required)
            self._watched[path.name] = checked.recordings
            # The file's stamp is the one from before reading it: an edit made meanwhile is
            # then seen at the next look.
            self._stamps[path.name] = before + _stamp(checked.recordings)
            if checked.prompt_set is None:
                refused.extend(checked.faults)
                self._refuse(path, checked.faults, strict)
                continue
            self._file_faults.pop(path.name, None)
            if not strict:
                log.info("prompt file %s reloaded", path)
            self._sets[checked.prompt_set.language] = checked.prompt_set
        if strict and (folder_faults or refused):
            raise PromptError("prompt files have faults:\n" + report([*folder_faults, *refused]))
        named = {path.name for path in paths} | {fault.path.name for fault in folder_faults}
        for name in sorted(self._stamps.keys() - named):  # loaded once, since removed
            folder_faults.append(
                Fault(
                    self.folder / name,
                    0,
                    "removed; its last good version keeps serving until the server restarts",
                )
            )
        self._note_folder_faults(folder_faults)
        self._recordings = {
            recording.file: self.folder / recording.file
            for prompt_set in self._sets.values()
            for recording in prompt_set.audio.values()
        }

    def _refuse(self, path: Path, faults: tuple[Fault, ...], strict: bool) -> None:
        self._file_faults[path.name] = faults
        if strict:
            return
        kept = (
            "its last good version keeps serving"
            if path.stem in self._sets
            else "it was not loaded"
        )
        log.error("prompt file %s refused, %s:\n%s", path, kept, report(faults))

    def _note_folder_faults(self, faults: list[Fault]) -> None:
        by_name: dict[str, list[Fault]] = {}
        for fault in faults:
            by_name.setdefault(fault.path.name, []).append(fault)
        found = {name: tuple(group) for name, group in by_name.items()}
        for name, group in found.items():
            if self._folder_faults.get(name) != group:  # log a change once, not every second
                log.error("prompt files: %s", report(group))
        self._folder_faults = found
