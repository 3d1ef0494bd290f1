"""Clustering benchmark: quality on the labelled sets, intent accuracy, speed and memory.

    python -m bench.clustering                  # every set, with speed (make bench);
                                                # C is held out: each run of it is an
                                                # evaluation, logged in ADR 0020
    python -m bench.clustering --sets A,B,old --quick   # tuning sets only

Quality, per labelled set, of the default local engine: topic ARI (the engine's topics
against the labelled topics), page ARI and page pair precision/recall (its clusters
against the labelled pages), how many topics and clusters it made against the labels;
once without anchors and once with 5 user seed keywords per topic taken from the labels
(every len/5-th keyword of the topic in file order). Each set is marked as tuned on or
held out (bench/data/README.md says which and why); held-out figures are the ones that
count. Intent: accuracy of the rules on each intent set and on the keyword sets' intent
column. Speed: synthetic lists of 10,000 and 50,000 distinct keywords (labelled keywords
with modifiers, seeded), each size in a fresh process so peak memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
OLD = DATA / "keywords_labelled.csv"


@dataclass(frozen=True)
class LabelledSet:
    name: str
    path: Path
    status: str  # "held out" or "tuning ..." (bench/data/README.md says which and why)
    intent_path: Path | None = None


SETS = {
    "C": LabelledSet("C", DATA / "C" / "keywords_C.csv", "held out", DATA / "C" / "intent_C.csv"),
    "A": LabelledSet("A", DATA / "A" / "keywords_A.csv", "tuning (held out until eval 4)",
                     DATA / "A" / "intent_A.csv"),
    "B": LabelledSet("B", DATA / "B" / "keywords_B.csv", "tuning", DATA / "B" / "intent_B.csv"),
    "old": LabelledSet("old", OLD, "tuning (ADR 0010; topics only)"),
}
# While tuning, run only the tuning sets: `--sets A,B,old` (C counts only when held out:
# every run of it is an evaluation, logged in ADR 0020).

PREFIXES = (
    "best", "cheap", "top", "affordable", "buy", "compare", "how to choose", "guide to",
    "where to buy", "review of", "top rated", "discount",
)
SUFFIXES = (
    "for women", "for men", "for kids", "for seniors", "for beginners", "near me", "online",
    "uk", "usa", "2025", "on sale", "reviews", "price", "deals", "ideas", "tips", "under 100",
    "in bulk", "with free shipping", "comparison", "alternatives", "for small business",
    "for students", "checklist", "pros and cons", "faq", "explained",
)


@dataclass(frozen=True)
class Row:
    keyword: str
    topic: str
    page: str
    intent: str
    volume: int


def load_rows(path: Path) -> list[Row]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [
            Row(r["keyword"], r["topic"], r.get("page") or "", r.get("intent") or "",
                int(r.get("volume") or 0))
            for r in csv.DictReader(fh)
        ]


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


def seed_anchors(rows: Sequence[Row], per_topic: int = 5) -> list:
    """5 seed keywords per labelled topic: every len/5-th keyword in file order."""
    from services.planner.clustering import TopicAnchor

    by_topic: dict[str, list[str]] = {}
    for r in rows:
        by_topic.setdefault(r.topic, []).append(r.keyword)
    anchors = []
    for topic, kws in by_topic.items():
        step = max(1, len(kws) // per_topic)
        anchors.append(TopicAnchor(topic, tuple(kws[::step][:per_topic])))
    return anchors


def evaluate(rows: Sequence[Row], anchors: Sequence = ()) -> dict[str, float]:
    from services.planner.clustering import KeywordInput, LocalClusteringEngine, normalize_keyword

    started = time.perf_counter()
    result = LocalClusteringEngine().cluster(
        [KeywordInput(r.keyword, r.volume) for r in rows], anchors=anchors
    )
    seconds = time.perf_counter() - started
    cluster = result.cluster_of()
    topic = result.topic_of()
    keys = [normalize_keyword(r.keyword) for r in rows]
    t = pair_scores([topic[k] for k in keys], [r.topic for r in rows])
    has_pages = all(r.page for r in rows)
    p = pair_scores([cluster[k] for k in keys], [r.page for r in rows]) if has_pages else None
    return {
        "topic_ari": t["ari"],
        "page_ari": p["ari"] if p else float("nan"),
        "page_precision": p["precision"] if p else float("nan"),
        "page_recall": p["recall"] if p else float("nan"),
        "topics": len(set(topic.values())),
        "labelled_topics": len({r.topic for r in rows}),
        "clusters": len(result.clusters),
        "labelled_pages": len({r.page for r in rows}) if has_pages else 0,
        "seconds": seconds,
    }


def intent_accuracy(pairs: Sequence[tuple[str, str]]) -> float:
    from services.planner.intent import classify_intent

    hits = sum(classify_intent(k).value == want for k, want in pairs)
    return hits / len(pairs) if pairs else float("nan")


def load_intents(path: Path) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [(r["keyword"], r["intent"]) for r in csv.DictReader(fh)]


def synthetic(n: int, seed: int = 7) -> list[tuple[str, int]]:
    """n distinct keywords: labelled keywords with a prefix and/or one or two suffixes."""
    return [(k, v) for k, v, _ in synthetic_labelled(n, seed)]


def synthetic_labelled(n: int, seed: int = 7) -> list[tuple[str, int, str]]:
    """`synthetic` with the topic of the labelled keyword each was made from."""
    rows = load_rows(OLD)
    rng = random.Random(seed)
    out: dict[str, tuple[int, str]] = {}
    while len(out) < n:
        row = rng.choice(rows)
        keyword = row.keyword
        if rng.random() < 0.55:
            keyword = f"{rng.choice(PREFIXES)} {keyword}"
        if rng.random() < 0.85:
            keyword = f"{keyword} {rng.choice(SUFFIXES)}"
        if rng.random() < 0.3:
            keyword = f"{keyword} {rng.choice(SUFFIXES)}"
        out.setdefault(keyword, (max(10, row.volume // rng.randint(5, 50)), row.topic))
    return [(k, v, t) for k, (v, t) in sorted(out.items())]


def time_one(n: int) -> dict[str, float]:
    """Runs in its own process (see main) so ru_maxrss is this size's peak."""
    from services.planner.clustering import KeywordInput, LocalClusteringEngine

    keywords = [KeywordInput(k, v) for k, v in synthetic(n)]
    engine = LocalClusteringEngine()
    t0 = time.perf_counter()
    engine.cluster([KeywordInput("warm up the model")])
    load = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    result = engine.cluster(keywords)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "keywords": n,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "model_load_seconds": load,
        "clusters": len(result.clusters),
        "topics": len({c.topic for c in result.clusters}),
        "peak_rss_mb": peak_mb,
    }


