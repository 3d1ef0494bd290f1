"""AI providers: one interface (chat completions, embeddings, images), two implementations.

`local` is the default and works offline; `openai` talks to any OpenAI-compatible endpoint.
"""

from __future__ import annotations

from libs.common.ai.base import (
    AIProvider,
    ChatMessage,
    Completion,
    EmbeddingProvider,
    Embeddings,
    GeneratedImage,
    ImageGenerator,
    TextGenerator,
    Usage,
)
from libs.common.ai.errors import (
    AIConfigurationError,
    AIError,
    AIProviderError,
    AIResponseInvalid,
    AIUnsupported,
)

__all__ = [
    "AIConfigurationError",
    "AIError",
    "AIProvider",
    "AIProviderError",
    "AIResponseInvalid",
    "AIUnsupported",
    "ChatMessage",
    "Completion",
    "EmbeddingProvider",
    "Embeddings",
    "GeneratedImage",
    "ImageGenerator",
    "TextGenerator",
    "Usage",
    "build_provider",
]


def build_provider(
    name: str, *, base_url: str | None = None, api_key: str | None = None, **options: object
) -> AIProvider:
    """`local` or `openai` (which needs base_url and api_key)."""
    if name == "local":
        from libs.common.ai.local import LocalProvider

        return LocalProvider()
    if name == "openai":
        from libs.common.ai.openai import OpenAIProvider

        if not base_url or api_key is None:
            raise AIConfigurationError("the openai provider needs base_url and api_key")
        return OpenAIProvider(base_url, api_key, **options)  # type: ignore[arg-type]
    raise AIConfigurationError(f"unknown AI provider {name!r} (expected local or openai)")
