"""The local clustering engine: two levels, determinism, anchors, naming, intent, joining
existing clusters, the bucketed path."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from services.planner.clustering import (
    ClusteringConfig,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    LocalClusteringEngine,
    TopicAnchor,
    display_name,
    normalize_keyword,
    topic_words,
)
from services.planner.clustering.topics import split_weak
from services.planner.intent import Intent

DATA = Path(__file__).resolve().parents[3] / "bench" / "data" / "keywords_labelled.csv"

# The example: three obvious topics a new user would type.
CHAIRS_AND_DESKS = {
    "office chairs": [
        "ergonomic office chair", "mesh office chair", "best office chair",
        "office chair with lumbar support", "cheap office chair", "office chair for back pain",
    ],
    "standing desks": [
        "best standing desk", "electric standing desk", "standing desk converter",
        "adjustable standing desk", "standing desk for home office", "l shaped standing desk",
    ],
    "massage chairs": [
        "shiatsu massage chair", "best massage chair", "full body massage chair",
        "zero gravity massage chair", "massage chair for home", "cheap massage chair",
    ],
}


def labelled() -> list[tuple[str, str, int]]:
    with DATA.open(newline="") as fh:
        return [(r["keyword"], r["topic"], int(r["volume"])) for r in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def engine() -> LocalClusteringEngine:
    return LocalClusteringEngine()


def topics_of(rows: list[tuple[str, str, int]], names: set[str]) -> list[tuple[str, str, int]]:
    return [r for r in rows if r[1] in names]


def shape(result: ClusteringResult) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(c.topic, c.name, tuple(k.keyword.text for k in c.keywords)) for c in result.clusters]


def topic_groups(result: ClusteringResult, keywords: list[str]) -> list[set[str]]:
    """The engine's topics as sets of the given keywords."""
    topic = result.topic_of()
    groups: dict[str, set[str]] = {}
    for k in keywords:
        groups.setdefault(topic[normalize_keyword(k)], set()).add(k)
    return sorted(groups.values(), key=lambda g: sorted(g))


@pytest.mark.parametrize("suffix", ["", " 2025", " for home", " online", " uk", " reviews",
                                    " near me", " for seniors", " amazon", " deals"])
def test_three_obvious_topics_whatever_the_suffix(
    engine: LocalClusteringEngine, suffix: str
) -> None:
    keywords = [k + suffix for group in CHAIRS_AND_DESKS.values() for k in group]
    result = engine.cluster([KeywordInput(k) for k in keywords])
    want = sorted(({k + suffix for k in g} for g in CHAIRS_AND_DESKS.values()),
                  key=lambda g: sorted(g))
    assert topic_groups(result, keywords) == want
    # Pages never straddle topics, and every keyword has a topic.
    assert all(c.topic for c in result.clusters)
    names = {c.topic for c in result.clusters}
    assert {n.lower().rstrip("s") for n in names} == {
        "office chair", "standing desk", "massage chair"}


@pytest.mark.parametrize("groups", [
    [["best running shoes", "best running shoes for men", "top running shoes"],
     ["how to brew coffee", "coffee brewing guide", "how to brew coffee guide"]],
    [["dog food", "best dog food", "cheap dog food"],
     ["cat food", "best cat food", "wet cat food"]],
])
def test_short_lists_find_their_topics(engine: LocalClusteringEngine,
                                       groups: list[list[str]]) -> None:
    keywords = [k for g in groups for k in g]
    result = engine.cluster([KeywordInput(k) for k in keywords])
    assert topic_groups(result, keywords) == sorted((set(g) for g in groups),
                                                    key=lambda g: sorted(g))


def test_user_topics_are_exactly_the_topics(engine: LocalClusteringEngine) -> None:
    keywords = [k for group in CHAIRS_AND_DESKS.values() for k in group]
    anchors = [TopicAnchor("Massage Chairs"), TopicAnchor("Standing Desks"),
               TopicAnchor("Office Chairs")]
    result = engine.cluster([KeywordInput(k) for k in keywords], anchors=anchors)
    topic = result.topic_of()
    for name, group in CHAIRS_AND_DESKS.items():
        assert {topic[normalize_keyword(k)] for k in group} == {name.title()}