def _fmt(x: float) -> str:
    return "   -  " if x != x else f"{x:6.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clustering")
    parser.add_argument("--quick", action="store_true", help="quality only, no 10k/50k timing")
    parser.add_argument("--sets", default=",".join(SETS),
                        help="labelled sets, e.g. A,B,old (the tuning sets)")
    parser.add_argument("--time-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.time_one:
        print(json.dumps(time_one(args.time_one)))
        return 0

    chosen = [SETS[s] for s in args.sets.split(",") if s]
    print("quality of the local engine (goals on held-out sets: topic ARI >= 0.80, page ARI"
          " >= 0.45, page precision >= 0.45; with 5 seeds per topic, topic ARI >= 0.88)")
    print(f"{'set':<4} {'status':<31} {'anchors':<8} {'topicARI':>8} {'pageARI':>7} "
          f"{'pageP':>6} {'pageR':>6} {'topics':>9} {'clusters':>9} {'s':>5}")
    for ls in chosen:
        if not ls.path.exists():
            print(f"{ls.name:<4} missing: {ls.path}")
            continue
        rows = load_rows(ls.path)
        for label, anchors in (("none", ()), ("5/topic", seed_anchors(rows))):
            s = evaluate(rows, anchors)
            pages = f"{int(s['clusters'])}/{int(s['labelled_pages'])}" if s["labelled_pages"] \
                else f"{int(s['clusters'])}/-"
            print(f"{ls.name:<4} {ls.status:<31} {label:<8} {s['topic_ari']:>8.3f} "
                  f"{_fmt(s['page_ari']):>7} {_fmt(s['page_precision']):>6} "
                  f"{_fmt(s['page_recall']):>6} "
                  f"{int(s['topics']):>4}/{int(s['labelled_topics']):<4} {pages:>9} "
                  f"{s['seconds']:>5.1f}", flush=True)

    print("\nintent rules, accuracy (goal >= 0.9 on held-out sets)")
    for ls in chosen:
        if not ls.path.exists():
            continue
        if ls.intent_path is not None and ls.intent_path.exists():
            pairs = load_intents(ls.intent_path)
            print(f"  {ls.intent_path.name:<22} {ls.status:<31} {len(pairs):>5} keywords "
                  f"{intent_accuracy(pairs):.3f}")
        rows = load_rows(ls.path)
        if all(r.intent for r in rows):
            print(f"  {ls.path.name:<22} {ls.status:<31} {len(rows):>5} keywords "
                  f"{intent_accuracy([(r.keyword, r.intent) for r in rows]):.3f}")
    if args.quick:
        return 0
    print("\nspeed (synthetic lists; each size in a fresh process; goal 10k <= 5 s, 50k <= 30 s,"
          " peak <= 1.5 GB; CPU = this process's CPU time: on a loaded machine the wall time"
          " is not the engine's)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for n in (10_000, 50_000):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.clustering", "--time-one", str(n)],
            capture_output=True, text=True, check=True, cwd=Path(__file__).parent.parent,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{int(r['keywords']):>6} keywords: {r['seconds']:6.2f} s "
              f"(CPU {r['cpu_seconds']:.2f} s), "
              f"{int(r['topics'])} topics, {int(r['clusters'])} clusters, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(model load {r['model_load_seconds']:.2f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
