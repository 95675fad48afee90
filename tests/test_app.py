"""The webhooks end to end: signed requests through the real app on the demo ledger."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time

from ivr import create_app
from tests.conftest import (
    AUTH_TOKEN,
    BASE_URL,
    Caller,
    sign,
    to_contract_entry,
)

NOW = "2026-11-30 12:00:00"

# Demo contract -> what the balance sounds like in Russian and in English.
DEMO_BALANCES = [
    (
        "590000000018",
        "На вашем счёте одна тысяча двести тридцать четыре рубля пятьдесят шесть копеек.",
        "Your balance is one thousand two hundred thirty-four rubles and fifty-six kopecks.",
    ),
    ("590000000026", "На вашем счёте ноль рублей.", "Your balance is zero rubles."),
    (
        "590000000034",
        "Задолженность триста пятьдесят рублей семьдесят пять копеек.",
        "You owe three hundred fifty rubles and seventy-five kopecks.",
    ),
    (
        "590000000042",
        "На вашем счёте двадцать один рубль одна копейка.",
        "Your balance is twenty-one rubles and one kopeck.",
    ),
    ("590000000059", "На вашем счёте одна тысяча рублей.", "Your balance is one thousand rubles."),
    (
        "590000000067",
        "На вашем счёте два рубля две копейки.",
        "Your balance is two rubles and two kopecks.",
    ),
]


@freeze_time(NOW)
@pytest.mark.parametrize(("contract", "russian", "english"), DEMO_BALANCES)
def test_one_one_one_speaks_every_demo_balance(
    app: Flask, contract: str, russian: str, english: str
) -> None:
    ru = Caller(app)
    to_contract_entry(ru)
    turn = ru.press(contract + "#")
    assert turn.said[0].startswith("Договор номер пять девять ноль ноль")
    assert russian in turn.said[1]
    en = Caller(app)
    to_contract_entry(en, english=True)
    turn = en.press(contract + "#")
    assert turn.said[0].startswith("Contract number five nine zero zero")
    assert english in turn.said[1]


def test_greeting_then_main_menu_inside_gather(call: Caller) -> None:
    turn = call.start()
    assert turn.verbs == ["Say", "Gather", "Redirect"]
    assert "Здравствуйте" in turn.said[0]
    gather = turn.gather
    assert gather is not None
    assert gather.get("numDigits") == "1"
    assert gather.get("input") == "dtmf"
    nested = [el.text for el in gather.iter("Say")]
    assert nested and "нажмите 1" in (nested[0] or "")
    assert turn.root.find("Redirect").text == gather.get("action")  # type: ignore[union-attr]


def test_contract_entry_collects_twelve_digits_or_hash(call: Caller) -> None:
    to_contract_entry(call)
    assert call.last is not None
    gather = call.last.gather
    assert gather is not None
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == ("12", "#")
    assert "номер договора" in call.last.text


def test_contract_is_read_back_digit_by_digit(call: Caller) -> None:
    to_contract_entry(call)
    turn = call.press("590000000042")
    assert turn.said[0] == (
        "Договор номер пять девять ноль ноль ноль ноль ноль ноль ноль ноль четыре два."
    )
    assert "590000000042" not in turn.text


@pytest.mark.parametrize(
    ("keys", "heard"),
    [
        (["1"], "Баланс и оплата"),  # main -> subscriber
        (["1", "2"], "Тариф Домашний"),  # subscriber: tariffs read out
        (["1", "1"], "Узнать баланс"),  # subscriber -> billing
        (["1", "1", "2"], "Оплатить услуги можно"),  # billing: payment methods
        (["1", "1", "1"], "Введите номер договора"),  # billing -> contract entry
        (["9"], "For subscriber services"),  # English main menu
        (["9", "9"], "Для абонентов"),  # and back to Russian
        (["1", "*"], "Для абонентов"),  # back from subscriber
        (["1", "1", "*"], "Баланс и оплата"),  # back from billing
        (["1", "1", "1", "*"], "Узнать баланс"),  # back from contract entry
        (["*"], "Для абонентов"),  # back at the top stays at the top
    ],
)
def test_every_menu_key(call: Caller, keys: list[str], heard: str) -> None:
    call.start()
    for key in keys:
        turn = call.press(key)
    assert heard in turn.text
    assert turn.gather is not None


def test_after_balance_menu(call: Caller) -> None:
    to_contract_entry(call)
    first = call.press("590000000018")
    assert "Повторить" in first.text
    again = call.press("1")
    assert again.said[:2] == first.said[:2]
    another = call.press("2")
    assert "Введите номер договора" in another.text
    call.press("590000000042")
    bye = call.press("3")
    assert bye.said == ["Спасибо за звонок. До свидания!"]
    assert bye.verbs == ["Say", "Hangup"]


def test_silence_three_times_says_goodbye_and_hangs_up(call: Caller) -> None:
    call.start()
    first = call.silence()
    assert first.said[0] == "Мы вас не услышали."
    assert "Для абонентов" in first.text
    second = call.silence()
    assert second.gather is not None
    third = call.silence()
    assert third.said == ["Спасибо за звонок. До свидания!"]
    assert third.verbs == ["Say", "Hangup"]


def test_invalid_key_says_no_such_option_and_shares_the_limit(call: Caller) -> None:
    call.start()
    turn = call.press("7")
    assert turn.said[0] == "Такого варианта нет."
    assert "Для абонентов" in turn.text
    call.silence()
    assert call.press("#").ends_call


def test_operator_is_dialed_from_any_menu(call: Caller) -> None:
    call.start()
    call.press("1")
    turn = call.press("0")
    assert turn.dialed == "+73422195100"
    assert "оператором" in turn.text


def test_operator_from_contract_entry(call: Caller) -> None:
    to_contract_entry(call)
    assert call.press("0#").dialed == "+73422195100"


def test_without_an_operator_the_caller_is_told_so(tmp_path: Path, app: Flask) -> None:
    settings = tmp_path / "hotline.toml"
    settings.write_text('[default]\nlanguage = "ru-RU"\noperator = ""\n', encoding="utf-8")
    no_operator = create_app(
        {
            "DATABASE_URL": app.config["DATABASE_URL"],
            "AUTH_TOKEN": AUTH_TOKEN,
            "SETTINGS_FILE": str(settings),
        }
    )
    try:
        call = Caller(no_operator)
        call.start()
        turn = call.press("0")
    finally:
        no_operator.extensions["ivr"].engine.dispose()
    assert turn.dialed is None
    assert "операторы недоступны" in turn.text
    assert turn.gather is not None


def test_bad_check_digit_is_told_apart_from_unknown_contract(call: Caller) -> None:
    to_contract_entry(call)
    mistyped = call.press("590000000017#")
    assert "ошибка" in mistyped.said[0]
    assert "Введите номер договора ещё раз" in mistyped.text
    unknown = call.press("590000000075#")
    assert unknown.said[0] == "Договор с таким номером не найден."
    assert "Введите номер договора ещё раз" in unknown.text


def test_wrong_length_is_its_own_answer(call: Caller) -> None:
    to_contract_entry(call)
    turn = call.press("5900#")
    assert turn.said[0] == "Номер договора состоит из 12 цифр."


def test_third_wrong_number_ends_the_call_no_fourth_try(call: Caller) -> None:
    to_contract_entry(call)
    call.press("590000000017")
    call.press("590000000075")
    turn = call.press("123#")
    assert turn.said[-1].startswith("Слишком много неудачных попыток")
    assert turn.verbs[-1] == "Hangup"
    assert turn.gather is None


def test_a_good_number_after_wrong_ones_is_told(call: Caller) -> None:
    to_contract_entry(call)
    call.press("590000000017")
    call.press("590000000075")
    turn = call.press("590000000018")
    assert "одна тысяча двести тридцать четыре рубля" in turn.text


@pytest.mark.parametrize("path", ["/voice", "/voice/step?s=main&l=ru-RU&p=1&k=0"])
def test_missing_signature_is_refused(client: FlaskClient, path: str) -> None:
    response = client.post(path, data={"From": "+73422000001", "Digits": "1"})
    assert response.status_code == 403


def test_wrong_signature_is_refused(client: FlaskClient) -> None:
    params = {"From": "+73422000001", "To": "+73422195195", "CallSid": "CA1"}
    forged = sign(f"{BASE_URL}/voice", params, token="not-the-token")
    response = client.post("/voice", data=params, headers={"X-Twilio-Signature": forged})
    assert response.status_code == 403


def test_signature_of_other_parameters_is_refused(client: FlaskClient) -> None:
    signed = {"From": "+73422000001", "Digits": "1"}
    sent = {"From": "+73422000001", "Digits": "590000000018"}
    path = "/voice/step?s=contract&l=ru-RU&p=1&k=0"
    headers = {"X-Twilio-Signature": sign(BASE_URL + path, signed)}
    assert client.post(path, data=sent, headers=headers).status_code == 403


def test_public_url_is_what_is_checked(app: Flask) -> None:
    app.extensions["ivr"].public_url = "https://hotline.example.test"
    params = {"From": "+73422000001", "To": "+73422195195", "CallSid": "CA1"}
    client = app.test_client()
    local = sign(f"{BASE_URL}/voice", params)
    assert (
        client.post("/voice", data=params, headers={"X-Twilio-Signature": local}).status_code == 403
    )
    public = sign("https://hotline.example.test/voice", params)
    assert (
        client.post("/voice", data=params, headers={"X-Twilio-Signature": public}).status_code
        == 200
    )


def test_broken_ledger_gives_the_apology_with_200(app: Flask, call: Caller) -> None:
    to_contract_entry(call)
    app.extensions["ivr"].engine.dispose()
    from sqlalchemy import create_engine

    app.extensions["ivr"].engine = create_engine("sqlite:////nonexistent-dir/ledger.sqlite3")
    turn = call.press("590000000018")
    assert turn.said == ["Извините, произошла техническая ошибка. Пожалуйста, позвоните позже."]
    assert turn.verbs == ["Say", "Hangup"]


def test_garbled_call_state_gives_the_apology(client: FlaskClient) -> None:
    path = "/voice/step?s=nowhere&l=xx"
    params = {"From": "+73422000001"}
    response = client.post(
        path, data=params, headers={"X-Twilio-Signature": sign(BASE_URL + path, params)}
    )
    assert response.status_code == 200
    root = ET.fromstring(response.data)
    # No prompt file for "xx": the last-resort apology, each language in its own voice.
    assert [el.tag for el in root] == ["Say", "Say", "Hangup"]
    says = [(say.get("language"), say.get("voice")) for say in root.iter("Say")]
    assert says == [("ru-RU", "Polly.Tatyana"), ("en-US", "Polly.Joanna")]


def test_fallback_answers_without_the_ledger(app: Flask, call: Caller) -> None:
    app.extensions["ivr"].engine = None  # any use of the ledger would raise
    turn = call.start("/voice/fallback")
    assert turn.said == ["Извините, произошла техническая ошибка. Пожалуйста, позвоните позже."]
    assert turn.verbs == ["Say", "Hangup"]


def test_status_callback_is_acknowledged(call: Caller) -> None:
    # Twilio posts a status callback but plays nothing it answers: `post` does not follow.
    turn = call.post("/voice/status", {"CallStatus": "completed", "CallDuration": "42"})
    assert turn.verbs == []


def test_future_entries_do_not_count_until_their_time(app: Flask) -> None:
    with freeze_time("2099-11-30 18:59:59"):  # a second before 2099-12-01 00:00+05:00
        before = Caller(app)
        to_contract_entry(before)
        assert "одна тысяча рублей" in before.press("590000000059").said[1]
    with freeze_time("2099-11-30 19:00:00"):
        after = Caller(app)
        to_contract_entry(after)
        assert "На вашем счёте триста пятьдесят рублей." in after.press("590000000059").said[1]


def test_caller_from_english_line_hears_english(app: Flask) -> None:
    call = Caller(app, hotline="+73422195196")
    assert "Hello" in call.start().said[0]
