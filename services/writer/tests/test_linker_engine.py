"""The linker's engine on small hand-made sites: the automaton against brute force, each
placement rule, the pillar rule, determinism, and the edit that keeps the text."""

from __future__ import annotations

import random

import pytest

from libs.common.ai.local import LocalEmbedder
from services.writer.linker.automaton import TokenAutomaton
from services.writer.linker.engine import SiteIndex, Target, link_bounds, variants
from services.writer.linker.html import read_page
from services.writer.linker.rules import check

EMBEDDER = LocalEmbedder()


def test_automaton_finds_what_brute_force_finds() -> None:
    rng = random.Random(7)
    vocabulary = list("abcde")
    phrases = {tuple(rng.choice(vocabulary) for _ in range(rng.randint(1, 4)))
               for _ in range(60)}
    automaton: TokenAutomaton[int] = TokenAutomaton()
    indexed = {p: i for i, p in enumerate(sorted(phrases))}
    for phrase, value in indexed.items():
        automaton.add(phrase, value)
    automaton.build()
    for _ in range(50):
        text = [rng.choice(vocabulary) for _ in range(rng.randint(0, 40))]
        expected = {(i, i + len(p), v) for p, v in indexed.items()
                    for i in range(len(text) - len(p) + 1) if tuple(text[i:i + len(p)]) == p}
        assert set(automaton.find(text)) == expected


def test_automaton_refuses_misuse() -> None:
    automaton: TokenAutomaton[int] = TokenAutomaton()
    with pytest.raises(ValueError, match="empty phrase"):
        automaton.add((), 1)
    with pytest.raises(RuntimeError):
        list(automaton.find(["a"]))


def test_variants_skip_questions_and_single_words() -> None:
    t = Target(1, "T", "french press coffee",
               ("press pot", "coffee", "how long to steep french press", "Press pots"))
    assert variants(t) == ["french press coffee", "press pot"]


def test_link_bounds_follow_three_to_five_per_thousand_words() -> None:
    assert link_bounds(1000) == (3, 5)
    assert link_bounds(600) == (1, 3)
    assert link_bounds(300) == (0, 1)


SITE = [
    Target(1, "How to Brew Coffee at Home", "brew coffee at home",
           ("coffee brewing methods",), 10, "guide", word_count=900, href="/brew/"),
    Target(2, "How to Use a French Press", "french press coffee", ("press pot",), 10,
           href="/french-press/"),
    Target(3, "Pour Over Coffee", "pour over coffee", ("pour over ratio",), 10,
           href="/pour-over/"),
    Target(4, "Cold Brew Coffee", "cold brew coffee", ("cold brew concentrate",), 10,
           href="/cold-brew/"),
    Target(5, "Sourdough Starter", "sourdough starter", ("feed a starter",), 20,
           href="/starter/"),
    Target(6, "Sourdough Bread", "sourdough bread", (), 20, "guide", href="/bread/"),
]
FILLER = " ".join(["Good coffee takes a little care and a little patience every day."] * 12)


def index() -> SiteIndex:
    return SiteIndex(SITE, embedder=EMBEDDER)


def test_pillar_links_its_cluster_and_keeps_every_rule() -> None:
    html = (
        "<h1>Brew Coffee at Home</h1>"
        "<p>French press coffee is where most people start. Then pour over coffee.</p>"
        "<h2>French press coffee</h2>"
        f"<p>{FILLER} Many people love <em>french press coffee</em> for its body.</p>"
        "<ul><li>Cold brew coffee keeps for a week.</li></ul>"
        f"<p>{FILLER} Others prefer pour over coffee and its clarity.</p>"
        f"<p>{FILLER} A jar of cold brew concentrate keeps for a week.</p>"
        "<p>The sourdough starter on the shelf has nothing to do with it.</p>")
    idx = index()
    new, links = idx.apply(1, html)
    assert {link.target_content_id for link in links} == {2, 3, 4}
    paragraphs = [link.paragraph_index for link in links]
    assert paragraphs == sorted(set(paragraphs))
    # The first sentence is out of bounds; the second is not.
    assert [(x.target_content_id, x.anchor) for x in links if x.paragraph_index == 0] == [
        (3, "pour over coffee")]
    assert check(SITE[0], SITE, html, new, require_min=True) == []
    assert idx.apply(1, html) == (new, links)  # same input, same output
    assert index().apply(1, html) == (new, links)


