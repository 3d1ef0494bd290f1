"""Every threshold of the optimizer's checks, just below, at and just above its boundary."""

from __future__ import annotations

import pytest

from services.writer import readability as R
from services.writer import seo_checks as S
from services.writer.serp import text_width_px, title_width_px
from services.writer.text import Keyphrase

KP = Keyphrase.of("descale a kettle")


@pytest.mark.parametrize(
    ("length", "status"),
    [(0, "bad"), (119, "ok"), (120, "good"), (121, "good"), (155, "good"), (156, "good"),
     (157, "ok")],
)
def test_meta_description_length(length: int, status: str) -> None:
    assert S.rate_meta_description_length(length).status == status


@pytest.mark.parametrize(
    ("width", "status"),
    [(0, "bad"), (399, "ok"), (400, "good"), (401, "good"), (599, "good"), (600, "good"),
     (601, "bad")],
)
def test_title_width(width: int, status: str) -> None:
    assert S.rate_title_width(width).status == status


def test_title_width_uses_arial_metrics() -> None:
    # Arial (and Liberation Sans) advance widths at 20 px: "a" 1139/2048 em, "W" 1933/2048.
    assert text_width_px("a") == pytest.approx(1139 * 20 / 2048)
    assert text_width_px("W" * 10) == pytest.approx(10 * 1933 * 20 / 2048)
    assert title_width_px("i" * 60) < title_width_px("M" * 30)
    assert title_width_px("漢字") == 40  # one em per East Asian wide character


@pytest.mark.parametrize(
    ("words", "status", "points"),
    [(199, "bad", 0), (200, "bad", 3), (249, "bad", 3), (250, "ok", 6), (299, "ok", 6),
     (300, "good", 9), (301, "good", 9)],
)
def test_text_length(words: int, status: str, points: int) -> None:
    check = S.rate_text_length(words)
    assert (check.status, check.points) == (status, points)


@pytest.mark.parametrize(
    ("hits", "words", "status"),
    [(4, 1000, "bad"), (5, 1000, "good"), (6, 1000, "good"), (29, 1000, "good"),
     (30, 1000, "good"), (31, 1000, "bad"), (0, 1000, "bad"), (3, 99, "bad")],
)
def test_keyphrase_density(hits: int, words: int, status: str) -> None:
    check = S.rate_density(100 * hits / words, hits, words)
    assert check.status == status
    if hits > 40:
        assert check.points == 0


def test_keyphrase_density_way_over_scores_nothing() -> None:
    assert S.rate_density(4.0, 40, 1000).points == 3
    assert S.rate_density(4.1, 41, 1000).points == 0


@pytest.mark.parametrize(
    ("matching", "total", "status"),
    [
        (2, 10, "bad"),  # 20 % < 30 %
        (3, 10, "good"),  # 30 %
        (4, 10, "good"),
        (7, 10, "good"),  # 70 %
        (7, 9, "good"),  # floor(6.75) = 6 < 7: too many
        (8, 10, "bad"),  # 80 % > 75 %
        (0, 5, "bad"),
        (1, 1, "good"),
        (0, 0, "bad"),
    ],
)
def test_keyphrase_in_subheadings(matching: int, total: int, status: str) -> None:
    headings = ["How to descale a kettle"] * matching + ["Other topic"] * (total - matching)
    expected = status if (matching, total) != (7, 9) else "bad"
    assert S.rate_subheadings(KP, headings).status == expected


def test_subheading_matches_more_than_half_of_the_content_words() -> None:
    kp = Keyphrase.of("best trail running shoes")  # 4 content words: 3 needed
    assert S.subheadings_matching(kp, ["Trail running tips"]) == 0
    assert S.subheadings_matching(kp, ["Best trail running picks"]) == 1


@pytest.mark.parametrize(("count", "status"), [(0, "bad"), (1, "good"), (2, "bad")])
def test_single_h1(count: int, status: str) -> None:
    assert S.rate_single_h1(count).status == status


@pytest.mark.parametrize(
    ("alts", "status"),
    [
        ([], "bad"),
        (["a kitchen"], "ok"),
        (["how to descale a kettle"], "good"),
        (["descale a kettle"] + ["x"] * 4, "ok"),  # 1 of 5 = 20 % < 30 %
        (["descale a kettle"] * 2 + ["x"] * 3, "good"),  # 40 %
        (["descale a kettle"] * 4 + ["x"] * 1, "ok"),  # 80 % > 70 %
    ],
)
def test_images_and_alt_text(alts: list[str], status: str) -> None:
    assert S.rate_images(KP, alts).status == status


@pytest.mark.parametrize(("meta", "status"), [
    ("Nothing about it here.", "bad"),
    ("Descale a kettle in an hour.", "good"),
    ("Descale a kettle. Descale a kettle weekly.", "good"),
    ("Descale a kettle. Descale a kettle. Descale a kettle.", "bad"),
])
def test_keyphrase_in_meta_description(meta: str, status: str) -> None:
    assert S.rate_meta_description_keyphrase(KP, meta).status == status


