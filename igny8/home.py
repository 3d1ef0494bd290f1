"""The local state directory of `igny8 up` (`.igny8/` or `$IGNY8_HOME`).

    .igny8/
      pgdata/        embedded PostgreSQL cluster
      nats/          NATS JetStream store
      logs/          one log file per process (postgres.log, nats.log, auth-api.log, ...)
      secrets.json   generated secret key, database role passwords, demo password (0600)
      state.json     what runs now: pids, ports, URLs; and the seed marker
      up.lock        held by the running `igny8 up`

Everything in it survives restarts; `make clean` deletes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from libs.common.natsauth import GATEWAY_USER


def home_dir(env: dict[str, str] | None = None, cwd: Path | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if value := env.get("IGNY8_HOME"):
        return Path(value).expanduser().resolve()
    return ((cwd or Path.cwd()) / ".igny8").resolve()


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def nats_store(self) -> Path:
        return self.root / "nats"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.root / "up.lock"

    def log(self, process: str) -> Path:
        return self.logs / f"{process}.log"

    def ensure(self) -> Home:
        for path in (self.root, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        return self


def _write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


@dataclass
class Secrets:
    """Generated once per state directory and kept (0600) so data stays readable: the
    token secret, the demo password, each service's database password and each
    process's NATS password (libs/common/natsauth.py: one NATS user per service, and
    the gateway)."""

    secret_key: str
    demo_password: str
    db_passwords: dict[str, str] = field(default_factory=dict)
    nats_passwords: dict[str, str] = field(default_factory=dict)

    def db_password(self, service: str) -> str:
        return self.db_passwords[service]

    @classmethod
    def load_or_create(cls, home: Home, services: Iterable[str]) -> Secrets:
        data = _read_json(home.secrets_file)
        current = cls(
            secret_key=data.get("secret_key") or secrets.token_urlsafe(48),
            demo_password=data.get("demo_password") or _demo_password(),
            db_passwords=dict(data.get("db_passwords") or {}),
            nats_passwords=dict(data.get("nats_passwords") or {}),
        )
        names = list(services)
        for name in names:
            current.db_passwords.setdefault(name, secrets.token_urlsafe(24))
        for user in (*names, GATEWAY_USER):
            current.nats_passwords.setdefault(user, secrets.token_urlsafe(24))
        as_dict = {
            "secret_key": current.secret_key,
            "demo_password": current.demo_password,
            "db_passwords": current.db_passwords,
            "nats_passwords": current.nats_passwords,
        }
        if as_dict != data:
            home.root.mkdir(parents=True, exist_ok=True)
            _write_json(home.secrets_file, as_dict, mode=0o600)
        return current


def _demo_password() -> str:
    """Readable enough to type, strong enough not to guess: demo-xxxx-xxxx-xxxx."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    groups = ["".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3)]
    return "demo-" + "-".join(groups)


class StateFile:
    """`state.json`: the running platform (`run`) and markers that outlive runs (`seed`)."""

    def __init__(self, home: Home) -> None:
        self.path = home.state_file

    def read(self) -> dict[str, Any]:
        return _read_json(self.path)

    def update(self, **members: Any) -> dict[str, Any]:
        data = self.read()
        for key, value in members.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(self.path, data)
        return data


class AlreadyRunning(RuntimeError):
    pass


@contextlib.contextmanager
def exclusive(home: Home) -> Iterator[TextIO]:
    """Held for the whole life of `igny8 up`; released by the kernel even on SIGKILL."""
    home.ensure()
    fh = open(home.lock_file, "a+")  # noqa: SIM115 - closed below
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another `igny8 up` is running on {home.root} (see `igny8 status`)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield fh
    finally:
        fh.close()


def lock_held(home: Home) -> bool:
    if not home.lock_file.exists():
        return False
    with open(home.lock_file) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
