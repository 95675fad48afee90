"""Find the hotline's home folder: its prompts, settings, demo ledger and SQLite ledger.

The home folder is, in this order:

1. `$IVR_HOME`, when set;
2. the checkout the package runs from (its parent holds `prompts/` and
   `data/hotline.toml`), so a developer works on the repository's own files;
3. a per-user folder: `$XDG_DATA_HOME/ivr-hotline`, else `~/.local/share/ivr-hotline`.

A home folder that lacks the default files gets them on first use, copied from the
package (`ivr/_defaults/`, put there by the build, see setup.py); nothing is ever written
into the installed package. `IVR_PROMPTS_DIR`, `IVR_SETTINGS` and `IVR_DATABASE_URL`
still name files of their own instead of the home's.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr.errors import ConfigError

log = logging.getLogger(__name__)

HOME_VARIABLE = "IVR_HOME"
USER_FOLDER = "ivr-hotline"
PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
BUNDLED = PACKAGE / "_defaults"

# Inside a home folder, as in the repository.
PROMPTS = "prompts"
SETTINGS = "data/hotline.toml"
DEMO_LEDGER = "data/demo_ledger.csv"
DEMO_RECENT = "data/demo_recent.csv"  # dated relative to now (ivr.db.demo), beside it
SQLITE_LEDGER = "data/ledger.sqlite3"
DEFAULT_FILES = (PROMPTS, SETTINGS, DEMO_LEDGER, DEMO_RECENT)


@dataclass(frozen=True)
class Home:
    """A home folder, and where each of the hotline's files lives in it."""

    root: Path

    @property
    def prompts_dir(self) -> Path:
        return self.root / PROMPTS

    @property
    def settings_file(self) -> Path:
        return self.root / SETTINGS

    @property
    def demo_ledger(self) -> Path:
        return self.root / DEMO_LEDGER

    @property
    def database_url(self) -> str:
        """Return the URL of the SQLite ledger used when no other is configured."""
        return f"sqlite:///{self.root / SQLITE_LEDGER}"


def home(environ: Mapping[str, str] = os.environ) -> Home:
    """Find the home folder, and copy the default files it lacks into it."""
    root = locate(environ)
    if root != CHECKOUT:  # a checkout's files are the defaults themselves
        _fill(root)
    return Home(root)


def locate(environ: Mapping[str, str] = os.environ) -> Path:
    """Decide which folder is the home, without touching it."""
    if environ.get(HOME_VARIABLE):
        return Path(environ[HOME_VARIABLE]).expanduser().absolute()
    if _holds_defaults(CHECKOUT):
        return CHECKOUT
    data = environ.get("XDG_DATA_HOME", "")
    if not Path(data).is_absolute():  # the XDG spec: a relative value is ignored
        try:
            data = str(Path(environ.get("HOME") or Path.home()) / ".local" / "share")
        except RuntimeError:  # no HOME and no password entry to take it from
            raise ConfigError(
                f"cannot tell where the hotline's files should live: set {HOME_VARIABLE}"
                " to a folder"
            ) from None
    return Path(data) / USER_FOLDER


def _holds_defaults(folder: Path) -> bool:
    return (folder / PROMPTS).is_dir() and (folder / SETTINGS).is_file()


def _fill(root: Path) -> None:
    """Copy the default files the home lacks; an operator's own are never replaced."""
    missing = [name for name in DEFAULT_FILES if not (root / name).exists()]
    if not missing:
        return
    source = _defaults()
    try:
        for name in missing:
            _copy(source / name, root / name)
    except OSError as error:
        raise ConfigError(
            f"cannot create the hotline's home folder {root} ({error.strerror or error});"
            f" set {HOME_VARIABLE} to a folder you can write to"
        ) from None
    log.info("Hotline home %s: copied the default %s", root, ", ".join(missing))


def _defaults() -> Path:
    """Return where the default files are: in the installed package, or the checkout."""
    for folder in (BUNDLED, CHECKOUT):
        if _holds_defaults(folder):
            return folder
    raise ConfigError(
        f"the ivr package lacks its default prompts and settings ({BUNDLED}); reinstall it,"
        f" or set {HOME_VARIABLE} to a folder holding {PROMPTS}/ and {SETTINGS}"
    )


def _copy(source: Path, target: Path) -> None:
    """Copy a file or folder into place whole: a process starting alongside sees all or none."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        copy = staging / target.name
        # Contents only: the package's files may be read-only, the operator edits these.
        if source.is_dir():
            shutil.copytree(source, copy, copy_function=shutil.copyfile)
        else:
            shutil.copyfile(source, copy)
        try:
            copy.rename(target)
        except OSError:
            if not target.exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
