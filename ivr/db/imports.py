"""The CSV import: validate a whole billing export first, then load it in bulk, all or nothing."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from ivr.contract import CONTRACT_LENGTH, is_valid, luhn_ok, mask
from ivr.db import totals
from ivr.db.schema import KINDS, KOPECK
from ivr.errors import ImportFileError

CSV_HEADER = ("contract", "posted_at", "amount", "kind", "memo")

_AMOUNT = re.compile(r"^[+-]?\d{1,10}(\.\d{1,2})?$")


@dataclass(frozen=True)
class LedgerRow:
    """One validated CSV row."""

    contract: str
    posted_at: datetime
    amount: Decimal
    kind: str
    memo: str

    @property
    def key(self) -> bytes:
        """Identify the row by its content, so a re-import recognises it (see `content_key`)."""
        text = "|".join(
            (self.contract, self.posted_at.isoformat(), str(self.amount), self.kind, self.memo)
        )
        return content_key(text)


KEY_BYTES = 16


def content_key(text: str) -> bytes:
    """Return an entry's key: the first 16 bytes of the SHA-256 of its content's text.

    The text is `contract|posted_at (UTC, isoformat)|amount|kind|memo`. Before revision
    0003 the key was the whole digest in hex; 0003 keeps the first 32 hex digits as
    bytes (`convert_key`), so an entry imported before the upgrade and the same row
    imported after it get one key. 128 bits: for 10^9 entries the chance that any two
    different rows share a key is about 10^18 / 2^129 ~ 1.5e-21.
    """
    return hashlib.sha256(text.encode()).digest()[:KEY_BYTES]


_OLD_KEY = re.compile(r"[0-9a-f]{64}")


def convert_key(old: str | None) -> bytes | None:
    """Turn a key of before revision 0003 (64 hex digits) into today's 16 bytes.

    A key that is not such a digest (billing may have written its own) is hashed, so it
    stays unique and never matches an imported row.
    """
    if old is None:
        return None
    if _OLD_KEY.fullmatch(old):
        return bytes.fromhex(old[: 2 * KEY_BYTES])
    return content_key(old)


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    rows: int
    added: int
    accounts_added: int

    @property
    def already_present(self) -> int:
        return self.rows - self.added


def parse_row(fields: dict[str, str | None]) -> LedgerRow:
    """Validate one CSV row; raise ValueError saying what is wrong with it."""
    contract = (fields.get("contract") or "").strip()
    if not is_valid(contract):
        raise ValueError(
            # Masked: the line number finds the row, and errors may end up in logs.
            f"contract {mask(contract)!r} is not {CONTRACT_LENGTH} digits with a valid check digit"
        )
    raw_time = (fields.get("posted_at") or "").strip()
    try:
        posted_at = datetime.fromisoformat(raw_time)
    except ValueError:
        raise ValueError(f"posted_at {raw_time!r} is not an ISO 8601 timestamp") from None
    if posted_at.tzinfo is None:
        raise ValueError(f"posted_at {raw_time!r} has no UTC offset (add +00:00 or Z)")
    raw_amount = (fields.get("amount") or "").strip()
    if not _AMOUNT.match(raw_amount):
        raise ValueError(f"amount {raw_amount!r} is not a signed decimal with at most 2 decimals")
    try:
        amount = Decimal(raw_amount).quantize(KOPECK)
    except InvalidOperation:
        raise ValueError(f"amount {raw_amount!r} is not a number") from None
    kind = (fields.get("kind") or "").strip()
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    memo = fields.get("memo") or ""
    return LedgerRow(contract, posted_at.astimezone(UTC), amount, kind, memo)


def read_csv(path: Path) -> Iterator[tuple[int, LedgerRow]]:
    """Yield (line number, row) for every data row; raise ImportFileError on the first bad one."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = tuple(reader.fieldnames or ())
        if header != CSV_HEADER:
            raise ImportFileError(
                f"{path}:1: the header must be {','.join(CSV_HEADER)}, got {','.join(header)}"
            )
        for fields in reader:
            line = reader.line_num
            if None in fields or any(value is None for value in fields.values()):
                raise ImportFileError(
                    f"{path}:{line}: expected {len(CSV_HEADER)} fields, got another number"
                )
            try:
                yield line, parse_row(fields)
            except ValueError as exc:
                raise ImportFileError(f"{path}:{line}: {exc}") from None


