"""The `openai` engine against a fake OpenAI-compatible server on 127.0.0.1: prompt
resolution, validation with one repair turn, nh3 sanitising, exact token usage, and the
provider's retryable error on 429/5xx left to the job layer."""

from __future__ import annotations

import json

import pytest

from libs.common.ai.errors import AIProviderError, AIResponseInvalid
from libs.common.ai.openai import OpenAIProvider
from libs.common.testing.fake_openai import FakeOpenAI
from services.writer.brief import Brief
from services.writer.drafting_openai import (
    DEFAULT_CONTENT_PROMPT,
    draft_openai,
    render_prompt,
    resolve_prompt,
)

BRIEF = Brief(title="How to Descale a Kettle", primary_keyword="descale a kettle",
              secondary_keywords=("vinegar kettle cleaning",),
              question_keywords=("how often to descale a kettle",),
              outline=("Why kettles scale", "What you need"), target_word_count=800)
BODY = " ".join(["Boil water and vinegar, wait an hour, then rinse twice."] * 8)
ARTICLE = {
    "title": "How to Descale a Kettle",
    "meta_title": "Descale a Kettle: The Vinegar Method",
    "meta_description": "Descale a kettle with white vinegar in an hour: what you need, the "
                        "steps to follow, how often to do it and the mistakes to avoid.",
    "slug": "descale-a-kettle",
    "html": f'<h1>How to Descale a Kettle</h1><p onclick="steal()">To descale a kettle, {BODY}'
            f'</p><script>alert(1)</script><h2>Why kettles scale</h2><p>{BODY}</p>'
            f'<p><a href="javascript:alert(1)">bad</a> <a href="https://example.org">ok</a></p>',
}


def test_prompt_resolution_and_rendering() -> None:
    assert resolve_prompt("  ", None) == DEFAULT_CONTENT_PROMPT
    assert resolve_prompt(None, "ACCOUNT") == "ACCOUNT"
    assert resolve_prompt("TASK", "ACCOUNT") == "TASK"
    text = render_prompt("Write [IGNY8_TITLE] for [IGNY8_PRIMARY_KEYWORD].", BRIEF)
    assert text == "Write How to Descale a Kettle for descale a kettle."
    bare = render_prompt("Write well.", BRIEF)
    assert bare.startswith("Write well.\n\nBrief:\n")
    assert "primary_keyword: descale a kettle" in bare
    assert "[IGNY8_" not in render_prompt(DEFAULT_CONTENT_PROMPT, BRIEF)


async def test_draft_from_the_model_is_sanitised_and_counts_tokens() -> None:
    async with FakeOpenAI() as fake:
        fake.chat_replies.append(ARTICLE)
        async with OpenAIProvider(fake.url, "sk-test", chat_model="gpt-4o-mini") as provider:
            draft = await draft_openai(provider, BRIEF, "ACCOUNT PROMPT for [IGNY8_TITLE]")
    assert fake.requests[0].headers["Authorization"] == "Bearer sk-test"
    request = fake.requests[0].body
    assert request["response_format"] == {"type": "json_object"}
    assert request["messages"][1]["content"] == "ACCOUNT PROMPT for How to Descale a Kettle"
    assert "<script" not in draft.html
    assert "onclick" not in draft.html
    assert "javascript:" not in draft.html
    assert '<a href="https://example.org">ok</a>' in draft.html
    assert draft.model == "gpt-4o-mini"
    assert (draft.usage.prompt_tokens, draft.usage.completion_tokens) == (120, 80)
    assert draft.meta_title == ARTICLE["meta_title"]
    assert draft.slug == "descale-a-kettle"
    assert draft.outline == ("Why kettles scale",)
    assert draft.word_count > 100


async def test_task_override_wins_and_bad_seo_fields_are_fitted() -> None:
    brief = BRIEF.model_copy(update={"prompt_override": "TASK PROMPT"})
    article = {**ARTICLE, "meta_title": "x" * 80, "meta_description": "short", "slug": ""}
    async with FakeOpenAI() as fake:
        fake.chat_replies.append(article)
        async with OpenAIProvider(fake.url, "sk-test") as provider:
            draft = await draft_openai(provider, brief, "ACCOUNT PROMPT")
    assert fake.requests[0].body["messages"][1]["content"].startswith("TASK PROMPT")
    assert len(draft.meta_title) <= 60
    assert draft.meta_title.lower().startswith("descale")
    assert 120 <= len(draft.meta_description) <= 156
    assert draft.slug == "descale-a-kettle"


async def test_malformed_answer_gets_one_repair_turn() -> None:
    async with FakeOpenAI() as fake:
        fake.chat_replies += ["not json at all", json.dumps(ARTICLE)]
        async with OpenAIProvider(fake.url, "sk-test") as provider:
            draft = await draft_openai(provider, BRIEF)
    assert len(fake.requests) == 2
    assert "could not be used" in fake.requests[1].body["messages"][-1]["content"]
    assert (draft.usage.prompt_tokens, draft.usage.completion_tokens) == (240, 160)


async def test_malformed_twice_raises_for_a_refund() -> None:
    async with FakeOpenAI() as fake:
        fake.chat_replies += [{"title": "x", "html": "<p>too short</p>"}, "still not json"]
        async with OpenAIProvider(fake.url, "sk-test") as provider:
            with pytest.raises(AIResponseInvalid) as info:
                await draft_openai(provider, BRIEF)
    assert info.value.refundable
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limits_and_server_errors_are_retryable_for_the_job_layer(status: int) -> None:
    async with FakeOpenAI() as fake:
        fake.fail_next(status, body={"error": {"message": "busy"}})
        async with OpenAIProvider(fake.url, "sk-test") as provider:
            with pytest.raises(AIProviderError) as info:
                await draft_openai(provider, BRIEF)
    assert info.value.retryable
    assert info.value.status == status