def test_never_in_headings_links_first_sentence_or_own_keyphrase() -> None:
    html = (
        "<h1>French Press Coffee</h1>"
        "<p>Brew coffee at home with a press pot, it is easy. That is all.</p>"
        "<h2>Brew coffee at home</h2>"
        f"<p>{FILLER} See <a href='/elsewhere/'>brew coffee at home</a> for more.</p>"
        f"<p>{FILLER} The french press coffee brewing methods are simple.</p>"
        "<blockquote><p>To brew coffee at home is a joy.</p></blockquote>")
    idx = index()
    assert idx.suggest(2, html) == []
    page = read_page(html)
    assert [p.body for p in page.paragraphs] == [True, True, True, False]


def test_own_keyphrase_overlap_is_refused_but_a_clear_mention_is_linked() -> None:
    html = (
        "<h1>French Press Coffee</h1><p>Intro sentence here. More intro.</p>"
        f"<p>{FILLER} All coffee brewing methods differ, and we love them.</p>")
    new, links = index().apply(2, html)
    assert [(x.target_content_id, x.anchor, x.paragraph_index) for x in links] == [
        (1, "coffee brewing methods", 1)]
    assert '<a href="/brew/">coffee brewing methods</a>' in new
    assert check(SITE[1], SITE, html, new) == []


def test_one_link_per_target_and_none_to_itself() -> None:
    html = ("<h1>Cold Brew Coffee</h1><p>Intro sentence. More.</p>"
            f"<p>{FILLER} Read <a href='/brew/'>our guide</a> first.</p>"
            f"<p>{FILLER} Then brew coffee at home with a cold brew coffee jar.</p>"
            f"<p>{FILLER} A pour over coffee cone works too.</p>")
    links = index().suggest(4, html)
    # 1 is linked already, 4 is itself: 3 is the one left.
    assert [x.target_content_id for x in links] == [3]


def test_checker_reports_broken_rules() -> None:
    before = ("<h1>Brew</h1><p>French press coffee first. Then more.</p>"
              f"<p>{FILLER} Pour over coffee and cold brew coffee.</p><h2>x</h2>")
    after = ("<h1>Brew</h1><p><a href='/french-press/'>French press coffee</a> first. "
             f"Then more.</p><p>{FILLER} <a href='/pour-over/'>Pour over coffee</a> and "
             "<a href='/cold-brew/'>cold brew coffee</a>.</p>"
             "<h2><a href='/brew/'>x</a></h2>")
    rules = {v.rule for v in check(SITE[0], SITE, before, after)}
    # 2, 3 and 4 are all linked: no `pillar_missing`.
    assert rules == {"first_sentence", "paragraph_twice", "not_body_paragraph", "self_link",
                     "too_many"}
    broken = check(SITE[0], SITE, before, after.replace("Then more", "Then less"))
    assert "text_changed" in {v.rule for v in broken}


def test_insert_keeps_comments_entities_and_text() -> None:
    html = ("<!-- igny8: tone --><h1>T</h1><p>One. Two &amp; three.</p>"
            f"<p>{FILLER} We like pour over coffee &amp; tea.</p>")
    new, links = index().apply(2, html)
    assert new.startswith("<!-- igny8: tone --><h1>T</h1>")
    assert "&amp; tea" in new
    assert links
    assert check(SITE[1], SITE, html, new) == []


