"""Images for content: the prompts (1 featured + up to `max_in_article_images` in-article,
placed after chosen H2s), the offline renderer, and the step that turns any provider's
output into the file the platform stores.

Sizes (pixels), one per `image_type`, all stored as WebP:

| image_type | size | why |
|---|---|---|
| featured   | 1200x630  | the Open Graph / social card size; WordPress themes crop from it |
| in_article | 1200x800  | 3:2, sharp in a ~600 px content column on 2x screens |
| desktop    | 1600x900  | 16:9 wide variant for hero slots on large screens |
| mobile     | 800x1000  | 4:5 portrait variant that fills a phone's width |

The offline renderer (`render_image`, model `local-render-1`) draws the headline (the
title, or the section an in-article image follows) and the search intent on a gradient
with shapes; colours and layout come from a hash of the prompt, and the same input gives
the same bytes (no metadata, fixed encoder settings). Remote providers draw at their own
sizes; `make_image_files` fits their output (cover-crop, Lanczos) to the target size and
re-encodes it as WebP, so every stored file has the documented size and type.
"""

from __future__ import annotations

import asyncio
import colorsys
import hashlib
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFont, ImageOps
from pydantic import BaseModel, Field

from libs.common.ai.base import ChatMessage, GeneratedImage, TextGenerator, Usage
from libs.common.ai.images import (
    ImageBatchGenerator,
    ImageFailure,
    ImageOutcome,
    ImageRequest,
    clip_prompt,
    wrap_words,
)
from libs.common.ai.structured import complete_json
from libs.common.outbound import OutboundPolicy

ImageType = Literal["featured", "in_article", "desktop", "mobile"]

IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "featured": (1200, 630),
    "in_article": (1200, 800),
    "desktop": (1600, 900),
    "mobile": (800, 1000),
}
LOCAL_IMAGE_MODEL = "local-render-1"
LOCAL_PROMPT_MODEL = "local-image-prompts-1"
MEDIA_TYPE = "image/webp"
# libwebp is deterministic for fixed settings. Method 1 of 0-6: at method 4 (its default)
# these images come out 12-16 % smaller (~20-27 KB against 22-32 KB) for 2-2.6x the
# encoding time, which would break the 100 ms render budget (docs/benchmarks.md).
# Nothing else is written: no EXIF, ICC or XMP, no timestamps.
WEBP_SETTINGS: dict[str, Any] = {"format": "WEBP", "quality": 80, "method": 1}
MAX_DECODE_PIXELS = 40_000_000
ALT_TEXT_LIMIT = 125
DEFAULT_NEGATIVE_PROMPT = "text, letters, captions, logos, watermark, blurry, distorted"
IMAGE_CALL_TIMEOUT = 180.0

FONT_PATH = Path(__file__).parent / "fonts" / "DejaVuSans-Bold.ttf"


# --- the renderer --------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size)


