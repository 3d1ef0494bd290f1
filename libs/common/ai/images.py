"""Image generation across providers: one batch interface, the sizes each provider accepts,
and bounded retries.

A batch (`generate_images`) answers one outcome per request, in order: a `GeneratedImage`
or an `ImageFailure`. A batch can partly succeed (Runware reports errors per task; OpenAI is
called once per image), and the caller charges only for the images it got.

Providers draw at the sizes they support, not at ours: `provider_size` picks, for a target
such as 1200x630, the supported size closest in shape (gpt-image-1 1536x1024, dall-e-3
1792x1024, Runware 1216x640). The writer then fits the result to the exact target.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from libs.common.ai.base import GeneratedImage
from libs.common.ai.errors import AIError, AIProviderError

T = TypeVar("T")

MIN_SIDE = 64
MAX_SIDE = 2048
MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True, slots=True)
class ImageRequest:
    """One image to make. `ref` is the caller's own id (e.g. the image row), echoed in the
    outcome. `headline` and `label` are what an offline renderer writes on the image (the
    title or section, the intent); remote providers draw from `prompt` alone."""

    prompt: str
    width: int
    height: int
    ref: str = ""
    negative_prompt: str | None = None
    headline: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("an image request needs a prompt")
        for side in (self.width, self.height):
            if not MIN_SIDE <= side <= MAX_SIDE:
                raise ValueError(f"image sides must be {MIN_SIDE}-{MAX_SIDE} pixels, not {side}")


@dataclass(frozen=True, slots=True)
class ImageFailure:
    """An image the provider did not make. `code` is the provider's own (e.g. Runware's
    `invalidPositivePrompt`, an HTTP status) for logs; `message` is safe to store."""

    ref: str
    message: str
    code: str = ""
    retryable: bool = False


ImageOutcome = GeneratedImage | ImageFailure


@runtime_checkable
class ImageBatchGenerator(Protocol):
    """What the writer's `generate_images` job calls, whatever the provider."""

    name: str

    async def generate_images(
        self, requests: Sequence[ImageRequest], *, model: str | None = None
    ) -> list[ImageOutcome]: ...

    async def aclose(self) -> None: ...


# --- sizes ----------------------------------------------------------------------------------

# The sizes OpenAI's image models accept (their API reference); other OpenAI-compatible
# servers get the target itself, rounded to multiples of 64.
OPENAI_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "gpt-image": ((1024, 1024), (1536, 1024), (1024, 1536)),
    "dall-e-3": ((1024, 1024), (1792, 1024), (1024, 1792)),
    "dall-e-2": ((256, 256), (512, 512), (1024, 1024)),
}


def _closest_shape(width: int, height: int, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The size whose aspect ratio is nearest; among equals, the smallest that covers the
    target (or the largest)."""
    target = width / height
    best = min(abs(w / h - target) for w, h in sizes)
    shaped = sorted(s for s in sizes if abs(s[0] / s[1] - target) - best < 1e-9)
    covering = [s for s in shaped if s[0] >= width and s[1] >= height]
    return covering[0] if covering else shaped[-1]


def multiple_of_64(width: int, height: int) -> tuple[int, int]:
    """The target rounded to multiples of 64 within 128-2048 (Runware, SD-style servers)."""

    def side(v: int) -> int:
        return max(128, min(MAX_SIDE, round(v / 64) * 64))

    return side(width), side(height)


def provider_size(provider: str, model: str, width: int, height: int) -> tuple[int, int]:
    """What to ask `provider`'s `model` for when we want `width` x `height`."""
    if provider == "openai":
        for prefix, sizes in OPENAI_SIZES.items():
            if model.startswith(prefix):
                return _closest_shape(width, height, sizes)
    return multiple_of_64(width, height)


def sniff_media_type(data: bytes) -> str | None:
    """The image type the bytes really are (PNG, JPEG, WebP, GIF), or None."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def wrap_words(text: str, too_wide: Callable[[str], bool]) -> list[str]:
    """Greedy word wrap for text drawn on images: words join a line while `too_wide(line)`
    stays false; a word too wide on its own keeps a line to itself."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and too_wide(candidate):
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines


def clip_prompt(prompt: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """The prompt whitespace-normalised and cut at a word boundary within `limit`."""
    text = " ".join(prompt.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]


# --- retries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries for transient provider failures (429, 5xx, connection errors,
    timeouts): at most `attempts` calls, waiting `base_delay` x 2^n (capped at `max_delay`,
    less up to `jitter` of it so parallel workers spread out), or the provider's
    Retry-After when it gives one (capped too)."""

    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 20.0
    jitter: float = 0.2

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return max(0.0, min(self.max_delay, retry_after))
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return delay * (1 - self.jitter * random.random())


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> T:
    """`call()`, again after a transient `AIProviderError`, up to the policy's attempts."""
    attempt = 1
    while True:
        try:
            return await call()
        except AIProviderError as exc:
            if not exc.retryable or attempt >= policy.attempts:
                raise
            await sleep(policy.delay(attempt, exc.retry_after))
            attempt += 1


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare from APIs and ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def each_image(
    requests: Sequence[ImageRequest],
    make: Callable[[ImageRequest], Awaitable[GeneratedImage]],
    *,
    concurrency: int = 2,
) -> list[ImageOutcome]:
    """`make` for every request, `concurrency` at a time; a failure becomes that request's
    `ImageFailure` and never stops the others."""
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(request: ImageRequest) -> ImageOutcome:
        async with gate:
            try:
                return await make(request)
            except AIError as exc:
                return failure_from(request.ref, exc)

    return list(await asyncio.gather(*(one(r) for r in requests)))


def failure_from(ref: str, exc: AIError) -> ImageFailure:
    status = getattr(exc, "status", None)
    return ImageFailure(
        ref=ref,
        message=exc.message[:500],
        code=str(status) if status else type(exc).__name__,
        retryable=bool(getattr(exc, "retryable", False)),
    )
