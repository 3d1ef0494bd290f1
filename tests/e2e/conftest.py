"""What the end-to-end tests share: `igny8 up` started as a user starts it, on a
temporary IGNY8_HOME (`igny8.tests.running`). Each test module gets a platform of its own
(module scope): one module may stop it (SIGTERM) to test shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from gateway.routes import RATE_LIMITS
from igny8.tests.running import REPO, Platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[Platform]:
    """A module that tests a limit names its scope in `REAL_RATE_LIMITS`: that scope keeps
    the reference's limit, the others are raised."""
    home = tmp_path_factory.mktemp("igny8-home")
    real = set(getattr(request.module, "REAL_RATE_LIMITS", ()))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NATS_URL")}
    # Ports the kernel picks: other platforms (other test runs) may start beside this one.
    env.update(IGNY8_HOME=str(home), PYTHONUNBUFFERED="1", IGNY8_PORTS="any",
               # The test stack's rate-limit override: schemathesis sends thousands of
               # requests (test_platform_up); nothing here tests the limits themselves.
               IGNY8_RATE_LIMIT_OVERRIDES=json.dumps({s: 100_000 for s in RATE_LIMITS
                                                      if s not in real}))
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
        if proc.poll() is None:  # stopped as a user stops it: its children go with it
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
