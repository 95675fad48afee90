"""The home folder: which one, what a new one gets, and what is never touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ivr import create_app, home
from ivr.cli import main
from ivr.errors import ConfigError

REPOSITORY = Path(__file__).resolve().parent.parent
SHIPPED = [
    "prompts/ru-RU.toml",
    "prompts/en-US.toml",
    "data/hotline.toml",
    "data/demo_ledger.csv",
    "data/demo_recent.csv",
]


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run as an installed package: no checkout around it, the defaults packaged in it."""
    site_packages = tmp_path / "site-packages"
    bundled = site_packages / "ivr" / "_defaults"
    for name in SHIPPED:
        (bundled / name).parent.mkdir(parents=True, exist_ok=True)
        (bundled / name).write_bytes((REPOSITORY / name).read_bytes())
    monkeypatch.setattr(home, "CHECKOUT", site_packages)
    monkeypatch.setattr(home, "BUNDLED", bundled)
    return bundled


def test_a_checkout_is_its_own_home_and_is_left_as_it_is() -> None:
    place = home.home({})
    assert place.root == REPOSITORY
    assert place.prompts_dir == REPOSITORY / "prompts"
    assert place.settings_file == REPOSITORY / "data" / "hotline.toml"
    assert place.demo_ledger == REPOSITORY / "data" / "demo_ledger.csv"
    assert place.database_url == f"sqlite:///{REPOSITORY / 'data' / 'ledger.sqlite3'}"


def test_ivr_home_wins_over_the_checkout_and_gets_its_files(tmp_path: Path) -> None:
    place = home.home({"IVR_HOME": str(tmp_path / "hotline")})
    assert place.root == tmp_path / "hotline"
    for name in SHIPPED:
        assert (place.root / name).read_bytes() == (REPOSITORY / name).read_bytes()
    assert place.database_url == f"sqlite:///{tmp_path / 'hotline' / 'data' / 'ledger.sqlite3'}"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HOME": "/u"}, "/u/.local/share/ivr-hotline"),
        ({"HOME": "/u", "XDG_DATA_HOME": "/xdg"}, "/xdg/ivr-hotline"),
        ({"HOME": "/u", "XDG_DATA_HOME": "relative/data"}, "/u/.local/share/ivr-hotline"),
        ({"HOME": "/u", "XDG_DATA_HOME": "/xdg", "IVR_HOME": "/srv/ivr"}, "/srv/ivr"),
    ],
)
@pytest.mark.usefixtures("installed")
def test_an_installed_package_lives_in_a_per_user_folder(
    environ: dict[str, str], expected: str
) -> None:
    assert home.locate(environ) == Path(expected)


def test_a_new_home_is_filled_from_the_package(installed: Path, tmp_path: Path) -> None:
    place = home.home({"HOME": str(tmp_path / "user")})
    assert place.root == tmp_path / "user" / ".local" / "share" / "ivr-hotline"
    for name in SHIPPED:
        assert (place.root / name).read_bytes() == (installed / name).read_bytes()
    assert sorted(p.name for p in place.root.iterdir()) == ["data", "prompts"]  # no leftovers


def test_the_operators_files_are_kept_and_a_lost_one_restored(
    installed: Path, tmp_path: Path
) -> None:
    environ = {"IVR_HOME": str(tmp_path / "hotline")}
    place = home.home(environ)
    edited = place.prompts_dir / "ru-RU.toml"
    edited.write_text(edited.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    (place.prompts_dir / "en-US.toml").unlink()  # the operator's choice: their folder
    place.settings_file.unlink()
    home.home(environ)
    assert edited.read_text(encoding="utf-8").endswith("# edited\n")
    assert not (place.prompts_dir / "en-US.toml").exists()
    assert place.settings_file.read_bytes() == (installed / "data" / "hotline.toml").read_bytes()


def test_a_home_that_cannot_be_made_says_to_set_ivr_home(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"cannot create .*; set IVR_HOME to a folder"):
        home.home({"IVR_HOME": str(blocker / "hotline")})


def test_the_command_says_it_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = CliRunner().invoke(
        main, ["prompts", "check"], env={"IVR_HOME": str(blocker / "hotline")}
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: cannot create the hotline's home folder")
    assert "set IVR_HOME" in lines[0]


@pytest.mark.usefixtures("installed")
def test_a_package_without_its_defaults_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(home, "BUNDLED", tmp_path / "nothing")
    with pytest.raises(ConfigError, match="lacks its default prompts"):
        home.home({"HOME": str(tmp_path / "user")})


def test_an_app_with_every_file_configured_needs_no_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_HOME", str(tmp_path / "unused"))
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}",
            "PROMPTS_DIR": str(REPOSITORY / "prompts"),
            "SETTINGS_FILE": str(REPOSITORY / "data" / "hotline.toml"),
        }
    )
    app.extensions["ivr"].engine.dispose()
    assert not (tmp_path / "unused").exists()


def test_an_app_takes_what_is_not_configured_from_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IVR_HOME", str(tmp_path / "hotline"))
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(REPOSITORY / "prompts"))
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.sqlite3'}"})
    app.extensions["ivr"].engine.dispose()
    assert app.config["PROMPTS_DIR"] == str(REPOSITORY / "prompts")  # the variable wins
    assert app.config["SETTINGS_FILE"] == str(tmp_path / "hotline" / "data" / "hotline.toml")
