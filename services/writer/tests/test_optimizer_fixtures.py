"""The optimizer on articles written by hand, not by the engine: a good how-to scores high,
a bad one scores low, and every check that is not good names its fix. (The score is not
tuned to the local engine's own output only.)"""

from __future__ import annotations

from pathlib import Path

from services.writer.optimizer import analyze

FIXTURES = Path(__file__).parent / "fixtures"
KP = "descale a kettle"


def _analyze(name: str, **fields: str):  # type: ignore[no-untyped-def]
    return analyze((FIXTURES / name).read_text(), keyphrase=KP, site_host="example.com",
                   **fields)


def test_a_good_hand_written_article_scores_high() -> None:
    a = _analyze("good_kettle.html",
                 meta_title="Descale a Kettle: The Vinegar Method, Step by Step",
                 meta_description="Descale a kettle in an hour with white vinegar and water: "
                                  "what you need, the steps, how often to do it and the "
                                  "safety tips that matter.",
                 slug="descale-kettle", secondary=("citric acid",),
                 questions=("how often to descale a kettle",))
    assert a.score >= 85, [c for c in a.checks if c.status != "good"]
    assert len(a.good("seo")) >= 12
    assert a.check("answer_first").status == "good"
    assert a.check("internal_links").status == "good"
    assert a.check("outbound_links").status == "good"
    assert 300 <= a.word_count <= 500


def test_a_bad_hand_written_article_scores_low_and_names_every_fix() -> None:
    a = _analyze("bad_kettle.html", meta_title="Kitchen", meta_description="Kettles.",
                 slug="kitchen-thoughts-and-more-things-today")
    assert a.score < 60
    statuses = {c.name: c.status for c in a.checks}
    for name in ("single_h1", "keyphrase_in_introduction", "keyphrase_in_seo_title",
                 "keyphrase_in_slug", "text_length", "competing_links", "paragraph_length",
                 "passive_voice", "consecutive_sentences", "answer_first", "images"):
        assert statuses[name] != "good", name
    for check in a.checks:
        assert (check.status == "good") == (check.fix == ""), check
        assert check.points <= check.max_points


def test_analysis_is_deterministic() -> None:
    html = (FIXTURES / "good_kettle.html").read_text()
    first = analyze(html, keyphrase=KP, meta_title="Descale a Kettle", slug="descale-kettle")
    again = analyze(html, keyphrase=KP, meta_title="Descale a Kettle", slug="descale-kettle")
    assert first == again
    assert first.as_dict()["score"] == first.score
