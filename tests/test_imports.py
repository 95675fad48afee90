"""The import's fast reader (ivr.db.import_parse): the same rows and errors as the exact one."""

from __future__ import annotations

import multiprocessing
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from stdnum import luhn

from ivr import db
from ivr.contract import luhn_ascii, with_check_digit
from ivr.db import import_parse
from ivr.db.import_parse import parsed, sqlite_rows, staged_batches, staged_rows
from ivr.errors import ImportFileError

HEADER = "contract,posted_at,amount,kind,memo\n"
CONTRACT = "590000000018"


def canonical(count: int, start: int = 0) -> list[str]:
    """`count` canonical lines, as billing exports them."""
    return [
        f"{with_check_digit(f'{59_000_000_000 + n % 37:011d}')},"
        f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}T{n % 24:02d}:{n % 60:02d}:07.{n + 1:06d}+00:00,"
        f"{-(n % 500)}.{n % 100:02d},charge,Абонентская плата {n}\n"
        for n in range(start, start + count)
    ]


# Rows the fast path hands to the exact rules, one kind each.
ODD_LINES = [
    f"{CONTRACT},2026-11-30T17:00:00+05:00,+5,payment,another offset and a plus\n",
    f"{CONTRACT},2026-11-30T12:00:00Z,007.5,adjustment,Z and leading zeros\n",
    f"{CONTRACT},2026-11-30T12:00:00.000000+00:00,-1.00,charge,a whole second\n",
    f"{CONTRACT},2026-11-30T12:00:00.5+00:00,1.50,payment,tab\tand back\\slash\n",
    f"{CONTRACT},2026-11-30T12:00:00.100000+00:00, 2.00 ,payment, spaces\n",
]
QUOTED = f'{CONTRACT},2026-11-30T12:00:00.123456+00:00,3.00,payment,"a, quoted\nmemo"\n'


def write(tmp_path: Path, lines: list[str], name: str = "x.csv", newline: str = "\n") -> Path:
    path = tmp_path / name
    text = HEADER + "".join(lines)
    path.write_bytes(text.replace("\n", newline).encode())
    return path


def rows_of(path: Path, sqlite: bool) -> list[tuple[Any, ...]]:
    """The rows `staged_batches` yields, decoded: (n, contract, time, amount, kind, memo, key)."""
    rows: list[tuple[Any, ...]] = []
    for count, payload in staged_batches(path, sqlite):
        batch = _sqlite_batch(payload) if sqlite else _copy_batch(payload)
        assert len(batch) == count
        rows.extend((n, *row) for n, row in enumerate(batch, start=len(rows) + 1))
    return rows


def _sqlite_batch(payload: Any) -> list[tuple[Any, ...]]:
    groups, rest = sqlite_rows(payload, 3)
    batch = []
    for group in groups:
        fields, keys = group[:15], group[15:]
        batch.extend((*fields[5 * i : 5 * i + 5], keys[i]) for i in range(3))
    batch.extend(tuple(row) for row in rest)
    return batch


def _copy_batch(payload: bytes) -> list[tuple[Any, ...]]:
    batch = []
    unescape = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
    for number, line in enumerate(payload.decode().splitlines(), start=1):
        *fields, key, n = line.split("\t")
        memo = fields[4]
        for escaped, plain in unescape.items():
            memo = memo.replace(escaped, plain)
        assert key.startswith("\\\\x")
        batch.append((*fields[:4], memo, bytes.fromhex(key[3:])))
        assert int(n) >= number
    return batch


def exact(path: Path) -> list[tuple[Any, ...]]:
    """What the exact reader stages, numbered from 1, each time with its microseconds."""
    rows = []
    for n, contract, stamp, amount, kind, memo, key in staged_rows(path, sqlite=False):
        moment = datetime.fromisoformat(stamp).isoformat(timespec="microseconds")
        rows.append((n + 1, contract, moment, amount, kind, memo, key))
    return rows


@pytest.mark.parametrize("block", [64, 300, 1 << 20])
@pytest.mark.parametrize("sqlite", [True, False])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_reader_stages_what_the_exact_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, sqlite: bool, newline: str
) -> None:
    monkeypatch.setattr(import_parse, "BLOCK_BYTES", block)
    lines = canonical(40) + ODD_LINES + canonical(30, 40) + [QUOTED] + canonical(5, 70)
    path = write(tmp_path, lines, newline=newline)
    assert rows_of(path, sqlite) == exact(path)
    assert len(exact(path)) == 40 + len(ODD_LINES) + 30 + 1 + 5


def test_fast_reader_takes_a_last_line_without_newline_and_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (HEADER + "".join(canonical(3))).rstrip("\n").encode())
    assert rows_of(path, sqlite=True) == exact(path)
    assert len(exact(path)) == 3


