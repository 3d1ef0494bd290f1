"""`igny8 up` as a process, as a user starts it, for the end-to-end tests
(`tests/e2e/conftest.py`): its printed API URL read from its output, its state file,
and a superuser connection to a service's database (what an operator can do)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[2]
API_LINE = re.compile(r"API\s+(http://localhost:\d+/api/v1/)")


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

    def connect(self, service: str) -> psycopg.Connection:  # type: ignore[type-arg]
        """A superuser connection to a service's database (what an operator can do)."""
        port = self.state()["postgres"]["port"]
        return psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/igny8_{service}",
                               autocommit=True)
