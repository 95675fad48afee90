"""The demo ledger: `demo_ledger.csv` (fixed dates) and `demo_recent.csv` (dates relative to now).

The self-service answers need entries near the moment of the call (a payment yesterday, a
promised payment still running), which fixed dates would outlive. `demo_recent.csv`, beside
the demo ledger, has the import's columns, but its `posted_at` is an offset from the moment
the demo ledger is made: `-1d` (a day before), `+3d`, `-2h`. Only the demo loader reads
such offsets; `ivr ledger import` takes ISO 8601 timestamps alone.
"""

from __future__ import annotations

import csv
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ivr.db.imports import CSV_HEADER, ImportReport, import_csv
from ivr.db.schema import Account, create_schema, has_schema
from ivr.errors import ImportFileError

RECENT_NAME = "demo_recent.csv"
_OFFSET = re.compile(r"^([+-])(\d{1,4})([dh])$")


def recent_file(demo_csv: Path) -> Path:
    """Return where the relative-dated demo entries of a demo ledger live (beside it)."""
    return demo_csv.with_name(RECENT_NAME)


def create_demo_if_missing(engine: Engine, demo_csv: Path) -> ImportReport | None:
    """Create the ledger from the demo entries when it has no tables yet; else do nothing."""
    if has_schema(engine):
        return None
    create_schema(engine)
    return load_demo(engine, demo_csv)


def load_demo(engine: Engine, demo_csv: Path, now: datetime | None = None) -> ImportReport:
    """Import the demo ledger, then its relative-dated entries placed around `now`."""
    report = import_csv(engine, demo_csv)
    recent = recent_file(demo_csv)
    if not recent.is_file():  # an older home folder may lack it
        return report
    more = import_recent(engine, recent, now or datetime.now(UTC))
    return ImportReport(
        rows=report.rows + more.rows,
        added=report.added + more.added,
        accounts_added=report.accounts_added + more.accounts_added,
    )


def import_recent(engine: Engine, path: Path, now: datetime) -> ImportReport:
    """Import a CSV whose `posted_at` are offsets from `now` (see the module docstring).

    Contracts already in the ledger are skipped: the same rows placed around another
    moment would be new entries, not the same ones again.
    """
    with tempfile.TemporaryDirectory(prefix="ivr-demo-") as folder:
        absolute = Path(folder) / path.name
        with (
            path.open(newline="", encoding="utf-8-sig") as source,
            absolute.open("w", newline="", encoding="utf-8") as target,
        ):
            reader = csv.DictReader(source)
            writer = csv.DictWriter(target, fieldnames=CSV_HEADER)
            writer.writeheader()
            rows = list(reader)
            known = _known_contracts(engine, {(row.get("contract") or "").strip() for row in rows})
            for line, fields in enumerate(rows, start=2):  # line 1 is the header
                if (fields.get("contract") or "").strip() in known:
                    continue  # made on an earlier day: offsets from now would double it
                offset = _OFFSET.match((fields.get("posted_at") or "").strip())
                if offset is None:
                    raise ImportFileError(
                        f"{path}:{line}: posted_at must be an offset such as -1d,"
                        f" +3d or -2h, got {fields.get('posted_at')!r}"
                    )
                sign, count, unit = offset.groups()
                delta = timedelta(**{"days" if unit == "d" else "hours": int(count)})
                moment = now + delta if sign == "+" else now - delta
                writer.writerow({**fields, "posted_at": moment.astimezone(UTC).isoformat()})
        return import_csv(engine, absolute)


def _known_contracts(engine: Engine, contracts: set[str]) -> set[str]:
    """Return which of `contracts` the ledger already has."""
    with Session(engine) as session:
        return set(session.scalars(select(Account.contract).where(Account.contract.in_(contracts))))
