"""The prompt file checker: every fault of a file, with the line an editor finds it on.

`check_file` finds every fault of a file with its line; `ivr prompts check` prints them and
`PromptLibrary` refuses a file that has any, so the command and the server always agree.

About 440 lines: `KeyLines` (where each key is, which tomllib does not say) and the
per-phrase checks are one job, finding a fault's line, and read best side by side.
"""

from __future__ import annotations

import difflib
import json
import re
import string
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ivr.errors import PromptError
from ivr.prompts import voices, writing
from ivr.prompts.model import AUDIO_TYPES, PromptSet, Recording

PHRASES_TABLE = "phrases"
TOP_LEVEL_KEYS = ("language", "voice", PHRASES_TABLE)
RECORDING_KEYS = ("audio", "text")
# Room kept for each filled-in placeholder when a phrase's length is checked: the longest
# amount in words ("девятьсот девяносто девять миллиардов ...") takes about 330 bytes.
PLACEHOLDER_RESERVE_BYTES = 400
PLACEHOLDER_HINT = "a placeholder is a name in braces such as {amount}; write {{ or }} for a brace"


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
    paths, faults = folder_files(folder, languages)
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


def folder_files(folder: Path, languages: Collection[str]) -> tuple[list[Path], list[Fault]]:
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
        self.language: str | None = None  # the file's, once read: its phrases are in it

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
        language = self.language = self._language(data.get("language"))
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
                if isinstance(transcript, str):
                    self._alphabet(name, transcript, line)
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
        self._alphabet(name, text, line)
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

    def _alphabet(self, name: str, text: str, line: int) -> None:
        """Refuse words of another language: the file's voice reads its own language only."""
        if self.language is None:
            return
        why = writing.foreign(text, self.language)
        if why is not None:
            self.fault(
                line,
                f"phrase {name!r} is not in {self.language}: {why}, and the file's voice"
                f" reads {self.language} only; another language's words (such as the offer"
                " to switch) go in that language's file",
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
