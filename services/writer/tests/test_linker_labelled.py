"""The linker against the hand-written labelled set (`bench/data/linker/`, README there):
precision >= 0.9 overall and on the held-out clusters, and no rule broken anywhere, as
read back from the applied HTML by the rule checker."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

# bench/ is not a package on the tests' path (import mode importlib): load its module.
_PATH = Path(__file__).resolve().parents[3] / "bench" / "linker.py"
_spec = importlib.util.spec_from_file_location("bench_linker", _PATH)
assert _spec is not None
assert _spec.loader is not None
bench_linker = importlib.util.module_from_spec(_spec)
sys.modules["bench_linker"] = bench_linker
_spec.loader.exec_module(bench_linker)
evaluate, load = bench_linker.evaluate, bench_linker.load


def test_labelled_set_precision_and_rules() -> None:
    articles = load()
    assert len(articles) >= 40
    assert len({a.cluster for a in articles}) >= 8
    assert {a.split for a in articles} == {"dev", "held-out"}
    result = evaluate(articles)
    assert result.violations == []
    assert result.total().precision >= 0.9, result.wrong
    assert result.by_split["held-out"].precision >= 0.9, result.wrong
    # Every article with something to link gets links: the floor holds and pillars link.
    assert result.total().suggested >= len(articles)


def test_same_input_same_output() -> None:
    articles = load()
    first, second = evaluate(articles), evaluate(articles)
    assert first.by_split == second.by_split
    assert first.wrong == second.wrong
