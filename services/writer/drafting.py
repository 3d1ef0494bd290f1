"""The `local` engine: a brief-grade draft, offline, deterministic, honest.

    draft_local(brief, embedder=None) -> Draft

What it writes (issue #10's contract, checked by tests/test_drafting_properties.py):
one H1 from the idea; an introduction of at most 120 words whose first sentence answers
the query with what the answer turns on (the article's own sections); 6-10 H2 sections
from the outline (completed from defaults for the content structure when it is short),
each given its closest secondary keywords by embedding (WordLlama through
`LocalEmbedder`) as H3 subsections; a comparison table for commercial intent (and
comparison pieces); an FAQ exactly when there are question keywords, each answer pointing
at the closest section; in-article image slots (`<figure class="igny8-image-slot">`,
alt text set, `src` empty until the image pipeline fills it); the brief's internal and
outbound links; a closing section. Facts, figures, names and results are never written:
visible "[Add a fact: …]"-style placeholders ask the writer for them. No sentence
appears twice and no two sentences in a row start alike. The meta title (≤ 60 characters,
400-600 px, starting with the keyphrase), meta description (120-156 characters, with the
keyphrase) and slug (≤ 5 words) are fitted; the word count lands within ±5 % of the
target (in practice ±2 %). Same brief, same bytes. The model name says what it is:
`local-draft-brief-1`. Prompts do not apply to it; an author profile's structure
template serves as the outline when the brief has none, and its tone and language are
noted for the writer in an HTML comment (the phrases are English).
"""

from __future__ import annotations

import hashlib
import html as html_lib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from libs.common.ai.local import LocalEmbedder
from services.writer import drafting_phrases as P
from services.writer.brief import Brief, Draft, Link, outline_from_description
from services.writer.drafting_words import (
    SPARSE_DENSITY,
    Writer,
    lower_words,
    topic_of,
    without_keyphrase,
)
from services.writer.seo_checks import subheadings_matching
from services.writer.serp import fit_meta_description, fit_meta_title, fit_slug
from services.writer.text import (
    Keyphrase,
    count_words,
    join_list,
    sentence_case,
    title_case,
)

LOCAL_DRAFT_MODEL = "local-draft-brief-1"
MIN_H2, MAX_H2 = 6, 10
INTRO_MAX_WORDS = 120
SUBSECTION_AFTER_WORDS = 220
PARAGRAPH_MAX_WORDS = 75
MAX_FAQ = 8
_FAQ_OUTLINE = re.compile(r"\b(?:faqs?|frequently asked questions)\b", re.IGNORECASE)

_default_embedder: LocalEmbedder | None = None


def _embedder() -> LocalEmbedder:
    global _default_embedder
    if _default_embedder is None:
        _default_embedder = LocalEmbedder()
    return _default_embedder


def _esc(text: str) -> str:
    return html_lib.escape(text, quote=False)


def _attr(text: str) -> str:
    return html_lib.escape(text, quote=True)


# --------------------------------------------------------------------------------------
# The plan: which sections, which keywords where


@dataclass
class _Section:
    heading: str
    topic: str
    keywords: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    image: int = 0  # the in-article image position placed in this section, 0 for none


@dataclass
class _Plan:
    sections: list[_Section]
    table: bool
    faq: list[tuple[str, int]]  # (question, index of the closest section)
    outbound: list[tuple[Link, int]]
    dilute: int = 0  # subsections to add whose headings do not use the keyphrase


def _outline(brief: Brief) -> list[str]:
    outline = list(brief.outline)
    if not outline and brief.author and brief.author.structure_template:
        outline = list(outline_from_description(brief.author.structure_template))
    title = brief.title.lower()
    return [h for h in outline if h.lower() != title and not _FAQ_OUTLINE.search(h)]


def _section_count(brief: Brief, engine_sections: int) -> int:
    """More sections for longer articles: about one H2 per 160 words, 6-10 in all."""
    wanted = max(MIN_H2, min(MAX_H2, round(brief.target_word_count / 160)))
    return max(MIN_H2 - engine_sections, wanted - engine_sections)