def test_user_seed_keywords_anchor_near_neighbour_topics(engine: LocalClusteringEngine) -> None:
    rows = topics_of(labelled(), {"running shoes", "trail running shoes", "hiking boots"})
    by_topic: dict[str, list[str]] = {}
    for k, t, _ in rows:
        by_topic.setdefault(t, []).append(k)
    anchors = [TopicAnchor(t, tuple(ks[:5])) for t, ks in by_topic.items()]
    result = engine.cluster([KeywordInput(k, v) for k, _, v in rows], anchors=anchors)
    topic = result.topic_of()
    assert {c.topic for c in result.clusters} <= set(by_topic)
    right = sum(topic[normalize_keyword(k)] == t for k, t, _ in rows)
    assert right >= 0.85 * len(rows)


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
    topic = result.topic_of()
    spread = {
        t: Counter(topic[normalize_keyword(k)] for k, tt, _ in rows if tt == t)
        for t in {"running shoes", "trail running shoes", "dog food", "cat food"}
    }
    main = {t: c.most_common(1)[0][0] for t, c in spread.items()}
    assert main["running shoes"] != main["trail running shoes"]
    assert main["dog food"] != main["cat food"]
    for t, c in spread.items():
        assert c[main[t]] >= 0.6 * sum(c.values()), t


def test_pages_sit_inside_topics_and_split_them(engine: LocalClusteringEngine) -> None:
    rows = topics_of(labelled(), {"dog food", "cat food", "coffee makers"})
    result = engine.cluster([KeywordInput(k, v) for k, _, v in rows])
    topics = {c.topic for c in result.clusters}
    assert len(result.clusters) > len(topics)
    for c in result.clusters:
        assert c.topic in topics


def test_cluster_named_after_most_representative_keyword(engine: LocalClusteringEngine) -> None:
    kws = ["dog food", "dog foods", "best dog food", "dog food reviews", "top dog food"]
    result = engine.cluster([KeywordInput(k, 100) for k in kws])
    assert len({c.topic for c in result.clusters}) == 1
    assert result.clusters[0].topic == "Dog Food"
    assert any(c.name == "Dog Food" for c in result.clusters)


def test_cluster_names_are_unique(engine: LocalClusteringEngine) -> None:
    result = engine.cluster([KeywordInput(k) for k, _, _ in labelled()[:300]])
    names = [c.name.lower() for c in result.clusters]
    assert len(names) == len(set(names))


def test_display_name_and_topic_words() -> None:
    assert display_name("best running shoes for women") == "Best Running Shoes for Women"
    assert display_name("iPhone screen repair") == "iPhone Screen Repair"
    assert topic_words("best trail running shoes for women") == ["trail", "running", "shoe"]


def test_given_intent_is_kept_and_cluster_intent_follows_volume(
    engine: LocalClusteringEngine,
) -> None:
    result = engine.cluster([KeywordInput("dog food", 10, intent=Intent.NAVIGATIONAL)])
    assert result.clusters[0].keywords[0].intent is Intent.NAVIGATIONAL
    # A page targets one intent: "best dog food" (comparing) and "buy dog food" (buying)
    # are two pages of one topic, each with its keywords' intent.
    mixed = engine.cluster([KeywordInput("best dog food", 500), KeywordInput("buy dog food", 10),
                            KeywordInput("top dog food", 50)])
    assert len({c.topic for c in mixed.clusters}) == 1
    assert sorted(c.intent for c in mixed.clusters) == [Intent.COMMERCIAL, Intent.TRANSACTIONAL]
    for c in mixed.clusters:
        assert {k.intent for k in c.keywords} == {c.intent}


def test_new_keywords_join_close_existing_cluster(engine: LocalClusteringEngine) -> None:
    existing = [
        ExistingCluster(
            11, "Dog Food", ("dog food", "best dog food", "dry dog food", "wet dog food"),
            topic="Dog Food",
        ),
        ExistingCluster(12, "Car Loans", ("car loans", "car loan calculator", "auto loan rates")),
    ]
    new = [
        "dog foods",
        "dog food brands",
        "car loan with bad credit",
        "sourdough starter",
        "how to make sourdough starter",
        "sourdough starter recipe",
    ]
    result = engine.cluster([KeywordInput(k) for k in new], existing)
    by_kw = {k.keyword.text: c for c in result.clusters for k in c.keywords}
    assert by_kw["dog foods"].existing_id == 11
    assert by_kw["dog foods"].name == "Dog Food"
    assert by_kw["dog food brands"].topic == "Dog Food"
    assert by_kw["car loan with bad credit"].topic == "Car Loans"
    sourdough = by_kw["sourdough starter"]
    assert sourdough.existing_id is None
    assert sourdough.topic not in {"Dog Food", "Car Loans"}
    assert sourdough.topic == by_kw["sourdough starter recipe"].topic
    # Existing clusters never merge with each other and are not reported without keywords.
    assert len([c for c in result.clusters if c.existing_id == 11]) <= 1
    # A description states no count: a cluster's keywords change after it is saved.
    assert sourdough.description.startswith(f"Keywords about {sourdough.name.lower()}, ")


