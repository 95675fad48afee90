"""Prompt files: load, check and render what the hotline says; reload on change.

One TOML file a language in the prompts folder, named after its language (`ru-RU.toml`):

    language = "ru-RU"          # a language Twilio's <Say> knows
    voice = "Polly.Tatyana"     # a Twilio voice that speaks it
    [phrases]
    balance_positive = "На вашем счёте {amount}."
    greeting = { audio = "audio/greeting-ru.wav", text = "Здравствуйте!" }

A phrase is text, or a recording: an inline table whose `audio` names a file under the
prompts folder, played with `<Play>`, and whose optional `text` says what the recording says
(for previews). A phrase the flow fills in (one with placeholders) must stay text.

`check_file` finds every fault of a file with its line; `ivr prompts check` prints them and
`PromptLibrary` refuses a file that has any, so the command and the server always agree.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import string
import threading
import time
import tomllib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from ivr import voices
from ivr.errors import PromptError

log = logging.getLogger(__name__)

PHRASES_TABLE = "phrases"
TOP_LEVEL_KEYS = ("language", "voice", PHRASES_TABLE)
RECORDING_KEYS = ("audio", "text")
# What Twilio's <Play> accepts (its documented MIME types), by file suffix.
AUDIO_TYPES: Mapping[str, str] = {
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".wave": "audio/wav",
    ".aif": "audio/aiff",
    ".aiff": "audio/aiff",
    ".aifc": "audio/x-aifc",
    ".gsm": "audio/gsm",
    ".ulaw": "audio/ulaw",
}
# Room kept for each filled-in placeholder when a phrase's length is checked: the longest
# amount in words ("девятьсот девяносто девять миллиардов ...") takes about 330 bytes.
PLACEHOLDER_RESERVE_BYTES = 400
PLACEHOLDER_HINT = "a placeholder is a name in braces such as {amount}; write {{ or }} for a brace"


# --- what a prompt file holds ---------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """A phrase spoken by a recorded audio file instead of text-to-speech."""

    file: str  # under the prompts folder, with forward slashes, as the audio URL names it
    version: int  # the file's mtime: a re-recorded file gets a new URL, past Twilio's cache


@dataclass(frozen=True)
class PromptSet:
    """Every phrase of one language, with the voice that speaks them."""

    language: str
    voice: str
    phrases: Mapping[str, str]  # a recording's entry is its transcript
    audio: Mapping[str, Recording] = field(default_factory=dict)

    def render(self, phrase: str, values: Mapping[str, str]) -> str:
        """Fill a phrase's placeholders."""
        return self.phrases[phrase].format_map(values)

    def with_voice(self, voice: str | None) -> PromptSet:
        """Return this set spoken by `voice` (a hotline's override), or itself for None."""
        return replace(self, voice=voice) if voice else self


def placeholders(text: str) -> set[str]:
    """Return the names of the `{placeholders}` in a phrase."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


# --- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One thing wrong with a prompt file, where an editor finds it."""

    path: Path
    line: int  # 1-based; 0 when the fault is no line's (a file that is missing)
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"


def report(faults: Iterable[Fault]) -> str:
    """Join faults one a line, as `ivr prompts check` prints them."""
    return "\n".join(map(str, faults))


@dataclass(frozen=True)
class CheckedFile:
    """A prompt file's verdict: its prompt set when it has no fault, and what it reads."""

    path: Path
    prompt_set: PromptSet | None
    faults: tuple[Fault, ...]
    recordings: tuple[Path, ...] = ()  # the audio files it names, watched for changes too


@dataclass(frozen=True)
class FolderReport:
    """The verdict on a whole prompts folder."""

    files: tuple[CheckedFile, ...]
    faults: tuple[Fault, ...]  # every fault: the folder's own, then each file's


def check_folder(
    folder: Path, required: Mapping[str, frozenset[str]], languages: Collection[str] = ()
) -> FolderReport:
    """Check every prompt file of a folder, and that each of `languages` has one."""
    paths, faults = _folder_files(folder, languages)
    files = tuple(check_file(path, required) for path in paths)
    return FolderReport(files, tuple(faults) + tuple(f for c in files for f in c.faults))


