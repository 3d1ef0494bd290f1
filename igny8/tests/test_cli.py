"""The `igny8` command's answers that need no running platform."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from igny8.cli import app
from igny8.home import Home, StateFile


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.setenv("IGNY8_HOME", str(tmp_path))
    return Home(tmp_path)


def test_status_before_anything_ran(home: Home) -> None:
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert "igny8 up" in result.output


def test_status_of_a_stopped_platform(home: Home) -> None:
    StateFile(home).update(run={"status": "stopped", "updated_at": "2025-01-01T00:00:00"})
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 1
    assert "not running" in result.output


def test_migrate_refuses_a_service_not_in_the_checkout(home: Home) -> None:
    result = CliRunner().invoke(app, ["migrate", "--service", "nope"])
    assert result.exit_code != 0


def test_every_command_is_there() -> None:
    result = CliRunner().invoke(app, ["--help"])
    for command in ("up", "migrate", "seed", "status", "keys"):
        assert command in result.output
    assert "rotate" in CliRunner().invoke(app, ["keys", "--help"]).output
