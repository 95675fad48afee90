"""Hotline settings: the dialed number, however spelt, picks the language, voice and operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr import flow
from ivr.errors import ConfigError
from ivr.hotlines import DialedLine, HotlineSettings, load_settings

SHIPPED = Path(__file__).resolve().parent.parent / "data" / "hotline.toml"


def settings_from(tmp_path: Path, text: str) -> HotlineSettings:
    path = tmp_path / "hotline.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, flow.LANGUAGES)


@pytest.mark.parametrize("dialed", ["+7 342 219-51-95", "83422195195", "+73422195195"])
def test_every_spelling_of_the_hotline_number_selects_its_settings(dialed: str) -> None:
    settings = load_settings(SHIPPED, flow.LANGUAGES)
    assert settings.for_number(dialed) is settings.numbers["+73422195195"]
    assert settings.for_number(dialed) == DialedLine("ru-RU", "+73422195100")


@pytest.mark.parametrize("listed", ["+7 342 219-51-96", "83422195196", "+73422195196"])
@pytest.mark.parametrize("dialed", ["+7 (342) 219-51-96", "8 342 219 51 96", "+73422195196"])
def test_a_number_is_found_however_the_file_and_twilio_spell_it(
    tmp_path: Path, listed: str, dialed: str
) -> None:
    settings = settings_from(tmp_path, f'[numbers."{listed}"]\nlanguage = "en-US"\n')
    assert settings.for_number(dialed).language == "en-US"


@pytest.mark.parametrize("dialed", ["+74951234567", "", None, "client:alice", "anonymous"])
def test_other_numbers_get_the_default(dialed: str | None) -> None:
    settings = load_settings(SHIPPED, flow.LANGUAGES)
    assert settings.for_number(dialed) is settings.default


def test_a_number_takes_what_it_leaves_out_from_the_default(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        '[default]\nlanguage = "ru-RU"\noperator = "8 342 219-51-00"\nvoice = "Polly.Maxim"\n'
        '[numbers."+73422195195"]\n'
        '[numbers."+73422195196"]\nlanguage = "en-US"\n'
        '[numbers."+73422195197"]\noperator = ""\n',
    )
    assert settings.default == DialedLine("ru-RU", "+73422195100", "Polly.Maxim")
    assert settings.for_number("+73422195195") == settings.default
    # A voice speaks one language, so a number in another language does not take it.
    assert settings.for_number("+73422195196") == DialedLine("en-US", "+73422195100", None)
    assert settings.for_number("+73422195197").operator is None


def test_a_voice_override_applies_in_the_lines_own_language_only(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path, '[numbers."+73422195195"]\nvoice = "Google.ru-RU-Wavenet-B"\n'
    )
    line = settings.for_number("83422195195")
    assert line.voice == "Google.ru-RU-Wavenet-B"
    assert line.voice_for("ru-RU") == "Google.ru-RU-Wavenet-B"
    assert line.voice_for("en-US") is None  # the caller pressed 9: the English file's voice


def test_no_voice_override_by_default() -> None:
    settings = load_settings(SHIPPED, flow.LANGUAGES)
    assert all(line.voice is None for line in (settings.default, *settings.numbers.values()))


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[default]\nvoice = "Polly.Tatiana"\n', "'Polly.Tatiana' is not a Twilio voice"),
        ('[default]\nvoice = "Polly.Joanna"\n', "'Polly.Joanna' does not speak ru-RU"),
        ('[default]\nlanguage = "de-DE"\n', "language 'de-DE' is not one of"),
        ('[default]\noperator = "call Ivan"\n', "is not a phone number"),
        ("[default]\noperator = 73422195100\n", "operator must be a number in quotes"),
        ('[default]\noperatr = "+73422195100"\n', "has 'operatr'"),
        ('[numbers."12"]\n', "is not a phone number"),
        ('[numbers."+73422195195"]\n[numbers."83422195195"]\n', "'+73422195195' again"),
        ('[number."+73422195195"]\n', "unknown 'number'"),
        ("[default\n", "cannot read hotline settings"),
    ],
)
def test_a_settings_file_that_cannot_work_fails_the_start(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace("+", r"\+")):
        settings_from(tmp_path, text)