def _colour(hue: float, lightness: float, saturation: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hls_to_rgb(hue % 1.0, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def _fit_text(
    text: str, box_width: float, start: int, smallest: int, max_lines: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """The largest font (from `start` down to `smallest`) at which `text` wraps into
    `max_lines` lines no wider than the box; at the smallest size, cut with an ellipsis."""
    def too_wide(font: ImageFont.FreeTypeFont) -> Callable[[str], bool]:
        return lambda line: font.getlength(line) > box_width

    size = start
    while True:
        font = _font(size)
        lines = wrap_words(text, too_wide(font))
        fits = all(font.getlength(line) <= box_width for line in lines)
        if (len(lines) <= max_lines and fits) or size <= smallest:
            break
        size = max(smallest, int(size * 0.9))
    if len(lines) > max_lines or not fits:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and font.getlength(last + "…") > box_width:
            last = last[:-1].rstrip()
        lines[-1] = last + "…"
    return font, lines


def render_image(
    prompt: str, *, headline: str, label: str, width: int, height: int
) -> bytes:
    """A WebP of `width` x `height`: `headline` and `label` drawn over a gradient with
    shapes; palette, gradient direction, shapes and layout all from sha256(prompt)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    hue = digest[0] / 255
    start = _colour(hue, 0.22 + digest[1] / 255 * 0.12, 0.45 + digest[2] / 255 * 0.3)
    end = _colour(hue + 0.08 + digest[3] / 255 * 0.12, 0.30 + digest[4] / 255 * 0.1, 0.55)
    angle = (0, 45, 90, 135)[digest[5] % 4]
    mask = Image.linear_gradient("L").rotate(angle).resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), end),
                            Image.new("RGB", (width, height), start), mask)
    draw = ImageDraw.Draw(image)

    short = min(width, height)
    for n in range(4):  # soft shapes in lighter tints of the palette
        b = digest[6 + 4 * n : 10 + 4 * n]
        cx, cy = b[0] / 255 * width, b[1] / 255 * height
        radius = short * (0.15 + b[2] / 255 * 0.45)
        tint = _colour(hue + (b[3] - 128) / 2048, 0.34 + n * 0.03, 0.5)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=tint)

    layout = digest[22] % 3  # 0: left column, 1: band at the bottom, 2: centred
    margin = round(width * 0.08)
    box_width = width - 2 * margin
    font, lines = _fit_text(headline.strip() or label, box_width,
                            start=round(short * 0.11), smallest=round(short * 0.045),
                            max_lines=4)
    label_font = _font(max(12, round(short * 0.035)))
    tag = label.strip().upper()
    line_height = round(font.size * 1.18)
    tag_height = round(label_font.size * 2.0) if tag else 0
    block = tag_height + line_height * len(lines)
    if layout == 1:
        band_top = height - block - 2 * margin
        draw.rectangle((0, band_top, width, height), fill=_colour(hue, 0.12, 0.4))
        top = band_top + margin
    else:
        top = (height - block) // 2
    white, accent = (255, 255, 255), _colour(hue + 0.5, 0.62, 0.7)

    def x_for(text_width: float) -> float:
        return (width - text_width) / 2 if layout == 2 else margin

    if tag:
        tag_width = label_font.getlength(tag) + label_font.size
        x = x_for(tag_width)
        draw.rounded_rectangle((x, top, x + tag_width, top + label_font.size * 1.6),
                               radius=label_font.size // 2, fill=accent)
        draw.text((x + label_font.size / 2, top + label_font.size * 0.28), tag,
                  font=label_font, fill=(20, 20, 20))
    y = top + tag_height
    if layout == 0:
        draw.rectangle((margin - round(short * 0.03), y, margin - round(short * 0.018),
                        y + line_height * len(lines)), fill=accent)
    for line in lines:
        draw.text((x_for(font.getlength(line)), y), line, font=font, fill=white)
        y += line_height

    out = io.BytesIO()
    image.save(out, **WEBP_SETTINGS)
    return out.getvalue()


def fit_image(data: bytes, width: int, height: int) -> bytes:
    """Any provider's image as a WebP of exactly `width` x `height` (cover: scaled to fill,
    centred, the overflow cropped). Refuses what is not an image or is absurdly large."""
    try:
        with Image.open(io.BytesIO(data)) as source:
            if source.width * source.height > MAX_DECODE_PIXELS:
                raise ValueError(f"{source.width}x{source.height} is too large to decode")
            if source.size == (width, height) and source.format == "WEBP":
                return data
            picture = source.convert("RGB")
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a decodable image: {exc}") from exc
    fitted = ImageOps.fit(picture, (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, **WEBP_SETTINGS)
    return out.getvalue()


def image_size(image_type: str) -> tuple[int, int]:
    try:
        return IMAGE_SIZES[image_type]
    except KeyError:
        raise ValueError(
            f"image_type must be one of {', '.join(IMAGE_SIZES)}, not {image_type!r}"
        ) from None


# --- engines and stored files --------------------------------------------------------------


class LocalImageEngine:
    """The offline engine: renders every request in a worker thread."""

    name = "local"

    async def generate_images(
        self, requests: Sequence[ImageRequest], *, model: str | None = None
    ) -> list[ImageOutcome]:
        outcomes: list[ImageOutcome] = []
        for r in requests:
            data = await asyncio.to_thread(
                render_image, r.prompt, headline=r.headline or r.prompt, label=r.label,
                width=r.width, height=r.height,
            )
            outcomes.append(GeneratedImage(
                data=data, media_type=MEDIA_TYPE, model=LOCAL_IMAGE_MODEL, provider=self.name,
                size=f"{r.width}x{r.height}",
            ))
        return outcomes

    async def aclose(self) -> None:
        return None


def image_engine(
    provider: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    policy: OutboundPolicy | None = None,
    timeout_seconds: float = IMAGE_CALL_TIMEOUT,
) -> ImageBatchGenerator:
    """The engine for the account's image settings (auth's `ai_settings().images`):
    `local`, `openai` (any OpenAI-compatible images API) or `runware`. `policy` is the
    outbound guard's (`OutboundPolicy.from_settings(settings)`): every call a remote engine
    makes for the tenant goes through it; its time limit is raised to `timeout_seconds`,
    as one image can take a minute. Close remote engines with `aclose()`."""
    if provider == "local":
        return LocalImageEngine()
    if not api_key:
        raise ValueError(f"the {provider} image provider needs an API key")
    if provider == "openai":
        from libs.common.ai.openai import DEFAULT_IMAGE_MODEL, OpenAIProvider

        return OpenAIProvider(base_url or "https://api.openai.com/v1", api_key,
                              image_model=model or DEFAULT_IMAGE_MODEL,
                              timeout_seconds=timeout_seconds, policy=policy)
    if provider == "runware":
        from libs.common.ai.runware import DEFAULT_BASE_URL, DEFAULT_MODEL, RunwareProvider

        return RunwareProvider(api_key, base_url=base_url or DEFAULT_BASE_URL,
                               model=model or DEFAULT_MODEL, timeout_seconds=timeout_seconds,
                               policy=policy)
    raise ValueError(f"unknown image provider {provider!r} (local, openai or runware)")


@dataclass(frozen=True, slots=True)
class ImageFile:
    """A finished image, ready for storage: WebP bytes at the target size, and what the
    usage log needs (provider, model, the size asked of the provider, tokens, dollars as
    the provider reported them)."""

    ref: str
    data: bytes
    width: int
    height: int
    provider: str
    model: str
    provider_size: str
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal | None = None
    media_type: str = MEDIA_TYPE

    def capture_fields(self) -> dict[str, Any]:
        """The billing capture of this one image (`BillingClient.capture(hold_id,
        account_id=..., related_object_type="image", related_object_id=..., **these)`):
        one unit, the tokens and dollars the provider reported (0 when it reported none),
        and what was asked of which provider."""
        return {
            "units": 1,
            "tokens_input": self.usage.prompt_tokens,
            "tokens_output": self.usage.completion_tokens,
            "model": self.model,
            "cost_usd": self.cost_usd if self.cost_usd is not None else Decimal("0"),
            "metadata": {
                "provider": self.provider,
                "provider_size": self.provider_size,
                "size": f"{self.width}x{self.height}",
                "cost_reported": self.cost_usd is not None,
            },
        }


async def make_image_files(
    engine: ImageBatchGenerator, requests: Sequence[ImageRequest], *, model: str | None = None
) -> list[ImageFile | ImageFailure]:
    """One outcome per request, in order: an `ImageFile` or the provider's `ImageFailure`
    (charge nothing for those)."""
    outcomes = await engine.generate_images(requests, model=model)
    files: list[ImageFile | ImageFailure] = []
    for request, outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, ImageFailure):
            files.append(outcome)
            continue
        try:
            data = await asyncio.to_thread(fit_image, outcome.data, request.width, request.height)
        except ValueError as exc:
            files.append(ImageFailure(request.ref, str(exc)[:500], "invalid"))
            continue
        files.append(ImageFile(
            ref=request.ref, data=data, width=request.width, height=request.height,
            provider=outcome.provider or engine.name, model=outcome.model,
            provider_size=outcome.size, usage=outcome.usage, cost_usd=outcome.cost_usd,
        ))
    return files


# --- prompts -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContentBrief:
    """What image prompts are made from. `headings` are the content's H2s in order."""

    title: str
    keyphrase: str
    intent: str = "informational"
    headings: Sequence[str] = ()
    style: str = "realistic"


@dataclass(frozen=True, slots=True)
class ImagePrompt:
    """One pending image. `position` is 0 for the featured image, else the 1-based number
    of the H2 the image follows. `headline` and `label` are what the offline renderer
    draws."""

    image_type: ImageType
    position: int
    prompt: str
    alt_text: str
    headline: str
    label: str
    negative_prompt: str = DEFAULT_NEGATIVE_PROMPT

    def request(self, ref: str = "") -> ImageRequest:
        width, height = image_size(self.image_type)
        return ImageRequest(prompt=self.prompt, width=width, height=height, ref=ref,
                            negative_prompt=self.negative_prompt, headline=self.headline,
                            label=self.label)


@dataclass(frozen=True, slots=True)
class ImagePromptSet:
    prompts: list[ImagePrompt]
    model: str
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1


_STYLES = {
    "realistic": "Realistic editorial photograph, natural light, shallow depth of field",
    "illustration": "Clean editorial illustration, flat shapes, limited palette",
    "3d": "Soft 3D render, studio lighting, matte materials",
}
_SCENES = {
    "informational": "a clear explanatory scene showing {subject}",
    "commercial": "a side-by-side comparison scene of {subject}",
    "transactional": "{subject} in real use, product in focus",
    "navigational": "an inviting overview scene of {subject}",
}
_LABELS = {
    "informational": "Guide",
    "commercial": "Comparison",
    "transactional": "Buying guide",
    "navigational": "Overview",
}
_NO_TEXT = "No text, no letters, no logos, no watermarks."
_PLACEHOLDER = re.compile(r"\{(title|keyphrase|heading|intent|style)\}")


def intent_label(intent: str) -> str:
    return _LABELS.get(intent, intent.replace("_", " ").capitalize() or "Guide")


def spread_positions(headings: int, count: int) -> list[int]:
    """`count` distinct H2 numbers (1-based) spread evenly through `headings` sections."""
    count = max(0, min(count, headings))
    positions: list[int] = []
    for i in range(count):
        p = max(1, round((i + 1) * headings / (count + 1)))
        while p in positions:
            p += 1
        positions.append(min(p, headings))
    return positions


def _clip_words(text: str, limit: int) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:-\u2013") or text[:limit]


def alt_text(description: str, keyphrase: str, limit: int = ALT_TEXT_LIMIT) -> str:
    """Alt text from a description (the first sentence or clause of a prompt, a title, a
    section heading): at most `limit` characters, and naming the keyphrase (Yoast's image
    alt check), which leads when the description does not already say it."""
    first = re.split(r"(?<=[.;!?])\s|\n", " ".join(description.split()), maxsplit=1)[0]
    text = first.strip().rstrip(".;:!?,")
    phrase = " ".join(keyphrase.split())
    if phrase and phrase.lower() not in text.lower():
        lead = phrase[:1].upper() + phrase[1:]
        text = f"{lead}: {text}" if text else lead
    clipped = _clip_words(text, limit)
    if phrase and phrase.lower() not in clipped.lower():
        clipped = _clip_words(phrase, limit)
    return clipped


def _apply_template(template: str, values: dict[str, str]) -> str:
    """Known `{placeholders}` filled; anything else left exactly as written (a template is
    account text, never a format string)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def local_image_prompts(
    brief: ContentBrief,
    *,
    max_in_article: int = 2,
    template: str | None = None,
    negative_prompt: str | None = None,
) -> ImagePromptSet:
    """The offline engine's prompts: deterministic, from the brief alone. `template` is the
    account's `image_prompt_template` (placeholders {title} {keyphrase} {heading} {intent}
    {style}); `negative_prompt` the account's `negative_prompt`."""
    style = _STYLES.get(brief.style, brief.style.strip() or _STYLES["realistic"])
    scene = _SCENES.get(brief.intent, _SCENES["informational"])
    label = intent_label(brief.intent)
    negative = (negative_prompt or "").strip() or DEFAULT_NEGATIVE_PROMPT

    def prompt_for(heading: str, featured: bool) -> str:
        values = {"title": brief.title, "keyphrase": brief.keyphrase, "heading": heading,
                  "intent": brief.intent, "style": style}
        if template and template.strip():
            return clip_prompt(_apply_template(template, values))
        if featured:
            text = (f'{style} for an article titled "{brief.title}": '
                    f"{scene.format(subject=brief.keyphrase)}. {_NO_TEXT}")
        else:
            text = (f'{style} illustrating "{heading}" in an article about '
                    f"{brief.keyphrase}: {scene.format(subject=heading.lower())}. {_NO_TEXT}")
        return clip_prompt(text)

    prompts = [ImagePrompt("featured", 0, prompt_for(brief.title, True),
                           alt_text(brief.title, brief.keyphrase), brief.title, label, negative)]
    headings = [h for h in brief.headings if h.strip()]
    for position in spread_positions(len(headings), max_in_article):
        heading = headings[position - 1]
        prompts.append(ImagePrompt("in_article", position, prompt_for(heading, False),
                                   alt_text(heading, brief.keyphrase), heading, label, negative))
    return ImagePromptSet(prompts=prompts, model=LOCAL_PROMPT_MODEL)


