"""The local clustering engine: determinism, naming, intent, joining, the bucketed path."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from services.planner.clustering import (
    ClusteringConfig,
    ExistingCluster,
    KeywordInput,
    LocalClusteringEngine,
    anchors,
    display_name,
    normalize_keyword,
    topic_words,
)
from services.planner.intent import Intent, classify_intent, dominant_intent

DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "keywords_labelled.csv"


def labelled() -> list[tuple[str, str, int]]:
    with DATA.open(newline="") as fh:
        return [(r["keyword"], r["topic"], int(r["volume"])) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def engine() -> LocalClusteringEngine:
    return LocalClusteringEngine()


def topics_of(rows: list[tuple[str, str, int]], names: set[str]) -> list[tuple[str, str, int]]:
    return [r for r in rows if r[1] in names]


def shape(result) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.name, tuple(k.keyword.text for k in c.keywords)) for c in result.clusters]


def test_same_input_same_output_whatever_the_order(engine: LocalClusteringEngine) -> None:
    rows = labelled()[:200]
    first = engine.cluster([KeywordInput(k, v) for k, _, v in rows])
    again = engine.cluster([KeywordInput(k, v) for k, _, v in rows])
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    reordered = engine.cluster([KeywordInput(k, v) for k, _, v in shuffled])
    assert shape(first) == shape(again) == shape(reordered)


def test_near_neighbour_topics_stay_apart(engine: LocalClusteringEngine) -> None:
    rows = topics_of(
        labelled(), {"running shoes", "trail running shoes", "hiking boots", "dog food", "cat food"}
    )
    result = engine.cluster([KeywordInput(k, v) for k, _, v in rows])
    where = result.cluster_of()
    cluster = {
        t: Counter(where[normalize_keyword(k)] for k, tt, _ in rows if tt == t)
        for t in {"running shoes", "trail running shoes", "dog food", "cat food"}
    }
    main = {t: c.most_common(1)[0][0] for t, c in cluster.items()}
    assert main["running shoes"] != main["trail running shoes"]
    assert main["dog food"] != main["cat food"]
    # Most of each topic lands in its main cluster.
    for t, c in cluster.items():
        assert c[main[t]] >= 0.6 * sum(c.values()), t


def test_cluster_named_after_most_representative_keyword(engine: LocalClusteringEngine) -> None:
    kws = [
        "dog food",
        "best dog food",
        "dry dog food",
        "wet dog food",
        "grain free dog food",
        "cheap dog food",
        "dog food for puppies",
    ]
    result = engine.cluster([KeywordInput(k, 100) for k in kws])
    assert len(result.clusters) == 1
    assert result.clusters[0].name == "Dog Food"
    assert (
        "Dog Food" in result.clusters[0].description or "dog food" in result.clusters[0].description
    )


def test_cluster_names_are_unique(engine: LocalClusteringEngine) -> None:
    result = engine.cluster([KeywordInput(k) for k, _, _ in labelled()[:300]])
    names = [c.name.lower() for c in result.clusters]
    assert len(names) == len(set(names))


def test_display_name() -> None:
    assert display_name("best running shoes for women") == "Best Running Shoes for Women"
    assert display_name("iPhone screen repair") == "iPhone Screen Repair"


def test_topic_words_and_anchors() -> None:
    assert topic_words("best trail running shoes for women") == ["trail", "running", "shoe"]
    tokens = [
        topic_words(normalize_keyword(k))
        for k in (
            "trail running shoes",
            "best trail running shoes",
            "cheap trail running shoes",
            "running shoes",
            "best running shoes",
            "running shoes for flat feet",
        )
    ]
    got = anchors(tokens, min_count=3, min_words=2)
    assert got[:3] == ["trail running shoe"] * 3
    assert got[3:] == ["running shoe"] * 3


@pytest.mark.parametrize(
    ("keyword", "intent"),
    [
        ("how to choose running shoes", Intent.INFORMATIONAL),
        ("what is the keto diet", Intent.INFORMATIONAL),
        ("python tutorial for beginners", Intent.INFORMATIONAL),
        ("best running shoes", Intent.COMMERCIAL),
        ("asana vs trello", Intent.COMMERCIAL),
        ("hubspot crm review", Intent.COMMERCIAL),
        ("buy dog food online", Intent.TRANSACTIONAL),
        ("cheap hiking boots", Intent.TRANSACTIONAL),
        ("wedding dress shops near me", Intent.TRANSACTIONAL),
        ("chase login", Intent.NAVIGATIONAL),
        ("youtube", Intent.NAVIGATIONAL),
        ("amazon.com customer service", Intent.NAVIGATIONAL),
    ],
)
def test_intent_rules(keyword: str, intent: Intent) -> None:
    assert classify_intent(keyword) is intent


def test_cluster_intent_follows_volume() -> None:
    assert (
        dominant_intent([(Intent.INFORMATIONAL, 10), (Intent.COMMERCIAL, 500)]) is Intent.COMMERCIAL
    )
    assert dominant_intent([]) is Intent.INFORMATIONAL


def test_new_keywords_join_close_existing_cluster(engine: LocalClusteringEngine) -> None:
    existing = [
        ExistingCluster(
            11, "Dog Food", ("dog food", "best dog food", "dry dog food", "wet dog food")
        ),
        ExistingCluster(12, "Car Loans", ("car loans", "car loan calculator", "auto loan rates")),
    ]
    new = [
        "grain free dog food",
        "cheap dog food",
        "car loan with bad credit",
        "sourdough starter",
        "how to make sourdough starter",
        "sourdough starter recipe",
    ]
    result = engine.cluster([KeywordInput(k) for k in new], existing)
    by_kw = {k.keyword.text: c for c in result.clusters for k in c.keywords}
    assert by_kw["grain free dog food"].existing_id == 11
    assert by_kw["grain free dog food"].name == "Dog Food"
    assert by_kw["cheap dog food"].existing_id == 11
    assert by_kw["car loan with bad credit"].existing_id == 12
    sourdough = by_kw["sourdough starter"]
    assert sourdough.existing_id is None
    assert sourdough is by_kw["sourdough starter recipe"]
    # Existing clusters never merge with each other and are not reported without keywords.
    assert {c.existing_id for c in result.clusters} == {11, 12, None}


def test_duplicates_share_a_cluster_and_blank_keywords_are_refused(
    engine: LocalClusteringEngine,
) -> None:
    result = engine.cluster(
        [KeywordInput("Dog Food", 10, ref=1), KeywordInput("dog  food!", 5, ref=2)]
    )
    assert len(result.clusters) == 1
    assert len(result.clusters[0].keywords) == 2
    with pytest.raises(ValueError, match="no letters"):
        engine.cluster([KeywordInput("!!!")])


def test_bucketed_path_matches_topics_on_thousands(engine: LocalClusteringEngine) -> None:
    """A small direct_limit forces the two-stage path on ~3,000 synthetic keywords; the
    result must still follow the topics and be deterministic."""
    rows = labelled()
    rng = random.Random(5)
    mods = ["best", "cheap", "top", "buy"]
    tails = ["for women", "near me", "online", "2025", "reviews", "tips", "uk", "deals", "for kids"]
    synthetic: dict[str, str] = {}
    while len(synthetic) < 3000:
        k, t, _ = rng.choice(rows)
        synthetic.setdefault(f"{rng.choice(mods)} {k} {rng.choice(tails)}", t)
    config = ClusteringConfig(direct_limit=600, bucket_size=400)
    bucketed = LocalClusteringEngine(config=config)
    kws = [KeywordInput(k) for k in sorted(synthetic)]
    result = bucketed.cluster(kws)
    assert shape(result) == shape(bucketed.cluster(kws))
    where = result.cluster_of()
    # Purity: share of keywords whose cluster's majority topic is their own topic.
    members: dict[int, Counter[str]] = {}
    for k, t in synthetic.items():
        members.setdefault(where[normalize_keyword(k)], Counter())[t] += 1
    pure = sum(c.most_common(1)[0][1] for c in members.values())
    assert pure / len(synthetic) >= 0.85
    # Topics are not shattered: clusters stay within a small multiple of the topic count.
    assert len(result.clusters) <= 4 * len({t for t in synthetic.values()})
    direct = LocalClusteringEngine(config=ClusteringConfig(direct_limit=5000)).cluster(kws)
    assert abs(len(direct.clusters) - len(result.clusters)) <= max(10, len(direct.clusters) // 2)


def test_progress_is_reported(engine: LocalClusteringEngine) -> None:
    calls: list[tuple[int, int]] = []
    engine.cluster(
        [KeywordInput("dog food"), KeywordInput("cat food")],
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[0] == (0, 4)
    assert calls[-1] == (4, 4)
