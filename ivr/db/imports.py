"""The CSV import: validate a whole billing export first, then load it in bulk, all or nothing."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from ivr.contract import CONTRACT_LENGTH, is_valid, luhn_ok, mask
from ivr.db import totals
from ivr.db.schema import KINDS, KOPECK
from ivr.errors import ImportFileError

CSV_HEADER = ("contract", "posted_at", "amount", "kind", "memo")
BATCH_ROWS = 10_000

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
    def key(self) -> str:
        """Identify the row by its content, so a re-import recognises it."""
        text = "|".join(
            (self.contract, self.posted_at.isoformat(), str(self.amount), self.kind, self.memo)
        )
        return hashlib.sha256(text.encode()).hexdigest()


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
    engine: Engine, path: Path, progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Load a ledger CSV in bulk, all or nothing; rows already in the ledger are skipped.

    One transaction. First every row is validated in Python and staged, ready to insert,
    in a temporary table of the import's own connection (PostgreSQL: COPY): nothing
    reaches the ledger's tables until the whole file has passed, and a bad row rolls it
    all back. Then the database moves the staged rows into `entries` in batches of
    `BATCH_ROWS` (`progress(done, total)` after each), skipping rows whose content key
    is already there, so importing a file twice adds nothing. `month_totals` follows:
    PostgreSQL's statement triggers aggregate each batch; on SQLite the import adds the
    new rows' sums itself while its row trigger stands aside (see `ivr.db.totals`).
    """
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
    with engine.begin() as connection:
        if dialect == "sqlite":
            # A bigger page cache for the indexes the import grows (this connection only).
            connection.exec_driver_sql("PRAGMA cache_size=-262144")
            # Every moved row joins its account, so the per-row foreign key check only
            # repeats that; set before the transaction begins, back on at the end.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        else:
            # Seconds are enough for a webhook, not for millions of rows.
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
        total = _stage(connection, path)
        accounts_added = connection.exec_driver_sql(_ADD_ACCOUNTS).rowcount
        if dialect == "sqlite":
            # The row trigger stands aside (this transaction is SQLite's only writer, and
            # no one else sees the flag); the new rows' sums are added below in one go.
            connection.exec_driver_sql(totals.PAUSE_SQLITE_TRIGGERS)
        last_id = connection.exec_driver_sql("SELECT max(id) FROM entries").scalar()
        added = 0
        for first in range(0, total, BATCH_ROWS):
            last = min(first + BATCH_ROWS, total)
            move = _MOVE_ENTRIES.format(first=first, last=last)
            added += connection.exec_driver_sql(move).rowcount
            if progress:
                progress(last, total)
        if dialect == "sqlite":
            where = f"WHERE id > {int(last_id or 0)}"  # the rows added: ids only grow
            connection.exec_driver_sql(totals.backfill_sql("sqlite", where))
            connection.exec_driver_sql(totals.RESUME_SQLITE_TRIGGERS)
        connection.exec_driver_sql("DROP TABLE ivr_import")
        report = ImportReport(rows=total, added=added, accounts_added=accounts_added)
    if dialect == "sqlite":
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
    return report


# Each staged row keeps its line's place (n), so batches move in file order.
_STAGING = (
    "CREATE TEMPORARY TABLE ivr_import (n INTEGER PRIMARY KEY, contract VARCHAR(12), "
    "posted_at {time}, amount {money}, kind VARCHAR(20), memo TEXT, entry_key VARCHAR(64))"
)
_ADD_ACCOUNTS = (
    "INSERT INTO accounts (contract) SELECT DISTINCT contract FROM ivr_import "
    "WHERE true ORDER BY contract ON CONFLICT (contract) DO NOTHING"
)
# Parameters in the driver's style: this runs through exec_driver_sql.
_MOVE_ENTRIES = (
    "INSERT INTO entries (account_id, posted_at, amount, kind, memo, entry_key) "
    "SELECT a.id, s.posted_at, s.amount, s.kind, s.memo, s.entry_key "
    "FROM ivr_import AS s JOIN accounts AS a ON a.contract = s.contract "
    "WHERE s.n >= {first} AND s.n < {last} "
    "ON CONFLICT (entry_key) DO NOTHING"
)


