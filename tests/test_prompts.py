"""Prompt files: the check (each fault on its line), the library's live reload, `ivr prompts`."""

from __future__ import annotations

import logging
import os
import shutil
import wave
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from ivr import create_app, db, flow
from ivr.cli import main
from ivr.errors import PromptError
from ivr.prompts import (
    Fault,
    KeyLines,
    PromptLibrary,
    PromptSet,
    check_file,
    check_folder,
    voices,
)
from tests.conftest import TWIML_ALLOWLIST, twiml_allowlist

PROJECT = Path(__file__).resolve().parent.parent
SHIPPED = PROJECT / "prompts"
HOTLINE = "+73422195195"  # ru-RU in data/hotline.toml
GREETING_RU = "Здравствуйте! Вы позвонили в службу поддержки интернет-провайдера."


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A throwaway copy of the shipped prompt files."""
    target = tmp_path / "prompts"
    target.mkdir()
    for path in SHIPPED.glob("*.toml"):
        shutil.copy(path, target / path.name)
    return target


def edit(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old`, and move the mtime on as a later save would."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    before = path.stat().st_mtime_ns
    path.write_text(text.replace(old, new), encoding="utf-8")
    # Not sleeping: a coarse file-system clock could leave the mtime where it was.
    later = max(before, path.stat().st_mtime_ns) + 2_000_000_000
    os.utime(path, ns=(later, later))


def line_of(path: Path, needle: str) -> int:
    """Return the number of the first line of the file that starts with `needle`."""
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line.startswith(needle):
            return number
    raise AssertionError(f"{needle!r} not in {path.name}")


def faults_of(folder: Path) -> list[Fault]:
    return list(check_folder(folder, flow.PHRASES, flow.LANGUAGES).faults)


def write_wav(path: Path, seconds: float = 0.1) -> None:
    """Write a short silent wav file, as a recorded phrase."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * int(8000 * seconds))


# --- the shipped files ---------------------------------------------------------------------


def test_the_shipped_prompt_files_pass_the_check() -> None:
    report = check_folder(SHIPPED, flow.PHRASES, flow.LANGUAGES)
    assert [str(f) for f in report.faults] == []
    assert sorted(c.path.name for c in report.files) == ["en-US.toml", "ru-RU.toml"]
    assert all(c.prompt_set is not None for c in report.files)


# --- each kind of fault, on its line ----------------------------------------------------------

TOO_LONG = "x" * (voices.SAY_LIMIT_BYTES + 1)

