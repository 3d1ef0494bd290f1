"""Load from wrk (C, cheap on CPU), its figures read back as JSON from a Lua `done` hook
rather than scraped from its human-readable report. Shared by every HTTP benchmark."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_SCRIPT = """
%s
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"p50\\": %%f, \\"p99\\": %%f, \\"requests\\": %%d, "
    .. "\\"non_2xx\\": %%d, \\"errors\\": %%d, \\"duration_us\\": %%d}\\n",
    latency:percentile(50), latency:percentile(99), summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, summary.duration))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int  # answers with status >= 400
    errors: int  # connect/read/write errors and timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def ensure_wrk() -> str:
    """wrk from Debian's package: installed on the spot when we are root and it is missing."""
    found = shutil.which("wrk")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk (Debian package) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        found = shutil.which("wrk")
    if not found:
        sys.exit("these benchmarks need wrk: apt-get install wrk")
    return found


def run(url: str, *, token: str | None = None, connections: int = 8, seconds: int = 5,
        threads: int = 1) -> WrkResult:
    headers = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT % headers)
    try:
        out = subprocess.run(
            [ensure_wrk(), "-t", str(min(threads, connections)), "-c", str(connections),
             "-d", f"{seconds}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"JSON (\{.*\})", out)
    if match is None:
        raise RuntimeError(f"wrk printed no figures:\n{out}")
    raw = json.loads(match.group(1))
    return WrkResult(requests=raw["requests"], seconds=raw["duration_us"] / 1e6,
                     p50_ms=raw["p50"] / 1000, p99_ms=raw["p99"] / 1000,
                     non_2xx=raw["non_2xx"], errors=raw["errors"])