class _PromptItem(BaseModel):
    prompt: str = Field(min_length=10, max_length=2000)
    alt_text: str = Field(min_length=3, max_length=300)


class _InArticleItem(_PromptItem):
    after_heading: int


class _PromptAnswer(BaseModel):
    featured: _PromptItem
    in_article: list[_InArticleItem] = Field(default_factory=list)


IMAGE_PROMPT_INSTRUCTIONS = (
    "You write prompts for an image generator for one article. Answer with a JSON object: "
    '{"featured": {"prompt": ..., "alt_text": ...}, "in_article": [{"after_heading": N, '
    '"prompt": ..., "alt_text": ...}]}. The featured image represents the whole article; '
    "each in-article image illustrates the section after heading number N (numbers as "
    "listed, each used once). Prompts describe a concrete scene in the requested style, "
    "with no text, letters, logos or watermarks in the image. Alt text describes the image "
    "in at most 125 characters and includes the keyphrase. Invent no facts, brands or "
    "statistics."
)


async def openai_image_prompts(
    provider: TextGenerator,
    brief: ContentBrief,
    *,
    max_in_article: int = 2,
    instructions: str | None = None,
    negative_prompt: str | None = None,
    model: str | None = None,
) -> ImagePromptSet:
    """Prompts from the account's model: validated JSON, one repair turn on malformed
    output (`complete_json`); a second failure raises `AIResponseInvalid` (full refund).
    `instructions` is the account's `image_prompt_extraction` prompt, if it has one."""
    headings = [h for h in brief.headings if h.strip()]
    wanted = max(0, min(max_in_article, len(headings)))
    style = _STYLES.get(brief.style, brief.style)
    label = intent_label(brief.intent)
    negative = (negative_prompt or "").strip() or DEFAULT_NEGATIVE_PROMPT

    def check(answer: _PromptAnswer) -> None:
        if len(answer.in_article) != wanted:
            raise ValueError(f"in_article must hold exactly {wanted} images")
        seen = [item.after_heading for item in answer.in_article]
        if any(not 1 <= n <= len(headings) for n in seen) or len(set(seen)) != len(seen):
            raise ValueError(f"after_heading must be distinct numbers from 1 to {len(headings)}")

    request = {
        "title": brief.title,
        "keyphrase": brief.keyphrase,
        "search_intent": brief.intent,
        "style": style,
        "headings": {str(n): h for n, h in enumerate(headings, start=1)},
        "in_article_images": wanted,
    }
    messages = [
        ChatMessage("system", (instructions or "").strip() or IMAGE_PROMPT_INSTRUCTIONS),
        ChatMessage("user", json.dumps(request, ensure_ascii=False)),
    ]
    answer = await complete_json(provider, messages, _PromptAnswer, check=check, model=model,
                                 temperature=0.4)
    value = answer.value
    prompts = [ImagePrompt("featured", 0, clip_prompt(value.featured.prompt),
                           alt_text(value.featured.alt_text, brief.keyphrase), brief.title,
                           label, negative)]
    for item in sorted(value.in_article, key=lambda i: i.after_heading):
        heading = headings[item.after_heading - 1]
        prompts.append(ImagePrompt("in_article", item.after_heading, clip_prompt(item.prompt),
                                   alt_text(item.alt_text, brief.keyphrase), heading, label,
                                   negative))
    return ImagePromptSet(prompts=prompts, model=answer.model, usage=answer.usage,
                          attempts=answer.attempts)