def test_seed_library_sector_anchors_its_topic(engine: LocalClusteringEngine) -> None:
    hinted = [KeywordInput(k, topic_hint="Massage Chairs")
              for k in ("shiatsu massage chair", "zero gravity massage chair")]
    others = [KeywordInput(k) for k in ("best massage chair", "massage chair for home",
                                        "best standing desk", "electric standing desk",
                                        "standing desk converter")]
    result = engine.cluster([*hinted, *others])
    topic = result.topic_of()
    assert topic["shiatsu massage chair"] == "Massage Chairs"
    assert topic["best massage chair"] == "Massage Chairs"
    assert topic["best standing desk"] != "Massage Chairs"


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
    with pytest.raises(ValueError, match="topic anchor"):
        engine.cluster([KeywordInput("dog food")], anchors=[TopicAnchor("!!")])


def test_bucketed_path_follows_topics_on_thousands() -> None:
    """A small bucket_limit forces the bucketed path on ~3,000 synthetic keywords; the
    result must still follow the topics and be deterministic."""
    rows = labelled()
    rng = random.Random(5)
    mods = ["best", "cheap", "top", "buy"]
    tails = ["for women", "near me", "online", "2025", "reviews", "tips", "uk", "deals", "for kids"]
    synthetic: dict[str, str] = {}
    while len(synthetic) < 3000:
        k, t, _ = rng.choice(rows)
        synthetic.setdefault(f"{rng.choice(mods)} {k} {rng.choice(tails)}", t)
    bucketed = LocalClusteringEngine(config=ClusteringConfig(bucket_limit=800, bucket_size=600))
    kws = [KeywordInput(k) for k in sorted(synthetic)]
    result = bucketed.cluster(kws)
    assert shape(result) == shape(bucketed.cluster(kws))
    topic = result.topic_of()
    members: dict[str, Counter[str]] = {}
    for k, t in synthetic.items():
        members.setdefault(topic[normalize_keyword(k)], Counter())[t] += 1
    pure = sum(c.most_common(1)[0][1] for c in members.values())
    assert pure / len(synthetic) >= 0.85
    assert len(members) <= 3 * len(set(synthetic.values()))


def test_progress_is_reported(engine: LocalClusteringEngine) -> None:
    calls: list[tuple[int, int]] = []
    engine.cluster(
        [KeywordInput("dog food"), KeywordInput("cat food")],
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls[0] == (0, 4)
    assert calls[-1] == (4, 4)


def test_a_topic_of_two_groups_joined_by_few_links_is_split() -> None:
    """split_weak: two cliques of 10 keywords joined by one weak link, of unrelated
    meaning, are two topics; a clique alone, or two cliques of one meaning, stay one."""
    n = 20
    w = np.zeros((n, n))
    w[:10, :10] = 0.8
    w[10:, 10:] = 0.8
    np.fill_diagonal(w, 0)
    w[0, 10] = w[10, 0] = 0.1
    graph = sp.csr_matrix(w)
    sizes = np.ones(n)
    config = ClusteringConfig()
    apart = np.zeros((n, 4), dtype=np.float32)
    apart[:10, 0] = 1.0
    apart[10:, 1] = 1.0
    one = np.zeros(n, dtype=np.int64)
    labels = split_weak(graph, one, apart, sizes, config)
    assert sorted(Counter(labels.tolist()).values()) == [10, 10]
    assert len(set(labels[:10].tolist())) == 1
    # One meaning on both sides (average cosine 1): pages of one topic, not two topics.
    alike = np.zeros((n, 4), dtype=np.float32)
    alike[:, 0] = 1.0
    assert set(split_weak(graph, one, alike, sizes, config).tolist()) == {0}
    # A single well-linked clique is never cut.
    clique = sp.csr_matrix(np.full((10, 10), 0.8) - np.eye(10) * 0.8)
    assert set(split_weak(clique, one[:10], apart[:10], sizes[:10], config).tolist()) == {0}
