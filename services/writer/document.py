"""An article's HTML read once into what the checks look at (selectolax/Lexbor parser).

Blocks are the innermost of p, li, headings, table cells, blockquote, figcaption, dt, dd
and pre, in document order. Prose (what the sentence-based readability checks read) is
p, li, blockquote, dt and dd: headings, table cells and captions are labels, not
sentences. The word count covers every visible word of the HTML, headings, tables and
captions included, alt texts excluded; it is the count credits are billed on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from services.writer.text import count_words

HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
SUBHEADING_TAGS = HEADING_TAGS[1:]
BLOCK_TAGS = (
    *HEADING_TAGS,
    "p",
    "li",
    "td",
    "th",
    "blockquote",
    "figcaption",
    "dt",
    "dd",
    "pre",
)
PROSE_TAGS = frozenset({"p", "li", "blockquote", "dt", "dd"})
_BLOCK_SELECTOR = ",".join(BLOCK_TAGS)
_FAQ_HEADING = re.compile(
    r"\b(?:faqs?|frequently asked questions|questions and answers|"
    r"common questions|questions)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Block:
    tag: str
    text: str

    @property
    def level(self) -> int:
        """1-6 for the headings h1-h6, 0 for the other blocks."""
        return int(self.tag[1]) if self.tag in HEADING_TAGS else 0


@dataclass(frozen=True, slots=True)
class Anchor:
    href: str
    text: str
    rel: str

    @property
    def nofollow(self) -> bool:
        return "nofollow" in self.rel.lower().split()


@dataclass(frozen=True)
class Document:
    text: str
    word_count: int
    blocks: tuple[Block, ...]
    image_alts: tuple[str, ...]  # one per <img>, "" where it has none: all the checks read of it
    links: tuple[Anchor, ...]
    section_words: tuple[int, ...]
    faq_text: str = ""
    prose: tuple[Block, ...] = field(default=())

    @property
    def paragraphs(self) -> list[str]:
        return [b.text for b in self.blocks if b.tag == "p"]

    @property
    def first_paragraph(self) -> str:
        """The introduction: the first paragraph of text (Yoast reads the first <p>)."""
        return next((b.text for b in self.blocks if b.tag == "p" and b.text), "")

    @property
    def h1(self) -> tuple[str, ...]:
        return tuple(b.text for b in self.blocks if b.tag == "h1")

    @property
    def subheadings(self) -> tuple[Block, ...]:
        """The h2-h6 blocks: each opens a section."""
        return tuple(b for b in self.blocks if b.tag in SUBHEADING_TAGS)

    def h2_h3(self) -> list[str]:
        return [h.text for h in self.subheadings if h.level in (2, 3)]


def _text(node: LexborNode) -> str:
    return " ".join((node.text(deep=True, separator="") or "").split())


def _outer_blocks(nodes: list[LexborNode]) -> set[int]:
    """Ids of the matched blocks that contain another matched block."""
    ids = {n.mem_id for n in nodes}
    outer: set[int] = set()
    for node in nodes:
        parent = node.parent
        while parent is not None:
            if parent.mem_id in ids:
                outer.add(parent.mem_id)
            parent = parent.parent
    return outer


def parse_document(html: str) -> Document:
    tree = LexborHTMLParser(html or "")
    root = tree.body or tree.root
    blocks: list[Block] = []
    section_words = [0]
    faq_parts: list[str] = []
    faq_level = 0
    if root is not None:
        nodes = root.css(_BLOCK_SELECTOR)
        outer = _outer_blocks(nodes)
        for node in nodes:
            if node.mem_id in outer:
                continue  # its inner blocks are read instead
            tag = node.tag or ""
            text = _text(node)
            block = Block(tag, text)
            blocks.append(block)
            if tag in SUBHEADING_TAGS:
                level = block.level
                section_words.append(0)
                if faq_level and level <= faq_level:
                    faq_level = 0
                if faq_level:
                    faq_parts.append(text)  # a question heading inside the FAQ
                elif _FAQ_HEADING.search(text):
                    faq_level = level
            elif tag != "h1":  # the title opens no section and is no section's words
                if faq_level:
                    faq_parts.append(text)
                section_words[-1] += count_words(text)
    full_text = " ".join((root.text(deep=True, separator=" ") if root is not None else "").split())
    image_alts = tuple(
        " ".join((n.attributes.get("alt") or "").split())
        for n in (root.css("img") if root is not None else [])
    )
    links = tuple(
        Anchor(
            href=(n.attributes.get("href") or "").strip(),
            text=_text(n),
            rel=n.attributes.get("rel") or "",
        )
        for n in (root.css("a[href]") if root is not None else [])
    )
    return Document(
        text=full_text,
        word_count=count_words(full_text),
        blocks=tuple(blocks),
        image_alts=image_alts,
        links=links,
        section_words=tuple(section_words),
        faq_text=" ".join(faq_parts),
        prose=tuple(b for b in blocks if b.tag in PROSE_TAGS and b.text),
    )


def html_word_count(html: str) -> int:
    """Visible words of an HTML fragment: what a draft reports and credits are billed on."""
    return parse_document(html).word_count


def link_kind(href: str, site_host: str | None) -> str:
    """`internal`, `outbound` or `other` (fragments, mailto:, tel:, javascript:)."""
    if not href or href.startswith("#"):
        return "other"
    parts = urlsplit(href)
    if parts.scheme and parts.scheme not in ("http", "https"):
        return "other"
    if not parts.netloc:
        return "internal"
    host = parts.netloc.lower().split("@")[-1].split(":")[0]
    if site_host:
        site = site_host.lower().removeprefix("www.")
        if host.removeprefix("www.") == site:
            return "internal"
    return "outbound"
