"""What the gateway costs, measured on the real platform.

    python -m bench.gateway [--seconds 5] [--repetitions 5]

Starts the whole platform with `igny8 up` in a temporary home, registers two users, and
loads it with wrk (C, one thread: little CPU taken from what is measured):

- `GET /api/v1/auth/me/` straight to the auth service and through the gateway, at 8
  connections (requests/s, p50/p99) and at 1 connection (added latency), with rate limits
  on but raised so they never trip;
- a gateway-only route (`/api/v1/system/ping/`) and the 429 path (a user past its limit).

Cases are interleaved and repeated; medians are printed. The gateway's CPU time per
request comes from its process's CPU counters over each run. Goals (issue #2): throughput
through the gateway >= 85 % of direct; added p50 <= 0.5 ms and p99 <= 1.5 ms at one
connection; gateway CPU <= 250 us per request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench import wrk
from bench.platform import call, login, platform
from bench.wrk import WrkResult
from gateway.routes import RATE_LIMITS, scope_for

ME = "/api/v1/auth/me/"
PING = "/api/v1/system/ping/"
LIMITED = "/api/v1/billing/credits/balance/"
RESULTS = Path(__file__).parent / "results" / "gateway.json"


@dataclass
class Case:
    name: str
    url: str
    token: str | None
    connections: int
    through_gateway: bool
    runs: list[WrkResult] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(r, attr) for r in self.runs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repetitions", type=int, default=5,
                        help="interleaved runs of every case; the machine is shared, so "
                             "more runs make the medians steadier")
    args = parser.parse_args()
    wrk.ensure_wrk()
    me_scope = scope_for("GET", ME)
    limited_scope = scope_for("GET", LIMITED)
    assert me_scope is not None
    assert limited_scope is not None
    assert me_scope != limited_scope
    with tempfile.TemporaryDirectory(prefix="igny8-bench-") as tmp, \
            platform(Path(tmp), {me_scope: 1_000_000_000}) as run:
        ports = run["ports"]
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        auth = f"http://127.0.0.1:{ports['auth-api']}"
        gw_pid = next(p["pid"] for p in run["processes"] if p["name"] == "gateway")
        gw_proc = psutil.Process(gw_pid)
        api = gateway + "/api/v1/"
        token = login(api, f"bench-{int(time.time())}@example.com")
        limited_token = login(api, f"bench-limited-{int(time.time())}@example.com")
        for _ in range(RATE_LIMITS[limited_scope] + 1):  # spend the whole quota
            with contextlib.suppress(Exception):
                call(gateway + LIMITED, token=limited_token)
        cases = [
            Case("auth direct, 8 conn", auth + ME, token, 8, False),
            Case("via gateway, 8 conn", gateway + ME, token, 8, True),
            Case("auth direct, 1 conn", auth + ME, token, 1, False),
            Case("via gateway, 1 conn", gateway + ME, token, 1, True),
            Case("gateway ping, 8 conn", gateway + PING, None, 8, True),
            Case("gateway 429 path, 8 conn", gateway + LIMITED, limited_token, 8, True),
        ]
        for case in cases:  # warm connections, token caches, JIT-free but cache-full
            wrk.run(case.url, token=case.token, connections=case.connections, seconds=1)
        for rep in range(args.repetitions):
            for case in cases:
                cpu_before = sum(gw_proc.cpu_times()[:2])
                result = wrk.run(case.url, token=case.token, connections=case.connections,
                                 seconds=args.seconds)
                cpu = sum(gw_proc.cpu_times()[:2]) - cpu_before
                case.runs.append(result)
                if case.through_gateway:
                    case.cpu_us.append(cpu / max(result.requests, 1) * 1e6)
            print(f"repetition {rep + 1}/{args.repetitions} done", flush=True)
    report(cases, args)


def report(cases: list[Case], args: argparse.Namespace) -> None:
    by = {c.name: c for c in cases}
    print(f"\nGateway benchmark: medians of {args.repetitions} interleaved runs of "
          f"{args.seconds} s (wrk, 1 thread), {os.cpu_count()} cores")
    print(f"{'case':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
          f"{'gw CPU us/req':>14}")
    for c in cases:
        cpu = f"{statistics.median(c.cpu_us):14.0f}" if c.cpu_us else f"{'-':>14}"
        print(f"{c.name:<26} {c.median('rps'):9.0f} {c.median('p50_ms'):8.3f} "
              f"{c.median('p99_ms'):8.3f} {int(c.median('non_2xx')):8d} {cpu}")
    direct8, gw8 = by["auth direct, 8 conn"], by["via gateway, 8 conn"]
    direct1, gw1 = by["auth direct, 1 conn"], by["via gateway, 1 conn"]
    summary = {
        "throughput_ratio": gw8.median("rps") / direct8.median("rps"),
        "added_p50_ms_1conn": gw1.median("p50_ms") - direct1.median("p50_ms"),
        "added_p99_ms_1conn": gw1.median("p99_ms") - direct1.median("p99_ms"),
        "gateway_cpu_us_per_request": statistics.median(gw8.cpu_us),
    }
    print(f"\nthroughput through the gateway / direct: {summary['throughput_ratio']:.1%}"
          f"   (goal >= 85 %)")
    print(f"added latency at 1 connection: p50 {summary['added_p50_ms_1conn']:.3f} ms "
          f"(goal <= 0.5), p99 {summary['added_p99_ms_1conn']:.3f} ms (goal <= 1.5)")
    print(f"gateway CPU per proxied request: {summary['gateway_cpu_us_per_request']:.0f} us"
          f"   (goal <= 250)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "summary": summary,
        "cases": {c.name: {"rps": c.median("rps"), "p50_ms": c.median("p50_ms"),
                           "p99_ms": c.median("p99_ms"), "non_2xx": c.median("non_2xx"),
                           "gateway_cpu_us": statistics.median(c.cpu_us) if c.cpu_us else None}
                  for c in cases},
    }, indent=2))


if __name__ == "__main__":
    main()