def _nearest(rows: np.ndarray, cols: np.ndarray) -> list[int]:
    """For each row vector, the index of the most similar column vector (first on ties)."""
    if rows.size == 0 or cols.size == 0:
        return [0] * len(rows)
    sims = rows @ cols.T
    return [int(i) for i in np.argmax(sims, axis=1)]


def _plan(brief: Brief, embedder: LocalEmbedder) -> _Plan:
    kp_title = title_case(brief.primary_keyword)
    table = brief.intent == "commercial" or brief.content_structure == "comparison"
    questions = list(brief.question_keywords[:MAX_FAQ])
    engine_sections = 1 + int(table) + int(bool(questions))
    n_body = _section_count(brief, engine_sections)
    headings = _outline(brief)[:n_body]
    taken = {h.lower() for h in headings}
    # Too short an outline: secondary keywords first, then the structure's defaults.
    fillers = [title_case(k) for k in brief.secondary_keywords]
    fillers += [d.replace("{KP}", kp_title) for d in P.DEFAULT_SECTIONS[brief.content_structure]]
    for candidate in fillers:
        if len(headings) >= n_body:
            break
        if candidate.lower() not in taken:
            headings.append(candidate)
            taken.add(candidate.lower())
    n = 1
    while len(headings) < n_body:  # a brief whose defaults are all taken: number them
        headings.append(f"{kp_title}: Part {n}")
        n += 1
    sections = [_Section(h, topic_of(h, brief.primary_keyword)) for h in headings]

    texts = [f"{brief.primary_keyword}: {h}" for h in headings]
    secondary = [k for k in brief.secondary_keywords if k.lower() not in taken]
    extra = [lk.title for lk in brief.internal_links] + [lk.title for lk in brief.outbound_links]
    vectors = embedder.embed_sync([*texts, *secondary, *questions, *extra])
    h_vec = vectors[: len(texts)]
    rest = vectors[len(texts) :]
    k_vec, rest = rest[: len(secondary)], rest[len(secondary) :]
    q_vec, l_vec = rest[: len(questions)], rest[len(questions) :]
    for keyword, i in zip(secondary, _nearest(k_vec, h_vec), strict=True):
        sections[i].keywords.append(keyword)
    link_sections = _nearest(l_vec, h_vec)
    n_internal = len(brief.internal_links)
    for link, i in zip(brief.internal_links, link_sections[:n_internal], strict=True):
        sections[i].links.append(link)
    outbound = list(zip(brief.outbound_links, link_sections[n_internal:], strict=True))
    for lk, i in outbound:
        sections[i].links.append(lk)
    faq = list(zip(questions, _nearest(q_vec, h_vec), strict=True))
    for position in range(1, brief.in_article_images + 1):
        index = min(len(sections) - 1, (position * len(sections)) // (brief.in_article_images + 1))
        while sections[index].image and index + 1 < len(sections):
            index += 1
        if not sections[index].image:
            sections[index].image = position
    return _Plan(sections, table, faq, outbound)


# --------------------------------------------------------------------------------------
# Rendering


@dataclass
class _Out:
    parts: list[str] = field(default_factory=list)
    words: int = 0

    def add(self, html: str, text: str) -> None:
        self.parts.append(html)
        self.words += count_words(text)


def _fmt(template: str, **values: str) -> str:
    text = template.format(**values)
    return text[:1].upper() + text[1:]


class _Drafter:
    def __init__(
        self, brief: Brief, plan: _Plan, heading_with_kp: dict[str, bool], lean: int = 0
    ) -> None:
        self.brief = brief
        self.lean = lean  # 0 full, 1-5 ever fewer fixed words (short targets)
        self.plan = plan
        self.kp = Keyphrase.of(brief.primary_keyword)
        self.kp_text = brief.primary_keyword
        self.kp_title = title_case(brief.primary_keyword)
        self.intent = brief.intent
        self.structure = brief.content_structure
        self.writer = Writer(self.kp, brief.target_word_count)
        self.with_kp = heading_with_kp
        digest = hashlib.sha256(f"{brief.title}|{brief.primary_keyword}".encode()).digest()
        self.seed = digest[0]
        self.subsection_headings: list[str] = []
        self.links_written = 0
        self.offset_words = 0  # words rendered elsewhere (the tail while the body renders)
        self.section_words: list[int] = []
        self.dry = False  # no filler at all (fixed_sizes)

    # -- small builders ---------------------------------------------------------------

    def values(self, topic: str, **extra: str) -> dict[str, str]:
        if self.writer.density() > 1.8:
            topic = without_keyphrase(topic, self.kp)
        return {
            "kp": self.kp_text,
            "KP": sentence_case(self.kp_text),
            "t": topic,
            "T": sentence_case(topic),
            "goal": P.GOALS[self.intent],
            "unit": P.UNITS[self.structure],
            **extra,
        }

    def sentence(self, templates: Sequence[str], offset: int, **values: str) -> str | None:
        n = len(templates)
        rotated = [templates[(offset + i) % n] for i in range(n)]
        candidates = [_fmt(t, **values) for t in rotated]
        chosen = self.writer.choose(candidates)
        return self.writer.note(chosen) if chosen else None

    def heading(self, out: _Out, level: int, text: str) -> None:
        out.add(f"<h{level}>{_esc(text)}</h{level}>", text)
        self.writer.note_heading(text)
        self.writer.words = out.words + self.offset_words

    def paragraph(self, out: _Out, sentences: Sequence[str | None], links: str = "") -> None:
        text = " ".join(s for s in sentences if s)
        if not text and not links:
            return
        body = _esc(text) + (f" {links}" if links else "")
        out.add(f"<p>{body}</p>", text + " " + re.sub(r"<[^>]+>", "", links))
        self.writer.words = out.words + self.offset_words

    def engine_heading(self, key: str, variants: tuple[str, str]) -> str:
        with_kp, without = variants
        chosen = with_kp if self.with_kp.get(key, True) else without
        return sentence_case(chosen.replace("{KP}", self.kp_title).replace("{kp}", self.kp_text))

    def heading_hits(self) -> int:
        """The keyphrase's occurrences in the headings the plan fixes: the H1, the body
        sections, their keyword subsections and the FAQ's questions."""
        texts = [self.brief.title, *(q for q, _ in self.plan.faq)]
        for section in self.plan.sections:
            texts += [section.heading, *section.keywords]
        return sum(self.kp.occurrences(t) for t in texts)

    # -- the parts ----------------------------------------------------------------------

    def intro(self, out: _Out) -> None:
        # The sections the answer turns on, those without the keyphrase first: a topic
        # that holds it ("coffee near me" for "coffee") would repeat it in the sentence
        # that already opens with it, so it is named without ("options near me").
        topics = [s.topic for s in self.plan.sections if self.kp.share_in(s.topic) == 0]
        topics += [
            without_keyphrase(s.topic, self.kp)
            for s in self.plan.sections
            if self.kp.share_in(s.topic) > 0
        ]
        topics = [t for t in topics if not self.kp.occurrences(t)][:3] or topics[:1]
        template = (
            P.ANSWER_FIRST_HOW_TO if self.structure == "how_to" else P.ANSWER_FIRST[self.intent]
        )
        first = ""
        for n in (3, 2, 1):
            first = _fmt(
                template,
                kp=self.kp_text,
                KP=sentence_case(self.kp_text),
                topics=join_list(topics[:n]),
            )
            if count_words(first) <= 24:
                break
        sentences = [self.writer.note(first)]
        placeholder = P.INTRO_PLACEHOLDER[self.intent].format(kp=self.kp_text)
        if 100 * (self.heading_hits() + 2) / self.brief.target_word_count > 2.5:
            placeholder = P.INTRO_PLACEHOLDER_PLAIN[self.intent]
        sentences.append(self.writer.note(placeholder))
        extra = dict(self.values(""), n_questions=str(len(self.plan.faq)))
        more = [m for m in P.INTRO_MORE if self.plan.faq or "{n_questions}" not in m]
        more = more[: max(int(self.lean < 4), 4 - 2 * self.lean)]
        for template in more:
            candidate = _fmt(template, **extra)
            words = sum(count_words(s) for s in sentences) + count_words(candidate)
            if words <= INTRO_MAX_WORDS - 10 and self.writer.can_use(candidate):
                sentences.append(self.writer.note(candidate))
        self.paragraph(out, sentences)

    def image_slot(self, out: _Out, section: _Section) -> None:
        alt = (
            f"{self.kp_text}: {section.topic}"
            if section.image == 1
            else sentence_case(section.topic)
        )
        what = f"a photo or chart that shows {self.values(section.topic)['t']}"
        caption = P.IMAGE_CAPTION.format(what=what)
        out.add(
            f'<figure class="igny8-image-slot" data-image-type="in_article" '
            f'data-image-position="{section.image}"><img src="" alt="{_attr(alt)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>",
            caption,
        )

    def link_sentence(self, link: Link) -> str:
        """A sentence carrying the link; the anchor never is the keyphrase (Yoast's
        competing-links check), and no two link sentences read alike."""
        anchor_text = link.title
        if self.kp.in_text(anchor_text):
            anchor_text = "this related page" if link.url.startswith("/") else "this source"
        anchor = f'<a href="{_attr(link.url)}">{_esc(anchor_text)}</a>'
        frames = (
            "For more on this, see {a}.",
            "See also {a}.",
            "A useful next read is {a}.",
            "There is more in {a}.",
            "You can read on in {a}.",
            "Related: {a}.",
        )
        for i in range(len(frames)):
            frame = frames[(self.links_written + i) % len(frames)]
            plain = frame.replace("{a}", anchor_text)
            if self.writer.can_use(plain):
                break
        self.links_written += 1
        self.writer.note(plain)
        return frame.replace("{a}", anchor)

    def fill_pool(self, section: _Section, topic: str) -> list[str]:
        pool = list(P.GUIDE)
        pool += P.GUIDE_BY_INTENT.get(self.intent, ())
        pool += P.GUIDE_BY_STRUCTURE.get(self.structure, ())
        pool += P.KEYPHRASE
        if self.writer.density() < SPARSE_DENSITY:  # a long draft, its keyphrase running low
            pool += P.KEYPHRASE_MORE
        pool += P.PLACEHOLDERS[self.intent]
        if self.structure in P.PLACEHOLDERS_BY_STRUCTURE:
            pool.append(P.PLACEHOLDERS_BY_STRUCTURE[self.structure])
        return pool

    def body_section(self, out: _Out, index: int, section: _Section, budget: int) -> None:
        start = out.words
        offset = self.seed + index * 7
        self.heading(out, 2, section.heading)
        values = self.values(section.topic)
        lead = [self.sentence(P.SECTION_LEAD, offset, **values)]
        if self.writer.density() < (1.5 if not self.lean else 1.0):
            lead.append(self.sentence(P.KEYPHRASE, offset + index, **values))
        lead.append(self.sentence(P.PLACEHOLDERS[self.intent], offset + index, **values))
        links = " ".join(self.link_sentence(lk) for lk in section.links)
        self.paragraph(out, lead, links)
        if section.image:
            self.image_slot(out, section)
        keywords = section.keywords
        # Short targets: one subsection per section, the other keywords named in a
        # sentence; at the leanest level (5) that sentence is the subsection's only text,
        # so the keywords fold into one subsection with no per-keyword sentence.
        folded = ""
        if self.lean >= 3 and len(keywords) > 1:
            keywords = keywords[:1]
            rest = join_list(section.keywords[1:])
            also = f"It also touches on {rest}."
            if self.lean >= 5:
                also = f"This part also covers {rest}."
            if self.writer.can_use(also) and not self.kp.occurrences(also):
                if self.lean >= 5:
                    folded = also
                else:
                    self.paragraph(out, [self.writer.note(also)])
        for j, keyword in enumerate(keywords):
            self.heading(out, 3, title_case(keyword))
            if folded:
                self.paragraph(out, [self.writer.note(folded)])
                continue
            kv = self.values(lower_words(keyword), k=keyword, K=sentence_case(keyword))
            keyword_pool: Sequence[str] = P.KEYWORD
            if self.kp.occurrences(keyword):  # the writer's density steering picks
                keyword_pool = [*P.KEYWORD, *P.KEYWORD_PLAIN]  # plain ones when dense
            sentences = [self.sentence(keyword_pool, offset + j, **kv)]
            if self.lean < 2:
                sentences.append(self.sentence(P.GUIDE, offset + 3 * j + 1, **kv))
            if not self.lean:
                sentences.append(
                    self.sentence(self.fill_pool(section, keyword), offset + j + 5, **kv)
                )
            self.paragraph(out, sentences)
        if not self.lean and index % 2 == 1 and out.words - start + 30 < budget:
            self.checklist(out, section, offset)
        if index < self.plan.dilute:
            self.heading(out, 3, P.PLAIN_H3[index % len(P.PLAIN_H3)])
            self.paragraph(
                out,
                [
                    self.sentence(
                        self.fill_pool(section, section.topic),
                        offset + 11,
                        **self.values(section.topic),
                    )
                ],
            )
        self.fill(out, section, start, budget, offset)

    def checklist(self, out: _Out, section: _Section, offset: int) -> None:
        items = P.CHECKLIST_HOW_TO if self.structure == "how_to" else P.CHECKLIST[self.intent]
        lead = _fmt(P.CHECKLIST_LEAD, t=self.values(section.topic)["t"])
        if not self.writer.can_use(lead):
            return
        self.paragraph(out, [self.writer.note(lead)])
        lis = []
        for template in items:
            item = _fmt(template, **self.values(section.topic))
            if self.writer.can_use(item):
                lis.append(self.writer.note(item))
        out.add("<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in lis) + "</ul>", " ".join(lis))
        self.writer.words = out.words + self.offset_words

    def fill(self, out: _Out, section: _Section, start: int, budget: int, offset: int) -> None:
        topics = [section.topic, *(lower_words(k) for k in section.keywords)]
        since_heading = out.words - start
        paragraph: list[str] = []
        para_words = 0
        sub = 0
        round_ = misses = 0
        widened = False
        while out.words + para_words - start < budget - 6:
            topic = topics[round_ % len(topics)]
            pool = self.fill_pool(section, topic)
            s = self.sentence(pool, offset + round_ * 3, **self.values(topic))
            round_ += 1
            if s is None:  # many misses in a row: this section's topics are used up
                misses += 1
                if misses > 4 * len(topics) + 8:
                    if widened:
                        break
                    # A long draft: relate the section to the others' topics too.
                    others = [x.topic for x in self.plan.sections if x.topic not in topics]
                    topics, widened, misses = [*topics, *others], True, 0
                continue
            misses = 0
            paragraph.append(s)
            para_words += count_words(s)
            since_heading += count_words(s)
            if para_words >= PARAGRAPH_MAX_WORDS or len(paragraph) >= 5:
                self.paragraph(out, paragraph)
                paragraph, para_words = [], 0
            if since_heading > SUBSECTION_AFTER_WORDS and budget - (out.words - start) > 90:
                if paragraph:
                    self.paragraph(out, paragraph)
                    paragraph, para_words = [], 0
                h3 = sentence_case(
                    P.SUBSECTION_H3[(offset + sub) % len(P.SUBSECTION_H3)].format(t=section.topic)
                )
                sub += 1
                if h3.lower() in (h.lower() for h in self.subsection_headings):
                    h3 = f"{h3} ({sub})"
                self.subsection_headings.append(h3)
                self.heading(out, 3, h3)
                since_heading = 0
        if paragraph:
            self.paragraph(out, paragraph)

    def table(self, out: _Out) -> None:
        self.heading(out, 2, self.engine_heading("table", P.TABLE_HEADINGS))
        self.paragraph(out, [self.writer.note(P.TABLE_LEAD)])
        # Rows named by secondary keywords, not those that repeat the keyphrase (three
        # rows of "Cheap Coffee", "Coffee Guide" … would push its density over 3 %).
        names = [k for k in self.brief.secondary_keywords if not self.kp.occurrences(k)]
        rows = [title_case(k) for k in names[: 3 - min(1, self.lean)]]
        if len(rows) < 2:
            rows = ["Option A", "Option B", "Option C"]
        head = "".join(f"<th>{_esc(c)}</th>" for c in ("Option", *P.TABLE_COLUMNS))
        body = "".join(
            "<tr><td>" + _esc(r) + "</td>" + "<td>[Add]</td>" * len(P.TABLE_COLUMNS) + "</tr>"
            for r in rows
        )
        text = (
            " ".join(["Option", *P.TABLE_COLUMNS])
            + " "
            + " ".join(r + " [Add]" * len(P.TABLE_COLUMNS) for r in rows)
        )
        out.add(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>", text)
        self.paragraph(out, [self.writer.note(P.TABLE_NOTE)])

    def faq(self, out: _Out) -> None:
        self.heading(out, 2, self.engine_heading("faq", P.FAQ_HEADINGS))
        for i, (question, near) in enumerate(self.plan.faq):
            q = sentence_case(question.rstrip("?. ")) + "?"
            self.heading(out, 3, q)
            section = self.plan.sections[near]
            short = self.lean >= 3
            if self.kp.in_text(section.heading) and self.writer.density() > 1.5:
                by_number = P.FAQ_ANSWER_SHORT_BY_NUMBER if short else P.FAQ_ANSWER_BY_NUMBER
                answer = self.sentence(by_number, i, n=str(near + 1))
            else:
                # "?" or "!" inside the quote would end the sentence there ("above." alone)
                h = section.heading.rstrip("?!. ")
                answer = self.sentence(P.FAQ_ANSWER_SHORT if short else P.FAQ_ANSWER, i, h=h)
            placeholder = P.FAQ_PLACEHOLDER.format(q=question)
            if self.lean >= 4 or (self.kp.in_text(question) and self.writer.density() > 1.5):
                placeholder = P.FAQ_PLACEHOLDER_PLAIN.format(n=i + 1)
            self.paragraph(out, [answer or "", self.writer.note(placeholder)])

    def closing(self, out: _Out) -> None:
        variants = P.CLOSING_HEADINGS_BY_STRUCTURE.get(
            self.structure, P.CLOSING_HEADINGS[self.intent]
        )
        self.heading(out, 2, self.engine_heading("closing", variants))
        self.paragraph(out, [self.writer.note(P.CLOSING_LEAD)])
        items = []
        for i, section in enumerate(self.plan.sections[: 6 - self.lean]):
            item = self.sentence(P.CLOSING_ITEMS, i, **self.values(section.topic))
            if item:
                items.append(item)
        out.add("<ul>" + "".join(f"<li>{_esc(i)}</li>" for i in items) + "</ul>", " ".join(items))
        self.paragraph(out, [self.writer.note(P.CLOSING_CTA)])

    def render(self, fixed: Sequence[int] = ()) -> str:
        """The article's HTML. `fixed`: each body section's words without filler (from
        a render with `fixed_sizes`), so that the filler of early sections leaves room
        for the fixed parts (subsections, links, images) of later ones."""
        target = 0 if self.dry else self.brief.target_word_count
        tail = _Out()
        if self.plan.table:
            self.table(tail)
        if self.plan.faq:
            self.faq(tail)
        self.closing(tail)
        self.writer.last_start = ""
        self.offset_words = tail.words

        head = _Out()
        head.add(f"<h1>{_esc(self.brief.title)}</h1>", self.brief.title)
        self.writer.note_heading(self.brief.title)
        self.intro(head)
        sections = self.plan.sections
        self.section_words = []
        for i, section in enumerate(sections):
            left = len(sections) - i
            later = sum(fixed[i + 1 :]) if fixed else 0
            own = fixed[i] if fixed else 0
            # No floor: when the fixed parts (intro, FAQ, subsections) have spent the
            # target, a section gets no filler rather than words over it.
            slack = target - head.words - tail.words - later - own
            budget = max(0, own + math.floor(slack / left)) if fixed else max(0, slack // left)
            start = head.words
            self.body_section(head, i, section, budget)
            self.section_words.append(head.words - start)
        return "".join(head.parts) + "".join(tail.parts)

    def fixed_sizes(self) -> list[int]:
        """Each body section's words with no filler at all (a dry render)."""
        self.dry = True
        self.render()
        return self.section_words


def _comment(brief: Brief) -> str:
    if not brief.author:
        return ""
    notes = []
    if brief.author.tone:
        notes.append(f"tone: {brief.author.tone}")
    if brief.author.language and brief.author.language.lower() not in ("en", "english"):
        notes.append(f"language: {brief.author.language} (this draft is in English)")
    if not notes:
        return ""
    text = "; ".join(notes).replace("--", "-")
    return f"<!-- igny8 local draft for {brief.author.name or 'the author'}: {text} -->"


def _density(kp: Keyphrase, html: str) -> float:
    from services.writer.document import parse_document
    from services.writer.seo_checks import keyphrase_count

    doc = parse_document(html)
    return 100.0 * keyphrase_count(kp, doc) / max(1, doc.word_count)


def _headings(html: str) -> list[str]:
    return [html_lib.unescape(m) for m in re.findall(r"<h[23]>(.*?)</h[23]>", html)]


def _render(brief: Brief, plan: _Plan, choice: dict[str, bool], lean: int) -> str:
    fixed = _Drafter(brief, plan, choice, lean).fixed_sizes()
    return _Drafter(brief, plan, choice, lean).render(fixed)


def _balance(brief: Brief, plan: _Plan, lean: int) -> str:
    """Render, then make 30-75 % of the H2/H3 use the keyphrase (Yoast's band), aiming
    at the middle (at the low end when the keyphrase is already dense): first by choosing
    which engine-owned headings carry it, then by adding subsections whose headings do
    not (too many) or by naming the topic in body headings (too few); re-render."""
    kp = Keyphrase.of(brief.primary_keyword)
    keys = ["closing", *(["faq"] if plan.faq else []), *(["table"] if plan.table else [])]
    choice = dict.fromkeys(keys, True)
    html = _render(brief, plan, choice, lean)
    for _ in range(4):
        headings = _headings(html)
        matches = subheadings_matching(kp, headings)
        count = len(headings)
        low, high = math.ceil(0.3 * count), math.floor(0.75 * count)
        aim = round(0.5 * count) if _density(kp, html) < 2.2 else low
        if low <= matches <= high and abs(matches - aim) <= max(1, count // 5):
            break
        changed = False
        for key in keys:
            if matches > aim and choice[key]:
                choice[key], matches, changed = False, matches - 1, True
            elif matches < aim and not choice[key]:
                choice[key], matches, changed = True, matches + 1, True
        if matches > high:
            plan.dilute += max(1, math.ceil(matches / 0.7) - count - plan.dilute)
            changed = True
        elif matches < low:
            for section in plan.sections:  # name the topic in body headings that lack it
                if matches >= aim:
                    break
                if kp.share_in(section.heading) <= 0.5:
                    section.heading = f"{title_case(brief.primary_keyword)}: {section.heading}"
                    matches += 1
                    changed = True
        if not changed:
            break
        html = _render(brief, plan, choice, lean)
    return html


def _meta_sentences(brief: Brief, plan: _Plan) -> list[str]:
    """Sentences for the meta description, the keyphrase in the first one only. When
    every section's topic holds the keyphrase ("best coffee", "cheap coffee" for
    "coffee"), they are named without it; and one more plain sentence closes the list,
    for a short keyphrase with no table or FAQ (117 characters for "coffee" without)."""
    kp = Keyphrase.of(brief.primary_keyword)
    topics = [s.topic for s in plan.sections if kp.share_in(s.topic) == 0][:3]
    if not topics:
        named = (without_keyphrase(s.topic, kp) for s in plan.sections)
        topics = list(dict.fromkeys(t for t in named if not kp.occurrences(t)))[:3]
    extras = []
    if plan.table:
        extras.append("a comparison table")
    if plan.faq:
        extras.append("answers to common questions")
    sentences = [P.META_OPENING[brief.intent].replace("{KP}", sentence_case(brief.primary_keyword))]
    if topics:
        sentences.append(f"Covers {join_list(topics)}.")
    if extras:
        sentences.append(f"With {join_list(extras)}.")
    sentences += [
        "Plain words, clear steps.",
        "Written to help you decide.",
        "Each part ends with what to check.",
    ]
    return sentences


def meta_title(brief: Brief) -> str:
    """The SEO title: the keyphrase, then the title's rest or the first extra that makes
    it 400-600 px. The last extras are long, for a short keyphrase whose title does not
    start with it ("How to Pick Air Fryer"): the others leave it under 400 px."""
    extras = (
        {
            "how_to": "A Step-by-Step Guide",
            "review": "An Honest Review Checklist",
            "comparison": "The Options Compared",
            "listicle": "The Options Worth a Look",
            "landing_page": "What You Get and How to Start",
            "guide": "A Practical Guide",
            "article": "What to Know Before You Start",
        }[brief.content_structure],
        "What to Know",
        "A Practical Guide for Beginners",
        "Everything You Need to Know",
        "Everything You Need to Know Before You Start",
        "A Practical Guide: What to Know and What to Check",
    )
    return fit_meta_title(brief.primary_keyword, brief.title, extras)


def draft_local(brief: Brief, *, embedder: LocalEmbedder | None = None) -> Draft:
    """A brief-grade draft of `brief`; see the module docstring for the contract."""
    from services.writer.document import html_word_count

    embed = embedder or _embedder()
    target = brief.target_word_count
    kp = Keyphrase.of(brief.primary_keyword)
    best: tuple[tuple[bool, float], str, _Plan] | None = None
    for lean in range(6):  # ever leaner until the length and the keyphrase density fit
        plan = _plan(brief, embed)
        body = _balance(brief, plan, lean)
        miss = abs(html_word_count(body) - target) / target
        density = _density(kp, body)
        off = density > 2.9 or density < 0.6  # Yoast's band is 0.5-3 %
        rank = (off or miss > 0.04, miss)
        if best is None or rank < best[0]:
            best = (rank, body, plan)
        if not off and miss <= 0.03:
            break
    assert best is not None
    _, body, plan = best
    html = _comment(brief) + body
    meta_description = fit_meta_description(_meta_sentences(brief, plan), brief.primary_keyword)
    return Draft(
        title=brief.title,
        html=html,
        meta_title=meta_title(brief),
        meta_description=meta_description,
        slug=fit_slug(brief.primary_keyword),
        primary_keyword=brief.primary_keyword,
        secondary_keywords=brief.secondary_keywords,
        word_count=html_word_count(html),
        outline=tuple(s.heading for s in plan.sections),
        model=LOCAL_DRAFT_MODEL,
    )
