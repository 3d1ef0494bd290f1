"""One benchmark on two trees, alternating, on this host: is this tree within noise of another?

    python -m bench.ab --tree /path/to/other/checkout [--rounds 3] billing planner gateway
    python -m bench.ab --tree ../record planner -- --keywords 200000
    python -m bench.ab --tree ../good --this ../bad --rounds 2 planner -- --keywords 200000

Figures of record were taken on another day's host; a host twice as slow halves every
rate, so comparing today's run with them says nothing about the code. This runs the same
benchmark in the other tree (a checkout with its own `.venv`, e.g. `git worktree add
--detach ../record cc989fd && make -C ../record install`) and in this one, one after the
other, `--rounds` times, swapping which goes first each round so that neither always
runs on a warmer or quieter machine. It prints each figure's runs and medians for both
trees and this tree's median as a percentage of the other's. Arguments after `--` go to
every run of the benchmarks.

Only the figures named in `FIGURES` are compared; each benchmark's whole output is kept
in bench/results/ab-<bench>-<tree>-<round>.txt.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

_NUM = r"([0-9][0-9,]*\.?[0-9]*)"
_PLANNER_CASE = (r"\({case}\) count=\S+\s+1 conn: p50 " + _NUM + r" ms p99 \S+ ms " + _NUM
                 + r" req/s \| 8 conns: p50 \S+ ms p99 \S+ ms " + _NUM + " req/s")

# bench -> [(figure, regex with one number group, or (regex, group index)), higher is better]
FIGURES: dict[str, list[tuple[str, str, int, bool]]] = {
    "billing": [
        ("hold+capture through NATS, pairs/s", r"through NATS .*= *" + _NUM + " pairs/s", 1,
         True),
        ("direct SQL, pairs/s", r"direct SQL .*= *" + _NUM + " pairs/s", 1, True),
        ("NATS / direct, %", r"ratio NATS / direct *: *" + _NUM, 1, True),
    ],
    "automation": [
        ("wall, s", r"keywords \(\d+ topics\): \w+, .*wall " + _NUM + " s", 1, False),
        ("overhead", r"overhead " + _NUM, 1, False),
        ("time between steps, s", r"stage between: \{'steps_s': " + _NUM, 1, False),
        ("stage 5's last debit applied after its publish, s",
         r"stage 5's debits: .*'applied_s': " + _NUM, 1, False),
        ("stage 6's last debit applied after its publish, s",
         r"stage 6's debits: .*'applied_s': " + _NUM, 1, False),
    ],
    "planner": [
        *[(f"({case}) {label}", _PLANNER_CASE.format(case=case), group, higher)
          for case in "abc"
          for label, group, higher in (("1 conn p50 ms", 1, False), ("1 conn req/s", 2, True),
                                       ("8 conn req/s", 3, True))],
        ("import rows/s", r"'rows_per_s': " + _NUM, 1, True),
    ],
    "gateway": [
        ("through the gateway / direct, %", r"through the gateway / direct: " + _NUM, 1, True),
        ("added p50 at 1 conn, ms", r"added latency at 1 connection: p50 " + _NUM, 1, False),
        ("gateway CPU per proxied request, us", r"gateway CPU per proxied request: " + _NUM, 1,
         False),
        ("ping CPU per request, us (the host's thermometer)",
         r"gateway ping, 8 conn\s+\S+\s+\S+\s+\S+\s+\S+\s+" + _NUM, 1, False),
        ("auth direct, 8 conn, req/s", r"auth direct, 8 conn\s+" + _NUM, 1, True),
    ],
}


def run_once(tree: Path, bench: str, extra: list[str], label: str, round_: int) -> str:
    """Run `python -m bench.<bench>` in `tree` with that tree's own interpreter, its code
    first on the path (PYTHONPATH, inherited by the processes `igny8 up` starts), so two
    trees may share one virtualenv through a `.venv` symlink."""
    python = tree / ".venv" / "bin" / "python"
    print(f"--- round {round_}: bench.{bench} in {label} ({tree})", flush=True)
    done = subprocess.run([str(python), "-m", f"bench.{bench}", *extra], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)},
                          capture_output=True, text=True, check=False)
    output = done.stdout + done.stderr
    results = HERE / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"ab-{bench}-{label}-{round_}.txt").write_text(output)
    if done.returncode != 0:
        print(output[-3000:])
        raise SystemExit(f"bench.{bench} failed in {tree} (exit {done.returncode})")
    return output


def figures(bench: str, output: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for name, pattern, group, _ in FIGURES[bench]:
        match = re.search(pattern, output)
        if match:
            found[name] = float(match.group(group).replace(",", "").rstrip("."))
    return found


def _spread(median: float, values: list[float]) -> str:
    return f"{median:.4g} ({min(values):.4g}-{max(values):.4g})"


def report(bench: str, runs: dict[str, list[dict[str, float]]]) -> None:
    print(f"\nbench.{bench}: medians of {len(runs['other'])} alternating runs per tree")
    print(f"  {'figure':<52} {'other tree':>22} {'this tree':>22} {'this/other':>10}")
    for name, _, _, higher in FIGURES[bench]:
        other = [r[name] for r in runs["other"] if name in r]
        this = [r[name] for r in runs["this"] if name in r]
        if not other or not this:
            print(f"  {name:<52} (not printed by one of the trees)")
            continue
        a, b = statistics.median(other), statistics.median(this)
        ratio = f"{100 * b / a:9.1f}%" if a else "-"
        better = "higher is better" if higher else "lower is better"
        print(f"  {name:<52} {_spread(a, other):>22} {_spread(b, this):>22} {ratio}  {better}")


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, required=True, help="the other checkout")
    parser.add_argument("--this", type=Path, default=HERE,
                        help="the checkout measured against it (default: this one); two "
                        "older checkouts may be compared, e.g. to bisect a regression")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("benches", nargs="+", choices=sorted(FIGURES))
    args = parser.parse_args(argv)
    trees = {"other": args.tree.resolve(), "this": args.this.resolve()}
    for bench in args.benches:
        runs: dict[str, list[dict[str, float]]] = {"other": [], "this": []}
        for round_ in range(1, args.rounds + 1):
            order = ["other", "this"] if round_ % 2 else ["this", "other"]
            for label in order:
                output = run_once(trees[label], bench, extra, label, round_)
                runs[label].append(figures(bench, output))
        report(bench, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
