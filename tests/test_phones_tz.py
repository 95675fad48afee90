"""Tests for ivr.phones.time_zone: the hotline's zone from its phone number."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from packaging.requirements import Requirement

from ivr import phones
from ivr.phones import time_zone

DEFAULT = ZoneInfo("Europe/Moscow")
OTHER_DEFAULT = ZoneInfo("Asia/Tokyo")  # a zone no number below maps to


@pytest.mark.parametrize(
    ("number", "zone"),
    [
        ("+73422000000", "Asia/Yekaterinburg"),  # Perm, the spec's example
        ("+73422123456", "Asia/Yekaterinburg"),
        ("+73432000000", "Asia/Yekaterinburg"),  # Yekaterinburg
        ("+74951234567", "Europe/Moscow"),
        ("+73833000000", "Asia/Novosibirsk"),
        ("+74232000000", "Asia/Vladivostok"),
        ("+78462000000", "Europe/Samara"),
        ("+12125551234", "America/New_York"),
        ("+14155550123", "America/Los_Angeles"),
        ("+442071234567", "Europe/London"),
        ("+61291234567", "Australia/Sydney"),
    ],
)
def test_zone_of_an_area_code(number: str, zone: str) -> None:
    found = time_zone(number, default=OTHER_DEFAULT)
    assert isinstance(found, ZoneInfo)
    assert found.key == zone


@pytest.mark.parametrize(
    "number",
    [
        "+79121234567",  # a Russian mobile: every Russian zone
        "+79001234567",
        "+78001234567",  # 8-800, free to call from anywhere in Russia
        "+61412345678",  # an Australian mobile: every Australian zone
        "+15555550100",  # a fictional +1 555 number: Etc/Unknown
        "+70000000000",  # an unassigned Russian range: Etc/Unknown
    ],
)
def test_several_zones_or_none_give_the_default(number: str) -> None:
    assert time_zone(number, default=OTHER_DEFAULT) is OTHER_DEFAULT
    assert time_zone(number, default=DEFAULT) is DEFAULT


@pytest.mark.parametrize(
    "zones", [("Nowhere/Atlantis",), ("Etc/Unknown",), (), ("Asia/Omsk", "Asia/Yakutsk")]
)
def test_zone_this_machine_lacks_gives_the_default(
    monkeypatch: pytest.MonkeyPatch, zones: tuple[str, ...]
) -> None:
    # phonenumbers' data can name a zone newer than the installed tz database.
    monkeypatch.setattr(phones.number_zones, "time_zones_for_number", lambda number: zones)
    assert time_zone("+73422000000", default=OTHER_DEFAULT) is OTHER_DEFAULT


@pytest.mark.parametrize(
    "number",
    [
        "",
        "73422000000",  # no "+"
        "83422000000",  # the Russian trunk prefix, not E.164
        "+7 342 200-00-00",  # parseable, but not written in E.164
        " +73422000000",
        "+73422000000 ",
        "+7342200000a",
        "+7",
        "+734220000001234567",  # more digits than E.164 allows
        "not a number",
    ],
)
def test_number_not_in_e164(number: str) -> None:
    with pytest.raises(ValueError, match="not a phone number in E.164"):
        time_zone(number, default=DEFAULT)


@pytest.mark.parametrize(
    ("utc", "local_day"),
    [
        # Yekaterinburg is UTC+5 all year: midnight there is 19:00 UTC the day before.
        (datetime(2025, 11, 27, 18, 59, tzinfo=UTC), date(2025, 11, 27)),
        (datetime(2025, 11, 27, 19, 0, tzinfo=UTC), date(2025, 11, 28)),
        (datetime(2025, 7, 1, 19, 0, tzinfo=UTC), date(2025, 7, 2)),  # no summer time
        (datetime(2025, 12, 31, 19, 30, tzinfo=UTC), date(2026, 1, 1)),
    ],
)
def test_dates_in_the_zone_found(utc: datetime, local_day: date) -> None:
    zone = time_zone("+73422000000", default=DEFAULT)
    assert utc.astimezone(zone).date() == local_day


def test_tzdata_is_a_dependency() -> None:
    # zoneinfo reads the OS's zone files, which Windows and slim containers lack; the
    # tzdata package is its fallback, so the hotline must not rely on the test extras
    # (where python-dateutil happens to pull tzdata in) to have it.
    requirements = [
        Requirement(line) for line in importlib.metadata.requires("ivr-balance-hotline") or []
    ]
    assert any(r.name == "tzdata" and r.marker is None for r in requirements)


def test_zones_load_without_the_os_zone_files() -> None:
    # An empty PYTHONTZPATH hides the OS's files, leaving only the tzdata package.
    env = {**os.environ, "PYTHONTZPATH": ""}
    code = (
        "import zoneinfo; assert zoneinfo.TZPATH == (), zoneinfo.TZPATH; "
        "print(zoneinfo.ZoneInfo('Asia/Yekaterinburg').key)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "Asia/Yekaterinburg"), result.stderr
