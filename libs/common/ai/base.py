"""The one AI provider interface: text generation (chat completions), embeddings, images.

Implementations: `local` (offline, shipped with the platform) and `openai` (any
OpenAI-compatible endpoint). Callers depend on the `AIProvider` protocol only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Role = Literal["system", "user", "assistant"]
FloatMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    model: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Row i is the embedding of input i, L2-normalised (cosine = dot product)."""

    vectors: FloatMatrix
    model: str
    usage: Usage = field(default_factory=Usage)


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """One image as the provider returned it. `model`, `size` (what was asked of the
    provider, e.g. `1536x1024`), `usage` (tokens, where the provider counts them) and
    `cost_usd` (only when the provider reports it; never guessed) go to usage logs as
    they are."""

    data: bytes
    media_type: str
    model: str
    provider: str = ""
    size: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    revised_prompt: str | None = None


@runtime_checkable
class TextGenerator(Protocol):
    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        json_mode: bool = False,
    ) -> Completion: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings: ...


@runtime_checkable
class ImageGenerator(Protocol):
    async def generate_image(
        self, prompt: str, *, size: str = "1024x1024", model: str | None = None
    ) -> GeneratedImage: ...


@runtime_checkable
class AIProvider(TextGenerator, EmbeddingProvider, ImageGenerator, Protocol):
    """Everything a provider offers. `name` is `local` or `openai`."""

    name: str


def normalize_rows(matrix: npt.ArrayLike) -> FloatMatrix:
    """L2-normalise rows; all-zero rows stay zero."""
    m = np.asarray(matrix, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError("expected a 2-D matrix")
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(m / norms, dtype=np.float32)