def check_file(path: Path, required: Mapping[str, frozenset[str]]) -> CheckedFile:
    """Read one prompt file and find every fault in it; `required` maps phrase -> placeholders."""
    return _FileCheck(path, required).run()


def load(path: Path, required: Mapping[str, frozenset[str]]) -> PromptSet:
    """Read one prompt file; raise PromptError listing every fault."""
    checked = check_file(path, required)
    if checked.prompt_set is None:
        raise PromptError(report(checked.faults))
    return checked.prompt_set


def _folder_files(folder: Path, languages: Collection[str]) -> tuple[list[Path], list[Fault]]:
    if not folder.is_dir():
        return [], [Fault(folder, 0, "no such folder of prompt files")]
    paths = sorted(folder.glob("*.toml"))
    faults = [
        Fault(folder / f"{language}.toml", 0, f"missing: the hotline speaks {language}")
        for language in languages
        if not (folder / f"{language}.toml").is_file()
    ]
    if not paths and not faults:
        faults.append(Fault(folder, 0, "no prompt files (*.toml) in this folder"))
    return paths, faults


# --- where keys are: tomllib parses values but keeps no positions -----------------------------

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\\n]|\\.)*"|'[^'\n]*')"""
_DOTTED = rf"{_KEY_PART}(?:[ \t]*\.[ \t]*{_KEY_PART})*"
_HEADER = re.compile(rf"^[ \t]*\[[ \t]*({_DOTTED})[ \t]*\]")
_KEY = re.compile(rf"^[ \t]*({_DOTTED})[ \t]*=")
_PART = re.compile(_KEY_PART)
_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


