"""Local idea generation: 3-7 distinct ideas, main keyword in every title, deterministic."""

from __future__ import annotations

import pytest

from services.planner.ideas_local import (
    MAX_IDEAS,
    MIN_IDEAS,
    ContentStructure,
    ContentType,
    IdeaCluster,
    IdeaKeyword,
    generate_ideas_local,
)


def cluster(name: str, pairs: list[tuple[str, int]]) -> IdeaCluster:
    return IdeaCluster(name, tuple(IdeaKeyword(t, v) for t, v in pairs))


CLUSTERS = [
    cluster("Dog Food", [("dog food", 9000)]),
    cluster(
        "Trail Running Shoes",
        [
            ("trail running shoes", 5000),
            ("best trail running shoes", 900),
            ("trail running shoes vs road running shoes", 300),
            ("how to clean trail running shoes", 200),
            ("hoka speedgoat trail shoes review", 100),
            ("cheap trail running shoes", 300),
        ],
    ),
    cluster(
        "Buy Espresso Machine",
        [
            ("buy espresso machine", 4000),
            ("espresso machine sale", 900),
            ("cheap espresso machine", 800),
            ("espresso machine price", 700),
        ],
    ),
    cluster("Python Tutorial", [(f"python tutorial part {i}", 100 - i) for i in range(40)]),
]


@pytest.mark.parametrize("c", CLUSTERS, ids=lambda c: c.name)
def test_ideas_are_distinct_titled_and_complete(c: IdeaCluster) -> None:
    result = generate_ideas_local(c)
    ideas = result.ideas
    assert MIN_IDEAS <= len(ideas) <= MAX_IDEAS
    assert len({i.title.lower() for i in ideas}) == len(ideas)
    main = c.main_keyword().lower()
    for idea in ideas:
        assert main in idea.title.lower()
        assert len(idea.outline) >= 3
        assert all(f"H2: {h}" in idea.description for h in idea.outline)
        assert isinstance(idea.content_type, ContentType)
        assert isinstance(idea.content_structure, ContentStructure)
        assert 300 <= idea.estimated_word_count <= 5000
        assert idea.keywords[0] == c.main_keyword()
    assert result.model.startswith("local-")


def test_deterministic() -> None:
    assert generate_ideas_local(CLUSTERS[1]) == generate_ideas_local(CLUSTERS[1])


def test_formats_follow_intent() -> None:
    transactional = generate_ideas_local(CLUSTERS[2]).ideas
    assert transactional[0].content_structure is ContentStructure.LANDING_PAGE
    assert transactional[0].content_type in {ContentType.PAGE, ContentType.PRODUCT}
    mixed = generate_ideas_local(CLUSTERS[1]).ideas
    structures = {i.content_structure for i in mixed}
    assert ContentStructure.COMPARISON in structures or ContentStructure.REVIEW in structures
    big = generate_ideas_local(CLUSTERS[3]).ideas
    assert len(big) == MAX_IDEAS


def test_requested_count_is_clamped() -> None:
    assert len(generate_ideas_local(CLUSTERS[1], count=1).ideas) == MIN_IDEAS
    assert len(generate_ideas_local(CLUSTERS[1], count=50).ideas) == MAX_IDEAS
