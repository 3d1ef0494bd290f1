"""Image prompts: the offline engine's (deterministic, positions spread over the H2s) and
the account model's (validated JSON, one repair turn) against a fake OpenAI server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.ai import AIResponseInvalid
from libs.common.ai.openai import OpenAIProvider
from libs.common.testing.fake_openai import FakeOpenAI
from services.writer.imaging import (
    ALT_TEXT_LIMIT,
    DEFAULT_NEGATIVE_PROMPT,
    LOCAL_PROMPT_MODEL,
    ContentBrief,
    alt_text,
    local_image_prompts,
    openai_image_prompts,
    spread_positions,
)

HEADINGS = ["What flat feet change", "Arch support", "Cushioning versus stability",
            "Fit and sizing", "Trying shoes on", "When to see a podiatrist"]
BRIEF = ContentBrief(title="How to choose running shoes for flat feet",
                     keyphrase="running shoes for flat feet", intent="commercial",
                     headings=HEADINGS)


@pytest.mark.parametrize(("headings", "count", "expected"), [
    (6, 2, [2, 4]),
    (8, 2, [3, 5]),
    (3, 2, [1, 2]),
    (2, 2, [1, 2]),
    (1, 2, [1]),
    (0, 2, []),
    (6, 0, []),
    (10, 3, [2, 5, 8]),
])
def test_positions_spread_over_the_sections(
    headings: int, count: int, expected: list[int]
) -> None:
    assert spread_positions(headings, count) == expected


def test_local_prompts_are_one_featured_and_the_in_article_ones_after_h2s() -> None:
    result = local_image_prompts(BRIEF)
    assert result.model == LOCAL_PROMPT_MODEL
    assert result.usage.total_tokens == 0
    featured, first, second = result.prompts
    assert (featured.image_type, featured.position) == ("featured", 0)
    assert [(p.image_type, p.position) for p in (first, second)] == [
        ("in_article", 2), ("in_article", 4)]
    assert featured.headline == BRIEF.title
    assert first.headline == "Arch support"
    assert {p.label for p in result.prompts} == {"Comparison"}
    assert "comparison" in featured.prompt
    assert BRIEF.title in featured.prompt
    assert '"Arch support"' in first.prompt
    assert all("No text" in p.prompt for p in result.prompts)
    assert all(p.negative_prompt == DEFAULT_NEGATIVE_PROMPT for p in result.prompts)
    assert local_image_prompts(BRIEF) == result  # deterministic
    request = first.request(ref="42")
    assert (request.width, request.height, request.ref) == (1200, 800, "42")
    assert request.headline == "Arch support"
    assert featured.request().width == 1200


def test_fewer_sections_fewer_in_article_images() -> None:
    brief = ContentBrief(title="T", keyphrase="k", headings=["Only one"])
    assert [p.position for p in local_image_prompts(brief, max_in_article=3).prompts] == [0, 1]
    assert len(local_image_prompts(ContentBrief(title="T", keyphrase="k")).prompts) == 1
    assert len(local_image_prompts(BRIEF, max_in_article=0).prompts) == 1


def test_an_account_template_fills_known_placeholders_only() -> None:
    template = "{style} | {title} | {heading} | {keyphrase} | {intent} | {unknown} | {title.x}"
    result = local_image_prompts(BRIEF, template=template, negative_prompt="cartoon")
    featured, first, _ = result.prompts
    assert featured.prompt.startswith("Realistic editorial photograph")
    assert f"| {BRIEF.title} | {BRIEF.title} |" in featured.prompt
    assert "| Arch support | running shoes for flat feet | commercial |" in first.prompt
    assert first.prompt.endswith("| {unknown} | {title.x}")
    assert {p.negative_prompt for p in result.prompts} == {"cartoon"}


@pytest.mark.parametrize(("description", "expected"), [
    ("Running shoes for flat feet on a track. Bright light.",
     "Running shoes for flat feet on a track"),
    ("Arch support", "Running shoes for flat feet: Arch support"),
    ("", "Running shoes for flat feet"),
])
def test_alt_text_names_the_keyphrase(description: str, expected: str) -> None:
    assert alt_text(description, "running shoes for flat feet") == expected


@settings(max_examples=60, deadline=None)
@given(
    title=st.text(min_size=1, max_size=200),
    keyphrase=st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=150)
    .filter(lambda s: s.strip()),
    headings=st.lists(st.text(max_size=120), max_size=12),
    max_in_article=st.integers(min_value=0, max_value=5),
)
def test_local_prompts_always_keep_their_contract(
    title: str, keyphrase: str, headings: list[str], max_in_article: int
) -> None:
    brief = ContentBrief(title=title, keyphrase=keyphrase, headings=headings)
    prompts = local_image_prompts(brief, max_in_article=max_in_article).prompts
    real = [h for h in headings if h.strip()]
    assert len(prompts) == 1 + min(max_in_article, len(real))
    positions = [p.position for p in prompts[1:]]
    assert positions == sorted(set(positions))
    assert all(1 <= p <= len(real) for p in positions)
    phrase = " ".join(keyphrase.split()).lower()
    for p in prompts:
        assert len(p.alt_text) <= ALT_TEXT_LIMIT
        assert phrase[:ALT_TEXT_LIMIT].rsplit(" ", 1)[0] in p.alt_text.lower()
        assert 0 < len(p.prompt) <= 2000


# --- through the account's model -------------------------------------------------------------


@pytest.fixture
async def model() -> AsyncIterator[tuple[FakeOpenAI, OpenAIProvider]]:
    async with FakeOpenAI() as fake, OpenAIProvider(fake.url, fake.api_key) as provider:
        yield fake, provider


def _answer(positions: list[int], alt: str = "A runner lacing running shoes for flat feet"
            ) -> dict[str, object]:
    return {
        "featured": {"prompt": "A runner on a forest trail at dawn, realistic photo",
                     "alt_text": alt},
        "in_article": [{"after_heading": n, "prompt": f"Close-up scene number {n}, photo",
                        "alt_text": f"Detail {n}"} for n in positions],
    }


async def test_the_model_answer_becomes_prompts_with_positions(
    model: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = model
    fake.chat_replies.append(_answer([5, 2]))
    result = await openai_image_prompts(provider, BRIEF, instructions="Be brief.")
    assert [(p.image_type, p.position) for p in result.prompts] == [
        ("featured", 0), ("in_article", 2), ("in_article", 5)]
    assert result.prompts[2].headline == "Trying shoes on"
    assert result.prompts[1].alt_text == "Running shoes for flat feet: Detail 2"
    assert result.attempts == 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (120, 80)
    sent = fake.requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["response_format"] == {"type": "json_object"}
    assert '"in_article_images": 2' in sent["messages"][1]["content"]


async def test_malformed_output_gets_one_repair_turn(
    model: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = model
    fake.chat_replies += ["not json at all", _answer([1, 3])]
    result = await openai_image_prompts(provider, BRIEF)
    assert result.attempts == 2
    assert result.usage.total_tokens == 400  # both turns are paid for
    repair = fake.requests[-1].body["messages"]
    assert repair[-2] == {"role": "assistant", "content": "not json at all"}
    assert "not valid JSON" in repair[-1]["content"]


async def test_positions_out_of_range_twice_is_invalid(
    model: tuple[FakeOpenAI, OpenAIProvider],
) -> None:
    fake, provider = model
    fake.chat_replies += [_answer([1, 9]), _answer([2, 2])]
    with pytest.raises(AIResponseInvalid, match="after_heading must be distinct"):
        await openai_image_prompts(provider, BRIEF)
    assert len(fake.requests) == 2
