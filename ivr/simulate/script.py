"""DTMF scripts for testers: parse a `.dtmf` file into typed steps.

One step a line, `#` starts a comment (after white space or at a line's start, so
`press 590000000018#` keeps its `#` key):

    call from=+73422000001 to=+73422195195
    expect "Здравствуйте"
    press 1
    silence
    expect-hangup

A script that cannot be read raises `ScriptError`, reported as FILE:LINE: what is wrong,
before any call starts. `ivr.simulate.runner` plays the steps.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import IvrError

DEFAULT_FROM = "+73422000001"
DEFAULT_TO = "+73422195195"
KEYS = frozenset("0123456789*#")


class ScriptError(IvrError):
    """A DTMF script cannot be read; reported as FILE:LINE: what is wrong."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


# --- the script -----------------------------------------------------------------------


@dataclass(frozen=True)
class StartCall:
    """`call [from=NUMBER] [to=NUMBER]`: start a call (POST /voice)."""

    line: int
    source: str
    from_: str = DEFAULT_FROM
    to: str = DEFAULT_TO


@dataclass(frozen=True)
class Expect:
    """`expect "text"`: the text was said since the previous step."""

    line: int
    source: str
    text: str


@dataclass(frozen=True)
class ExpectNot:
    """`expect-not "text"`: the text was not said since the previous step."""

    line: int
    source: str
    text: str


@dataclass(frozen=True)
class Press:
    """`press KEYS`: press keys; those one Gather does not take go to the next."""

    line: int
    source: str
    keys: str


@dataclass(frozen=True)
class Silence:
    """`silence`: press nothing until the waiting Gather times out."""

    line: int
    source: str


@dataclass(frozen=True)
class ExpectHangup:
    """`expect-hangup`: the hotline has ended the call."""

    line: int
    source: str


@dataclass(frozen=True)
class ExpectDial:
    """`expect-dial NUMBER`: the call was transferred to NUMBER."""

    line: int
    source: str
    number: str


Step = StartCall | Expect | ExpectNot | Press | Silence | ExpectHangup | ExpectDial


@dataclass(frozen=True)
class Script:
    """A parsed DTMF script: its file and its steps, the first one a `call`."""

    path: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool


def parse_script(path: str | os.PathLike[str]) -> Script:
    """Read a DTMF script file; raise ScriptError at its first fault."""
    name = os.fspath(path)
    try:
        text = Path(name).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ScriptError(name, 1, f"not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise ScriptError(name, 1, f"cannot read the script: {error.strerror}") from error
    return parse_text(text, name)


def parse_text(text: str, path: str = "<script>") -> Script:
    """Parse a DTMF script's text; `path` names it in errors."""
    steps: list[Step] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            tokens, code = _tokenize(raw)
        except ValueError as error:
            raise ScriptError(path, number, str(error)) from error
        if not tokens:
            continue
        try:
            step = _parse_step(tokens, number, code)
        except ValueError as error:
            raise ScriptError(path, number, str(error)) from error
        if not steps and not isinstance(step, StartCall):
            raise ScriptError(path, number, f"{tokens[0].text} before any call: start with `call`")
        steps.append(step)
    if not steps:
        raise ScriptError(path, 1, "the script has no steps: start with `call`")
    return Script(path, tuple(steps))


def _tokenize(line: str) -> tuple[list[_Token], str]:
    """Split a line into words and quoted texts; return them and the line without comment."""
    tokens: list[_Token] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char.isspace():
            index += 1
        elif char == "#":
            # Only here, at the start of a word, does '#' open a comment; in `press 18#`
            # it is part of the word and so a key.
            return tokens, line[:index].strip()
        elif char == '"':
            text, index = _read_quoted(line, index)
            if index < len(line) and not line[index].isspace():
                raise ValueError(f"put a space after the closing quote (at column {index + 1})")
            tokens.append(_Token(text, quoted=True))
        else:
            end = index
            while end < len(line) and not line[end].isspace():
                if line[end] == '"':
                    raise ValueError(f"a quote inside a word (column {end + 1}): quote whole texts")
                end += 1
            tokens.append(_Token(line[index:end], quoted=False))
            index = end
    return tokens, line.strip()


def _read_quoted(line: str, start: int) -> tuple[str, int]:
    """Read the quoted text opening at `start`; return it and the index after it."""
    chars: list[str] = []
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == "\\":
            if line[index + 1 : index + 2] not in ('"', "\\"):
                raise ValueError('in quotes a backslash escapes only \\" and \\\\')
            chars.append(line[index + 1])
            index += 2
        elif char == '"':
            return "".join(chars), index + 1
        else:
            chars.append(char)
            index += 1
    raise ValueError(f'unterminated quote: the text from column {start + 1} has no closing "')


def _parse_step(tokens: list[_Token], line: int, source: str) -> Step:
    """Turn one line's tokens into its step."""
    head, args = tokens[0], tokens[1:]
    name = head.text.lower()
    if head.quoted:
        raise ValueError("a line starts with a step name, not a quoted text")
    if name == "call":
        return _parse_call(args, line, source)
    if name in ("expect", "expect-not"):
        text = _one_quoted(name, args)
        return Expect(line, source, text) if name == "expect" else ExpectNot(line, source, text)
    if name == "press":
        return Press(line, source, _keys_argument(args))
    if name in ("silence", "expect-hangup"):
        if args:
            raise ValueError(f"{name} takes no argument, got {args[0].text!r}")
        return Silence(line, source) if name == "silence" else ExpectHangup(line, source)
    if name == "expect-dial":
        return ExpectDial(line, source, _number_argument(args))
    raise ValueError(
        f"unknown step {head.text!r}; steps are call, expect, expect-not, press, "
        "silence, expect-hangup, expect-dial"
    )


def _parse_call(args: list[_Token], line: int, source: str) -> StartCall:
    """Read `from=` and `to=` of a call step."""
    numbers: dict[str, str] = {}
    for arg in args:
        key, sign, value = arg.text.partition("=")
        if arg.quoted or not sign or key not in ("from", "to"):
            raise ValueError(f"call takes from=NUMBER and to=NUMBER, got {arg.text!r}")
        if key in numbers:
            raise ValueError(f"call has {key}= twice")
        if not value:
            raise ValueError(f"missing number after {key}=")
        numbers[key] = value
    return StartCall(
        line, source, numbers.get("from", DEFAULT_FROM), numbers.get("to", DEFAULT_TO)
    )


def _one_quoted(name: str, args: list[_Token]) -> str:
    """Return the one quoted text a step takes."""
    if not args:
        raise ValueError(f'missing text: {name} "text"')
    if len(args) > 1 or not args[0].quoted:
        raise ValueError(f'{name} takes one text in double quotes: {name} "text"')
    if not args[0].text.strip():
        raise ValueError(f"{name} needs a non-empty text")
    return args[0].text


def _keys_argument(args: list[_Token]) -> str:
    """Return the keys of a press step: digits, * and #."""
    if not args:
        # A lone '#' after a space is a comment, which is the likeliest way to get here.
        raise ValueError(
            "missing keys: press KEYS (a lone # after a space is a comment; "
            'write press "#" for the pound key)'
        )
    keys = "".join(arg.text for arg in args)
    bad = sorted(set(keys) - KEYS)
    if bad or not keys:
        raise ValueError(f"press takes keys 0-9, * and #, got {''.join(bad) or 'nothing'!r}")
    return keys


def _number_argument(args: list[_Token]) -> str:
    """Return the number of expect-dial, its words joined (`+7 342 219-51-00`)."""
    number = "".join(arg.text for arg in args)
    if not normalize_number(number):
        raise ValueError("missing number: expect-dial NUMBER")
    return number


def normalize_number(number: str) -> str:
    """Drop the spaces, dashes, dots and brackets people write phone numbers with."""
    return re.sub(r"[\s\-.()]", "", number)