@pytest.mark.parametrize("block", [64, 1 << 20])
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (f"{CONTRACT[:-1]}7,2026-11-01T00:00:00.100000+00:00,1.00,payment,", "check digit"),
        (f"{CONTRACT},2026-02-30T00:00:00.100000+00:00,1.00,payment,", "ISO 8601"),
        (f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.001,payment,", "at most 2 decimals"),
        (f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.00,gift,", "kind 'gift'"),
        (f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.00,payment,a,b", "fields"),
        ("", "fields"),
    ],
)
def test_fast_reader_names_the_line_of_a_bad_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, bad: str, reason: str
) -> None:
    monkeypatch.setattr(import_parse, "BLOCK_BYTES", block)
    path = write(tmp_path, [*canonical(25), bad + "\n", *canonical(3, 25)])
    for sqlite in (True, False):
        with pytest.raises(ImportFileError) as caught:
            list(staged_batches(path, sqlite))
        assert str(caught.value).startswith(f"{path}:27: ")
        assert reason in str(caught.value)


def test_after_a_quoted_memo_lines_are_still_counted(tmp_path: Path) -> None:
    bad = f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.00,gift,\n"
    path = write(tmp_path, [*canonical(3), QUOTED, *canonical(2, 3), bad])
    with pytest.raises(ImportFileError, match=f"{path}:9: kind 'gift'"):
        list(staged_batches(path, sqlite=True))


def test_a_wrong_header_is_refused_by_the_fast_reader(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("contract,when,amount\n" + "".join(canonical(2)), encoding="utf-8")
    with pytest.raises(ImportFileError, match=":1: the header must be"):
        list(staged_batches(path, sqlite=False))


def test_fast_reader_reports_what_it_has_read(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(import_parse, "BLOCK_BYTES", 1000)
    path = write(tmp_path, canonical(200))
    seen: list[int] = []
    list(staged_batches(path, sqlite=True, report_read=seen.append))
    assert len(seen) > 5
    assert seen == sorted(seen)
    assert seen[-1] == path.stat().st_size


# --- the second process ------------------------------------------------------------------


@pytest.fixture
def in_background(monkeypatch: pytest.MonkeyPatch) -> None:
    """Check every file, however small, in a child process."""
    monkeypatch.setattr(import_parse, "BACKGROUND_BYTES", 0)
    monkeypatch.setattr(import_parse, "BLOCK_BYTES", 2000)


@pytest.mark.usefixtures("in_background")
def test_a_file_checked_in_a_child_process_imports_the_same(
    engine: Engine, tmp_path: Path
) -> None:
    path = write(tmp_path, canonical(300) + ODD_LINES + [QUOTED])
    seen: list[tuple[int, int]] = []
    report = db.import_csv(engine, path, checking=lambda done, size: seen.append((done, size)))
    assert (report.rows, report.added) == (306, 306)
    assert seen[-1] == (path.stat().st_size, path.stat().st_size)
    assert db.import_csv(engine, path).added == 0
    with Session(engine) as session:
        memos = set(session.scalars(select(db.Entry.memo)))
    assert "a, quoted\nmemo" in memos
    assert "tab\tand back\\slash" in memos
    assert not multiprocessing.active_children()


@pytest.mark.usefixtures("in_background")
def test_a_bad_row_found_in_the_child_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    bad = f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.00,gift,\n"
    path = write(tmp_path, [*canonical(200), bad, *canonical(100, 200)])
    with pytest.raises(ImportFileError, match=f"{path}:202: kind 'gift'"):
        db.import_csv(engine, path)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(db.Entry)) == 0
    assert not multiprocessing.active_children()


def test_a_failed_import_leaves_its_sqlite_connection_as_it_found_it(
    engine: Engine, tmp_path: Path
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the connection settings the import changes are SQLite's")
    bad = f"{CONTRACT},2026-11-01T00:00:00.100000+00:00,1.00,gift,\n"
    settings = ("foreign_keys", "temp_store", "cache_size")
    with engine.connect() as connection:
        before = [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in settings]
    with pytest.raises(ImportFileError):
        db.import_csv(engine, write(tmp_path, [*canonical(20), bad]))
    # One connection in the pool: the import's own, back with the engine's settings.
    with engine.connect() as connection:
        after = [connection.exec_driver_sql(f"PRAGMA {name}").scalar() for name in settings]
        tables = connection.exec_driver_sql("SELECT name FROM temp.sqlite_master").all()
    assert after == before == [1, 0, -2000]
    assert tables == []


@pytest.mark.usefixtures("in_background")
def test_leaving_early_stops_the_child(tmp_path: Path) -> None:
    path = write(tmp_path, canonical(2000))
    with parsed(path, sqlite=True) as batches:
        next(batches)
    assert not multiprocessing.active_children()


@pytest.mark.usefixtures("in_background")
def test_a_file_that_is_not_utf8_fails_as_before(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(HEADER.encode() + "".join(canonical(2)).encode("cp1251"))
    with pytest.raises(UnicodeDecodeError), parsed(path, sqlite=False) as batches:
        list(batches)


def test_luhn_of_ascii_digits_agrees_with_python_stdnum() -> None:
    rng = random.Random(11)
    for _ in range(20_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.choice((11, 12, 13))))
        assert luhn_ascii(digits.encode()) == luhn.is_valid(digits)
    assert luhn_ascii(CONTRACT.encode())