def _stage(connection: Connection, path: Path) -> int:
    """Validate every row of the file into the staging table; return the row count."""
    dialect = connection.dialect.name
    driver: Any = connection.connection.driver_connection
    rows = staged_rows(path, sqlite=dialect == "sqlite")
    if dialect == "sqlite":
        # Made outside the transaction (pysqlite begins at the first INSERT): a failed
        # import leaves it behind on the pooled connection, so clear it first.
        connection.exec_driver_sql("DROP TABLE IF EXISTS temp.ivr_import")
        connection.exec_driver_sql(_STAGING.format(time="TEXT", money="BIGINT"))
        insert = "INSERT INTO ivr_import VALUES (?, ?, ?, ?, ?, ?, ?)"
        total = 0
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= BATCH_ROWS:
                driver.executemany(insert, batch)
                total += len(batch)
                batch.clear()
        driver.executemany(insert, batch)
        return total + len(batch)
    connection.exec_driver_sql(
        _STAGING.format(time="TIMESTAMPTZ", money="NUMERIC(12, 2)") + " ON COMMIT DROP"
    )
    total = 0
    with driver.cursor() as cursor:
        with cursor.copy(
            "COPY ivr_import (n, contract, posted_at, amount, kind, memo, entry_key) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
                total += 1
    return total


_UTC_MICROS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
_CANONICAL_AMOUNT = re.compile(r"^-?(?:0|[1-9]\d{0,9})\.\d\d$")


def staged_rows(path: Path, sqlite: bool) -> Iterator[tuple[Any, ...]]:
    """Yield every row of a file validated and ready to stage; raise ImportFileError on a bad one.

    (n, contract, posted_at, amount, kind, memo, key): the time as SQLite stores it (naive
    UTC text) or ISO 8601 with its offset; the amount as integer kopecks (SQLite) or
    canonical text. The common, canonical row takes a fast path; anything else goes
    through `parse_row`, which also words the error.
    """
    good_contracts: set[str] = set()
    kinds = frozenset(KINDS)
    sha256 = hashlib.sha256
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = tuple(next(reader, ()))
        if header != CSV_HEADER:
            raise ImportFileError(
                f"{path}:1: the header must be {','.join(CSV_HEADER)}, got {','.join(header)}"
            )
        n = 0
        for fields in reader:
            if len(fields) != len(CSV_HEADER):
                raise ImportFileError(
                    f"{path}:{reader.line_num}: expected {len(CSV_HEADER)} fields, "
                    "got another number"
                )
            contract, raw_time, raw_amount, kind, memo = fields
            try:
                if contract not in good_contracts:
                    if not luhn_ok(contract):
                        raise ValueError
                    good_contracts.add(contract)
                posted = datetime.fromisoformat(raw_time)
                offset = posted.utcoffset()
                if offset is None or kind not in kinds or not _CANONICAL_AMOUNT.match(raw_amount):
                    raise ValueError
                amount_text = raw_amount
                if not offset and len(raw_time) == 32 and _UTC_MICROS.match(raw_time):
                    # 'YYYY-MM-DDTHH:MM:SS.ffffff+00:00' already is the key's text and
                    # holds SQLite's: no datetime arithmetic, the common billing export.
                    stamp = raw_time if raw_time[20:26] != "000000" else raw_time[:19] + "+00:00"
                    stored = raw_time[:10] + " " + raw_time[11:26]
                    key = sha256(
                        f"{contract}|{stamp}|{amount_text}|{kind}|{memo}".encode()
                    ).hexdigest()
                    if sqlite:
                        kopecks = int(amount_text.replace(".", ""))
                        yield n, contract, stored, kopecks, kind, memo, key
                    else:
                        yield n, contract, stamp, amount_text, kind, memo, key
                    n += 1
                    continue
                posted = posted.astimezone(UTC) if offset else posted.replace(tzinfo=UTC)
            except ValueError:
                # The slow path: the exact rules, and the reason when the row breaks one.
                try:
                    row = parse_row(dict(zip(CSV_HEADER, fields, strict=True)))
                except ValueError as exc:
                    raise ImportFileError(f"{path}:{reader.line_num}: {exc}") from None
                contract, posted, kind, memo = row.contract, row.posted_at, row.kind, row.memo
                amount_text = str(row.amount)
            stamp = posted.isoformat()
            key = sha256(f"{contract}|{stamp}|{amount_text}|{kind}|{memo}".encode()).hexdigest()
            if sqlite:
                kopecks = int(amount_text.replace(".", ""))
                stored = posted.replace(tzinfo=None).isoformat(" ", "microseconds")
                yield n, contract, stored, kopecks, kind, memo, key
            else:
                yield n, contract, stamp, amount_text, kind, memo, key
            n += 1

