"""The openai path against a fake OpenAI-compatible server on 127.0.0.1 (never the internet):
contract validation, one repair retry, then a typed failure; embeddings and images too."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiohttp import web

from libs.common.ai import AIProviderError, AIResponseInvalid, build_provider
from libs.common.ai.openai import OpenAIProvider
from services.planner.clustering import (
    ExistingCluster,
    KeywordInput,
    OpenAIClusteringEngine,
)
from services.planner.ideas_local import IdeaCluster, IdeaKeyword, generate_ideas_openai

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@dataclass
class FakeOpenAI:
    replies: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    status: int = 200

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization", ""))
        if self.status != 200:
            return web.json_response({"error": {"message": "boom"}}, status=self.status)
        content = self.replies.pop(0)
        if not isinstance(content, str):
            content = json.dumps(content)
        return web.json_response(
            {
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
                "usage": {"prompt_tokens": 50, "completion_tokens": 20},
            }
        )

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        data = [
            {"index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])
        ]
        return web.json_response({"data": list(reversed(data)), "usage": {"prompt_tokens": 3}})

    async def images(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"b64_json": base64.b64encode(PNG).decode()}]})


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    state = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", state.chat)
    app.router.add_post("/v1/embeddings", state.embeddings)
    app.router.add_post("/v1/images/generations", state.images)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield state, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


KEYWORDS = [
    KeywordInput("dog food", 900),
    KeywordInput("best dog food", 300),
    KeywordInput("cat food", 800),
    KeywordInput("wet cat food", 100),
]
GOOD = {
    "clusters": [
        {
            "name": "Dog Food",
            "description": "Food for dogs",
            "keywords": ["dog food", "best dog food"],
        },
        {
            "name": "Cat Food",
            "description": "Food for cats",
            "keywords": ["Cat Food", "wet cat food"],
        },
    ]
}


async def test_valid_answer_becomes_clusters(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    state.replies = [GOOD]
    async with OpenAIProvider(url, "sk-test", chat_model="m1") as provider:
        result = await OpenAIClusteringEngine(provider).cluster(KEYWORDS)
    assert [c.name for c in result.clusters] == ["Dog Food", "Cat Food"]
    assert [k.keyword.text for k in result.clusters[1].keywords] == ["cat food", "wet cat food"]
    assert result.model == "m1"
    assert result.usage.total_tokens == 70
    assert state.auth == ["Bearer sk-test"]
    assert state.requests[0]["response_format"] == {"type": "json_object"}
    assert "best dog food" in state.requests[0]["messages"][0]["content"]
    assert result.unassigned == ()


async def test_one_repair_retry_fixes_malformed_json(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    state.replies = [
        '{"clusters": [{"name": "Dog Food", "keywords": ["dog food"',
        "```json\n" + json.dumps(GOOD) + "\n```",
    ]
    async with OpenAIProvider(url, "k") as provider:
        result = await OpenAIClusteringEngine(provider).cluster(KEYWORDS)
    assert len(result.clusters) == 2
    assert len(state.requests) == 2
    repair = state.requests[1]["messages"]
    assert [m["role"] for m in repair] == ["user", "assistant", "user"]
    assert "not valid JSON" in repair[2]["content"]
    assert result.usage.total_tokens == 140


async def test_keywords_not_in_input_count_as_malformed(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    bad = {"clusters": [{"name": "Pets", "keywords": ["dog food", "hamster food"]}]}
    state.replies = [bad, GOOD]
    async with OpenAIProvider(url, "k") as provider:
        result = await OpenAIClusteringEngine(provider).cluster(KEYWORDS)
    assert "hamster food" in state.requests[1]["messages"][2]["content"]
    assert len(result.clusters) == 2


async def test_malformed_twice_raises_typed_refundable_error(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    state.replies = ["not json at all", {"clusters": []}, GOOD]
    async with OpenAIProvider(url, "k") as provider:
        with pytest.raises(AIResponseInvalid) as info:
            await OpenAIClusteringEngine(provider).cluster(KEYWORDS)
    assert info.value.refundable
    assert info.value.attempts == 2
    assert "clusters" in info.value.message
    assert len(state.requests) == 2  # exactly one repair, never a third call


async def test_unassigned_keywords_and_existing_names(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    state.replies = [
        {"clusters": [{"name": "dog food", "keywords": ["dog food", "best dog food"]}]}
    ]
    existing = [ExistingCluster(7, "Dog Food", ("dog kibble",))]
    async with OpenAIProvider(url, "k") as provider:
        result = await OpenAIClusteringEngine(provider).cluster(KEYWORDS, existing)
    assert result.clusters[0].existing_id == 7
    assert result.clusters[0].name == "Dog Food"
    assert sorted(k.text for k in result.unassigned) == ["cat food", "wet cat food"]


async def test_http_error_is_a_provider_error(fake: tuple[FakeOpenAI, str]) -> None:
    state, url = fake
    state.status = 503
    async with OpenAIProvider(url, "k") as provider:
        with pytest.raises(AIProviderError) as info:
            await OpenAIClusteringEngine(provider).cluster(KEYWORDS)
    assert info.value.status == 503
    assert info.value.retryable
    assert info.value.refundable


async def test_embeddings_and_images(fake: tuple[FakeOpenAI, str]) -> None:
    _, url = fake
    provider = build_provider("openai", base_url=url, api_key="k", embedding_batch=2)
    try:
        emb = await provider.embed(["a", "bbb", "cc"])
        assert emb.vectors.shape == (3, 3)
        assert np.allclose(np.linalg.norm(emb.vectors, axis=1), 1.0)
        # Rows follow the inputs even though the server answered in reverse order.
        assert emb.vectors[1, 0] > emb.vectors[2, 0] > emb.vectors[0, 0]
        image = await provider.generate_image("a dog", size="256x256")
        assert image.data == PNG
        assert image.media_type == "image/png"
    finally:
        await provider.aclose()  # type: ignore[attr-defined]


async def test_openai_ideas_use_the_prompt_and_the_same_validation(
    fake: tuple[FakeOpenAI, str],
) -> None:
    state, url = fake
    idea = {
        "title": "Dog Food Guide",
        "outline": ["Types"],
        "content_type": "post",
        "content_structure": "guide",
        "estimated_word_count": 1800,
        "covered_keywords": ["dog food"],
    }
    state.replies = [{"ideas": [idea, {**idea, "content_structure": "essay"}]}, {"ideas": [idea]}]
    cluster = IdeaCluster("Dog Food", (IdeaKeyword("dog food", 900),))
    async with OpenAIProvider(url, "k") as provider:
        result = await generate_ideas_openai(provider, cluster, "Ideas for [IGNY8_CLUSTER]:")
    assert state.requests[0]["messages"][0]["content"].startswith("Ideas for Dog Food:")
    assert "content_structure" in state.requests[1]["messages"][2]["content"]
    assert [i.title for i in result.ideas] == ["Dog Food Guide"]
    assert result.ideas[0].content_structure.value == "guide"
