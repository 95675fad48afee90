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

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ivr.contract import CONTRACT_LENGTH, is_valid, mask
from ivr.db.schema import KINDS, KOPECK, Account, Base, Entry
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

    The file is read twice: once to validate every row (so a bad row imports nothing),
    then to insert in batches inside a single transaction. `progress(done, total)`
    is called after every batch.
    """
    contracts: set[str] = set()
    total = 0
    for _line, row in read_csv(path):
        contracts.add(row.contract)
        total += 1

    with Session(engine) as session, session.begin():
        accounts_before = _count(session, Account)
        entries_before = _count(session, Entry)
        account_ids = _ensure_accounts(session, contracts)
        insert_new = _insert_ignoring_duplicates(session, Entry, "entry_key")
        done = 0
        batch: list[dict[str, Any]] = []
        for _line, row in read_csv(path):
            batch.append(
                {
                    "account_id": account_ids[row.contract],
                    "posted_at": row.posted_at,
                    "amount": row.amount,
                    "kind": row.kind,
                    "memo": row.memo,
                    "entry_key": row.key,
                }
            )
            # The last batch goes when the row count of the first pass is reached.
            if len(batch) >= BATCH_ROWS or done + len(batch) == total:
                session.execute(insert_new, batch)
                done += len(batch)
                batch.clear()
                if progress:
                    progress(done, total)
        return ImportReport(
            rows=total,
            added=_count(session, Entry) - entries_before,
            accounts_added=_count(session, Account) - accounts_before,
        )


def _count(session: Session, model: type[Base]) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _ensure_accounts(session: Session, contracts: set[str]) -> dict[str, int]:
    """Create the accounts not yet known; return every contract's account id."""
    wanted = sorted(contracts)
    insert_new = _insert_ignoring_duplicates(session, Account, "contract")
    ids: dict[str, int] = {}
    for start in range(0, len(wanted), BATCH_ROWS):
        chunk = wanted[start : start + BATCH_ROWS]
        session.execute(insert_new, [{"contract": c} for c in chunk])
        rows = session.execute(
            select(Account.contract, Account.id).where(Account.contract.in_(chunk))
        )
        ids.update({contract: account_id for contract, account_id in rows})
    return ids


def _insert_ignoring_duplicates(session: Session, model: type[Base], unique: str) -> Any:
    """Build an INSERT that skips rows whose `unique` column is already taken."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=[unique])
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=[unique])
    raise NotImplementedError(f"bulk import supports SQLite and PostgreSQL, not {dialect}")