# (id, file, old text, new text, text on the line the fault names, words of the message)
FAULTS = [
    ("toml-unquoted", "en-US.toml", 'no_input = "Sorry, we did not hear anything."',
     "no_input = Sorry, we did not hear anything.", "no_input", "not valid TOML"),
    ("toml-unclosed", "ru-RU.toml", 'goodbye = "Спасибо за звонок. До свидания!"',
     'goodbye = "Спасибо за звонок. До свидания!', "goodbye", "not valid TOML"),
    ("toml-duplicate", "en-US.toml", 'goodbye = "Thank you for calling. Goodbye!"',
     'goodbye = "Thank you for calling. Goodbye!"\ngoodbye = "Bye"', 'goodbye = "Bye"',
     "not valid TOML"),
    ("missing-phrase", "en-US.toml", 'goodbye = "Thank you for calling. Goodbye!"\n', "",
     "[phrases]", "phrase 'goodbye' is missing"),
    ("unused-phrase", "en-US.toml", 'goodbye = "Thank you for calling. Goodbye!"',
     'goodbye = "Thank you for calling. Goodbye!"\nfarewell = "Bye!"', "farewell",
     "phrase 'farewell' is not used by the hotline"),
    ("misspelt-phrase", "ru-RU.toml", "goodbye = ", "goodby = ", "goodby =",
     "did you mean 'goodbye'?"),
    ("unknown-placeholder", "ru-RU.toml", "На вашем счёте {amount}.",
     "На вашем счёте {amount} {sum}.", "balance_positive", "uses {sum}"),
    ("placeholder-in-plain-phrase", "en-US.toml", "Thank you for calling.",
     "Thank you for calling, {name}.", "goodbye = ", "uses {name}"),
    ("missing-placeholder", "en-US.toml", "Your balance is {amount}.",
     "Your balance is positive.", "balance_positive", "lacks {amount}"),
    ("unclosed-placeholder", "en-US.toml", "Your balance is {amount}.",
     "Your balance is {amount.", "balance_positive", "malformed placeholder"),
    ("stray-brace", "en-US.toml", "Contract number {contract}.",
     "Contract number {contract}}.", "balance_intro", "malformed placeholder"),
    ("positional-placeholder", "en-US.toml", "You owe {amount}.", "You owe {amount} {0}.",
     "balance_debt", "placeholder {0} has no name"),
    ("empty-braces", "en-US.toml", "You owe {amount}.", "You owe {amount} {}.",
     "balance_debt", "placeholder {} has no name"),
    ("attribute-placeholder", "en-US.toml", "You owe {amount}.", "You owe {amount.__class__}.",
     "balance_debt", "is not a plain name"),
    ("formatted-placeholder", "en-US.toml", "You owe {amount}.", "You owe {amount:>40}.",
     "balance_debt", "has a format"),
    ("too-long", "en-US.toml", 'tariffs_info = "The Home plan',
     f'tariffs_info = "{TOO_LONG} The Home plan', "tariffs_info", "too long for one <Say>"),
    ("empty", "en-US.toml", '"There is no such option."', '"  "', "invalid_option", "is empty"),
    ("not-text", "en-US.toml", '"There is no such option."', "42", "invalid_option",
     "must be text in quotes"),
    ("unknown-voice", "en-US.toml", 'voice = "Polly.Joanna"', 'voice = "Polly.Joana"',
     "voice =", "did you mean 'Polly.Joanna'?"),
    ("unknown-language", "en-US.toml", 'language = "en-US"', 'language = "en-XX"',
     "language =", "Twilio does not know the language 'en-XX'"),
    ("polly-voice-of-another-language", "en-US.toml", 'voice = "Polly.Joanna"',
     'voice = "Polly.Tatyana"', "voice =", "speaks ru-RU, not en-US"),
    ("google-voice-of-another-language", "ru-RU.toml", 'voice = "Polly.Tatyana"',
     'voice = "Google.en-US-Wavenet-A"', "voice =", "speaks en-US, not ru-RU"),
    ("language-not-the-file-name", "en-US.toml", 'language = "en-US"', 'language = "en-GB"',
     "language =", "named en-US.toml"),
    ("unknown-setting", "en-US.toml", 'voice = "Polly.Joanna"',
     'voice = "Polly.Joanna"\nvoise = "Polly.Joanna"', "voise", "unknown setting 'voise'"),
    ("missing-audio-file", "ru-RU.toml", f'"{GREETING_RU}"',
     '{ audio = "audio/never-recorded.wav" }', "greeting", "never-recorded.wav not found"),
    ("audio-outside-the-folder", "ru-RU.toml", f'"{GREETING_RU}"',
     '{ audio = "../ru-RU.toml" }', "greeting", "inside the prompts folder"),
    ("audio-for-a-filled-in-phrase", "ru-RU.toml", '"На вашем счёте {amount}."',
     '{ audio = "audio/greeting-ru.wav" }', "balance_positive", "cannot be a recording"),
    ("audio-of-unknown-type", "ru-RU.toml", f'"{GREETING_RU}"',
     '{ audio = "audio/greeting-ru.txt" }', "greeting", "Twilio cannot play .txt"),
    ("audio-with-a-stray-key", "ru-RU.toml", f'"{GREETING_RU}"',
     '{ audio = "audio/greeting-ru.wav", txt = "Привет" }', "greeting", "not 'txt'"),
    ("russian-in-english", "en-US.toml", 'main_menu = "For subscriber services, press 1.',
     'main_menu = "For subscriber services, press 1. Для русского языка нажмите 9.',
     "main_menu", 'not in en-US: Cyrillic words ("Для русского языка'),
    ("one-cyrillic-letter-in-english", "en-US.toml", "Goodbye!", "Goodbуe!",  # a Cyrillic у
     "goodbye", "not in en-US: Cyrillic words"),
    ("english-in-russian", "ru-RU.toml", "нажмите 0.", "нажмите 0. For English, press 9.",
     "main_menu", 'not in ru-RU: the sentence "For English, press 9." has no Cyrillic'),
    ("english-with-a-placeholder-in-russian", "ru-RU.toml", '"На вашем счёте {amount}."',
     '"На вашем счёте {amount}. Your balance is {amount}."', "balance_positive",
     'the sentence "Your balance is ." has no Cyrillic'),
    ("english-transcript-of-a-russian-recording", "ru-RU.toml", f'"{GREETING_RU}"',
     '{ audio = "audio/greeting-ru.wav", text = "Hello!" }', "greeting",
     "not in ru-RU: the sentence \"Hello!\""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("file", "old", "new", "on_line", "message"),
    [case[1:] for case in FAULTS],
    ids=[case[0] for case in FAULTS],
)
def test_the_check_names_each_fault_on_its_line(
    folder: Path, file: str, old: str, new: str, on_line: str, message: str
) -> None:
    write_wav(folder / "audio" / "greeting-ru.wav")  # for the cases about something else
    (folder / "audio" / "greeting-ru.txt").write_text("not audio", encoding="utf-8")
    path = folder / file
    edit(path, old, new)
    found = faults_of(folder)
    expected_line = line_of(path, on_line)
    assert [f for f in found if message in f.message and f.line == expected_line], "\n".join(
        map(str, found)
    )
    assert all(f.path == path for f in found), "a fault was reported in the untouched file"


@pytest.mark.parametrize(
    ("file", "old", "new"),
    [
        # A brand name or an abbreviation inside Russian text is Russian text.
        ("ru-RU.toml", "интернет-провайдера.", "интернет-провайдера. Есть Wi-Fi и IPTV."),
        ("ru-RU.toml", "в офисе.", "в офисе, или через Google Pay."),
        # Digits and punctuation alone are in no alphabet.
        ("ru-RU.toml", "Завершить звонок: 3.", "Завершить звонок: 3. 8-800-100-00-00."),
        # Accented Latin letters are no Cyrillic.
        ("en-US.toml", "at our office.", "at our café office."),
    ],
)
def test_the_check_lets_foreign_names_inside_a_sentence_pass(
    folder: Path, file: str, old: str, new: str
) -> None:
    edit(folder / file, old, new)
    assert faults_of(folder) == []


def test_a_fault_prints_as_file_colon_line(folder: Path) -> None:
    path = folder / "en-US.toml"
    edit(path, "Your balance is {amount}.", "Your balance is {amount}{sum}.")
    (fault,) = faults_of(folder)
    assert str(fault).startswith(f"{path}:{line_of(path, 'balance_positive')}: phrase")


def test_every_fault_of_a_file_is_reported_not_only_the_first(folder: Path) -> None:
    path = folder / "en-US.toml"
    edit(path, 'voice = "Polly.Joanna"', 'voice = "Polly.Nobody"')
    edit(path, "Your balance is {amount}.", "Your balance is {sum}.")
    edit(path, "You owe {amount}.", "You owe {0}.")
    lines = {f.line for f in faults_of(folder)}
    assert lines >= {
        line_of(path, "voice ="),
        line_of(path, "balance_positive"),
        line_of(path, "balance_debt"),
    }


def test_a_missing_language_file_is_a_fault(folder: Path) -> None:
    (folder / "en-US.toml").unlink()
    (fault,) = faults_of(folder)
    assert fault.path == folder / "en-US.toml"
    assert fault.line == 0 and "missing" in fault.message
    assert str(fault) == f"{folder / 'en-US.toml'}: missing: the hotline speaks en-US"


def test_a_file_not_in_utf8_names_the_line(folder: Path) -> None:
    path = folder / "ru-RU.toml"
    line = line_of(path, "unknown_contract")
    raw = path.read_bytes().replace("Договор с таким".encode(), "Договор с таким".encode("cp1251"))
    path.write_bytes(raw)
    (fault,) = faults_of(folder)
    assert fault.line == line and "UTF-8" in fault.message


def test_a_recording_checks_out_and_keeps_its_transcript(folder: Path) -> None:
    write_wav(folder / "audio" / "greeting-ru.wav")
    path = folder / "ru-RU.toml"
    edit(path, f'"{GREETING_RU}"', '{ audio = "audio/greeting-ru.wav", text = "Привет {мир}" }')
    checked = check_file(path, flow.PHRASES)
    assert checked.faults == ()
    assert checked.prompt_set is not None
    recording = checked.prompt_set.audio["greeting"]
    assert recording.file == "audio/greeting-ru.wav"
    assert recording.version == (folder / "audio" / "greeting-ru.wav").stat().st_mtime_ns
    assert checked.prompt_set.render("greeting", {}) == "Привет {мир}"
    assert checked.recordings == (folder / "audio" / "greeting-ru.wav",)


# --- where keys are -------------------------------------------------------------------------


def test_key_lines_follow_tables_quotes_dotted_keys_and_multiline_strings() -> None:
    text = "\n".join(
        [
            'language = "ru-RU"',  # 1
            "[phrases]",  # 2
            'greeting = """',  # 3
            "fake = not a key, inside the string",  # 4
            '"""',  # 5
            '"quoted key" = "x"',  # 6
            "  [ other . 'sub' ]  # a comment",  # 7
            "deep.key = 1",  # 8
        ]
    )
    where = KeyLines(text)
    assert where.line("language") == 1
    assert where.line("phrases") == 2
    assert where.line("phrases", "greeting") == 3
    assert where.line("phrases", "fake") == 2  # not found: its table's line
    assert where.line("phrases", "quoted key") == 6
    assert where.line("other", "sub") == 7
    assert where.line("other", "sub", "deep", "key") == 8
    assert where.line("nowhere") == 1


# --- the voice list ---------------------------------------------------------------------------


def test_the_voice_list_knows_twilio_voices_and_languages() -> None:
    assert voices.is_voice("Polly.Tatyana") and voices.is_voice("Google.ru-RU-Wavenet-A")
    assert not voices.is_voice("Polly.Tatiana") and not voices.is_voice("polly.tatyana")
    assert voices.is_language("ru-RU") and not voices.is_language("ru-XX")


@pytest.mark.parametrize(
    ("voice", "language", "fits"),
    [
        ("Polly.Tatyana", "ru-RU", True),
        ("Polly.Maxim", "ru-RU", True),
        ("Polly.Joanna-Neural", "en-US", True),
        ("Polly.Joanna", "ru-RU", False),
        ("Polly.Rémi-Generative", "fr-FR", True),
        ("Google.ru-RU-Wavenet-A", "ru-RU", True),
        ("Google.ru-RU-Wavenet-A", "en-US", False),
        ("Google.fil-ph-Neural2-A", "fil-PH", True),
        ("alice", "ru-RU", True),  # the name does not tell, so it is not refused
    ],
)
def test_a_voice_fits_the_language_its_name_tells(voice: str, language: str, fits: bool) -> None:
    assert voices.fits(voice, language) is fits


def test_every_polly_voice_twilio_lists_is_in_the_language_table() -> None:
    polly = [v for v in voices.catalogue().voices if v.startswith("Polly.")]
    assert polly and all(voices.voice_languages(v) for v in polly)
    assert all(voices.is_language(tag) for v in polly for tag in voices.voice_languages(v) or ())


def test_the_packaged_voice_list_is_the_allowlists(tmp_path: Path) -> None:
    # The project's copy of the allowlist: this runs (or fails) in any clone, never skips.
    made = voices.generate(TWIML_ALLOWLIST, tmp_path / "voices.json")
    assert made == voices.catalogue()
    enums = twiml_allowlist()["enums"]
    assert made.voices == set(enums["SayVoice"]) and made.languages == set(enums["SayLanguage"])


# --- the library ------------------------------------------------------------------------------


def test_a_broken_file_fails_the_start_loudly(folder: Path) -> None:
    edit(folder / "en-US.toml", "Your balance is {amount}.", "Your balance is {sum}.")
    with pytest.raises(PromptError, match=r"en-US\.toml:\d+: phrase 'balance_positive'"):
        PromptLibrary(folder, flow.PHRASES, languages=flow.LANGUAGES)


def test_a_missing_language_fails_the_start(folder: Path) -> None:
    (folder / "en-US.toml").unlink()
    with pytest.raises(PromptError, match="en-US.toml: missing"):
        PromptLibrary(folder, flow.PHRASES, languages=flow.LANGUAGES)


def test_the_library_reloads_an_edit_and_keeps_the_last_good_version_of_a_broken_one(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    library = PromptLibrary(folder, flow.PHRASES, check_interval_s=0, languages=flow.LANGUAGES)
    path = folder / "en-US.toml"
    edit(path, "Thank you for calling. Goodbye!", "Bye now!")
    assert library.get("en-US").phrases["goodbye"] == "Bye now!"
    assert library.faults == {}

    with caplog.at_level(logging.ERROR, logger="ivr.prompts"):
        edit(path, "Bye now!", "Bye {caller}!")
        assert library.get("en-US").phrases["goodbye"] == "Bye now!"
    line = line_of(path, "goodbye")
    assert library.faults == {
        "en-US.toml": [
            f"{path}:{line}: phrase 'goodbye' uses {{caller}}, which the hotline does not fill"
            " in; it fills in none here"
        ]
    }
    assert "refused, its last good version keeps serving" in caplog.text
    assert f"en-US.toml:{line}:" in caplog.text

    edit(path, "Bye {caller}!", "Goodbye!")
    assert library.get("en-US").phrases["goodbye"] == "Goodbye!"
    assert library.faults == {}


def test_the_library_looks_at_most_once_an_interval(folder: Path) -> None:
    library = PromptLibrary(folder, flow.PHRASES, check_interval_s=3600)
    edit(folder / "en-US.toml", "Thank you for calling. Goodbye!", "Bye now!")
    assert library.get("en-US").phrases["goodbye"] == "Thank you for calling. Goodbye!"


def test_a_removed_file_keeps_serving_and_is_reported(folder: Path) -> None:
    library = PromptLibrary(folder, flow.PHRASES, check_interval_s=0, languages=flow.LANGUAGES)
    (folder / "en-US.toml").unlink()
    assert library.get("en-US").voice == "Polly.Joanna"
    missing = f"{folder / 'en-US.toml'}: missing: the hotline speaks en-US"
    assert library.faults == {"en-US.toml": [missing]}


def test_a_re_recorded_file_is_noticed_without_touching_the_prompt_file(folder: Path) -> None:
    audio = folder / "audio" / "greeting-ru.wav"
    write_wav(audio)
    edit(folder / "ru-RU.toml", f'"{GREETING_RU}"', '{ audio = "audio/greeting-ru.wav" }')
    library = PromptLibrary(folder, flow.PHRASES, check_interval_s=0)
    first = library.get("ru-RU").audio["greeting"].version
    write_wav(audio, seconds=0.2)
    os.utime(audio, ns=(first + 2_000_000_000, first + 2_000_000_000))
    assert library.get("ru-RU").audio["greeting"].version == first + 2_000_000_000
    assert library.recording("audio/greeting-ru.wav") == audio
    assert library.recording("ru-RU.toml") is None


def test_a_voice_override_replaces_only_the_voice() -> None:
    prompt_set = PromptSet("ru-RU", "Polly.Tatyana", {"goodbye": "Пока"})
    assert prompt_set.with_voice("Polly.Maxim").voice == "Polly.Maxim"
    assert prompt_set.with_voice("Polly.Maxim").phrases == prompt_set.phrases
    assert prompt_set.with_voice(None) is prompt_set


# --- in the running app -------------------------------------------------------------------------


def make_app(tmp_path: Path, folder: Path, **config: object) -> Flask:
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
            "PROMPTS_DIR": str(folder),
            "AUTH_TOKEN": None,
            **config,
        }
    )
    db.create_schema(app.extensions["ivr"].engine)
    app.extensions["ivr"].prompts.check_interval_s = 0  # look at the files on every request
    return app


