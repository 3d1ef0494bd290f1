"""Clustering benchmark: quality on the labelled set, speed and memory at 10k/50k.

    python -m bench.clustering [--quick]

Quality: adjusted Rand index and pairwise precision/recall of the default local engine
against the hand-labelled topics of bench/data/keywords_labelled.csv, on the dev split
(even rows of each topic, used to tune the defaults), the held-out test split (odd rows)
and the whole set. Speed: synthetic lists of 10,000 and 50,000 distinct keywords built by
combining labelled keywords with realistic modifiers (seeded, so every run is the same),
clustered in a fresh process each so peak memory (ru_maxrss) is per size.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path

DATA = Path(__file__).parent / "data" / "keywords_labelled.csv"

PREFIXES = (
    "best",
    "cheap",
    "top",
    "affordable",
    "buy",
    "compare",
    "how to choose",
    "guide to",
    "where to buy",
    "review of",
    "top rated",
    "discount",
)
SUFFIXES = (
    "for women",
    "for men",
    "for kids",
    "for seniors",
    "for beginners",
    "near me",
    "online",
    "uk",
    "usa",
    "2025",
    "on sale",
    "reviews",
    "price",
    "deals",
    "ideas",
    "tips",
    "under 100",
    "in bulk",
    "with free shipping",
    "comparison",
    "alternatives",
    "for small business",
    "for students",
    "checklist",
    "pros and cons",
    "faq",
    "explained",
)


def load_labelled(path: Path = DATA) -> list[tuple[str, str, int]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["keyword"], r["topic"], int(r["volume"])) for r in csv.DictReader(fh)]


def splits(rows: Sequence[tuple[str, str, int]]) -> tuple[list, list]:
    """Dev = even-numbered rows within each topic, test = odd-numbered ones."""
    seen: Counter[str] = Counter()
    dev, test = [], []
    for row in rows:
        (dev if seen[row[1]] % 2 == 0 else test).append(row)
        seen[row[1]] += 1
    return dev, test


def _pairs(n: int) -> float:
    return n * (n - 1) / 2


def pair_scores(pred: Sequence[Hashable], gold: Sequence[Hashable]) -> dict[str, float]:
    """Adjusted Rand index (Hubert & Arabie) and pairwise precision/recall/F1."""
    n = len(pred)
    joint = Counter(zip(pred, gold, strict=True))
    same_both = sum(_pairs(c) for c in joint.values())
    same_pred = sum(_pairs(c) for c in Counter(pred).values())
    same_gold = sum(_pairs(c) for c in Counter(gold).values())
    total = _pairs(n)
    expected = same_pred * same_gold / total if total else 0.0
    maximum = (same_pred + same_gold) / 2
    ari = (same_both - expected) / (maximum - expected) if maximum != expected else 1.0
    precision = same_both / same_pred if same_pred else 1.0
    recall = same_both / same_gold if same_gold else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"ari": ari, "precision": precision, "recall": recall, "f1": f1}


def evaluate(rows: Sequence[tuple[str, str, int]]) -> dict[str, float]:
    from services.planner.clustering import KeywordInput, LocalClusteringEngine, normalize_keyword

    result = LocalClusteringEngine().cluster([KeywordInput(k, v) for k, _, v in rows])
    where = result.cluster_of()
    scores = pair_scores([where[normalize_keyword(k)] for k, _, _ in rows], [t for _, t, _ in rows])
    scores["clusters"] = len(result.clusters)
    scores["topics"] = len({t for _, t, _ in rows})
    scores["keywords"] = len(rows)
    return scores


def synthetic(n: int, seed: int = 7) -> list[tuple[str, int]]:
    """n distinct keywords: labelled keywords with a prefix and/or one or two suffixes."""
    rows = load_labelled()
    rng = random.Random(seed)
    out: dict[str, int] = {}
    while len(out) < n:
        keyword, _, volume = rng.choice(rows)
        if rng.random() < 0.55:
            keyword = f"{rng.choice(PREFIXES)} {keyword}"
        if rng.random() < 0.85:
            keyword = f"{keyword} {rng.choice(SUFFIXES)}"
        if rng.random() < 0.3:
            keyword = f"{keyword} {rng.choice(SUFFIXES)}"
        out.setdefault(keyword, max(10, volume // rng.randint(5, 50)))
    return sorted(out.items())


def time_one(n: int) -> dict[str, float]:
    """Runs in its own process (see main) so ru_maxrss is this size's peak."""
    from services.planner.clustering import KeywordInput, LocalClusteringEngine

    keywords = [KeywordInput(k, v) for k, v in synthetic(n)]
    engine = LocalClusteringEngine()
    t0 = time.perf_counter()
    engine.cluster([KeywordInput("warm up the model")])
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = engine.cluster(keywords)
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "keywords": n,
        "seconds": seconds,
        "model_load_seconds": load,
        "clusters": len(result.clusters),
        "peak_rss_mb": peak_mb,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clustering")
    parser.add_argument("--quick", action="store_true", help="quality only, no 10k/50k timing")
    parser.add_argument("--time-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_one:
        print(json.dumps(time_one(args.time_one)))
        return 0

    rows = load_labelled()
    dev, test = splits(rows)
    print(
        f"labelled set: {len(rows)} keywords, {len({t for _, t, _ in rows})} topics ({DATA.name})"
    )
    print(
        f"{'split':<6} {'keywords':>8} {'clusters':>8} {'ARI':>6} {'prec':>6} "
        f"{'recall':>6} {'F1':>6}"
    )
    for name, part in (("dev", dev), ("test", test), ("all", rows)):
        s = evaluate(part)
        print(
            f"{name:<6} {int(s['keywords']):>8} {int(s['clusters']):>8} {s['ari']:>6.3f} "
            f"{s['precision']:>6.3f} {s['recall']:>6.3f} {s['f1']:>6.3f}"
        )
    if args.quick:
        return 0
    print(
        "\nspeed (synthetic lists; each size in a fresh process; goal 10k <= 5 s, 50k <= 30 s, "
        "peak <= 1.5 GB)"
    )
    for n in (10_000, 50_000):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.clustering", "--time-one", str(n)],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{int(r['keywords']):>6} keywords: {r['seconds']:6.2f} s, "
            f"{int(r['clusters'])} clusters, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (model load {r['model_load_seconds']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
