"""The local engine's SEO title over every keyphrase, title and structure the property
test's briefs can have (tests/test_drafting_properties.py draws from the same lists):
≤ 60 characters, starting with the keyphrase, 400-600 px (Yoast's "good" band).

Checked exhaustively rather than sampled: the 2,000-example runs found "How to Pick Air
Fryer" (a short keyphrase the title does not start with) at 367 px, once in thousands.
"""

from __future__ import annotations

from itertools import product

from services.writer.brief import Brief
from services.writer.drafting import meta_title
from services.writer.serp import TITLE_MAX_PX, TITLE_MIN_PX, title_width_px
from services.writer.tests.test_drafting_properties import (
    MODIFIERS,
    NOUNS,
    STRUCTURES,
    TITLE_FRAMES,
    _keyphrase,
)
from services.writer.text import Keyphrase


def test_every_meta_title_fits_400_to_600_px() -> None:
    bad = []
    keyphrases = sorted({_keyphrase(n, m) for n, m in product(NOUNS, MODIFIERS)})
    for kp, frame, structure in product(keyphrases, TITLE_FRAMES, STRUCTURES):
        brief = Brief(
            title=frame.replace("{K}", kp.title()),
            primary_keyword=kp,
            content_structure=structure,
            target_word_count=1000,
        )
        title = meta_title(brief)
        width = title_width_px(title)
        fits = len(title) <= 60 and TITLE_MIN_PX <= width <= TITLE_MAX_PX
        if not (fits and Keyphrase.of(kp).exact_at_start(title)):
            bad.append((brief.title, structure, title, width))
    assert not bad, f"{len(bad)} titles outside the band, e.g. {bad[:5]}"
