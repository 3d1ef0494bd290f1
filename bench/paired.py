"""Planner lists on two trees at once: both platforms up side by side, requests alternating.

    python -m bench.paired --tree /path/to/other/checkout [--keywords 200000]
                           [--rounds 16] [--batch 150] [--import-rows 20000]
                           [--import-rounds 4]

`bench.ab` runs a whole benchmark in one tree, then in the other: on a host whose speed
drifts (single runs of one tree here differ by up to 15 %), a difference of a few percent
takes many rounds to see. This starts both trees' platforms (`igny8 up`, each with its own
PostgreSQL and NATS and the bench's account holding `--keywords` keywords), then sends
batches of `--batch` list requests, one connection, to one platform and then the other,
`--rounds` times, swapping which goes first each round. Both see the same state of the
host within seconds. For each of the three lists of `bench.planner` it prints, per
request, the wall time and the CPU time of each platform's processes by kind (the
planner's API, its PostgreSQL backends, the gateway, ...), and this tree's figure as a
percentage of the other's (as `bench.ab` does; here lower is better). CPU times come
from /proc (psutil) and are the steadier figure: they do not count the time a process
waited for the CPU. Then it times CSV imports of `--import-rows` new keywords through
each gateway, alternating, `--import-rounds` per tree.

The other tree needs a `.venv` (a symlink to this tree's will do: each platform runs its
own tree's code, first on PYTHONPATH) and a `bench.planner` with `set_up_account`,
`make_room` and `load` (any tree since 2026-11-23).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import httpx
import psutil

from bench.planner import CASES, IMPORT, keywords_csv

HERE = Path(__file__).resolve().parent.parent

# Run by each tree's own interpreter, cwd and PYTHONPATH that tree: its platform and the
# bench's account, then the gateway's address and a token on stdout, then up until stdin
# closes.
SERVE = """
import json, sys, tempfile
from pathlib import Path
from psycopg.conninfo import make_conninfo
from bench import planner as bp
from bench.platform import platform
from gateway.routes import scope_for
keywords, room = int(sys.argv[1]), int(sys.argv[2])
scopes = {scope_for("GET", bp.LIST), scope_for("POST", bp.IMPORT)}
with tempfile.TemporaryDirectory(prefix="igny8-bench-paired-") as home, \\
        platform(Path(home), {str(s): 10**9 for s in scopes}) as run:
    gateway = f"http://127.0.0.1:{run['ports']['gateway']}"
    planner_url = make_conninfo(run["postgres"]["url"], dbname="igny8_planner")
    token, target = bp.set_up_account(gateway + "/api/v1/", planner_url)
    bp.make_room(planner_url, target, keywords + room)
    bp.load(planner_url, target, keywords)
    print(json.dumps({"gateway": gateway, "token": token, "site_id": target.site_id,
                      "sector_id": target.sector_ids[0]}), flush=True)
    sys.stdin.read()