def import_csv(
    engine: Engine,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    checking: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Load a ledger CSV in bulk, all or nothing; rows already in the ledger are skipped.

    One transaction. First every row is validated in Python and staged, ready to insert,
    in a staging table of the import's own (PostgreSQL: COPY into an unlogged table made
    in the transaction): nothing reaches the ledger's tables until the whole file has
    passed, and a bad row rolls it all back. Then the database moves the staged rows into
    `entries` in a few big statements, skipping rows whose content key is already there,
    so importing a file twice adds nothing. `month_totals` follows: PostgreSQL's
    statement triggers aggregate each statement; on SQLite the import adds the new rows'
    sums itself while its row trigger stands aside (see `ivr.db.totals`).

    `checking(characters read, file size)` now and then while the file is checked;
    `progress(rows moved, rows)` after each batch of `BATCH_ROWS` moved.
    """
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    size = path.stat().st_size
    report_read = None
    if checking is not None:
        tell = checking

        def report_read(done: int) -> None:
            tell(min(done, size), size)

    with engine.begin() as connection:
        if dialect == "sqlite":
            # A bigger page cache for the indexes the import grows (this connection only).
            connection.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            # Every moved row joins its account, so the per-row foreign key check only
            # repeats that; set before the transaction begins, back on at the end.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        else:
            # Seconds are enough for a webhook, not for millions of rows; memory for the
            # totals trigger's aggregate of a big statement (this transaction only).
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
            connection.exec_driver_sql(f"SET LOCAL work_mem = '{PG_WORK_MEM}'")
        staging, total = _stage(connection, path, report_read)
        accounts_added = connection.exec_driver_sql(_ADD_ACCOUNTS.format(staging=staging)).rowcount
        if dialect == "sqlite":
            # The row trigger stands aside (this transaction is SQLite's only writer, and
            # no one else sees the flag); the new rows' sums are added below in one go.
            connection.exec_driver_sql(totals.PAUSE_SQLITE_TRIGGERS)
        last_id = connection.exec_driver_sql("SELECT max(id) FROM entries").scalar()
        added = 0
        for first in range(0, total, BATCH_ROWS):
            last = min(first + BATCH_ROWS, total)
            move = _MOVE_ENTRIES.format(staging=staging, first=first, last=last)
            added += connection.exec_driver_sql(move).rowcount
            if progress:
                progress(last, total)
        if dialect == "sqlite":
            where = f"WHERE id > {int(last_id or 0)}"  # the rows added: ids only grow
            connection.exec_driver_sql(totals.backfill_sql("sqlite", where))
            connection.exec_driver_sql(totals.RESUME_SQLITE_TRIGGERS)
        connection.exec_driver_sql(f"DROP TABLE {staging}")
        report = ImportReport(rows=total, added=added, accounts_added=accounts_added)
    if dialect == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    return report


BATCH_ROWS = 50_000  # rows one statement moves into `entries` (and staged at once)
SQLITE_CACHE_KIB = 512 * 1024
PG_WORK_MEM = "256MB"

# Each staged row keeps its line's place (n), so rows move in file order. PostgreSQL:
# an UNLOGGED table made inside the import's transaction (a rollback removes it; no WAL
# for ~100 bytes a row; shared buffers, not the session's small temp buffers), named
# after the backend so two imports at once do not meet.
_STAGING_SQLITE = (
    "CREATE TEMPORARY TABLE ivr_import (n INTEGER PRIMARY KEY, contract TEXT, "
    "posted_at TEXT, amount BIGINT, kind TEXT, memo TEXT, entry_key BLOB)"
)
_STAGING_PG = (
    "CREATE UNLOGGED TABLE {staging} (n BIGINT NOT NULL, contract TEXT, "
    "posted_at TIMESTAMPTZ, amount NUMERIC(12, 2), kind TEXT, memo TEXT, entry_key BYTEA) "
    "WITH (autovacuum_enabled = false)"
)
_ADD_ACCOUNTS = (
    "INSERT INTO accounts (contract) SELECT DISTINCT contract FROM {staging} "
    "WHERE true ORDER BY contract ON CONFLICT (contract) DO NOTHING"
)
_MOVE_ENTRIES = (
    "INSERT INTO entries (account_id, posted_at, amount, kind, memo, entry_key) "
    "SELECT a.id, s.posted_at, s.amount, s.kind, s.memo, s.entry_key "
    "FROM {staging} AS s JOIN accounts AS a ON a.contract = s.contract "
    "WHERE s.n >= {first} AND s.n < {last} "
    "ON CONFLICT (entry_key) DO NOTHING"
)


def _stage(
    connection: Connection, path: Path, report_read: Callable[[int], None] | None
) -> tuple[str, int]:
    """Validate every row of the file into a staging table; return its name and row count."""
    dialect = connection.dialect.name
    driver: Any = connection.connection.driver_connection
    rows = staged_rows(path, sqlite=dialect == "sqlite", report_read=report_read)
    total = 0
    if dialect == "sqlite":
        # Made outside the transaction (pysqlite begins at the first INSERT): a failed
        # import leaves it behind on the pooled connection, so clear it first.
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.ivr_import")
        connection.exec_driver_sql(_STAGING_SQLITE)
        insert = "INSERT INTO ivr_import VALUES (?, ?, ?, ?, ?, ?, ?)"
        for batch in _batches(rows):
            driver.executemany(insert, batch)
            total += len(batch)
        connection.exec_driver_sql("ANALYZE temp.ivr_import")
        return "ivr_import", total
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    staging = f"ivr_import_{int(pid or 0)}"
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {staging}")
    connection.exec_driver_sql(_STAGING_PG.format(staging=staging))
    columns = "n, contract, posted_at, amount, kind, memo, entry_key"
    with driver.cursor() as cursor:
        with cursor.copy(f"COPY {staging} ({columns}) FROM STDIN") as copy:
            for batch in _batches(rows):
                for row in batch:
                    copy.write_row(row)
                total += len(batch)
    # The moves read it by ranges of n; the planner needs to know its size.
    connection.exec_driver_sql(f"CREATE INDEX ON {staging} (n)")
    connection.exec_driver_sql(f"ANALYZE {staging}")
    return staging, total


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


# The common canonical row, its five fields joined by '|' (the text its key hashes):
# 12 digits, 'YYYY-MM-DDTHH:MM:SS.ffffff+00:00', '-123.45', a kind, then the memo. Each
# field is exact (none of the first four can hold '|'), so one match checks them all;
# the contract's check digit and the date's day of month are checked once per value.
_CANONICAL = re.compile(
    r"[0-9]{12}\|"
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{6}\+00:00\|"
    r"-?(?:0|[1-9][0-9]{0,9})\.[0-9]{2}\|"
    r"(?:payment|charge|adjustment|promised_payment)\|"
)


class _Progress:
    """Count the bytes a text file hands out, for the progress of the check."""

    def __init__(self, handle: Any, report: Callable[[int], None]) -> None:
        self._handle = handle
        self._report = report
        self._done = 0
        self._next = 0

    def __iter__(self) -> Iterator[str]:
        for line in self._handle:
            self._done += len(line)
            if self._done >= self._next:
                self._report(self._done)
                self._next = self._done + (1 << 22)
            yield line


def staged_rows(
    path: Path, sqlite: bool, report_read: Callable[[int], None] | None = None
) -> Iterator[tuple[Any, ...]]:
    """Yield every row of a file validated and ready to stage; raise ImportFileError on a bad one.

    (n, contract, posted_at, amount, kind, memo, key): the time as SQLite stores it (naive
    UTC text) or ISO 8601 with its offset; the amount as integer kopecks (SQLite) or
    canonical text; the key as `content_key` bytes. The common, canonical row takes a fast
    path (one regular expression, no datetime or Decimal); anything else goes through
    `parse_row`, which also words the error. `report_read(characters)` now and then.
    """
    good_contracts: set[str] = set()
    good_dates: set[str] = set()
    canonical = _CANONICAL.match
    sha256 = hashlib.sha256
    with path.open(newline="", encoding="utf-8-sig") as handle:
        lines: Any = handle if report_read is None else _Progress(handle, report_read)
        reader = csv.reader(lines)
        header = tuple(next(reader, ()))
        if header != CSV_HEADER:
            raise ImportFileError(
                f"{path}:1: the header must be {','.join(CSV_HEADER)}, got {','.join(header)}"
            )
        n = 0
        for fields in reader:
            if len(fields) != 5:
                raise ImportFileError(
                    f"{path}:{reader.line_num}: expected {len(CSV_HEADER)} fields, "
                    "got another number"
                )
            joined = "|".join(fields)
            if (
                canonical(joined)
                and (joined[:12] in good_contracts or _learn_contract(joined, good_contracts))
                and (joined[13:23] in good_dates or _learn_date(joined, good_dates))
                and joined[33:39] != "000000"  # else the key's text has no fraction
            ):
                # The fields are exact, and `joined` already is the key's text.
                key = sha256(joined.encode()).digest()[:16]
                stamp, amount = fields[1], fields[2]
                if sqlite:
                    stored = stamp[:10] + " " + stamp[11:26]
                    kopecks = int(amount.replace(".", ""))
                    yield n, fields[0], stored, kopecks, fields[3], fields[4], key
                else:
                    yield n, fields[0], stamp, amount, fields[3], fields[4], key
                n += 1
                continue
            # The slow path: the exact rules, and the reason when the row breaks one.
            try:
                row = parse_row(dict(zip(CSV_HEADER, fields, strict=True)))
            except ValueError as exc:
                raise ImportFileError(f"{path}:{reader.line_num}: {exc}") from None
            amount_text = str(row.amount)
            if sqlite:
                stored = row.posted_at.replace(tzinfo=None).isoformat(" ", "microseconds")
                kopecks = int(amount_text.replace(".", ""))
                yield n, row.contract, stored, kopecks, row.kind, row.memo, row.key
            else:
                stamp = row.posted_at.isoformat()
                yield n, row.contract, stamp, amount_text, row.kind, row.memo, row.key
            n += 1


def _learn_contract(joined: str, good: set[str]) -> bool:
    contract = joined[:12]
    if luhn_ok(contract):
        good.add(contract)
        return True
    return False


def _learn_date(joined: str, good: set[str]) -> bool:
    day = joined[13:23]
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    good.add(day)
    return True
