"""The operators' dashboard: `GET /dashboard?day=YYYY-MM-DD`, one page about one day.

Its numbers are a `stats.DayStats` read by `ivr.db.day_stats`, the function `ivr stats
--zone` prints from, so the page and the terminal cannot disagree. The day and its hours
are in the hotline's time zone (`hotline_zone`). Charts are SVG drawn here (`charts`); the page
loads nothing from elsewhere. It never shows a contract number: the call log only holds
masked ones and the page shows none at all.

Off (404) unless `IVR_DASHBOARD_TOKEN` is set; then HTTP basic auth (any user name, the
token as the password, so a browser asks for it) or `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
import logging
import os
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Flask, Response, abort, current_app, render_template, request
from werkzeug.exceptions import HTTPException

from ivr import db, logs, stats
from ivr.errors import LedgerError
from ivr.hotlines import HotlineSettings
from ivr.phones import time_zone
from ivr.web import charts
from ivr.web.services import services

# The hotline's time zone when its numbers do not tell one: the line's home, +7 342 (Perm).
FALLBACK_ZONE = ZoneInfo("Asia/Yekaterinburg")
# Russian zones by the city they keep time for, in the genitive ("время Екатеринбурга").
ZONE_CITIES = {
    "Europe/Kaliningrad": "Калининграда",
    "Europe/Moscow": "Москвы",
    "Europe/Samara": "Самары",
    "Asia/Yekaterinburg": "Екатеринбурга",
    "Asia/Omsk": "Омска",
    "Asia/Novosibirsk": "Новосибирска",
    "Asia/Krasnoyarsk": "Красноярска",
    "Asia/Irkutsk": "Иркутска",
    "Asia/Yakutsk": "Якутска",
    "Asia/Vladivostok": "Владивостока",
    "Asia/Magadan": "Магадана",
    "Asia/Kamchatka": "Камчатки",
}
REALM = "IVR dashboard"
log = logging.getLogger(__name__)

blueprint = Blueprint("dashboard", __name__, template_folder="templates")

MONTHS = (
    "января", "февраля", "марта", "апреля", "мая", "июня",
    "июля", "августа", "сентября", "октября", "ноября", "декабря",
)  # fmt: skip
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")
STAGES = {
    "greeting": "Приветствие",
    "menu": "Прошли меню",
    "contract_keyed": "Ввели номер договора",
    "balance_told": "Узнали баланс",
    "after_balance": "Выбор после баланса",
}
STATES = {
    "answer": "Приветствие",
    "main": "Главное меню",
    "subscriber": "Меню абонента",
    "billing": "Меню «Баланс и платежи»",
    "contract": "Ввод номера договора",
    "after_balance": "После баланса",
}
HOW = {"no answer to the prompt": "молчали до конца", "hung up": "положили трубку"}
OUTCOMES = {
    "menu": "Переход по меню",
    "balance_told": "Баланс озвучен",
    "wrong_number": "Неверный номер",
    "unknown_contract": "Договор не найден",
    "too_many_tries": "Слишком много попыток",
    "locked_out": "Номер заблокирован",
    "no_input": "Нет ответа",
    "invalid_key": "Неверная клавиша",
    "gave_up": "Молчали до конца",
    "operator": "Соединение с оператором",
    "no_operator": "Оператор не настроен",
    "hung_up": "Завершили звонок",
    "apology": "Извинение (сбой)",
    "left_at_prompt": "Положили трубку",
    stats.PROMISE_TAKEN: "Обещанный платёж",
}
CHOICES = {
    "balance_told": "Повторить баланс",
    "to_contract": "Другой договор",
    "hung_up": "Завершить звонок",
    "operator": "Оператор",
    "no_operator": "Оператор (не настроен)",
    "invalid_key": "Неверная клавиша",
    stats.PROMISE_TAKEN: "Обещанный платёж",
}
STATUSES = {
    "completed": "завершён",
    "busy": "занято",
    "no-answer": "без ответа",
    "failed": "ошибка",
    "canceled": "отменён",
}


def hotline_zone(settings: HotlineSettings) -> ZoneInfo:
    """Return the hotline's time zone: that of the first number in its settings file.

    `ivr.phones.time_zone` reads it from the number's area (+7 342: Asia/Yekaterinburg);
    a number whose area spans several zones, or settings that list no number, give
    FALLBACK_ZONE.
    """
    for number in settings.numbers:
        return time_zone(number, default=FALLBACK_ZONE)
    return FALLBACK_ZONE


def install(app: Flask) -> None:
    """Read the token (config, else IVR_DASHBOARD_TOKEN) and add the page to `app`."""
    app.config.setdefault("DASHBOARD_TOKEN", _environ("IVR_DASHBOARD_TOKEN"))
    app.register_blueprint(blueprint)


def _environ(name: str) -> str | None:
    return os.environ.get(name) or None


def token() -> str | None:
    """Return the dashboard token of the current app, None when the page is off."""
    value = current_app.config.get("DASHBOARD_TOKEN")
    return str(value) if value else None


def authorised(expected: str) -> bool:
    """Tell whether the request carries the token: as a basic-auth password or a bearer."""
    auth = request.authorization
    if auth is None:
        return False
    given = auth.password if auth.type == "basic" else auth.token if auth.type == "bearer" else None
    if not given:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def challenge() -> Response:
    """Answer 401 with a Basic challenge, so that a browser asks for the token."""
    return Response(
        "Unauthorized: the dashboard token is needed\n",
        401,
        {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        mimetype="text/plain",
    )


def guard() -> Response | None:
    """Refuse a request without the token (404 when there is no token at all)."""
    expected = token()
    if expected is None:
        abort(404)
    return None if authorised(expected) else challenge()


@blueprint.get("/dashboard")
def page() -> Response | str:
    """Render one day of the hotline for operators."""
    refused = guard()
    if refused is not None:
        return refused
    shared = services()
    zone = hotline_zone(shared.settings)
    day = _day(request.args.get("day"), zone)
    # This process's pending call-log rows first; another worker's are at most a batch late.
    shared.call_log.flush()
    day_stats = db.day_stats(shared.engine, day, zone)
    # Fault texts quote prompt lines; masked like a log line in case one holds a number.
    faults = {
        name: [logs.FILTER.mask(fault) for fault in found]
        for name, found in shared.prompts.faults.items()
    }
    response = Response(render_template("dashboard.html", **view(day_stats, faults)))
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.errorhandler(Exception)
def _failed(error: Exception) -> Response | HTTPException:
    """Say the page failed, as a page: the app's handler would answer with TwiML for Twilio."""
    if isinstance(error, HTTPException):
        return error
    why = str(error) if isinstance(error, LedgerError) else db.reason(error)
    log.error("the dashboard failed: %s", why)
    return Response(
        "Панель не открылась: не удалось прочитать журнал звонков (подробности в логе сервера).\n",
        500,
        mimetype="text/plain",
    )


