"""Image providers against fake servers speaking their protocols on loopback: OpenAI's
images API (b64_json) and Runware's task arrays, with partial batches, retries and
cost reporting."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from PIL import Image

from libs.common.ai import AIProviderError
from libs.common.ai.base import GeneratedImage
from libs.common.ai.images import (
    ImageBatchGenerator,
    ImageFailure,
    ImageRequest,
    RetryPolicy,
    provider_size,
    sniff_media_type,
    with_retries,
)
from libs.common.ai.openai import OpenAIProvider
from libs.common.ai.runware import RunwareProvider
from libs.common.testing.fake_openai import GPT_IMAGE_USAGE, FakeOpenAI
from libs.common.testing.fake_runware import COST_PER_IMAGE, FakeRunware

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


def _size(image: GeneratedImage) -> tuple[int, int]:
    return Image.open(io.BytesIO(image.data)).size


def _openai(fake: FakeOpenAI, model: str = "gpt-image-1") -> OpenAIProvider:
    provider = OpenAIProvider(fake.url, fake.api_key, image_model=model, timeout_seconds=10)
    provider.image_retry = FAST
    return provider


def _runware(fake: FakeRunware, **options: object) -> RunwareProvider:
    return RunwareProvider(fake.api_key, base_url=fake.url, timeout_seconds=10,
                           retry=FAST, **options)  # type: ignore[arg-type]


# --- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model", "target", "expected"), [
    ("openai", "gpt-image-1", (1200, 630), (1536, 1024)),
    ("openai", "gpt-image-1", (1200, 800), (1536, 1024)),
    ("openai", "gpt-image-1", (800, 1000), (1024, 1536)),
    ("openai", "gpt-image-1", (512, 512), (1024, 1024)),
    ("openai", "dall-e-3", (1200, 630), (1792, 1024)),
    ("openai", "dall-e-3", (1600, 900), (1792, 1024)),
    ("openai", "dall-e-2", (300, 300), (512, 512)),
    ("openai", "dall-e-2", (1200, 630), (1024, 1024)),
    ("openai", "some-local-sd", (1200, 630), (1216, 640)),
    ("runware", "runware:100@1", (1200, 630), (1216, 640)),
    ("runware", "runware:100@1", (1600, 900), (1600, 896)),
    ("runware", "runware:100@1", (100, 2048), (128, 2048)),
])
def test_provider_size_is_the_closest_supported_shape(
    provider: str, model: str, target: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert provider_size(provider, model, *target) == expected


def test_image_requests_refuse_bad_sizes_and_empty_prompts() -> None:
    with pytest.raises(ValueError, match="sides"):
        ImageRequest(prompt="x", width=4000, height=100)
    with pytest.raises(ValueError, match="prompt"):
        ImageRequest(prompt="  ", width=100, height=100)


def test_sniffing_knows_image_types_and_nothing_else() -> None:
    for fmt, media in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"),
                       ("GIF", "image/gif")):
        out = io.BytesIO()
        Image.new("RGB", (4, 4)).save(out, format=fmt)
        assert sniff_media_type(out.getvalue()) == media
    assert sniff_media_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert sniff_media_type(b"<html>") is None


async def test_retries_are_bounded_and_honour_retry_after() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise AIProviderError("busy", status=429, retryable=True, retry_after=0.5 * calls)

    policy = RetryPolicy(attempts=4, base_delay=1, max_delay=1.2)
    with pytest.raises(AIProviderError):
        await with_retries(flaky, policy, sleep=sleep)
    assert calls == 4
    assert waits == [0.5, 1.0, 1.2]  # the provider's Retry-After, capped

    calls = 0

    async def refused() -> str:
        nonlocal calls
        calls += 1
        raise AIProviderError("bad key", status=401)

    with pytest.raises(AIProviderError):
        await with_retries(refused, policy, sleep=sleep)
    assert calls == 1  # a non-transient failure is not retried
    backoff = [RetryPolicy(base_delay=1, max_delay=5, jitter=0).delay(n) for n in (1, 2, 3, 4)]
    assert backoff == [1, 2, 4, 5]


# --- OpenAI --------------------------------------------------------------------------------


async def test_gpt_image_answers_b64_without_response_format_and_reports_tokens(
    fake_openai: FakeOpenAI,
) -> None:
    async with _openai(fake_openai) as provider:
        assert isinstance(provider, ImageBatchGenerator)
        image = await provider.generate_image("a red bicycle", size="1536x1024")
    sent = fake_openai.requests[-1].body
    assert "response_format" not in sent
    assert sent["size"] == "1536x1024"
    assert image.media_type == "image/png"
    assert _size(image) == (1536, 1024)
    assert (image.model, image.provider, image.size) == ("gpt-image-1", "openai", "1536x1024")
    assert image.usage.prompt_tokens == GPT_IMAGE_USAGE["input_tokens"]
    assert image.usage.completion_tokens == GPT_IMAGE_USAGE["output_tokens"]
    assert image.cost_usd is None  # OpenAI reports tokens, not dollars: nothing is guessed


async def test_dall_e_3_is_asked_for_b64_json_and_keeps_the_revised_prompt(
    fake_openai: FakeOpenAI,
) -> None:
    async with _openai(fake_openai, "dall-e-3") as provider:
        [image] = await provider.generate_images(
            [ImageRequest(prompt="a harbour at dawn", width=1200, height=630, ref="7")]
        )
    assert isinstance(image, GeneratedImage)
    assert fake_openai.requests[-1].body["response_format"] == "b64_json"
    assert fake_openai.requests[-1].body["size"] == "1792x1024"
    assert image.revised_prompt == "A revised prompt: a harbour at dawn"
    assert image.usage.total_tokens == 0


async def test_openai_images_retry_429_and_5xx_then_succeed(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(429, body={"error": {"message": "Rate limit"}})
    fake_openai.fail_next(503, body={"error": {"message": "overloaded"}})
    async with _openai(fake_openai) as provider:
        image = await provider.generate_image("a lamp", size="1024x1024")
    assert _size(image) == (1024, 1024)
    assert len(fake_openai.requests) == 3


async def test_openai_batch_keeps_failures_per_image(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(400, body={"error": {"message": "Your request was rejected"}})
    requests = [ImageRequest(prompt=f"picture {i}", width=1200, height=800, ref=str(i))
                for i in range(3)]
    async with _openai(fake_openai) as provider:
        provider.image_concurrency = 1  # the queued 400 meets the first image
        outcomes = await provider.generate_images(requests)
    assert isinstance(outcomes[0], ImageFailure)
    assert outcomes[0].ref == "0"
    assert outcomes[0].code == "400"
    assert not outcomes[0].retryable
    assert [type(o) for o in outcomes[1:]] == [GeneratedImage, GeneratedImage]
    assert len(fake_openai.requests) == 3  # a 400 is not retried


async def test_openai_persistent_5xx_fails_after_the_bounded_attempts(
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.fail_next(500, times=5, body={"error": {"message": "boom"}})
    async with _openai(fake_openai) as provider:
        [outcome] = await provider.generate_images(
            [ImageRequest(prompt="x y", width=1024, height=1024, ref="a")]
        )
    assert isinstance(outcome, ImageFailure)
    assert outcome.retryable
    assert len(fake_openai.requests) == FAST.attempts


async def test_openai_answer_that_is_not_an_image_is_invalid(fake_openai: FakeOpenAI) -> None:
    fake_openai.fail_next(200, body={"data": [{"b64_json": "PGh0bWw+"}]})  # "<html>"
    async with _openai(fake_openai) as provider:
        [outcome] = await provider.generate_images(
            [ImageRequest(prompt="x y", width=1024, height=1024)]
        )
    assert isinstance(outcome, ImageFailure)
    assert outcome.code == "AIResponseInvalid"


# --- Runware -------------------------------------------------------------------------------


async def test_runware_batch_with_one_refused_task_partly_succeeds(
    fake_runware: FakeRunware,
) -> None:
    requests = [
        ImageRequest(prompt="a mountain lake", width=1200, height=630, ref="10",
                     negative_prompt="text, watermark"),
        ImageRequest(prompt="[refuse] something", width=1200, height=800, ref="11"),
        ImageRequest(prompt="a city at night", width=800, height=1000, ref="12"),
    ]
    async with _runware(fake_runware) as provider:
        outcomes = await provider.generate_images(requests)
    assert len(fake_runware.requests) == 1  # one POST for the batch
    body = fake_runware.requests[0].body
    assert body[0] == {"taskType": "authentication", "apiKey": fake_runware.api_key}
    assert [t["taskType"] for t in body[1:]] == ["imageInference"] * 3
    assert len({t["taskUUID"] for t in body[1:]}) == 3
    first = body[1]
    assert first["negativePrompt"] == "text, watermark"
    assert (first["width"], first["height"], first["model"]) == (1216, 640, "runware:100@1")
    assert (first["outputType"], first["outputFormat"], first["includeCost"]) == (
        "base64Data", "WEBP", True)

    ok, refused, ok2 = outcomes
    assert isinstance(ok, GeneratedImage)
    assert isinstance(ok2, GeneratedImage)
    assert isinstance(refused, ImageFailure)
    assert refused.ref == "11"
    assert refused.code == "contentModerated"
    assert "moderation" in refused.message
    assert ok.media_type == "image/webp"
    assert _size(ok) == (1216, 640)
    assert _size(ok2) == (768, 1024)
    assert (ok.provider, ok.model, ok.size) == ("runware", "runware:100@1", "1216x640")
    assert ok.cost_usd == Decimal(str(COST_PER_IMAGE))


async def test_runware_splits_large_batches(fake_runware: FakeRunware) -> None:
    requests = [ImageRequest(prompt=f"image {i}", width=512, height=512, ref=str(i))
                for i in range(5)]
    async with _runware(fake_runware, batch_size=2) as provider:
        outcomes = await provider.generate_images(requests)
    assert len(fake_runware.requests) == 3
    assert all(isinstance(o, GeneratedImage) for o in outcomes)


async def test_runware_retries_the_request_with_fresh_task_ids(fake_runware: FakeRunware) -> None:
    fake_runware.fail_next(429, body={"errors": [{"code": "rateLimitExceeded"}]},
                           headers={"Retry-After": "0"})
    fake_runware.fail_next(502, raw=b"<html>bad gateway</html>")
    async with _runware(fake_runware) as provider:
        [image] = await provider.generate_images(
            [ImageRequest(prompt="a tree", width=512, height=512)]
        )
    assert isinstance(image, GeneratedImage)
    ids = [r.body[1]["taskUUID"] for r in fake_runware.requests]
    assert len(ids) == 3
    assert len(set(ids)) == 3


async def test_runware_wrong_key_fails_every_image_without_retry(
    fake_runware: FakeRunware,
) -> None:
    provider = RunwareProvider("wrong", base_url=fake_runware.url, retry=FAST)
    async with provider:
        outcomes = await provider.generate_images(
            [ImageRequest(prompt="a", width=512, height=512, ref="1"),
             ImageRequest(prompt="b", width=512, height=512, ref="2")]
        )
    assert [o.ref for o in outcomes if isinstance(o, ImageFailure)] == ["1", "2"]
    failure = outcomes[0]
    assert isinstance(failure, ImageFailure)
    assert failure.code == "401"
    assert "invalidApiKey" in failure.message
    assert len(fake_runware.requests) == 1
    with pytest.raises(AIProviderError, match="invalidApiKey"):
        await RunwareProvider("wrong", base_url=fake_runware.url).generate_image("x y")


async def test_runware_persistent_outage_fails_every_image_as_retryable(
    fake_runware: FakeRunware,
) -> None:
    fake_runware.fail_next(503, times=3, body={"errors": [{"code": "serviceUnavailable"}]})
    async with _runware(fake_runware) as provider:
        [outcome] = await provider.generate_images([ImageRequest(prompt="ab", width=512,
                                                                 height=512)])
    assert isinstance(outcome, ImageFailure)
    assert outcome.retryable
    assert len(fake_runware.requests) == 3


async def test_runware_result_without_image_data_is_a_failure(fake_runware: FakeRunware) -> None:
    async with _runware(fake_runware) as provider:
        task_id = "00000000-0000-4000-8000-000000000000"

        # An answer that names no task of ours, and one that gives a URL instead of bytes.
        fake_runware.fail_next(200, body={"data": [{"taskType": "imageInference",
                                                    "taskUUID": task_id}]})
        [missing] = await provider.generate_images([ImageRequest(prompt="ab", width=512,
                                                                 height=512, ref="m")])
    assert isinstance(missing, ImageFailure)
    assert missing.code == "missing"


async def test_runware_answer_over_the_size_cap_is_refused(fake_runware: FakeRunware) -> None:
    async with _runware(fake_runware, max_response_bytes=1000) as provider:
        [outcome] = await provider.generate_images([ImageRequest(prompt="ab", width=1024,
                                                                 height=1024)])
    assert isinstance(outcome, ImageFailure)
    assert "too large" in outcome.message
