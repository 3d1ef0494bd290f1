"""Writer engines benchmark: the local draft and the optimizer, offline (issue #10).

    python -m bench.writer [--quick]

Local draft: p50/p95 of `draft_local` on 1,200-word briefs (goal p95 ≤ 200 ms). Every
iteration drafts a different brief (keyphrase, keywords, intent and structure vary,
seeded), so no cache answers twice. Optimizer: p95 of `analyze` on 2,000-word articles
(goal ≤ 20 ms), each a different draft. Models and dictionaries (WordLlama, CMU dict,
font metrics) load once before timing, as in a running worker. Results in
bench/results/writer.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

from services.writer.brief import Brief
from services.writer.drafting import draft_local
from services.writer.optimizer import analyze

NOUNS = ["coffee grinder", "running shoes", "raised garden bed", "electric kettle",
         "gaming laptop", "yoga mat", "fixed rate mortgage", "grain free dog food",
         "solar panels", "email marketing", "sourdough starter", "protein powder",
         "electric bike", "home insurance", "python course", "air fryer", "standing desk",
         "travel credit card", "hiking boots", "tax return"]
MODIFIERS = ["best", "cheap", "how to choose", "for beginners", "review", "price", "tips"]
QUESTIONS = ["how to clean {n}", "is {n} worth it", "what is the best {n}",
             "how long does {n} last", "can you repair {n}"]
INTENTS = ["informational", "commercial", "transactional", "navigational"]
STRUCTURES = ["article", "guide", "listicle", "how_to", "comparison", "review", "landing_page"]


def brief(rng: random.Random, words: int) -> Brief:
    noun = rng.choice(NOUNS)
    modifier = rng.choice(MODIFIERS)
    kp = f"{modifier} {noun}" if modifier in ("best", "cheap") else noun
    secondary = rng.sample([f"{noun} {m}" for m in MODIFIERS[3:]] + [f"best {noun}"], 4)
    return Brief(
        title=f"{kp.title()}: What to Know in {rng.randint(2024, 2030)}",
        primary_keyword=kp,
        secondary_keywords=tuple(secondary),
        question_keywords=tuple(q.format(n=noun) for q in rng.sample(QUESTIONS, 3)),
        intent=rng.choice(INTENTS),  # type: ignore[arg-type]
        content_structure=rng.choice(STRUCTURES),  # type: ignore[arg-type]
        target_word_count=words,
    )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20 iterations instead of 200")
    args = parser.parse_args(argv)
    n = 20 if args.quick else 200
    rng = random.Random(10)

    warm = draft_local(brief(rng, 1200))
    analyze(warm.html, keyphrase=warm.primary_keyword, meta_title=warm.meta_title)

    draft_ms, words = [], []
    for _ in range(n):
        b = brief(rng, 1200)
        started = time.perf_counter()
        d = draft_local(b)
        draft_ms.append((time.perf_counter() - started) * 1000)
        words.append(d.word_count)

    articles = [draft_local(brief(rng, 2000)) for _ in range(min(n, 60))]
    analyze_ms = []
    for i in range(n):
        d = articles[i % len(articles)]
        # A different string each time, so nothing is answered from a cache.
        html = d.html + f"<p>Run {i}.</p>"
        started = time.perf_counter()
        analyze(html, keyphrase=d.primary_keyword, meta_title=d.meta_title,
                meta_description=d.meta_description, slug=d.slug,
                secondary=d.secondary_keywords)
        analyze_ms.append((time.perf_counter() - started) * 1000)

    result = {
        "iterations": n,
        "draft_1200_words_ms": {"p50": round(statistics.median(draft_ms), 1),
                                "p95": round(percentile(draft_ms, 95), 1),
                                "max": round(max(draft_ms), 1)},
        "draft_words": {"min": min(words), "max": max(words)},
        "analyze_2000_words_ms": {"p50": round(statistics.median(analyze_ms), 2),
                                  "p95": round(percentile(analyze_ms, 95), 2),
                                  "max": round(max(analyze_ms), 2)},
        "article_words": [min(a.word_count for a in articles),
                          max(a.word_count for a in articles)],
    }
    d50, d95 = result["draft_1200_words_ms"]["p50"], result["draft_1200_words_ms"]["p95"]
    a50, a95 = result["analyze_2000_words_ms"]["p50"], result["analyze_2000_words_ms"]["p95"]
    print(f"local draft, 1,200 words: p50 {d50} ms, p95 {d95} ms (goal p95 ≤ 200 ms: "
          f"{'met' if d95 <= 200 else 'MISSED'})")
    print(f"optimizer analyze, 2,000 words: p50 {a50} ms, p95 {a95} ms (goal p95 ≤ 20 ms: "
          f"{'met' if a95 <= 20 else 'MISSED'})")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "writer.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
