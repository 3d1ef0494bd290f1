"""The local provider: offline WordLlama embeddings, deterministic drafting and images."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from libs.common.ai import AIConfigurationError, build_provider
from libs.common.ai.base import ChatMessage
from libs.common.ai.local import LocalEmbedder, LocalProvider, load_wordllama


def test_wordllama_loads_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the local provider tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from libs.common.ai import local

    monkeypatch.setattr(local, "_models", {})
    model = load_wordllama()
    assert model.embedding.shape == (32000, 256)
    vectors = LocalEmbedder().embed_sync(["running shoes", "trail running shoes", "home loans"])
    assert vectors.shape == (3, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]


async def test_local_provider_is_deterministic_and_says_so() -> None:
    provider = build_provider("local")
    assert isinstance(provider, LocalProvider)
    prompt = "Trail running shoes\n- Choosing a pair\n- Caring for them"
    a = await provider.complete([ChatMessage("user", prompt)])
    b = await provider.complete([ChatMessage("user", prompt)])
    assert a == b
    assert a.model.startswith("local-")
    assert "## Choosing a pair" in a.text
    emb = await provider.embed(["dog food"])
    assert emb.model.startswith("local-")
    assert emb.vectors.shape == (1, 256)
    img1 = await provider.generate_image("a red shoe", size="64x32")
    img2 = await provider.generate_image("a red shoe", size="64x32")
    assert img1.data == img2.data
    assert img1.data.startswith(b"\x89PNG")


def test_unknown_provider_is_refused() -> None:
    with pytest.raises(AIConfigurationError):
        build_provider("nope")
    with pytest.raises(AIConfigurationError):
        build_provider("openai", base_url="ftp://x", api_key="k")