@pytest.mark.parametrize(("title", "status"), [
    ("Descale a Kettle: the Vinegar Way", "good"),
    ("The Vinegar Way to Descale a Kettle", "ok"),
    ("Kettle care: how to descale it", "ok"),
    ("Kitchen care", "bad"),
])
def test_keyphrase_in_seo_title(title: str, status: str) -> None:
    assert S.rate_seo_title(KP, title).status == status


@pytest.mark.parametrize(("slug", "status"), [
    ("descale-kettle", "good"), ("descale-kettle-vinegar", "good"), ("kettle-care", "bad"),
])
def test_keyphrase_in_slug(slug: str, status: str) -> None:
    assert S.rate_slug(KP, slug).status == status


def test_links_and_competing_anchors() -> None:
    assert S.rate_internal_links(0, 0).status == "bad"
    assert S.rate_internal_links(0, 1).status == "ok"
    assert S.rate_internal_links(1, 0).status == "good"
    assert S.rate_outbound_links(0, 0).status == "bad"
    assert S.rate_outbound_links(0, 1).status == "ok"
    assert S.rate_outbound_links(1, 0).status == "good"
    assert S.rate_competing_links(KP, ["our kettle guide"]).status == "good"
    assert S.rate_competing_links(KP, ["descale a kettle"]).status == "bad"


@pytest.mark.parametrize(
    ("longest", "status"), [(299, "good"), (300, "good"), (301, "ok"), (350, "ok"), (351, "bad")]
)
def test_subheading_distribution(longest: int, status: str) -> None:
    assert R.rate_subheading_distribution([10, longest], True, 1000).status == status


def test_subheading_distribution_without_subheadings() -> None:
    assert R.rate_subheading_distribution([300], False, 300).status == "good"
    assert R.rate_subheading_distribution([301], False, 301).status == "bad"


@pytest.mark.parametrize(
    ("longest", "status"), [(149, "good"), (150, "good"), (151, "ok"), (200, "ok"), (201, "bad")]
)
def test_paragraph_length(longest: int, status: str) -> None:
    assert R.rate_paragraph_length([5, longest]).status == status


@pytest.mark.parametrize(
    ("share", "status"),
    [(24.9, "good"), (25.0, "good"), (25.1, "ok"), (30.0, "ok"), (30.1, "bad")],
)
def test_sentence_length(share: float, status: str) -> None:
    assert R.rate_sentence_length(share).status == status


@pytest.mark.parametrize(
    ("share", "status"),
    [(9.9, "good"), (10.0, "good"), (10.1, "ok"), (15.0, "ok"), (15.1, "bad")],
)
def test_passive_voice(share: float, status: str) -> None:
    assert R.rate_passive_voice(share).status == status


@pytest.mark.parametrize(
    ("share", "status"),
    [(19.9, "bad"), (20.0, "ok"), (29.9, "ok"), (30.0, "good"), (30.1, "good")],
)
def test_transition_words(share: float, status: str) -> None:
    assert R.rate_transition_words(share, 500).status == status
    assert R.rate_transition_words(share, 199).status == "good"  # short texts need none


@pytest.mark.parametrize(("run", "status"), [(1, "good"), (2, "good"), (3, "bad"), (4, "bad")])
def test_consecutive_sentences(run: int, status: str) -> None:
    assert R.rate_consecutive_sentences(run, "the").status == status


@pytest.mark.parametrize(
    ("flesch", "status"),
    [(49.9, "bad"), (50.0, "ok"), (59.9, "ok"), (60.0, "good"), (60.1, "good")],
)
def test_flesch(flesch: float, status: str) -> None:
    assert R.rate_flesch(flesch).status == status


@pytest.mark.parametrize(
    ("covered", "total", "status"),
    [(3, 10, "bad"), (4, 10, "bad"), (5, 10, "ok"), (7, 10, "ok"), (8, 10, "good"), (0, 0, "good")],
)
def test_cluster_coverage(covered: int, total: int, status: str) -> None:
    keywords = [f"topic{i} widget" for i in range(total)]
    headings = [k.title() for k in keywords[:covered]]
    assert S.rate_coverage(keywords, headings, "").status == status


def test_coverage_counts_the_faq() -> None:
    check = S.rate_coverage(["is a kettle worth it"], [], "Is a kettle worth it? It depends.")
    assert check.status == "good"


def test_answer_first() -> None:
    good = ["To descale a kettle, boil equal parts water and vinegar.", "Then rinse it."]
    assert S.rate_answer_first(KP, good).status == "good"
    fluff = ["In this article we look at kettles.", "Welcome to our blog about descaling."]
    assert S.rate_answer_first(KP, fluff).status == "bad"
    half = ["Have you ever needed to descale a kettle?", "It happens."]
    assert S.rate_answer_first(KP, half).status == "ok"


def test_passive_and_transition_detection() -> None:
    assert R.is_passive("The kettle was cleaned by my father.")
    assert R.is_passive("Limescale is removed with acid.")
    assert not R.is_passive("My father cleaned the kettle.")
    assert not R.is_passive("Getting started is easy once you get started.")
    assert R.has_transition("However, vinegar smells.")
    assert R.has_transition("Rinse it, because acid lingers.")
    assert not R.has_transition("Vinegar smells.")
