"""The supervisor with real child processes: health, crash, restart, stop, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from igny8.plan import ProcessSpec
from igny8.services import REPO_ROOT
from igny8.supervisor import Child, StartupFailed, Supervisor
from libs.common.embedded import free_port

HEALTH_SERVER = textwrap.dedent("""
    import http.server, os, sys, time
    time.sleep(float(os.environ.get("DELAY", "0")))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = 200 if self.path in ("/healthz", "/readyz") else 404
            self.send_response(code); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *a): pass
    print("serving", os.environ["GREETING"], flush=True)
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
           "print('deaf-to-sigterm', flush=True); time.sleep(120)"


def _server(name: str, port: int, delay: float = 0.0) -> ProcessSpec:
    return ProcessSpec(
        name=name, kind="api", argv=(sys.executable, "-c", HEALTH_SERVER, str(port)),
        env={"GREETING": f"hello-{name}", "DELAY": str(delay)}, port=port,
        health=(f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{port}/readyz"),
    )


def _supervisor(tmp_path: Path) -> Supervisor:
    return Supervisor(logs_dir=tmp_path / "logs", cwd=REPO_ROOT, say=lambda _: None)


def _deaf_to_sigterm(sup: Supervisor, tmp_path: Path) -> Child:
    """A child that ignores SIGTERM, once it has said so (its handler is set)."""
    child = sup.spawn(ProcessSpec(name="stubborn", kind="worker",
                                  argv=(sys.executable, "-c", STUBBORN), env={}, port=0))
    deadline = time.monotonic() + 10
    while "deaf-to-sigterm" not in (tmp_path / "logs" / "stubborn.log").read_text().splitlines():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return child


def test_children_become_healthy_log_to_files_and_stop(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    a, b = sup.start_all([_server("a", free_port()), _server("b", free_port(), delay=0.5)])
    ready: list[str] = []
    sup.wait_healthy(20, on_ready=lambda c, _t: ready.append(c.name))
    assert sorted(ready) == ["a", "b"]
    assert a.healthy
    assert b.healthy
    sup.stop_all(grace=5)
    assert not a.alive()
    assert not b.alive()
    log = (tmp_path / "logs" / "a.log").read_text()
    assert "igny8 up starts a" in log
    assert "serving hello-a" in log


def test_a_child_that_dies_before_it_is_healthy_fails_the_start(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    sup.spawn(ProcessSpec(name="broken", kind="api",
                          argv=(sys.executable, "-c", "raise SystemExit('config is wrong')"),
                          env={}, port=1, health=("http://127.0.0.1:1/healthz",)))
    with pytest.raises(StartupFailed) as failed:
        sup.wait_healthy(20)
    assert "broken exited with code 1" in str(failed.value)
    assert "config is wrong" in failed.value.log_tail


def test_waiting_times_out_naming_what_it_waits_for(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    port = free_port()
    sup.spawn(ProcessSpec(name="mute", kind="api",
                          argv=(sys.executable, "-c", "import time; time.sleep(60)"),
                          env={}, port=port, health=(f"http://127.0.0.1:{port}/healthz",)))
    ticks: list[float] = []
    try:
        with pytest.raises(StartupFailed, match=r"mute \(http://127.0.0.1:\d+/healthz\)"):
            sup.wait_healthy(1.0, on_tick=lambda _p, t: ticks.append(t), interval=0.1)
    finally:
        sup.stop_all(grace=2)
    assert ticks, "the waiting is reported, never silent"


def test_stragglers_are_killed_after_the_grace_period(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    child = _deaf_to_sigterm(sup, tmp_path)
    started = time.monotonic()
    sup.stop_all(grace=0.5)
    assert not child.alive()
    assert child.proc is not None
    assert child.proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5


def test_a_second_stop_request_kills_at_once_and_says_so(tmp_path: Path) -> None:
    """A second Ctrl-C, or a SIGTERM sent to the whole process group (`timeout`, a
    service manager), does not wait out the grace, and says why it killed."""
    said: list[str] = []
    sup = Supervisor(logs_dir=tmp_path / "logs", cwd=REPO_ROOT, say=said.append)
    child = _deaf_to_sigterm(sup, tmp_path)
    sup.stop_all(grace=60, hurry=lambda: True)
    assert not child.alive()
    assert [line for line in said if "killing" in line] == [
        "stubborn: asked again to stop: killing it"]


def test_crashed_children_are_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    sup = _supervisor(tmp_path)
    child = sup.spawn(ProcessSpec(name="crashy", kind="worker",
                                  argv=(sys.executable, "-c", "raise SystemExit(3)"),
                                  env={}, port=0))
    assert child.proc is not None
    child.proc.wait()
    now = time.monotonic()
    notes = sup.tend(now)
    assert "crashy exited with code 3; restarting in 2s" in notes[0]
    assert sup.tend(now + 1) == []
    notes = sup.tend(now + 2.1)
    assert notes == [f"crashy restarted (pid {child.pid})"]
    for _ in range(10):
        child.proc.wait()
        now = time.monotonic()
        sup.tend(now)
        sup.tend(now + 60)
        if child.failed:
            break
    assert child.failed
    sup.stop_all(grace=1)


def test_children_die_with_a_killed_supervisor(tmp_path: Path) -> None:
    """SIGKILL the supervisor: PR_SET_PDEATHSIG takes its children down too."""
    port = free_port()
    script = textwrap.dedent(f"""
        import json, sys, time
        from pathlib import Path
        from igny8.plan import ProcessSpec
        from igny8.supervisor import Supervisor
        sup = Supervisor(logs_dir=Path({str(tmp_path)!r}), cwd=Path({str(REPO_ROOT)!r}))
        child = sup.spawn(ProcessSpec(name="orphan", kind="api",
            argv=(sys.executable, "-c", {HEALTH_SERVER!r}, "{port}"),
            env={{"GREETING": "x"}}, port={port},
            health=("http://127.0.0.1:{port}/healthz",)))
        sup.wait_healthy(20)
        print(json.dumps({{"child": child.pid}}), flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                              cwd=REPO_ROOT)
    assert parent.stdout is not None
    line = parent.stdout.readline()
    child_pid = json.loads(line)["child"]
    assert psutil.pid_exists(child_pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(child_pid) and psutil.Process(child_pid).status() != "zombie":
        assert time.monotonic() < deadline, "the child outlived its supervisor"
        time.sleep(0.05)
