"""Build hook: carry the repository's default prompts and settings inside the package.

`prompts/` and `data/` stay at the repository's top (SPEC, Layout); a built package gets a
copy of the shipped files as `ivr/_defaults/`, which `ivr.home` copies into a new home
folder on first run. Nothing is copied for an editable install: it runs from the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# The shipped defaults only: data/ also holds a developer's SQLite ledger.
DEFAULTS = ["prompts", "data/hotline.toml", "data/demo_ledger.csv", "data/demo_recent.csv"]


class BuildWithDefaults(build_py):
    """Build the package, then copy the default files into it as `ivr/_defaults/`."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "ivr" / "_defaults"
        shutil.rmtree(target, ignore_errors=True)  # a stale copy from an earlier build
        for name in DEFAULTS:
            source, copy = ROOT / name, target / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copy)
            else:
                shutil.copy2(source, copy)


setup(cmdclass={"build_py": BuildWithDefaults})
