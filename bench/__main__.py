"""`make bench`: every benchmark, one after the other, each in its own process.

    python -m bench                 # all of them
    python -m bench gateway billing # some of them

Each prints its own figures and ratios; results land in bench/results/ as JSON where
the benchmark writes them, and the figures of record are in docs/benchmarks.md.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = {
    "gateway": "overhead of the gateway over auth's /me, ping and the 429 path (issue #2)",
    "gateway_attacks": "what slow heads, stalled bodies and unread answers make the gateway "
                       "hold (issue #13, H1/H2)",
    "billing": "hold+capture pairs per second through NATS vs direct SQL (issue #3)",
    "clustering": "clustering quality (ARI, P/R) and speed at 10k/50k keywords (issue #4)",
    "planner": "keyword lists over 1,000,000 rows and CSV import speed (issue #4)",
    "rows": "a list page's rows as dicts, typed rows or ORM objects (issue #9, ADR 0018)",
    "wordpress": "50 posts to a real WordPress: calls per post, time over WordPress (issue #11)",
    "images": "offline image render time per image type; fitting a provider's image (#10)",
    "writer": "local draft per 1,200-word article, optimizer per 2,000 words, and 50 tasks "
              "in one auto_generate_content through the gateway vs the engines (issue #10)",
    "linker": "internal links: precision/recall on the labelled set, 10,000 pages indexed "
              "(issue #11)",
    "automation": "100 and 1,000 keywords -> drafts with images: wall time, overhead over "
                  "the jobs (#12)",
}


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in chosen:
        print(f"\n=== bench.{name}: {BENCHMARKS[name]}", flush=True)
        started = time.monotonic()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"=== bench.{name} finished in {time.monotonic() - started:.0f} s (exit {code})",
              flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
