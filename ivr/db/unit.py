"""One unit of work per webhook step: open a session, lend the flow its view, commit once."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ivr.db.hotline_tables import record_failed_lookup
from ivr.db.ledger import LedgerView
from ivr.db.selfservice import write_promise
from ivr.flow import FailedTry, PromiseToWrite


class StepUnit:
    """A webhook step's database work: reads through `ledger`, writes on `record`, one commit.

    The commit happens when the block ends without an error; an error rolls everything
    back, so a step that ends in the apology records nothing.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> StepUnit:
        self.session = Session(self.engine)
        self.ledger = LedgerView(self.session)
        return self

    def record(self, failed_try: FailedTry | None) -> None:
        """Keep what the flow asked to record; it is written at the commit."""
        if failed_try is not None:
            record_failed_lookup(self.session, failed_try.caller, failed_try.at)

    def write_promise(self, promise: PromiseToWrite) -> bool:
        """Write a promised payment now, exactly once; False when the database refuses it."""
        return write_promise(self.session, promise)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.session.commit()
        finally:
            self.session.close()
