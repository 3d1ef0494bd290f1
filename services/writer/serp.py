"""How a page shows in a search result: SEO title width in pixels, meta description and
slug, and the builders that fit them.

Title width: Google sets result titles in 20 px Arial and cuts them at about 600 px;
Yoast's "SEO title width" check measures the title the same way (too long above 600 px,
too short below 400 px). Arial itself cannot ship here, so the width comes from
Liberation Sans Regular (bundled in `fonts/`, SIL OFL 1.1), which is metric-compatible
with Arial: every glyph has Arial's advance width. Widths are the sum of the glyphs'
design advances (hmtx) scaled to 20 px, unhinted and without kerning, which is how a
browser with sub-pixel positioning lays out the text to within a pixel or two. Characters
the font lacks count one em when East Asian wide, the font's average width otherwise.
"""

from __future__ import annotations

import threading
import unicodedata
from pathlib import Path

from services.writer.text import Keyphrase, sentence_case, slug_for, split_sentences, title_case

FONT_PATH = Path(__file__).parent / "fonts" / "LiberationSans-Regular.ttf"
TITLE_FONT_PX = 20
TITLE_MAX_PX = 600
TITLE_MIN_PX = 400
META_TITLE_MAX_CHARS = 60
META_DESCRIPTION_MIN = 120
META_DESCRIPTION_MAX = 156
SLUG_MAX_WORDS = 5

_lock = threading.Lock()
_advances: dict[int, float] | None = None
_average_advance = 0.0
_units_per_em = 2048


def _load_metrics() -> dict[int, float]:
    """Advance widths (font units) by code point, read once per process."""
    global _advances, _average_advance, _units_per_em
    if _advances is not None:
        return _advances
    with _lock:
        if _advances is None:
            from fontTools.ttLib import TTFont

            font = TTFont(str(FONT_PATH), lazy=True)
            hmtx = font["hmtx"]
            _units_per_em = int(font["head"].unitsPerEm)
            _average_advance = float(font["OS/2"].xAvgCharWidth)
            _advances = {cp: float(hmtx[name][0]) for cp, name in font.getBestCmap().items()}
            font.close()
    return _advances


def text_width_px(text: str, font_px: float = TITLE_FONT_PX) -> float:
    """Width of `text` set in Arial-metric sans at `font_px` pixels."""
    advances = _load_metrics()
    units = 0.0
    for ch in text:
        width = advances.get(ord(ch))
        if width is None:
            wide = unicodedata.east_asian_width(ch) in ("W", "F")
            width = float(_units_per_em) if wide else _average_advance
        units += width
    return units * font_px / _units_per_em


def title_width_px(title: str) -> int:
    """The SEO title's width in whole pixels, as a browser reports an element's width."""
    return round(text_width_px(" ".join(title.split())))


def _fits_title(text: str) -> bool:
    return (
        len(text) <= META_TITLE_MAX_CHARS and TITLE_MIN_PX <= title_width_px(text) <= TITLE_MAX_PX
    )


TITLE_EXTRAS = ("What to Know", "A Practical Guide", "A Step-by-Step Guide",
                "Everything You Need to Know")


def fit_meta_title(keyphrase: str, title: str, extras: tuple[str, ...] = TITLE_EXTRAS) -> str:
    """An SEO title that starts with the keyphrase, is at most 60 characters and
    400-600 px wide: the keyphrase, then the article's title (or the first extra that
    fits) after a colon. Falls back to the longest candidate under the limits."""
    head = title_case(keyphrase)
    kp = Keyphrase.of(keyphrase)
    words = title.split()
    # The title itself, or its part from the keyphrase on ("The Best X for Y" → "Best X
    # for Y"), when that starts with the keyphrase; widened with an extra when short.
    for i in range(min(3, len(words))):
        own = " ".join(words[i:])
        if kp.exact_at_start(own):
            own = own[:1].upper() + own[1:]
            for candidate in (own, *(f"{own}: {sentence_case(e)}" for e in extras)):
                if _fits_title(candidate):
                    return candidate
            break
    tails: list[str] = []
    rest = title
    if kp.exact_at_start(title):
        rest = title[len(keyphrase) :].lstrip(" :-\u2013—|,")
    for tail in (rest, *extras):
        tail = " ".join(tail.split())
        if tail and tail.lower() != keyphrase.lower() and tail not in tails:
            tails.append(tail)
    candidates = [f"{head}: {sentence_case(t)}" for t in tails]
    for candidate in candidates:
        if _fits_title(candidate):
            return candidate
    # Too wide: shorten the tail word by word; too narrow: join two tails.
    for candidate in candidates:
        words = candidate.split()
        while len(words) > len(head.split()) + 1:
            words = words[:-1]
            shorter = " ".join(words).rstrip(",;:-\u2013")
            if _fits_title(shorter) and not shorter.endswith(tuple(_DANGLING)):
                return shorter
    if len(tails) >= 2:
        joined = f"{head}: {sentence_case(tails[0])} \u2013 {tails[1]}"
        if _fits_title(joined):
            return joined
    under = [
        c
        for c in [*candidates, head]
        if len(c) <= META_TITLE_MAX_CHARS and title_width_px(c) <= TITLE_MAX_PX
    ]
    if under:
        return max(under, key=title_width_px)
    return head[:META_TITLE_MAX_CHARS].rstrip()


_DANGLING = (
    " a",
    " an",
    " the",
    " and",
    " or",
    " of",
    " to",
    " for",
    " with",
    " in",
    " on",
    " your",
    " by",
    " vs",
    " from",
)


def keyphrase_occurrences(kp: Keyphrase, text: str) -> int:
    """Occurrences of the keyphrase in a text, sentence by sentence (Yoast's count)."""
    return sum(kp.occurrences(s) for s in split_sentences(text))


def fit_meta_description(sentences: list[str], keyphrase: str) -> str:
    """A meta description of 120-156 characters that contains the keyphrase once or
    twice: whole sentences taken in order (the first must hold the keyphrase), the last
    one cut at a word boundary when needed."""
    kp = Keyphrase.of(keyphrase)
    pool = [" ".join(s.split()) for s in sentences if s.strip()]
    if not pool or not kp.in_text(pool[0]):
        pool.insert(0, f"{sentence_case(keyphrase)}: what to know.")
    out = ""
    for sentence in pool:
        candidate = f"{out} {sentence}".strip()
        if len(candidate) <= META_DESCRIPTION_MAX:
            if keyphrase_occurrences(kp, candidate) <= 2 or not kp:
                out = candidate
            if len(out) >= META_DESCRIPTION_MIN:
                return out
            continue
        # Cut this sentence at a word boundary to land inside the range.
        words = sentence.split()
        while words:
            words.pop()
            cut = f"{out} {' '.join(words)}".strip().rstrip(",;:-\u2013")
            fits = META_DESCRIPTION_MIN <= len(cut) + 1 <= META_DESCRIPTION_MAX
            if fits and not cut.endswith(_DANGLING):
                return cut + "…"
        # No cut fits: try the next sentence instead.
    return out


def fit_slug(keyphrase: str) -> str:
    return slug_for(keyphrase, SLUG_MAX_WORDS)