"""


class Platform:
    """One tree's platform, started by that tree's code in a child process."""

    def __init__(self, tree: Path, keywords: int, room: int) -> None:
        self.tree = tree
        self.processes: list[tuple[psutil.Process, str]] = []
        self.proc = subprocess.Popen(
            [str(tree / ".venv" / "bin" / "python"), "-c", SERVE, str(keywords), str(room)],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree)}, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)

    def ready(self) -> None:
        assert self.proc.stdout is not None
        while True:  # bench.planner says what it loaded; the address comes last
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"the platform of {self.tree} did not come up")
            if line.startswith("{"):
                break
            print(f"{self.tree.name}: {line.rstrip()}", flush=True)
        answer = json.loads(line)
        self.target = {"site_id": str(answer["site_id"]), "sector_id": str(answer["sector_id"])}
        self.client = httpx.Client(base_url=answer["gateway"], timeout=30,
                                   headers={"Authorization": f"Bearer {answer['token']}"})

    def find_processes(self) -> None:
        """The processes `igny8 up` started, PostgreSQL's backends among them (after a
        warm-up, so that the pools' connections exist), each with its kind."""
        self.processes = [(process, kind(" ".join(process.cmdline())))
                          for process in psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def cpu(self) -> dict[int, tuple[float, str]]:
        """CPU seconds so far and kind, by pid."""
        seen: dict[int, tuple[float, str]] = {}
        for process, kind_of in self.processes:
            try:
                times = process.cpu_times()
                seen[process.pid] = (times.user + times.system, kind_of)
            except psutil.Error:
                pass
        return seen

    def batch(self, path: str, n: int, totals: dict[str, float]) -> float:
        """Wall seconds for `n` requests; each process kind's CPU seconds added to `totals`."""
        before = self.cpu()
        started = time.perf_counter()
        for _ in range(n):
            self.client.get(path).raise_for_status()
        wall = time.perf_counter() - started
        for pid, (seconds, kind_of) in self.cpu().items():
            totals[kind_of] += seconds - before.get(pid, (seconds,))[0]
        return wall

    def import_csv(self, rows: int, seed: int) -> float:
        """Rows per second of one CSV import of `rows` new keywords through the gateway."""
        data = keywords_csv(rows, prefix=f"paired {time.time_ns()}", seed=seed)
        started = time.perf_counter()
        answer = self.client.post(IMPORT, data=self.target, timeout=600,
                                  files={"file": ("k.csv", data, "text/csv")})
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        report = answer.json().get("data", answer.json())
        assert report["imported"] == rows, report
        return rows / elapsed


def kind(command: str) -> str:
    if command.startswith("postgres:"):
        return "postgres " + command.split()[1]
    for name in ("planner.main", "gateway.server", "auth.main", "nats-server"):
        if name in command:
            return name
    return "other processes"


def compare(platforms: dict[str, Platform], path: str, rounds: int, batch: int) -> None:
    cpu: dict[str, dict[str, float]] = {label: defaultdict(float) for label in platforms}
    wall = dict.fromkeys(platforms, 0.0)
    for platform in platforms.values():  # warm both up, outside the figures
        platform.batch(path, batch, defaultdict(float))
        platform.find_processes()
    labels = list(platforms)
    for round_ in range(rounds):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            wall[label] += platforms[label].batch(path, batch, cpu[label])
    n = rounds * batch

    def row(name: str, other: float, this: float) -> None:
        ratio = f"{100 * this / other:7.1f}%" if other else "      -"
        print(f"  {name:<34} {1000 * other / n:10.3f} {1000 * this / n:10.3f} {ratio}")

    row("wall", wall["other"], wall["this"])
    row("CPU, all processes", sum(cpu["other"].values()), sum(cpu["this"].values()))
    for name in sorted(set(cpu["other"]) | set(cpu["this"]), key=lambda k: -cpu["other"][k]):
        if (cpu["other"][name] + cpu["this"][name]) * 1000 / n >= 0.005:
            row(name, cpu["other"][name], cpu["this"][name])


def compare_imports(platforms: dict[str, Platform], rows: int, rounds: int) -> None:
    rates: dict[str, list[float]] = {label: [] for label in platforms}
    labels = list(platforms)
    for round_ in range(rounds):
        for label in labels if round_ % 2 == 0 else labels[::-1]:
            rates[label].append(platforms[label].import_csv(rows, round_))
            time.sleep(2)  # what an import publishes is consumed before the next one
    other, this = statistics.median(rates["other"]), statistics.median(rates["this"])
    print(f"\nCSV import of {rows:,} new keywords through the gateway, {rounds} per tree, "
          f"alternating: rows/s (higher is better)\n"
          f"  other {other:,.0f} {[round(r) for r in rates['other']]}\n"
          f"  this  {this:,.0f} {[round(r) for r in rates['this']]}  this/other "
          f"{100 * this / other:.1f}%")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="the other checkout")
    parser.add_argument("--keywords", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--import-rows", type=int, default=20_000)
    parser.add_argument("--import-rounds", type=int, default=4)
    args = parser.parse_args(argv)
    room = args.import_rows * args.import_rounds
    platforms = {"this": Platform(HERE, args.keywords, room),
                 "other": Platform(args.tree.resolve(), args.keywords, room)}
    try:
        for platform in platforms.values():
            platform.ready()
        print(f"this tree: {HERE}\nother tree: {args.tree.resolve()}\n"
              f"{args.keywords:,} keywords each; {args.rounds} rounds of {args.batch} "
              "requests per tree and list, one connection, alternating")
        for name, path in CASES.items():
            print(f"\n({name}) {path}\n  {'ms per request':<34} {'other':>10} {'this':>10}"
                  "  this/other")
            compare(platforms, path, args.rounds, args.batch)
        if args.import_rows and args.import_rounds:
            compare_imports(platforms, args.import_rows, args.import_rounds)
    finally:
        for platform in platforms.values():
            platform.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
