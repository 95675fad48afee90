"""GET /dashboard: the token, the day in the hotline's zone, and numbers equal to `ivr stats`."""

from __future__ import annotations

import base64
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from freezegun import freeze_time
from freezegun.api import FrozenDateTimeFactory
from sqlalchemy import text

from ivr import calllog, create_app, db, stats
from ivr.cli import main
from ivr.hotlines import HotlineSettings, load_settings
from ivr.languages import LANGUAGES
from ivr.web.dashboard import FALLBACK_ZONE, hotline_zone
from tests.conftest import AUTH_TOKEN, DEMO_CSV, Caller, database_url, engine_of, fresh_schema

TOKEN = "dashboard-token-0123456789"
# The zone of the hotline's number in data/hotline.toml (+7 342, Perm).
HOTLINE_ZONE = ZoneInfo("Asia/Yekaterinburg")
SETTINGS = Path(__file__).resolve().parent.parent / "data" / "hotline.toml"
DAY = date(2026, 11, 30)  # a day in the hotline's zone (UTC+5)
KNOWN = "590000000018"
OTHER = "590000000026"
MISTYPED = "590000000017"
UNKNOWN = "590000000075"
PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def local(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    """Return a moment of the hotline's day, in UTC (what the clock and the log hold)."""
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=HOTLINE_ZONE).astimezone(UTC)


def to_contract(call: Caller) -> None:
    call.start()
    for _ in range(3):
        call.press("1")


def balance_then(*keys: str) -> list[str]:
    return ["to_contract", KNOWN, *keys]


# A day of calls, by the hotline's local time: (hour, minute, what the caller does).
# "status" ends a call with Twilio's status callback; the rest are keys or "silence".
SCRIPTS: dict[str, list[str]] = {
    "balance_hang_up": balance_then("3"),
    "balance_repeat": balance_then("1", "3"),
    "balance_another": balance_then("2", OTHER, "3"),
    "balance_left": balance_then("status"),
    "silent": ["start", "silence", "silence", "silence"],
    "operator": ["start", "0"],
    "wrong_thrice": ["to_contract", MISTYPED, UNKNOWN, "5900#"],
    "left_at_entry": ["to_contract", "status"],
    "tariffs": ["start", "1", "2", "status"],
    "invalid_then_left": ["start", "7", "status"],
}
DAY_PLAN = [
    (0, 30, "balance_hang_up"),  # 19:30 UTC the day before: the zone decides the day
    (8, 5, "balance_hang_up"),
    (8, 40, "silent"),
    (9, 10, "balance_repeat"),
    (9, 15, "tariffs"),
    (9, 50, "balance_left"),
    (10, 0, "balance_hang_up"),
    (10, 5, "balance_hang_up"),
    (10, 12, "wrong_thrice"),
    (10, 20, "balance_another"),
    (10, 31, "operator"),
    (10, 45, "balance_hang_up"),
    (11, 2, "balance_left"),
    (11, 30, "left_at_entry"),
    (11, 41, "balance_hang_up"),
    (12, 15, "invalid_then_left"),
    (13, 5, "balance_repeat"),
    (14, 30, "balance_hang_up"),
    (15, 10, "operator"),
    (16, 20, "silent"),
    (17, 45, "balance_hang_up"),
    (18, 0, "balance_another"),
    (18, 10, "balance_hang_up"),
    (18, 25, "wrong_thrice"),
    (18, 40, "balance_left"),
    (19, 5, "balance_hang_up"),
    (19, 30, "tariffs"),
    (20, 50, "balance_hang_up"),
    (23, 40, "balance_repeat"),
]


def run_call(client: FlaskClient, caller: str, script: list[str]) -> Caller:
    call = Caller(client, caller=caller)
    for action in script:
        if action == "start":
            call.start()
        elif action == "to_contract":
            to_contract(call)
        elif action == "silence":
            call.silence()
        elif action == "status":
            call.post("/voice/status", {"CallStatus": "completed", "CallDuration": "37"})
        else:
            call.press(action)
    return call