def test_given_links_are_placed_or_refused_naming_the_field() -> None:
    from services.writer.linker.engine import Link, LinkRefused
    from services.writer.linker.html import insert_links

    html = ("<h1>Cold Brew Coffee</h1><p>French press coffee is close. More.</p>"
            f"<p>{FILLER} A French Press Coffee maker, or pour over coffee.</p>"
            f"<h2>Pour over coffee</h2><p>{FILLER} Read <a href='/x/'>pour over coffee</a>.</p>")
    idx = index()
    placed = idx.place(4, html, [Link(2, "french press coffee", 1)])
    new = insert_links(html, placed)
    assert '<a href="/french-press/">French Press Coffee</a> maker' in new
    assert check(SITE[3], SITE, html, new) == []

    def refused(*links: Link) -> tuple[int | None, str]:
        with pytest.raises(LinkRefused) as caught:
            idx.place(4, html, list(links))
        return caught.value.index, caught.value.field

    assert refused(Link(99, "pour over coffee", 1)) == (0, "target_content_id")
    assert refused(Link(4, "pour over coffee", 1)) == (0, "target_content_id")
    assert refused(Link(2, "french press coffee", 0)) == (0, "anchor")  # first sentence
    # A paragraph with a link takes no other, inside it or beside it.
    assert refused(Link(3, "pour over coffee", 2)) == (0, "paragraph_index")
    assert refused(Link(3, "pour over coffee", 7)) == (0, "paragraph_index")
    assert refused(Link(2, "french press coffee", 1), Link(3, "pour over coffee", 1)) == (
        1, "paragraph_index")
    assert refused(Link(2, "french press coffee", 1), Link(2, "pour over coffee", 2)) == (
        1, "target_content_id")
    assert refused(Link(3, "cold brew coffee", 1)) == (0, "anchor")  # not in the text


def test_a_page_links_up_to_its_pillar_first() -> None:
    html = ("<h1>Pour Over</h1><p>Intro sentence. More.</p>"
            f"<p>{FILLER} Unlike cold brew coffee, it is quick.</p>"
            f"<p>{FILLER} All coffee brewing methods share the basics.</p>")
    links = index().suggest(3, html)  # 160 words: one link; the pillar's comes first
    assert [x.target_content_id for x in links] == [1]


def test_a_local_draft_changes_only_where_links_go_in() -> None:
    import re

    from services.writer.brief import Brief
    from services.writer.brief import Link as BriefLink
    from services.writer.drafting import draft_local

    brief = Brief(title="How to Brew Coffee at Home", primary_keyword="brew coffee at home",
                  secondary_keywords=("french press coffee", "pour over coffee",
                                      "cold brew coffee"),
                  question_keywords=("how much coffee per cup",), content_structure="guide",
                  internal_links=(BriefLink(title="Kettles", url="/kettles/"),),
                  outbound_links=(BriefLink(title="SCA", url="https://sca.coffee/"),))
    html = draft_local(brief, embedder=EMBEDDER).html
    new, links = index().apply(1, html)
    assert links
    added = r'<a href="/(?:french-press|pour-over|cold-brew)/">([^<]*)</a>'
    assert len(re.findall(added, new)) == len(links)
    assert re.sub(added, r"\1", new) == html  # every other byte is the draft's
    assert check(SITE[0], SITE, html, new) == []


async def test_a_sites_index_is_kept_until_the_site_changes() -> None:
    from dataclasses import replace

    from services.writer.linker.service import site_index

    first = await site_index(SITE)
    assert await site_index(list(SITE)) is first
    changed = [replace(SITE[0], word_count=901), *SITE[1:]]
    assert await site_index(changed) is not first


def test_checker_counts_a_paragraphs_existing_link() -> None:
    before = f"<h1>T</h1><p>Intro. More.</p><p>{FILLER} <a href='/x/'>x</a> pour over coffee.</p>"
    after = before.replace("pour over coffee", "<a href='/pour-over/'>pour over coffee</a>")
    assert [v.rule for v in check(SITE[1], SITE, before, after)] == ["paragraph_twice"]


def test_how_to_keyphrases_are_found_in_running_prose() -> None:
    t = Target(9, "How to Descale a Kettle", "how to descale a kettle",
               ("what are burr grinders", "why is my kettle loud", "pour-over kit"))
    assert variants(t) == ["descale a kettle", "burr grinders", "pour-over kit"]
