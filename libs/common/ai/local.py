"""The offline provider: WordLlama static embeddings, a deterministic drafter, local images.

WordLlama ships its weights and tokenizer inside the wheel. `WordLlama.load()` looks for
the tokenizer under `wordllama/tokenizer/` while the wheel puts it under `tokenizers/`, and
then falls back to a download; pointing `cache_dir` at the package folder (which holds
`weights/` and `tokenizers/`) with `disable_download=True` resolves both files locally and
turns a missing file into an error instead of a network call.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from libs.common.ai.base import (
    ChatMessage,
    Completion,
    Embeddings,
    FloatMatrix,
    GeneratedImage,
    Usage,
    normalize_rows,
)
from libs.common.ai.errors import AIConfigurationError
from libs.common.ai.images import wrap_words

if TYPE_CHECKING:
    from wordllama.inference import WordLlamaInference

WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIM = 256
EMBEDDING_MODEL = f"local-wordllama-{WORDLLAMA_CONFIG}-{WORDLLAMA_DIM}"
TEXT_MODEL = "local-draft-1"
IMAGE_MODEL = "local-image-1"

_model_lock = threading.Lock()
_models: dict[tuple[str, int], WordLlamaInference] = {}


def load_wordllama(config: str = WORDLLAMA_CONFIG, dim: int = WORDLLAMA_DIM) -> WordLlamaInference:
    """The WordLlama model from the installed package, loaded once per process, never
    downloaded."""
    key = (config, dim)
    model = _models.get(key)
    if model is not None:
        return model
    with _model_lock:
        model = _models.get(key)
        if model is None:
            try:
                import wordllama
                from wordllama import WordLlama
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise AIConfigurationError("the wordllama package is not installed") from exc
            package_dir = Path(wordllama.__file__).parent
            try:
                model = WordLlama.load(
                    config=config, dim=dim, cache_dir=package_dir, disable_download=True
                )
            except FileNotFoundError as exc:
                raise AIConfigurationError(
                    f"WordLlama files for {config}/{dim} are not in {package_dir}: {exc}"
                ) from exc
            _models[key] = model
    return model


class LocalEmbedder:
    """Static word embeddings averaged per text: ~10^5 short texts a second on one core."""

    def __init__(self, config: str = WORDLLAMA_CONFIG, dim: int = WORDLLAMA_DIM) -> None:
        self.config = config
        self.dim = dim
        self.model_name = f"local-wordllama-{config}-{dim}"

    def embed_sync(self, texts: Sequence[str]) -> FloatMatrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = load_wordllama(self.config, self.dim)
        vectors = model.embed(list(texts), norm=False, batch_size=2048)
        return normalize_rows(vectors)

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings:
        vectors = await asyncio.to_thread(self.embed_sync, list(texts))
        return Embeddings(vectors=vectors, model=self.model_name)


_HEADING = re.compile(r"^\s*(?:#{1,6}\s+|[-*•]\s+|\d+[.)]\s+|H[23]:\s*)(.+?)\s*$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'-]*")


def _approx_tokens(text: str) -> int:
    return max(1, len(_WORD.findall(text)) * 4 // 3)


def draft_from_prompt(prompt: str) -> str:
    """A deterministic Markdown draft: the prompt's first line is the subject, its
    heading/bullet lines become sections, each with a paragraph built from the subject and
    the section. It does not pretend to reason; it gives a writer a structured start."""
    lines = [line.strip() for line in prompt.splitlines() if line.strip()]
    if not lines:
        return ""
    subject = re.sub(r"^\s*#+\s*", "", lines[0]).rstrip(":. ")
    sections = [m.group(1).rstrip(":. ") for line in lines[1:] if (m := _HEADING.match(line))]
    if not sections:
        sections = ["Overview", "Key points", "Next steps"]
    parts = [f"# {subject}", ""]
    parts.append(
        f"This draft covers {subject.lower()} in {len(sections)} parts: "
        + "; ".join(s.lower() for s in sections)
        + "."
    )
    for section in sections:
        parts += ["", f"## {section}", ""]
        parts.append(
            f"{section} matters for anyone looking into {subject.lower()}. "
            f"This section explains what {section.lower()} means in practice, "
            f"the questions readers ask most, and what to check before acting on it."
        )
    return "\n".join(parts) + "\n"


def render_image(prompt: str, size: str = "1024x1024") -> bytes:
    """A PNG rendered locally: a gradient seeded from the prompt with the prompt written on
    it. Same prompt and size, same bytes."""
    from PIL import Image, ImageDraw

    try:
        width, height = (int(v) for v in size.lower().split("x", 1))
    except ValueError as exc:
        raise ValueError(f"size must look like 1024x1024, not {size!r}") from exc
    if not (16 <= width <= 4096 and 16 <= height <= 4096):
        raise ValueError("image sides must be between 16 and 4096 pixels")
    digest = hashlib.sha256(prompt.encode()).digest()
    start = np.array(list(digest[0:3]), dtype=np.float32)
    end = np.array(list(digest[3:6]), dtype=np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    rows = (start * (1 - t) + end * t).astype(np.uint8)
    pixels = np.broadcast_to(rows, (height, width, 3)).copy()
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    lines = wrap_words(prompt, lambda line: len(line) > max(10, width // 12))
    for n, text in enumerate(lines[:8]):
        draw.text((16, 16 + 14 * n), text, fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


class LocalProvider:
    """The default provider. Model names start with `local-` so usage logs say so."""

    name = "local"

    def __init__(self, embedder: LocalEmbedder | None = None) -> None:
        self.embedder = embedder or LocalEmbedder()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        model: str | None = None,
        temperature: float = 0.2,
        max_tokens: int | None = None,
        json_mode: bool = False,
    ) -> Completion:
        prompt = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = draft_from_prompt(prompt)
        if max_tokens is not None:
            words = text.split(" ")
            text = " ".join(words[: max(1, max_tokens * 3 // 4)])
        usage = Usage(
            prompt_tokens=sum(_approx_tokens(m.content) for m in messages),
            completion_tokens=_approx_tokens(text),
        )
        return Completion(text=text, model=TEXT_MODEL, usage=usage)

    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> Embeddings:
        return await self.embedder.embed(texts)

    async def generate_image(
        self, prompt: str, *, size: str = "1024x1024", model: str | None = None
    ) -> GeneratedImage:
        data = await asyncio.to_thread(render_image, prompt, size)
        return GeneratedImage(data=data, media_type="image/png", model=IMAGE_MODEL)