def seed_day(app: Flask) -> None:
    """Fill the call log with DAY_PLAN, one call the day before, an apology and two promises."""
    client = app.test_client()
    with freeze_time(local(22, 0, DAY - timedelta(days=1))) as clock:
        assert isinstance(clock, FrozenDateTimeFactory)
        run_call(client, "+73422000999", SCRIPTS["operator"])  # the day before, locally
        for number, (hour, minute, name) in enumerate(DAY_PLAN):
            clock.move_to(local(hour, minute))
            run_call(client, f"+7342200{number:04d}", SCRIPTS[name])
    engine = engine_of(app)
    # What no webhook produces yet: an apology, and the self-service feature's promises,
    # each taken after a balance was told.
    extra = [("CAapology", local(12, 40), None, None, calllog.APOLOGY, None)]
    for sid, hour, minute, last_state in (("CApromise1", 14, 0, "after_balance"),
                                          ("CApromise2", 18, 30, None)):  # fmt: skip
        path = [(None, "main"), ("main", "subscriber"), ("subscriber", "billing"),
                ("billing", "contract")]  # fmt: skip
        at = local(hour, minute)
        extra += [(sid, at, state, nxt, "menu", None) for state, nxt in path]
        extra.append((sid, at, "contract", "after_balance", "balance_told", KNOWN))
        extra.append((sid, at, "after_balance", last_state, stats.PROMISE_TAKEN, None))
    for sid, at, state, next_state, outcome, contract in extra:
        step = calllog.Step(sid, "+73422000555", at, state, next_state, outcome, contract)
        assert db.log_step(engine, step)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    """The hotline with the dashboard on, its own copy of the prompts, on a demo ledger."""
    app = dashboard_app(tmp_path)
    yield app
    engine_of(app).dispose()


def dashboard_app(tmp_path: Path) -> Flask:
    """Create the hotline with the dashboard's token and a copy of the prompts; fill the ledger."""
    shutil.copytree(PROMPTS, tmp_path / "prompts")
    app = create_app(
        {
            "DATABASE_URL": database_url(tmp_path),
            "AUTH_TOKEN": AUTH_TOKEN,
            "DASHBOARD_TOKEN": TOKEN,
            "PROMPTS_DIR": str(tmp_path / "prompts"),
            "SETTINGS_FILE": str(SETTINGS),
        }
    )
    engine = engine_of(app)
    fresh_schema(engine)
    db.import_csv(engine, DEMO_CSV)
    return app


def basic(password: str, user: str = "operator") -> dict[str, str]:
    pair = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- what the page shows, read back -------------------------------------------------------


@dataclass
class Shown:
    """The numbers a dashboard page carries in its data-* attributes."""

    values: dict[str, dict[str, int]] = field(default_factory=dict)  # kind -> key -> number
    text: str = ""

    def of(self, kind: str) -> dict[str, int]:
        return self.values.get(kind, {})


KINDS = {
    "data-stat": "stat",
    "data-outcome": "outcome",
    "data-ending": "ending",
    "data-gave-up": "gave_up",
    "data-operator-at": "operator_at",
    "data-choice": "choice",
    "data-status": "status",
}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.shown = Shown()
        self._open: tuple[str, str] | None = None
        self._texts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "data-hour" in found:
            self._put("hour", found["data-hour"] or "", found.get("data-count"))
        if "data-stage" in found:
            self._put("stage", found["data-stage"] or "", found.get("data-count"))
        for attribute, kind in KINDS.items():
            if attribute in found:
                self._open = (kind, found[attribute] or "")

    def handle_data(self, data: str) -> None:
        self._texts.append(data)
        if self._open is not None and data.strip():
            self._put(*self._open, data.strip())
            self._open = None

    def _put(self, kind: str, key: str, number: str | None) -> None:
        assert number is not None and number.isdigit(), (kind, key, number)
        self.shown.values.setdefault(kind, {})[key] = int(number)


def read_page(html: str) -> Shown:
    reader = _Reader()
    reader.feed(html)
    reader.shown.text = " ".join(reader._texts)
    return reader.shown


def expected(day_stats: stats.DayStats) -> dict[str, dict[str, int]]:
    """Return what the page must show for a day: everything `ivr stats` prints, and more."""
    s = day_stats
    return {
        "stat": {
            "calls": s.calls,
            "heard_balance": s.heard_balance,
            "promises_taken": s.promises_taken,
            "too_many_tries": s.outcomes["too_many_tries"],
            "locked_out": s.outcomes["locked_out"],
            "apology": s.outcomes["apology"],
            "talk_time_s": s.talk_time_s,
            "prompt_faults": 0,
        },
        "outcome": dict(s.outcomes),
        "ending": dict(s.endings),
        "gave_up": {f"{state}|{how}": n for (state, how), n in s.gave_up_at.items()},
        "operator_at": dict(s.operator_at),
        "choice": dict(s.after_balance),
        "status": dict(s.statuses),
        "hour": {str(hour): s.by_hour[hour] for hour in range(24)},
        "stage": {stage: s.funnel[stage] for stage in stats.FUNNEL},
    }


def day_stats(app: Flask, day: date = DAY) -> stats.DayStats:
    return db.day_stats(engine_of(app), day, HOTLINE_ZONE)