def _day(raw: str | None, zone: ZoneInfo) -> date:
    if not raw:
        return datetime.now(zone).date()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        abort(400, description="day must be YYYY-MM-DD")


def view(day_stats: stats.DayStats, faults: dict[str, list[str]]) -> dict[str, Any]:
    """Turn a day's stats into what the template shows (labels in Russian)."""
    s = day_stats
    by_hour = [s.by_hour[hour] for hour in range(24)]
    busiest = max(range(24), key=lambda hour: by_hour[hour])
    stages = [charts.Stage(key, STAGES[key], s.funnel[key]) for key in stats.FUNNEL]
    day = s.day
    return {
        "day": day,
        "day_words": f"{_day_month(day)} {day.year}",
        "weekday": WEEKDAYS[day.weekday()],
        "previous": (day - timedelta(days=1)).isoformat(),
        "previous_words": _day_month(day - timedelta(days=1)),
        "next": (day + timedelta(days=1)).isoformat(),
        "next_words": _day_month(day + timedelta(days=1)),
        "zone": ZONE_CITIES.get(s.zone, s.zone),
        "zone_id": s.zone,
        "stats": s,
        "tiles": [
            ("calls", "Звонков", s.calls, ""),
            ("heard_balance", "Узнали баланс", s.heard_balance, "good"),
            ("promises_taken", "Обещанных платежей", s.promises_taken, "good"),
            ("too_many_tries", "Слишком много попыток", s.outcomes["too_many_tries"], "warn"),
            ("locked_out", "Блокировок", s.outcomes["locked_out"], "warn"),
            ("apology", "Извинений (сбоев)", s.outcomes["apology"], "bad"),
        ],
        "hour_chart": charts.hour_bars(by_hour, busiest_label=f"Больше всего в {busiest:02d}:00"),
        "busiest": busiest if s.calls else None,
        "funnel_chart": charts.funnel(stages),
        "gave_up": [
            (state, how, STATES.get(state, state), HOW.get(how, how), count)
            for (state, how), count in _ranked(s.gave_up_at)
        ],
        "operator_at": [(key, STATES.get(key, key), n) for key, n in _ranked(s.operator_at)],
        "choices": [(key, _choice_label(key), n) for key, n in _ranked(s.after_balance)],
        "outcomes": [(key, OUTCOMES.get(key, key), n) for key, n in _ranked(s.outcomes)],
        "endings": [(key, OUTCOMES.get(key, key), n) for key, n in _ranked(s.endings)],
        "statuses": [(key, STATUSES.get(key, key), n) for key, n in _ranked(s.statuses)],
        "average_s": round(s.talk_time_s / sum(s.statuses.values())) if s.statuses else None,
        "faults": faults,
        "fault_count": sum(len(found) for found in faults.values()),
    }


def _day_month(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]}"


def _choice_label(key: str) -> str:
    if key in CHOICES:
        return CHOICES[key]
    if key.startswith("to_"):
        return "Назад: " + STATES.get(key[3:], key[3:])
    return OUTCOMES.get(key, key)


def _ranked(counts: Any) -> list[tuple[Any, int]]:
    """Order a Counter as `ivr stats` does: most first, then by name."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))