class KeyLines:
    """The line of each table header and key of a TOML text, found by scanning it."""

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[str, ...], int] = {}
        table: tuple[str, ...] = ()
        closing: str | None = None  # the quotes that end the multi-line string being skipped
        for number, line in enumerate(text.split("\n"), start=1):
            if closing is not None:
                if line.count(closing) % 2:
                    closing = None
                continue
            header = _HEADER.match(line)
            key = None if header else _KEY.match(line)
            if header:
                table = _key_path(header.group(1))
                self._lines.setdefault(table, number)
            elif key:
                self._lines.setdefault(table + _key_path(key.group(1)), number)
            closing = next((q for q in ('"""', "'''") if line.count(q) % 2), None)

    def line(self, *path: str) -> int:
        """Return the line of a key, else of its nearest enclosing table, else 1."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return 1


def _key_path(dotted: str) -> tuple[str, ...]:
    return tuple(_unquote(part) for part in _PART.findall(dotted))


def _unquote(part: str) -> str:
    if part.startswith('"'):
        try:  # a basic string's escapes are JSON's, near enough for a key
            return str(json.loads(part))
        except ValueError:
            return part[1:-1]
    return part[1:-1] if part.startswith("'") else part


# --- checking one file --------------------------------------------------------------------------


class _FileCheck:
    """Collect every fault of one prompt file, rather than stopping at the first."""

    def __init__(self, path: Path, required: Mapping[str, frozenset[str]]) -> None:
        self.path = path
        self.required = required
        self.faults: list[Fault] = []
        self.recordings: list[Path] = []
        self.where = KeyLines("")

    def fault(self, line: int, message: str) -> None:
        self.faults.append(Fault(self.path, line, message))

    def run(self) -> CheckedFile:
        data = self._parse()
        if data is None:
            return self._verdict(None)
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.fault(
                    self.where.line(key),
                    f"unknown setting {key!r}{_did_you_mean(key, TOP_LEVEL_KEYS)}; a prompt"
                    " file holds language, voice and [phrases]",
                )
        language = self._language(data.get("language"))
        voice = self._voice(data.get("voice"), language)
        texts, audio = self._phrases(data.get(PHRASES_TABLE))
        if self.faults or language is None or voice is None:
            return self._verdict(None)
        return self._verdict(PromptSet(language, voice, texts, audio))

    def _verdict(self, prompt_set: PromptSet | None) -> CheckedFile:
        return CheckedFile(self.path, prompt_set, tuple(self.faults), tuple(self.recordings))

    def _parse(self) -> dict[str, object] | None:
        try:
            raw = self.path.read_bytes()
        except OSError as exc:
            self.fault(1, f"cannot read the file: {exc.strerror or exc}")
            return None
        try:  # "-sig": a byte-order mark, as some Windows editors write, is no fault
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw.count(b"\n", 0, exc.start) + 1
            self.fault(line, "not UTF-8 text: save the file in the UTF-8 encoding")
            return None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            message = str(exc)
            found = _POSITION.search(message)
            if found:  # tomllib says "... (at line 3, column 10)"
                line, reason = int(found.group(1)), f"{message[: found.start()]}, column {found[2]}"
            else:  # "... (at end of document)"
                line, reason = text.count("\n") + 1, message
            hint = " (is the text in double quotes?)" if reason.startswith("Invalid value") else ""
            self.fault(line, f"not valid TOML: {reason}{hint}")
            return None
        self.where = KeyLines(text)
        return data

    def _language(self, value: object) -> str | None:
        line = self.where.line("language")
        if value is None:
            self.fault(1, f'no language: add language = "{self.path.stem}" at the top')
            return None
        if not isinstance(value, str):
            self.fault(line, 'language must be text in quotes, such as language = "ru-RU"')
            return None
        if not voices.is_language(value):
            known = voices.catalogue().languages
            self.fault(
                line, f"Twilio does not know the language {value!r}" + _did_you_mean(value, known)
            )
            return None
        if value != self.path.stem:
            # The library files sets by language: a copied file that kept its language would
            # silently replace the original's phrases.
            self.fault(
                line,
                f"the file says language {value!r} but is named {self.path.name};"
                f" one file a language, named after it: {value}.toml",
            )
        return value

    def _voice(self, value: object, language: str | None) -> str | None:
        line = self.where.line("voice")
        if value is None:
            self.fault(1, 'no voice: add voice = "Polly.Tatyana" (or another Twilio voice)')
            return None
        if not isinstance(value, str):
            self.fault(line, 'voice must be text in quotes, such as voice = "Polly.Tatyana"')
            return None
        if not voices.is_voice(value):
            known = voices.catalogue().voices
            self.fault(
                line, f"Twilio does not know the voice {value!r}" + _did_you_mean(value, known)
            )
            return None
        if language is not None and not voices.fits(value, language):
            spoken = ", ".join(voices.voice_languages(value) or ())
            self.fault(line, f"voice {value!r} speaks {spoken}, not {language}")
        return value

    def _phrases(self, value: object) -> tuple[dict[str, str], dict[str, Recording]]:
        header = self.where.line(PHRASES_TABLE)
        if not isinstance(value, dict):
            self.fault(header, "no [phrases] table: put the phrases under a line [phrases]")
            return {}, {}
        for name in self.required:
            if name not in value:
                self.fault(header, f"phrase {name!r} is missing: the hotline says it")
        texts: dict[str, str] = {}
        audio: dict[str, Recording] = {}
        for name, entry in value.items():
            line = self.where.line(PHRASES_TABLE, name)
            allowed = self.required.get(name)
            if allowed is None:
                hint = _did_you_mean(name, self.required)
                self.fault(line, f"phrase {name!r} is not used by the hotline{hint}")
            elif isinstance(entry, str):
                self._text(name, entry, allowed, line)
                texts[name] = entry
            elif isinstance(entry, dict):
                recording = self._recording(name, entry, allowed, line)
                transcript = entry.get("text")
                if recording is not None:
                    audio[name] = recording
                    said = transcript if isinstance(transcript, str) else f"[{recording.file}]"
                    texts[name] = said.replace("{", "{{").replace("}", "}}")
            else:
                self.fault(
                    line,
                    f"phrase {name!r} must be text in quotes, or a recording:"
                    f' {{ audio = "audio/{name}.wav" }}',
                )
        return texts, audio

    def _text(self, name: str, text: str, allowed: frozenset[str], line: int) -> None:
        if not text.strip():
            self.fault(line, f"phrase {name!r} is empty: Twilio cannot say nothing")
        names = self._placeholders(name, text, line)
        if names is None:
            return
        unknown = names - allowed
        if unknown:
            fills = f"it fills in only {_braces(allowed)}" if allowed else "it fills in none here"
            self.fault(
                line,
                f"phrase {name!r} uses {_braces(unknown)}, which the hotline does"
                f" not fill in; {fills}",
            )
        missing = allowed - names
        if missing:
            self.fault(
                line, f"phrase {name!r} lacks {_braces(missing)}: the caller needs to hear it"
            )
        size = len(text.encode("utf-8")) + PLACEHOLDER_RESERVE_BYTES * len(names)
        if size > voices.SAY_LIMIT_BYTES:
            room = f", with {PLACEHOLDER_RESERVE_BYTES} for each placeholder" if names else ""
            self.fault(
                line,
                f"phrase {name!r} is too long for one <Say>: {size} bytes{room};"
                f" the limit is {voices.SAY_LIMIT_BYTES} bytes of UTF-8 (a Cyrillic"
                " letter takes 2)",
            )

    def _placeholders(self, name: str, text: str, line: int) -> set[str] | None:
        """Return the phrase's placeholder names, or None after reporting a malformed one."""
        try:
            fields = list(string.Formatter().parse(text))
        except ValueError as exc:  # "{amount" or a lone "}"
            self.fault(line, f"phrase {name!r}: malformed placeholder ({exc}); {PLACEHOLDER_HINT}")
            return None
        names: set[str] = set()
        bad = False
        for _, placeholder, spec, conversion in fields:
            if placeholder is None:
                continue
            shown = "{" + placeholder + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            if placeholder == "" or placeholder.isdigit():
                problem = "has no name: write a name in the braces, such as {amount}"
            elif not placeholder.isidentifier():  # {amount.real}, {amount[0]}: no lookups
                problem = "is not a plain name: write a name in the braces, such as {amount}"
            elif spec or conversion:
                problem = "has a format, but the hotline formats values itself: write {"
                problem += placeholder + "}"
            else:
                names.add(placeholder)
                continue
            self.fault(line, f"phrase {name!r}: placeholder {shown} {problem}")
            bad = True
        return None if bad else names

    def _recording(
        self, name: str, entry: Mapping[str, object], allowed: frozenset[str], line: int
    ) -> Recording | None:
        before = len(self.faults)
        for key in entry:
            if key not in RECORDING_KEYS:
                self.fault(
                    line,
                    f'phrase {name!r}: a recording takes audio = "file" and'
                    f' optionally text = "what it says", not {key!r}',
                )
        if allowed:
            self.fault(
                line,
                f"phrase {name!r} is filled in with {_braces(allowed)} on each"
                " call, so it cannot be a recording",
            )
        if not isinstance(entry.get("text", ""), str):
            self.fault(line, f"phrase {name!r}: a recording's text must be in quotes")
        file = entry.get("audio")
        if not isinstance(file, str) or not file.strip():
            self.fault(
                line,
                f'phrase {name!r}: a recording needs audio = "audio/{name}.wav",'
                " a file under the prompts folder",
            )
            return None
        relative = PurePosixPath(file)
        if "\\" in file or relative.is_absolute() or ".." in relative.parts:
            self.fault(
                line,
                f"phrase {name!r}: audio {file!r} must be a path inside the prompts"
                " folder with / between folders, such as audio/greeting.wav",
            )
            return None
        if relative.suffix.lower() not in AUDIO_TYPES:
            self.fault(
                line,
                f"phrase {name!r}: Twilio cannot play {relative.suffix or 'a file'}"
                f" without a known type; it plays {', '.join(AUDIO_TYPES)}",
            )
        folder = self.path.parent
        full = folder / relative
        self.recordings.append(full)
        if not full.is_file():
            self.fault(line, f"phrase {name!r}: audio file {full} not found")
            return None
        if not full.resolve().is_relative_to(folder.resolve()):  # a link leading out
            self.fault(line, f"phrase {name!r}: audio {file!r} leads outside the prompts folder")
        if len(self.faults) > before:
            return None
        return Recording(relative.as_posix(), full.stat().st_mtime_ns)


def _braces(names: Iterable[str]) -> str:
    return ", ".join("{" + name + "}" for name in sorted(names))


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
        paths, folder_faults = _folder_files(self.folder, self.required_languages)
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
