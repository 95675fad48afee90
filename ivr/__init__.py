"""Balance hotline: Twilio Voice webhooks that speak a contract's balance."""

from ivr.app import create_app

__all__ = ["create_app"]
