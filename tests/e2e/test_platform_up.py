"""`igny8 up` as a user runs it: the whole platform as processes, the reference's quick
start through the gateway, then SIGTERM and not one process left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
API_LINE = re.compile(r"API\s+(http://localhost:\d+/api/v1/)")

pytestmark = pytest.mark.e2e


@dataclass
class Platform:
    proc: subprocess.Popen[str]
    home: Path
    lines: list[str] = field(default_factory=list)
    api_url: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def output(self) -> str:
        return "".join(self.lines)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.api_url is None and (match := API_LINE.search(line)):
                self.api_url = match.group(1)
                self.ready.set()
        self.ready.set()

    def state(self) -> dict:  # type: ignore[type-arg]
        return json.loads((self.home / "state.json").read_text())["run"]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    home = tmp_path_factory.mktemp("igny8-home")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    env.update(IGNY8_HOME=str(home), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "igny8", "up", "--timeout", "180"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    running = Platform(proc=proc, home=home)
    threading.Thread(target=running._drain, daemon=True).start()
    try:
        if not running.ready.wait(300) or running.api_url is None:
            pytest.fail("igny8 up did not print the gateway URL:\n" + running.output())
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_quick_start_through_the_gateway(platform: Platform) -> None:
    base = platform.api_url
    assert base is not None
    email = "quickstart@example.com"
    password = "Quick-start-pw-2025"
    with httpx.Client(base_url=base, timeout=30) as client:
        ping = client.get("system/ping/")
        assert ping.status_code == 200, ping.text

        registered = client.post("auth/register/", json={
            "email": email, "password": password, "password_confirm": password})
        assert registered.status_code in (200, 201), registered.text
        assert registered.json()["success"] is True

        login = client.post("auth/login/", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        body = login.json()
        assert body["success"] is True
        assert body["request_id"]
        token = body["data"]["access"]

        me = client.get("auth/me/", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200, me.text
        assert me.json()["data"]["user"]["email"] == email

        anonymous = client.get("auth/me/")
        assert anonymous.status_code == 401
        assert anonymous.json()["success"] is False


def test_demo_login_printed_at_start_works(platform: Platform) -> None:
    match = re.search(r"Login\s+(\S+) / (\S+)", platform.output())
    assert match, platform.output()
    with httpx.Client(base_url=platform.api_url or "", timeout=30) as client:
        login = client.post("auth/login/", json={"email": match.group(1),
                                                 "password": match.group(2)})
    assert login.status_code == 200, login.text


def test_status_reports_every_process_healthy(platform: Platform) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "igny8", "status"], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "IGNY8_HOME": str(platform.home)}, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for proc in platform.state()["processes"]:
        assert proc["name"] in result.stdout


def test_sigterm_stops_everything_and_leaves_no_orphans(platform: Platform) -> None:
    run = platform.state()
    pids = [p["pid"] for p in run["processes"]]
    pids += [run["postgres"]["pid"], run["nats"]["pid"]]
    descendants = [c.pid for c in psutil.Process(platform.proc.pid).children(recursive=True)]
    assert set(pids) <= set(descendants) | set(pids)
    assert all(_alive(pid) for pid in pids)

    platform.proc.send_signal(signal.SIGTERM)
    assert platform.proc.wait(90) == 0, platform.output()

    deadline = time.monotonic() + 10
    while (left := [pid for pid in set(pids) | set(descendants) if _alive(pid)]):
        assert time.monotonic() < deadline, f"left behind: {left}\n{platform.output()}"
        time.sleep(0.1)
    assert "stopped" in platform.output()
