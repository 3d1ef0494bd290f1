"""optimize_local fixes what needs no new facts, says what it changed, and is stable."""

from __future__ import annotations

from pathlib import Path

from services.writer.optimizer import ContentInput, optimize_local

FIXTURES = Path(__file__).parent / "fixtures"
KP = "descale a kettle"


def test_the_bad_article_gets_its_honest_fixes() -> None:
    content = ContentInput(html=(FIXTURES / "bad_kettle.html").read_text(), keyphrase=KP,
                           title="How to Descale a Kettle", meta_title="Kitchen",
                           meta_description="Kettles.", slug="kitchen-thoughts-and-more-things")
    result = optimize_local(content)
    after = {c.name: c.status for c in result.after.checks}
    for name in ("single_h1", "keyphrase_in_introduction", "keyphrase_in_seo_title",
                 "keyphrase_in_slug", "meta_description_length", "seo_title_width"):
        assert after[name] == "good", (name, result.after.check(name))
    assert result.after.score > result.before.score
    assert result.changes
    assert result.content.html.count("<h1>") == 1
    # What it cannot do honestly stays a named fix: no invented links or images.
    assert after["outbound_links"] == "bad"
    assert after["paragraph_length"] != "good"  # one 153-word sentence: no honest split
    assert after["images"] == "bad"
    assert result.after.check("images").fix


def test_optimizing_twice_changes_nothing_more() -> None:
    content = ContentInput(html=(FIXTURES / "bad_kettle.html").read_text(), keyphrase=KP,
                           title="How to Descale a Kettle")
    once = optimize_local(content)
    twice = optimize_local(once.content)
    assert twice.content == once.content
    assert twice.changes == ()


def test_a_good_article_is_left_alone() -> None:
    html = (FIXTURES / "good_kettle.html").read_text()
    content = ContentInput(
        html=html, keyphrase=KP, title="How to Descale a Kettle with Vinegar",
        meta_title="Descale a Kettle: The Vinegar Method, Step by Step",
        meta_description="Descale a kettle in an hour with white vinegar and water: what you "
                         "need, the steps, how often to do it and the safety tips that matter.",
        slug="descale-kettle", site_host="example.com")
    result = optimize_local(content)
    assert result.changes == ()
    assert result.after.score == result.before.score
    assert result.word_count == result.after.word_count


def test_long_paragraphs_split_at_sentence_ends() -> None:
    sentences = [f"Sentence {i} says one short thing about kettles and scale." for i in range(20)]
    html = f"<h1>Kettles</h1><p>{' '.join(sentences)}</p>"
    result = optimize_local(ContentInput(html=html, keyphrase=KP))
    assert result.before.check("paragraph_length").status != "good"
    assert result.after.check("paragraph_length").status == "good"
    assert result.content.html.count("<p>") >= 3
    assert all(s in result.content.html for s in sentences)
