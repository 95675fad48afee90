"""One unit of work per webhook step: lend the flow its view, write what it asks, at the end."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.db.hotline_tables import record_failed_lookup
from ivr.db.ledger import LedgerView
from ivr.db.selfservice import write_promise
from ivr.flow import FailedTry, PromiseToWrite


class StepUnit:
    """A webhook step's database work: reads through `ledger`, writes on `record`.

    Reads run without a transaction (`LedgerView.connection`, autocommit): a step that
    only reads costs its SELECTs and nothing else. A failed try is one INSERT, atomic and
    durable on its own, sent when the block ends without an error. Writes that must land
    together go through `ledger.session`, committed here once; an error rolls it back,
    so a step that ends in the apology records nothing.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> StepUnit:
        self.ledger = LedgerView(self.engine)
        self._failed_try: FailedTry | None = None
        return self

    @property
    def session(self) -> Session:
        """The step's transactional session (made on first use), committed at the end."""
        return self.ledger.session

    def record(self, failed_try: FailedTry | None) -> None:
        """Keep what the flow asked to record; it is written when the block ends."""
        if failed_try is not None:
            self._failed_try = failed_try

    def write_promise(self, promise: PromiseToWrite) -> bool:
        """Write a promised payment now, exactly once; False when the database refuses it."""
        return write_promise(self.session, promise)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ok = exc_type is None
        try:
            if ok and self._failed_try is not None:
                # Durable before the caller hears the answer: the lockout counts it.
                connection = self.ledger.connection
                record_failed_lookup(connection, self._failed_try.caller, self._failed_try.at)
                connection.commit()  # SQLite's implicit BEGIN; nothing on PostgreSQL
        finally:
            self.ledger.close(commit=ok)