def stats_cli(app: Flask, day: date = DAY) -> str:
    """Run `ivr stats` for the hotline's day, as an operator would."""
    result = CliRunner().invoke(
        main,
        [
            "stats", "--day", day.isoformat(), "--zone", str(HOTLINE_ZONE),
            "--database-url", app.config["DATABASE_URL"],
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output


def cli_numbers(output: str) -> dict[str, dict[str, int]]:
    """Read `ivr stats` output back into the page's kinds of numbers."""
    sections = {
        "Step outcomes:": "outcome",
        "How calls ended (their last step):": "ending",
        "Where callers gave up without hearing a balance:": "gave_up",
        "Call statuses from Twilio:": "status",
        "Funnel (calls that got this far):": "stage",
        "Choices after the balance:": "choice",
        "Operator asked for at:": "operator_at",
        "Calls by the hour they began:": "hour",
    }
    numbers: dict[str, dict[str, int]] = {kind: {} for kind in sections.values()}
    first = re.match(r"Calls on \S+ \(\S+\): (\d+); (\d+) heard a balance", output)
    assert first is not None, output
    numbers["stat"] = {"calls": int(first[1]), "heard_balance": int(first[2])}
    promises = re.search(r"^Promised payments taken: (\d+)$", output, re.M)
    assert promises is not None
    numbers["stat"]["promises_taken"] = int(promises[1])
    talk = re.search(r"talk time (\d+) s", output)
    numbers["stat"]["talk_time_s"] = int(talk[1]) if talk else 0
    kind = None
    for line in output.splitlines():
        if line in sections:
            kind = sections[line]
        elif not line.startswith("  "):
            kind = None
        elif kind == "gave_up":
            found = re.fullmatch(r"  (\S+)\s+(\d+)  \((.+)\)", line)
            assert found is not None, line
            numbers[kind][f"{found[1]}|{found[3]}"] = int(found[2])
        elif kind == "hour":
            found = re.fullmatch(r"  (\d\d):00\s+(\d+)", line)
            assert found is not None, line
            numbers[kind][str(int(found[1]))] = int(found[2])
        elif kind is not None and "talk time" not in line:
            name, count = line.split()
            numbers[kind][name] = int(count)
    return numbers


def agree_with_the_cli(shown: Shown, cli: dict[str, dict[str, int]]) -> None:
    """Check every number `ivr stats` printed is the one on the page."""
    for kind, numbers in cli.items():
        page = shown.of(kind)
        if kind == "hour":  # the page draws every hour; the terminal lists the busy ones
            page = {hour: n for hour, n in page.items() if n}
        if kind == "stat":
            page = {key: page[key] for key in numbers}
        assert page == numbers, kind


# --- the tests ----------------------------------------------------------------------------


def test_the_hotlines_zone_is_that_of_its_number(tmp_path: Path) -> None:
    assert hotline_zone(load_settings(SETTINGS, LANGUAGES)) == HOTLINE_ZONE
    moscow = tmp_path / "moscow.toml"
    moscow.write_text('[numbers."+7 495 123-45-67"]\nlanguage = "ru-RU"\n', encoding="utf-8")
    assert hotline_zone(load_settings(moscow, LANGUAGES)) == ZoneInfo("Europe/Moscow")
    # A mobile number's area spans every Russian zone; no number at all says nothing.
    mobile = tmp_path / "mobile.toml"
    mobile.write_text('[numbers."+7 912 000-00-00"]\nlanguage = "ru-RU"\n', encoding="utf-8")
    assert hotline_zone(load_settings(mobile, LANGUAGES)) == FALLBACK_ZONE
    no_numbers = HotlineSettings(load_settings(SETTINGS, LANGUAGES).default)
    assert hotline_zone(no_numbers) == FALLBACK_ZONE


def test_the_page_is_off_without_a_token(tmp_path: Path) -> None:
    app = create_app({"DATABASE_URL": database_url(tmp_path), "DASHBOARD_TOKEN": None})
    response = app.test_client().get("/dashboard", headers=basic(TOKEN))
    assert response.status_code == 404
    engine_of(app).dispose()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("wrong-token"),
        basic(TOKEN[:-1]),
        bearer("wrong-token"),
        {"Authorization": "Basic not-base64"},
        {"Authorization": f"Token {TOKEN}"},
    ],
    ids=["none", "basic-wrong", "basic-prefix", "bearer-wrong", "basic-garbled", "other-scheme"],
)
def test_wrong_or_missing_credentials_get_a_basic_challenge(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get("/dashboard", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert "Звонков" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "headers", [basic(TOKEN), basic(TOKEN, user=""), basic(TOKEN, user="кто угодно"), bearer(TOKEN)]
)
def test_the_token_opens_the_page_as_a_password_or_a_bearer(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    response = client.get(f"/dashboard?day={DAY}", headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_token_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_DASHBOARD_TOKEN", "from-the-environment")
    app = create_app({"DATABASE_URL": database_url(tmp_path)})
    client = app.test_client()
    assert client.get("/dashboard", headers=bearer(TOKEN)).status_code == 401
    fresh_schema(engine_of(app))
    assert client.get("/dashboard", headers=bearer("from-the-environment")).status_code == 200
    engine_of(app).dispose()


def test_the_page_needs_no_twilio_signature_and_webhooks_still_do(client: FlaskClient) -> None:
    assert client.get("/dashboard", headers=bearer(TOKEN)).status_code == 200
    assert client.post("/voice", data={"From": "+73422000001"}).status_code == 403


def test_a_bad_day_is_a_bad_request(client: FlaskClient) -> None:
    assert client.get("/dashboard?day=30.11.2026", headers=bearer(TOKEN)).status_code == 400


def test_the_numbers_equal_ivr_stats_for_the_hotlines_day(app: Flask, client: FlaskClient) -> None:
    seed_day(app)
    page = client.get(f"/dashboard?day={DAY}", headers=basic(TOKEN)).get_data(as_text=True)
    shown = read_page(page)
    s = day_stats(app)
    assert shown.values == expected(s)
    agree_with_the_cli(shown, cli_numbers(stats_cli(app)))
    # The seeded day as a caller lived it: the zone moved the 00:30 call onto it.
    assert s.calls == len(DAY_PLAN) + 3
    assert s.by_hour[0] == 1 and s.by_hour[10] == 6
    assert s.promises_taken == 2
    assert s.outcomes["apology"] == 1
    assert s.funnel["greeting"] > s.funnel["menu"] > s.funnel["contract_keyed"]
    assert s.funnel["contract_keyed"] > s.funnel["balance_told"] > s.funnel["after_balance"] > 0
    # In UTC the first call belongs to the day before.
    assert db.day_stats(engine_of(app), DAY).by_hour[19] == 0
    assert db.day_stats(engine_of(app), DAY - timedelta(days=1)).by_hour[19] == 1


def test_the_page_says_it_in_russian(app: Flask, client: FlaskClient) -> None:
    seed_day(app)
    text = read_page(client.get(f"/dashboard?day={DAY}", headers=bearer(TOKEN)).text).text
    for words in ("30 ноября 2026", "понедельник", "Звонки по часам", "Путь звонящего",
                  "Узнали баланс", "Обещанных платежей", "Где ушли, не узнав баланс",
                  "Просили оператора", "Ошибок нет"):  # fmt: skip
        assert words in text, words


def test_the_page_never_shows_a_contract_number(app: Flask, client: FlaskClient) -> None:
    seed_day(app)
    page = client.get(f"/dashboard?day={DAY}", headers=bearer(TOKEN)).get_data(as_text=True)
    for contract in (KNOWN, OTHER, MISTYPED, UNKNOWN):
        assert contract not in page
        assert contract[:2] + "******" + contract[-4:] not in page  # not even masked
    assert re.search(r"\d{12}", page) is None


def test_today_is_the_hotlines_today(app: Flask, client: FlaskClient) -> None:
    seed_day(app)
    with freeze_time(local(0, 10)):  # still the day before in UTC
        shown = read_page(client.get("/dashboard", headers=bearer(TOKEN)).get_data(as_text=True))
    assert shown.of("stat")["calls"] == day_stats(app).calls


def test_an_empty_day_draws_empty_charts(client: FlaskClient) -> None:
    shown = read_page(client.get("/dashboard?day=2020-01-01", headers=bearer(TOKEN)).text)
    assert shown.of("stat")["calls"] == 0
    assert set(shown.of("hour").values()) == {0}
    assert shown.of("stage") == dict.fromkeys(stats.FUNNEL, 0)
    assert "звонков не было" in shown.text


def test_prompt_file_faults_are_listed(app: Flask, client: FlaskClient) -> None:
    library = app.extensions["ivr"].prompts
    broken = Path(app.config["PROMPTS_DIR"]) / "en-US.toml"
    broken.write_text(broken.read_text(encoding="utf-8") + "\n[[[", encoding="utf-8")
    library.check_interval_s = 0
    shown = read_page(client.get("/dashboard", headers=bearer(TOKEN)).get_data(as_text=True))
    assert shown.of("stat")["prompt_faults"] >= 1
    assert "en-US.toml" in shown.text
    assert "Ошибок нет" not in shown.text


def test_a_broken_call_log_is_a_plain_error_page_not_twiml(app: Flask, client: FlaskClient) -> None:
    with engine_of(app).begin() as connection:
        connection.execute(text("DROP TABLE call_steps"))
    response = client.get("/dashboard", headers=bearer(TOKEN))
    assert response.status_code == 500
    assert response.mimetype == "text/plain"
    assert "журнал звонков" in response.get_data(as_text=True)
