"""Balance hotline: Twilio Voice webhooks that speak a contract's balance.

Nothing heavy is imported here: `from ivr import flow` loads neither Flask, Twilio nor
SQLAlchemy. `ivr.create_app` is looked up in `ivr.web` when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ivr.web import create_app as create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ivr.web import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
