"""Gateway overhead: added p50 latency at one connection and gateway CPU per request.

    .venv/bin/python -m bench.gateway [--requests 2000]

Starts embedded NATS, a minimal upstream and the gateway exactly as deployed
(`uvicorn gateway.main:create_app --factory --loop uvloop --http httptools --no-access-log`),
then sends sequential keep-alive requests with a verified Bearer token, once straight to the
upstream and once through the gateway: with rate limits off (proxy path alone) and on (one
KV compare-and-set per request). Targets: CPU <= 250 us/request, added p50 <= 0.5 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

from libs.common.embedded import EmbeddedNats, free_port, port_open
from libs.common.testing.tokens import TestIssuer

PATH = "/api/v1/planner/keywords/1/"


def start_uvicorn(target: str, port: int, env: dict[str, str], factory: bool = False
                  ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "uvicorn", target, "--port", str(port), "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    if factory:
        args.append("--factory")
    proc = subprocess.Popen(args, env={**os.environ, **env})
    deadline = time.monotonic() + 30
    while not port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{target} did not start")
        time.sleep(0.05)
    return proc


def run(port: int, tokens: list[str], count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    latencies = []
    for i in range(count):
        headers = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        started = time.perf_counter()
        conn.request("GET", PATH, headers=headers)
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - started)
        if resp.status != 200:
            raise RuntimeError(f"unexpected {resp.status} at request {i}")
    conn.close()
    return latencies


def measure(name: str, port: int, tokens: list[str], count: int, pid: int | None,
            baseline: float | None) -> float:
    run(port, tokens, min(len(tokens), count))  # warm: connections, token cache
    proc = psutil.Process(pid) if pid else None
    cpu_before = sum(proc.cpu_times()[:2]) if proc else 0.0
    latencies = run(port, tokens, count)
    cpu = (sum(proc.cpu_times()[:2]) - cpu_before) / count if proc else 0.0
    p50 = statistics.median(latencies) * 1000
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    line = f"{name:<28} p50 {p50:6.3f} ms  p99 {p99:6.3f} ms"
    if baseline is not None:
        line += f"  added p50 {p50 - baseline:6.3f} ms"
    if proc:
        line += f"  gateway CPU {cpu * 1e6:6.1f} us/request"
    print(line, flush=True)
    return p50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    count = args.requests
    issuer = TestIssuer()
    # Rate limits are per user: enough users that the measured loop never hits 60/min.
    users = count // 50 + 2
    tokens = [issuer.issue(user_id=10_000 + i, account_id=1, ttl=3600) for i in range(users)]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="igny8-bench-") as tmp:
        jwks = Path(tmp) / "jwks.json"
        jwks.write_bytes(orjson.dumps(issuer.jwks()))
        nats = EmbeddedNats(Path(tmp) / "nats")
        nats.start()
        try:
            up_port = free_port()
            procs.append(start_uvicorn("bench.gateway_upstream:app", up_port,
                                       {"BENCH_JWKS_FILE": str(jwks)}))
            upstream = f"http://127.0.0.1:{up_port}"
            base_env = {"IGNY8_NATS_URL": nats.url, "IGNY8_JWKS_URL": upstream + "/jwks",
                        "IGNY8_PLANNER_URL": upstream, "IGNY8_LOG_LEVEL": "WARNING"}
            baseline = measure("upstream direct", up_port, tokens, count, None, None)
            for label, extra in (("gateway, limits off", {"IGNY8_DEBUG_THROTTLE": "True"}),
                                 ("gateway, limits on (CAS)", {})):
                port = free_port()
                gw = start_uvicorn("gateway.main:create_app", port, {**base_env, **extra},
                                   factory=True)
                procs.append(gw)
                measure(label, port, tokens, count, gw.pid, baseline)
                gw.terminate()
                gw.wait(10)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
            nats.stop()


if __name__ == "__main__":
    main()