@pytest.fixture
def app(tmp_path: Path, folder: Path) -> Iterator[Flask]:
    app = make_app(tmp_path, folder)
    yield app
    app.extensions["ivr"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def answer(client: FlaskClient) -> ET.Element:
    """Start a call to the Russian hotline and parse the TwiML answer."""
    response = client.post("/voice", data={"From": "+73422000001", "To": HOTLINE, "CallSid": "CA1"})
    assert response.status_code == 200 and response.mimetype == "text/xml"
    return ET.fromstring(response.data)


def said(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter("Say")]


def test_an_edit_while_the_app_runs_changes_the_next_calls_words(
    client: FlaskClient, folder: Path
) -> None:
    assert said(answer(client))[0] == GREETING_RU
    edit(folder / "ru-RU.toml", GREETING_RU, "Добрый день! Это новая версия приветствия.")
    assert said(answer(client))[0] == "Добрый день! Это новая версия приветствия."


def test_a_broken_edit_keeps_the_last_good_text_and_shows_in_healthz(
    client: FlaskClient, folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "prompt_faults": {}}
    path = folder / "ru-RU.toml"
    with caplog.at_level(logging.ERROR, logger="ivr.prompts"):
        edit(path, f'greeting = "{GREETING_RU}"', "greeting = Здравствуйте!")
        assert said(answer(client))[0] == GREETING_RU
    assert "ru-RU.toml" in caplog.text and "not valid TOML" in caplog.text

    health = client.get("/healthz")
    assert health.status_code == 200  # still answering calls, with the last good text
    body = health.get_json()
    assert body["status"] == "degraded"
    (fault,) = body["prompt_faults"]["ru-RU.toml"]
    assert fault.startswith(f"{path}:{line_of(path, 'greeting =')}: not valid TOML")

    edit(path, "greeting = Здравствуйте!", 'greeting = "Здравствуйте!"')
    assert said(answer(client))[0] == "Здравствуйте!"
    assert client.get("/healthz").get_json()["status"] == "ok"


def test_a_broken_file_at_start_up_fails_create_app(tmp_path: Path, folder: Path) -> None:
    edit(folder / "ru-RU.toml", 'voice = "Polly.Tatyana"', 'voice = "Polly.Nobody"')
    with pytest.raises(PromptError, match=r"ru-RU\.toml:\d+: Twilio does not know the voice"):
        create_app({"DATABASE_URL": "sqlite://", "PROMPTS_DIR": str(folder), "AUTH_TOKEN": None})


@pytest.fixture
def recorded(folder: Path) -> Path:
    """Record the greeting and the main menu of the Russian file."""
    write_wav(folder / "audio" / "greeting-ru.wav")
    write_wav(folder / "audio" / "menu ru.wav", seconds=0.3)
    write_wav(folder / "audio" / "not-named.wav")
    path = folder / "ru-RU.toml"
    edit(path, f'"{GREETING_RU}"', '{ audio = "audio/greeting-ru.wav", text = "Здравствуйте!" }')
    text = path.read_text(encoding="utf-8")
    start = text.index("main_menu = ") + len("main_menu = ")
    end = text.index("\n", start)
    edit(path, text[start:end], '{ audio = "audio/menu ru.wav" }')
    return folder


def test_a_recorded_phrase_becomes_play_with_an_absolute_url(
    tmp_path: Path, recorded: Path
) -> None:
    app = make_app(tmp_path, recorded)
    client = app.test_client()
    root = answer(client)
    version = (recorded / "audio" / "greeting-ru.wav").stat().st_mtime_ns
    assert [el.tag for el in root] == ["Play", "Gather", "Redirect"]
    assert root[0].text == f"http://localhost/prompts-audio/audio/greeting-ru.wav?v={version}"
    gathered = root.find("Gather")
    assert gathered is not None
    menu, switch = gathered  # barge-in still works over a recording
    assert menu.tag == "Play"
    assert (menu.text or "").startswith("http://localhost/prompts-audio/audio/menu%20ru.wav?v=")
    # The offer of English comes from the English file, in its voice.
    assert (switch.tag, switch.get("language"), switch.text) == (
        "Say",
        "en-US",
        "For English, press 9.",
    )

    with client.get((menu.text or "").removeprefix("http://localhost")) as served:
        assert served.status_code == 200
        assert served.mimetype == "audio/wav"
        assert served.data == (recorded / "audio" / "menu ru.wav").read_bytes()
    app.extensions["ivr"].engine.dispose()


def test_play_urls_use_the_public_url_when_set(tmp_path: Path, recorded: Path) -> None:
    app = make_app(tmp_path, recorded, PUBLIC_URL="https://hotline.example.com/")
    root = answer(app.test_client())
    assert (root[0].text or "").startswith(
        "https://hotline.example.com/prompts-audio/audio/greeting-ru.wav?v="
    )
    app.extensions["ivr"].engine.dispose()


@pytest.mark.parametrize(
    "path",
    [
        "/prompts-audio/ru-RU.toml",
        "/prompts-audio/audio/not-named.wav",
        "/prompts-audio/../prompts/ru-RU.toml",
        "/prompts-audio/audio/../ru-RU.toml",
        "/prompts-audio/%2E%2E/%2E%2E/etc/passwd",
        "/prompts-audio//etc/passwd",
    ],
)
def test_the_audio_route_serves_only_named_recordings(
    tmp_path: Path, recorded: Path, path: str
) -> None:
    app = make_app(tmp_path, recorded)
    with app.test_client().get(path, follow_redirects=True) as response:
        assert response.status_code == 404
    app.extensions["ivr"].engine.dispose()


# --- ivr prompts ----------------------------------------------------------------------------------


def test_prompts_check_passes_good_files(folder: Path) -> None:
    result = CliRunner().invoke(main, ["prompts", "check", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "2 files OK"


def test_prompts_check_lists_faults_and_fails(folder: Path) -> None:
    path = folder / "en-US.toml"
    edit(path, "Your balance is {amount}.", "Your balance is {sum}.")
    result = CliRunner().invoke(main, ["prompts", "check", str(folder)])
    assert result.exit_code == 1
    line = line_of(path, "balance_positive")
    assert f"{path}:{line}: phrase 'balance_positive' uses {{sum}}" in result.stdout
    assert f"2 faults in {folder}" in result.stderr


def test_prompts_check_takes_the_folder_from_the_environment(folder: Path) -> None:
    (folder / "ru-RU.toml").write_text("language = ", encoding="utf-8")
    result = CliRunner().invoke(main, ["prompts", "check"], env={"IVR_PROMPTS_DIR": str(folder)})
    assert result.exit_code == 1
    assert f"{folder / 'ru-RU.toml'}:1: not valid TOML" in result.stdout


def test_prompts_check_fails_on_a_missing_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["prompts", "check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "no such folder" in result.stdout


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (
            ["balance_positive", "--amount", "21.01"],
            "На вашем счёте двадцать один рубль одна копейка.",
        ),
        (
            ["balance_debt", "--lang", "en-US", "--amount", "123.45"],
            "You owe one hundred twenty-three rubles and forty-five kopecks. Please top up your"
            " account.",
        ),
        (
            ["balance_intro", "--contract", "590000000018"],
            "Договор номер пять девять ноль ноль ноль ноль ноль ноль ноль ноль один восемь.",
        ),
        (["wrong_length", "--lang", "en-US"], "A contract number has 12 digits."),
        (["goodbye"], "Спасибо за звонок. До свидания!"),
    ],
)
def test_prompts_say_prints_the_filled_text(folder: Path, args: list[str], text: str) -> None:
    result = CliRunner().invoke(main, ["prompts", "say", *args, "--dir", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout == text + "\n"


def test_prompts_say_shows_an_edit(folder: Path) -> None:
    edit(folder / "ru-RU.toml", "На вашем счёте {amount}.", "Остаток: {amount}.")
    result = CliRunner().invoke(main, ["prompts", "say", "balance_positive", "--dir", str(folder)])
    assert result.stdout == "Остаток: сто двадцать три рубля сорок пять копеек.\n"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["goodby"], "did you mean goodbye?"),
        (["goodbye", "--lang", "de-DE"], "languages there: en-US, ru-RU"),
        (["balance_positive", "--amount", "lots"], "--amount"),
        (["balance_intro", "--contract", "59-00"], "is not digits"),
    ],
)
def test_prompts_say_refuses_what_it_cannot_say(folder: Path, args: list[str], error: str) -> None:
    result = CliRunner().invoke(main, ["prompts", "say", *args, "--dir", str(folder)])
    assert result.exit_code == 2
    assert error in result.output


def test_prompts_say_refuses_a_broken_file(folder: Path) -> None:
    edit(folder / "en-US.toml", "Your balance is {amount}.", "Your balance is {sum}.")
    args = ["prompts", "say", "goodbye", "--lang", "en-US", "--dir", str(folder)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "fix them first" in result.output


@pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="needs espeak-ng and sox"
)
def test_prompts_say_speaks_into_a_wav_file(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "goodbye.wav"
    args = ["prompts", "say", "goodbye", "-o", str(out), "--dir", str(folder)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with wave.open(str(out)) as heard:
        assert heard.getnframes() > heard.getframerate() // 2  # at least half a second


def test_prompts_say_names_what_to_install_without_espeak(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    args = ["prompts", "say", "goodbye", "-o", str(tmp_path / "x.wav"), "--dir", str(folder)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "espeak-ng" in result.output and "apt-get install" in result.output


def test_prompts_say_copies_a_recording(folder: Path, tmp_path: Path) -> None:
    write_wav(folder / "audio" / "bye.wav")
    edit(folder / "ru-RU.toml", '"Спасибо за звонок. До свидания!"', '{ audio = "audio/bye.wav" }')
    out = tmp_path / "heard.wav"
    args = ["prompts", "say", "goodbye", "-o", str(out), "--dir", str(folder)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == "[audio/bye.wav]\n"
    assert out.read_bytes() == (folder / "audio" / "bye.wav").read_bytes()
