"""The linker's rules, checked on the result: the HTML before and after the links went in.

It reads the new `<a>` elements from the output HTML itself (not from the engine's plan),
so a placement bug shows up here as a violation. Rules (`Violation.rule`):

- `unknown_target`: a new link whose href is no content of the site;
- `self_link`; `duplicate_target` (a target linked twice, or again when already linked);
- `not_body_paragraph`: outside a body `<p>` (headings, lists, tables, captions, quotes);
- `nested_link`: inside an existing link;
- `first_sentence`: in the article's first sentence;
- `own_keyphrase`: the anchor overlaps the source's own keyphrase;
- `not_a_variant`: the anchor is none of the target's keyword variants (engine links);
- `paragraph_twice`: a new link in a paragraph that has another link (new or not);
- `too_many` / `too_few`: outside 3-5 links per 1,000 words (the pillar may go above to
  reach its cluster; `too_few` only when asked);
- `pillar_missing`: a pillar that does not link a page of its cluster;
- `text_changed`: the visible text is not the same before and after.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from services.writer.linker.engine import (
    LinkerConfig,
    Target,
    choose_pillars,
    link_bounds,
    normalise_href,
    phrase_tokens,
    variants,
)
from services.writer.linker.html import NOT_BODY
from services.writer.text import count_words, split_sentences


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    detail: str


def _links(html: str) -> tuple[LexborHTMLParser, list[LexborNode]]:
    tree = LexborHTMLParser(html or "")
    root = tree.body or tree.root
    return tree, (root.css("a[href]") if root is not None else [])


def _text(node: LexborNode) -> str:
    return node.text(deep=True, separator="") or ""


def _visible(html: str) -> str:
    tree = LexborHTMLParser(html or "")
    root = tree.body or tree.root
    return " ".join((root.text(deep=True, separator="") if root is not None else "").split())


def _first_paragraph(tree: LexborHTMLParser) -> LexborNode | None:
    root = tree.body or tree.root
    for p in root.css("p") if root is not None else []:
        if _text(p).strip():
            return p
    return None


def _words_before(p: LexborNode, a: LexborNode) -> str:
    """The paragraph's text before the link."""
    out = []
    for node in p.traverse(include_text=True):
        if node.mem_id == a.mem_id:
            break
        if node.tag == "-text":
            out.append(node.text_content or "")
    return "".join(out)


def check(source: Target, targets: Sequence[Target], before: str, after: str, *,
          config: LinkerConfig = LinkerConfig(), require_min: bool = False,
          variants_only: bool = True) -> list[Violation]:
    """Every rule the links added to `source` (`before` → `after`) break."""
    out: list[Violation] = []
    by_href = {normalise_href(t.href): t for t in targets if t.href}
    pillars = choose_pillars(targets)
    if _visible(before) != _visible(after):
        out.append(Violation("text_changed", "the visible text changed"))
    _, old_links = _links(before)
    old = Counter((normalise_href(a.attributes.get("href") or ""), _text(a)) for a in old_links)
    old_targets = {by_href[h].id for h, _ in old if h in by_href}
    tree, new_links = _links(after)
    first_p = _first_paragraph(tree)
    first_sentence_words = 0
    if first_p is not None:
        sentences = split_sentences(_text(first_p))
        first_sentence_words = count_words(sentences[0]) if sentences else 0
    own = phrase_tokens(source.keyphrase)
    linked: Counter[int] = Counter()
    per_paragraph: Counter[int] = Counter()
    for a in new_links:
        href = normalise_href(a.attributes.get("href") or "")
        anchor = _text(a)
        if old[(href, anchor)] > 0:
            old[(href, anchor)] -= 1
            continue
        target = by_href.get(href)
        if target is None:
            out.append(Violation("unknown_target", f"{href!r} ({anchor!r})"))
            continue
        where = f"→ {target.id} {anchor!r}"
        if target.id == source.id:
            out.append(Violation("self_link", where))
        linked[target.id] += 1
        if linked[target.id] > 1 or target.id in old_targets:
            out.append(Violation("duplicate_target", where))
        p, parent, body, nested = None, a.parent, True, False
        while parent is not None:
            tag = parent.tag or ""
            if tag == "p" and p is None:
                p = parent
            if tag == "a":
                nested = True
            if tag in NOT_BODY:
                body = False
            parent = parent.parent
        if nested:
            out.append(Violation("nested_link", where))
        if p is None or not body:
            out.append(Violation("not_body_paragraph", where))
            continue
        per_paragraph[p.mem_id] += 1
        if per_paragraph[p.mem_id] == 2 or (
                per_paragraph[p.mem_id] == 1 and len(p.css("a")) > 1):
            out.append(Violation("paragraph_twice", where))
        before_text = _words_before(p, a)
        start = len(phrase_tokens(before_text))
        if (first_p is not None and p.mem_id == first_p.mem_id
                and count_words(before_text) < first_sentence_words):
            out.append(Violation("first_sentence", where))
        anchor_tokens = phrase_tokens(anchor)
        if own:
            tokens = list(phrase_tokens(_text(p)))
            span = set(range(start, start + len(anchor_tokens)))
            for i in range(len(tokens) - len(own) + 1):
                if tuple(tokens[i:i + len(own)]) == own and span & set(range(i, i + len(own))):
                    out.append(Violation("own_keyphrase", where))
                    break
        if variants_only and anchor_tokens not in {
                phrase_tokens(v) for v in variants(target, config.min_variant_words)}:
            out.append(Violation("not_a_variant", where))
    words = count_words(_visible(after))
    low, high = link_bounds(words, config)
    internal = len(old_targets - {source.id}) + sum(linked.values())
    members = [t.id for t in targets
               if source.cluster_id is not None and t.cluster_id == source.cluster_id
               and t.id != source.id]
    is_pillar = source.cluster_id is not None and pillars.get(source.cluster_id) == source.id
    if internal > (max(high, len(members)) if is_pillar else high):
        out.append(Violation("too_many", f"{internal} links for {words} words"))
    if require_min and internal < low:
        out.append(Violation("too_few", f"{internal} links for {words} words"))
    if is_pillar:
        for m in members:
            if m not in linked and m not in old_targets:
                out.append(Violation("pillar_missing", f"pillar {source.id} → {m}"))
    return out

