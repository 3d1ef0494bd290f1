"""The whole platform for a benchmark: `igny8 up` in a temporary IGNY8_HOME, and the few
HTTP calls a benchmark makes to set itself up through the gateway."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def call(url: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 - http on our own loopback
        url, data=json.dumps(body).encode() if body else None, headers=headers,
        method="POST" if body else "GET")
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        return json.loads(resp.read())


def login(api: str, email: str) -> str:
    password = "bench-password-1234"
    call(f"{api}auth/register/", {"email": email, "password": password,
                                  "password_confirm": password})
    return str(call(f"{api}auth/login/", {"email": email, "password": password})["data"]["access"])


@contextlib.contextmanager
def platform(home: Path, overrides: dict[str, int]) -> Iterator[dict[str, Any]]:
    """`igny8 up` with IGNY8_HOME=home and rate limits raised per scope; yields the `run`
    entry of state.json (ports, processes, PostgreSQL and NATS) once everything is healthy."""
    env = {**os.environ, "IGNY8_HOME": str(home),
           "IGNY8_RATE_LIMIT_OVERRIDES": json.dumps(overrides), "IGNY8_LOG_LEVEL": "WARNING",
           # Ports the kernel picks: another platform may be starting on this machine.
           "IGNY8_PORTS": "any"}
    log = open(home / "up.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "igny8", "up"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                run = json.loads((home / "state.json").read_text()).get("run") or {}
                if run.get("status") == "running":
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"igny8 up did not come up; see {home / 'up.log'}:\n"
                         + (home / "up.log").read_text()[-3000:])
            time.sleep(0.5)
        yield run
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
