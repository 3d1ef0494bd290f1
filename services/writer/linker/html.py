"""The linker's view of a content's HTML (the format writer's drafts produce, read with
selectolax/Lexbor as `services/writer/document.py` reads it), and the one edit it makes.

A **paragraph** is a `<p>` element, numbered 0, 1, ... in document order over the whole
HTML (`paragraph_index`, the same numbering as `Document.paragraphs`). Links go only in
**body paragraphs**: a `<p>` that is not inside a heading, list, table, figure,
blockquote, aside, nav, header, footer or pre. A paragraph's text is read as
**segments**, its text nodes in order; a segment inside an `<a>` is an existing link,
and a paragraph that has one takes no other link (at most one link per paragraph). An
anchor lies inside one segment (so inserting it never crosses a tag). The article's
**first sentence** (of its first non-empty paragraph, as `text.split_sentences` splits
it) is out of bounds.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser, LexborNode

from services.writer.text import count_words, split_sentences

# Containers whose paragraphs are not body prose.
NOT_BODY = frozenset({"h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "table", "figure",
                      "figcaption", "blockquote", "aside", "nav", "header", "footer", "pre",
                      "a", "dl"})


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    linked: bool  # inside an existing <a>
    first_words: int  # how many of its leading words belong to the article's first sentence


@dataclass(frozen=True, slots=True)
class Paragraph:
    index: int
    body: bool
    segments: tuple[Segment, ...]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def linked(self) -> bool:
        """It holds a link already (so it takes no other: one link per paragraph)."""
        return any(s.linked for s in self.segments)


@dataclass(frozen=True, slots=True)
class Page:
    """A content's HTML as the linker reads it."""

    paragraphs: tuple[Paragraph, ...]
    hrefs: tuple[str, ...]  # existing links' targets
    word_count: int


def _text_nodes(p: LexborNode) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    for node in p.traverse(include_text=True):
        if node.tag != "-text":
            continue
        linked = False
        parent = node.parent
        while parent is not None and parent.mem_id != p.mem_id:
            if parent.tag == "a":
                linked = True
                break
            parent = parent.parent
        out.append((node.text_content or "", linked))
    return out


def _is_body(p: LexborNode) -> bool:
    parent = p.parent
    while parent is not None:
        if (parent.tag or "") in NOT_BODY:
            return False
        parent = parent.parent
    return True


def _root(tree: LexborHTMLParser) -> LexborNode | None:
    return tree.body or tree.root


def read_page(html: str) -> Page:
    tree = LexborHTMLParser(html or "")
    root = _root(tree)
    paragraphs: list[Paragraph] = []
    first_left: int | None = None  # words of the first sentence not yet assigned
    if root is not None:
        for index, p in enumerate(root.css("p")):
            nodes = _text_nodes(p)
            if first_left is None and " ".join("".join(t for t, _ in nodes).split()):
                sentences = split_sentences("".join(t for t, _ in nodes))
                first_left = count_words(sentences[0]) if sentences else 0
            segments = []
            for text, linked in nodes:
                n = count_words(text)
                taken = min(n, first_left or 0)
                if first_left:
                    first_left -= taken
                segments.append(Segment(text, linked, taken))
            paragraphs.append(Paragraph(index, _is_body(p), tuple(segments)))
        hrefs = tuple((a.attributes.get("href") or "").strip() for a in root.css("a[href]"))
        words = count_words(" ".join((root.text(deep=True, separator=" ") or "").split()))
    else:
        hrefs, words = (), 0
    return Page(tuple(paragraphs), hrefs, words)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one link goes: paragraph, segment, and the anchor's character span in it."""

    paragraph_index: int
    segment_index: int
    start: int
    end: int
    href: str


def insert_links(html: str, placements: list[Placement]) -> str:
    """The HTML with each placement's text wrapped in `<a href>`; everything else is kept
    (Lexbor serialises the untouched parts again: same elements, same text)."""
    if not placements:
        return html
    tree = LexborHTMLParser(html or "")
    root = _root(tree)
    if root is None:
        return html
    paragraphs = root.css("p")
    for place in sorted(placements, key=lambda p: (p.paragraph_index, p.segment_index,
                                                   -p.start)):
        p = paragraphs[place.paragraph_index]
        texts = [n for n in p.traverse(include_text=True) if n.tag == "-text"]
        node = texts[place.segment_index]
        text = node.text_content or ""
        before, anchor, after = text[:place.start], text[place.start:place.end], text[place.end:]
        link = LexborHTMLParser(
            f'<a href="{html_lib.escape(place.href, quote=True)}">'
            f"{html_lib.escape(anchor, quote=False)}</a>").css_first("a")
        if link is None:  # pragma: no cover - Lexbor always parses this
            raise RuntimeError("could not build a link")
        if before:
            node.insert_before(before)
        node.insert_before(link)
        if after:
            node.insert_before(after)
        node.remove()
    return _serialise(tree)


def _serialise(tree: LexborHTMLParser) -> str:
    """Back to a fragment: comments before <html>, then what the head and body hold."""
    full = tree.html or ""
    lead = full[: full.find("<html")] if "<html" in full else ""
    head = tree.head.inner_html if tree.head is not None else ""
    body = tree.body.inner_html if tree.body is not None else ""
    return f"{lead}{head or ''}{body or ''}"


# The words anchors are matched on: hyphens split ("pour-over" is "pour over").
TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


def token_spans(text: str) -> list[tuple[int, int, str]]:
    """Each word of `text` (hyphenated words split): start, end, word."""
    return [(m.start(), m.end(), m.group(0)) for m in TOKEN.finditer(text)]
