"""Internal linker benchmark: quality on the hand-written labelled set, and indexing speed.

    python -m bench.linker            # both (make bench)
    python -m bench.linker --quality  # the labelled set only

Quality: each article of `bench/data/linker/` (README there: how it was written, which
clusters are held out) is linked by the engine against the whole set as its site; a
suggested link is correct when its target is among the article's expected links.
Precision = correct / suggested, recall = correct / expected, per split ("dev", tuned on;
"held-out", never looked at while tuning), and rule violations from
`services/writer/linker/rules.py` on the applied HTML (with the 3-per-1,000-words floor).

Speed: 10,000 synthetic pages (titles and keywords drawn, seeded, from the labelled set's
vocabulary) indexed: WordLlama embeddings of every page plus the anchor automaton over
every keyword variant; then suggestions for 100 of the labelled articles against that
site. Run it with `nice`: the figures are wall-clock on a shared machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "linker"


@dataclass(frozen=True)
class Article:
    slug: str
    cluster: str
    split: str
    title: str
    keyphrase: str
    keywords: tuple[str, ...]
    structure: str
    expect: tuple[str, ...]
    html: str


def load(directory: Path = DATA) -> list[Article]:
    """Every article of every cluster file, in file order."""
    out: list[Article] = []
    for path in sorted(directory.glob("*.txt")):
        head, *blocks = path.read_text(encoding="utf-8").split("\n=== ")
        meta = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
        for block in blocks:
            slug, rest = block.split("\n", 1)
            fields: dict[str, str] = {}
            html: list[str] = []
            for line in rest.splitlines():
                if line.startswith("<") or html:
                    html.append(line)
                elif ": " in line:
                    key, value = line.split(": ", 1)
                    fields[key] = value.strip()
            out.append(Article(
                slug=slug.strip(), cluster=meta["cluster"], split=meta["split"],
                title=fields["title"], keyphrase=fields["keyphrase"],
                keywords=tuple(k.strip() for k in fields.get("keywords", "").split(",")
                               if k.strip()),
                structure=fields.get("structure", "article"),
                expect=tuple(e.strip() for e in fields.get("expect", "").split(",")
                             if e.strip()),
                html="\n".join(html).strip() + "\n"))
    return out


def targets(articles: Sequence[Article]) -> list[Any]:
    from services.writer.document import html_word_count
    from services.writer.linker.engine import Target

    clusters = {c: i + 1 for i, c in enumerate(dict.fromkeys(a.cluster for a in articles))}
    return [Target(id=i + 1, title=a.title, keyphrase=a.keyphrase, keywords=a.keywords,
                   cluster_id=clusters[a.cluster], structure=a.structure,
                   word_count=html_word_count(a.html), href=f"/{a.slug}/")
            for i, a in enumerate(articles)]


@dataclass
class Score:
    suggested: int = 0
    correct: int = 0
    expected: int = 0
    violations: int = 0

    @property
    def precision(self) -> float:
        return self.correct / self.suggested if self.suggested else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.expected if self.expected else 1.0


@dataclass
class Evaluation:
    by_split: dict[str, Score]
    wrong: list[str]  # "source → target 'anchor'" for each incorrect suggestion
    violations: list[str]
    # Every target with an allowed anchor in a source: (score, expected?, "source → target")
    candidates: list[tuple[float, bool, str]]

    def total(self) -> Score:
        s = Score()
        for part in self.by_split.values():
            s.suggested += part.suggested
            s.correct += part.correct
            s.expected += part.expected
            s.violations += part.violations
        return s


def evaluate(articles: Sequence[Article], *, config: Any = None,
             embedder: Any = None) -> Evaluation:
    from libs.common.ai.local import LocalEmbedder
    from services.writer.linker.engine import LinkerConfig, SiteIndex
    from services.writer.linker.html import read_page
    from services.writer.linker.rules import check

    config = config or LinkerConfig()
    site = targets(articles)
    index = SiteIndex(site, embedder=embedder or LocalEmbedder(), config=config)
    slug_of = {t.id: a.slug for t, a in zip(site, articles, strict=True)}
    by_split: dict[str, Score] = {}
    wrong: list[str] = []
    violations: list[str] = []
    candidates: list[tuple[float, bool, str]] = []
    for target, article in zip(site, articles, strict=True):
        found = index.occurrences(target, read_page(article.html), {target.id})
        candidates += [(s, slug_of[tid] in article.expect, f"{article.slug} → {slug_of[tid]}")
                       for tid, s in index.scores(target.id, sorted(found)).items()]
        score = by_split.setdefault(article.split, Score())
        html, links = index.apply(target.id, article.html)
        score.suggested += len(links)
        score.expected += len(article.expect)
        for link in links:
            if slug_of[link.target_content_id] in article.expect:
                score.correct += 1
            else:
                wrong.append(f"{article.slug} → {slug_of[link.target_content_id]} "
                             f"{link.anchor!r}")
        broken = check(target, site, article.html, html, config=config, require_min=True)
        score.violations += len(broken)
        violations += [f"{article.slug}: {v.rule} {v.detail}" for v in broken]
    return Evaluation(by_split, wrong, violations, sorted(candidates, reverse=True))


def quality() -> Evaluation:
    articles = load()
    result = evaluate(articles)
    clusters = len({a.cluster for a in articles})
    print(f"labelled set: {len(articles)} articles over {clusters} clusters")
    for split, s in sorted(result.by_split.items()):
        print(f"  {split:9s} suggested {s.suggested:3d}  correct {s.correct:3d}  expected "
              f"{s.expected:3d}  precision {s.precision:.3f}  recall {s.recall:.3f}  "
              f"rule violations {s.violations}")
    t = result.total()
    print(f"  {'all':9s} suggested {t.suggested:3d}  correct {t.correct:3d}  expected "
          f"{t.expected:3d}  precision {t.precision:.3f}  recall {t.recall:.3f}  "
          f"rule violations {t.violations}")
    for line in result.wrong:
        print(f"    not expected: {line}")
    from services.writer.linker.engine import LinkerConfig

    threshold = LinkerConfig().min_score
    unexpected = [c for c in result.candidates if not c[1]]
    print(f"  candidates with an allowed anchor: {len(result.candidates)}, of them not "
          f"expected: {len(unexpected)} (min_score {threshold})")
    for value, wanted, name in result.candidates:
        if not wanted or value < threshold:
            print(f"    {value:6.3f} {'expected' if wanted else 'not expected':12s} {name}")
    for line in result.violations:
        print(f"    violation: {line}")
    return result


def synthetic_site(n: int, seed: int = 11) -> list[Any]:
    """`n` pages whose titles and keywords mix the labelled set's words (seeded)."""
    from services.writer.linker.engine import Target
    from services.writer.text import WORD

    articles = load()
    vocabulary = sorted({w.lower() for a in articles for w in WORD.findall(
        " ".join((a.title, a.keyphrase, *a.keywords))) if len(w) > 3})
    rng = random.Random(seed)
    pages = []
    for i in range(n):
        words = rng.sample(vocabulary, 6)
        keyphrase = " ".join(words[:3])
        pages.append(Target(
            id=i + 1, title=f"How to {keyphrase} with {words[3]}", keyphrase=keyphrase,
            keywords=(" ".join(words[2:4]), " ".join(words[3:6])),
            cluster_id=i // 8, structure="guide" if i % 8 == 0 else "article",
            word_count=800, href=f"/page-{i + 1}/"))
    return pages


