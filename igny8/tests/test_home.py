"""The state directory: secrets that persist, state that survives runs, one `up` at a time."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from igny8.home import AlreadyRunning, Home, Secrets, StateFile, exclusive, home_dir, lock_held


def test_home_is_igny8_home_or_dot_igny8(tmp_path: Path) -> None:
    assert home_dir({"IGNY8_HOME": str(tmp_path / "x")}) == (tmp_path / "x").resolve()
    assert home_dir({}, cwd=tmp_path) == tmp_path / ".igny8"


def test_secrets_are_generated_once_and_kept_private(tmp_path: Path) -> None:
    home = Home(tmp_path / "h")
    first = Secrets.load_or_create(home, ["auth", "planner"])
    assert len(first.secret_key) >= 40
    assert first.demo_password.startswith("demo-")
    assert set(first.db_passwords) == {"auth", "planner"}
    assert stat.S_IMODE(os.stat(home.secrets_file).st_mode) == 0o600
    again = Secrets.load_or_create(home, ["auth", "planner", "billing"])
    assert again.secret_key == first.secret_key
    assert again.demo_password == first.demo_password
    assert again.db_password("auth") == first.db_password("auth")
    assert again.db_password("billing") not in first.db_passwords.values()
    assert json.loads(home.secrets_file.read_text())["db_passwords"]["billing"]
    # One NATS user per service and the gateway (libs/common/natsauth.py), kept too.
    assert set(first.nats_passwords) == {"auth", "planner", "gateway"}
    assert again.nats_passwords["planner"] == first.nats_passwords["planner"]
    assert len(set(again.nats_passwords.values())) == 4


def test_state_updates_keep_other_members(tmp_path: Path) -> None:
    state = StateFile(Home(tmp_path))
    state.update(seed={"marker": "m"})
    state.update(run={"status": "running"})
    assert state.read() == {"seed": {"marker": "m"}, "run": {"status": "running"}}
    state.update(run=None)
    assert state.read() == {"seed": {"marker": "m"}}


def test_only_one_up_per_home(tmp_path: Path) -> None:
    home = Home(tmp_path)
    assert not lock_held(home)
    with exclusive(home):
        assert lock_held(home)
        with pytest.raises(AlreadyRunning), exclusive(home):
            pass
    assert not lock_held(home)


def test_lock_is_released_when_the_holder_is_killed(tmp_path: Path) -> None:
    home = Home(tmp_path).ensure()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from igny8.home import Home, exclusive\n"
         f"with exclusive(Home(__import__('pathlib').Path({str(tmp_path)!r}))):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"held"
        assert lock_held(home)
    finally:
        holder.kill()
        holder.wait()
    assert not lock_held(home)
