"""Child processes of `igny8 up`: start, health-check, restart on a crash, stop cleanly.

Every child runs in its own process group (a Ctrl-C reaches only the supervisor, which
then stops things in order: gateway, services, NATS, PostgreSQL) and with
PR_SET_PDEATHSIG, so even a SIGKILLed supervisor leaves no orphans. Children are spawned
from the main thread only: the kernel signals a child when the *thread* that forked it
exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from igny8.plan import ProcessSpec
from libs.common.embedded import die_with_parent

Say = Callable[[str], None]
HealthCheck = Callable[[str], bool]

MAX_QUICK_RESTARTS = 5
STABLE_AFTER_SECONDS = 30.0


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


class StartupFailed(RuntimeError):
    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


@dataclass
class Child:
    spec: ProcessSpec
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_restarts: int = 0
    restart_at: float | None = None
    failed: bool = False
    healthy: bool = False
    checks_passed: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def waiting_for(self) -> str | None:
        if self.healthy or self.checks_passed >= len(self.spec.health):
            return None
        return self.spec.health[self.checks_passed]


@dataclass
class Supervisor:
    logs_dir: Path
    cwd: Path
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    say: Say = print
    check: HealthCheck = http_ok
    children: list[Child] = field(default_factory=list)

    # -- starting ---------------------------------------------------------------------

    def spawn(self, spec: ProcessSpec) -> Child:
        child = Child(spec=spec, log_path=self.logs_dir / f"{spec.name}.log")
        self.children.append(child)
        self._launch(child)
        return child

    def _launch(self, child: Child) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        with open(child.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"\n=== {stamp} igny8 up starts {child.name}: "
                      f"{' '.join(child.spec.argv)}\n".encode())
            log.flush()
            child.proc = subprocess.Popen(
                list(child.spec.argv),
                cwd=self.cwd,
                env={**self.base_env, **child.spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        child.started_at = time.monotonic()
        child.restart_at = None
        child.healthy = False
        child.checks_passed = 0

    def start_all(self, specs: Sequence[ProcessSpec]) -> list[Child]:
        return [self.spawn(spec) for spec in specs]

    # -- health -----------------------------------------------------------------------

    def poll_health(self) -> list[Child]:
        """One round of health checks; returns the children that became healthy.
        Raises StartupFailed when a child exits before it is healthy."""
        became: list[Child] = []
        for child in self.children:
            if child.healthy or child.failed:
                continue
            if not child.alive():
                code = child.proc.returncode if child.proc else None
                raise StartupFailed(f"{child.name} exited with code {code} before it was "
                                    f"healthy (log: {child.log_path})", tail(child.log_path))
            while (url := child.waiting_for()) is not None and self.check(url):
                child.checks_passed += 1
            if child.waiting_for() is None:
                child.healthy = True
                became.append(child)
        return became

    def pending(self) -> list[Child]:
        return [c for c in self.children if not c.healthy and not c.failed]

    def wait_healthy(
        self,
        timeout: float,
        on_ready: Callable[[Child, float], None] = lambda c, t: None,
        on_tick: Callable[[list[Child], float], None] = lambda p, t: None,
        interval: float = 0.25,
    ) -> None:
        started = time.monotonic()
        deadline = started + timeout
        while True:
            for child in self.poll_health():
                on_ready(child, time.monotonic() - started)
            pending = self.pending()
            if not pending:
                return
            now = time.monotonic()
            if now > deadline:
                names = ", ".join(f"{c.name} ({c.waiting_for()})" for c in pending)
                raise StartupFailed(f"not healthy after {timeout:.0f}s: {names}",
                                    tail(pending[0].log_path))
            on_tick(pending, now - started)
            time.sleep(interval)

    # -- running ----------------------------------------------------------------------

    def tend(self, now: float | None = None) -> list[str]:
        """Restart children that died, with backoff; give up on one that keeps crashing.
        Returns what happened, for the console."""
        now = time.monotonic() if now is None else now
        notes: list[str] = []
        for child in self.children:
            if child.failed or child.alive():
                continue
            if child.restart_at is None:
                code = child.proc.returncode if child.proc else None
                ran = now - child.started_at
                stable = ran >= STABLE_AFTER_SECONDS
                child.quick_restarts = 0 if stable else child.quick_restarts + 1
                if child.quick_restarts > MAX_QUICK_RESTARTS:
                    child.failed = True
                    notes.append(f"{child.name} keeps crashing (exit {code}); giving up on it. "
                                 f"Last lines of {child.log_path}:\n{tail(child.log_path, 15)}")
                    continue
                delay = min(2.0 ** child.quick_restarts, 30.0)
                child.restart_at = now + delay
                notes.append(f"{child.name} exited with code {code}; restarting in {delay:.0f}s "
                             f"(log: {child.log_path})")
            elif now >= child.restart_at:
                self._launch(child)
                child.healthy = True  # it was healthy before; `igny8 status` checks again
                notes.append(f"{child.name} restarted (pid {child.pid})")
        return notes

    # -- stopping ---------------------------------------------------------------------

    def stop_all(self, grace: float = 15.0, hurry: Callable[[], bool] = lambda: False) -> None:
        """SIGTERM every child (gateway first), wait up to `grace`, SIGKILL stragglers."""
        running = [c for c in reversed(self.children) if c.alive()]
        for child in running:
            self._signal(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.alive() for c in running) and time.monotonic() < deadline and not hurry():
            time.sleep(0.05)
        hurried = hurry()
        for child in running:
            if child.alive():
                self.say(f"{child.name}: asked again to stop: killing it" if hurried
                         else f"{child.name} did not stop in {grace:.0f}s: killing it")
                self._signal(child, signal.SIGKILL)
        for child in running:
            if child.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(5)
        # Anything a child left behind in its process group goes too.
        for child in self.children:
            if child.pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)

    @staticmethod
    def _signal(child: Child, sig: int) -> None:
        if child.pid is None:
            return
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        except PermissionError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, sig)
