"""The package's shape: the pure modules load alone; `create_app` is found lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("flask", "sqlalchemy", "twilio")


@pytest.mark.parametrize("module", ["ivr", "ivr.flow", "ivr.stats", "ivr.calllog", "ivr.prompts"])
def test_pure_modules_load_without_flask_sqlalchemy_or_twilio(module: str) -> None:
    code = (
        f"import {module}, sys; loaded = [m for m in {HEAVY!r} if m in sys.modules];"
        " assert not loaded, loaded"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_create_app_is_imported_on_first_use() -> None:
    import ivr
    from ivr.web import create_app

    assert ivr.create_app is create_app
    with pytest.raises(AttributeError):
        _ = ivr.no_such_thing  # type: ignore[attr-defined]