def speed(n: int = 10_000) -> dict[str, float]:
    from libs.common.ai.local import LocalEmbedder, load_wordllama
    from services.writer.linker.engine import SiteIndex, Target

    load_wordllama()  # loading the model once per process is not indexing
    pages = synthetic_site(n)
    articles = load()
    labelled = targets(articles)
    for j, t in enumerate(labelled):  # the labelled articles join the site as sources
        pages.append(Target(**{**{f: getattr(t, f) for f in t.__slots__},
                               "id": n + j + 1, "cluster_id": 100_000 + (t.cluster_id or 0)}))
    started, cpu = time.perf_counter(), time.process_time()
    index = SiteIndex(pages, embedder=LocalEmbedder())
    indexed, indexed_cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    suggested = 0
    for j, article in enumerate(articles * 3):
        if j >= 100:
            break
        suggested += len(index.suggest(n + (j % len(articles)) + 1, article.html))
    per_source = (time.perf_counter() - started) / 100
    print(f"index of {len(pages)} pages ({n} synthetic + {len(articles)} labelled): "
          f"{indexed:.2f} s wall, {indexed_cpu:.2f} s CPU (goal <= 30 s); automaton states "
          f"{len(index.automaton)}")
    print(f"suggest against it: {per_source * 1000:.1f} ms per source (100 sources, "
          f"{suggested} links)")
    return {"index_seconds": indexed, "index_cpu_seconds": indexed_cpu,
            "suggest_ms": per_source * 1000}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.linker")
    parser.add_argument("--quality", action="store_true", help="the labelled set only")
    args = parser.parse_args(argv)
    result = quality()
    ok = result.total().precision >= 0.9 and not result.violations
    if not args.quality:
        figures = speed()
        ok = ok and figures["index_seconds"] <= 30
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
