"""The offline renderer, fitting providers' output to our sizes, and the engines end to end
(local, and Runware/OpenAI against their fake servers)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import pytest
from PIL import Image

from libs.common.ai.images import ImageBatchGenerator, ImageFailure, ImageRequest, RetryPolicy
from libs.common.ai.openai import OpenAIProvider
from libs.common.ai.runware import RunwareProvider
from libs.common.auth import ImageSettings
from libs.common.outbound import OutboundPolicy
from libs.common.testing.fake_http import solid_image
from libs.common.testing.fake_openai import GPT_IMAGE_USAGE, FakeOpenAI
from libs.common.testing.fake_runware import FakeRunware
from services.writer import imaging
from services.writer.imaging import (
    IMAGE_SIZES,
    ImageFile,
    LocalImageEngine,
    fit_image,
    image_engine,
    make_image_files,
    render_image,
)

TITLE = "How to choose running shoes for flat feet"


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("image_type", list(IMAGE_SIZES))
def test_every_image_type_renders_as_a_clean_webp_of_its_size(image_type: str) -> None:
    width, height = IMAGE_SIZES[image_type]
    data = render_image("a prompt", headline=TITLE, label="Guide", width=width, height=height)
    image = _open(data)
    assert image.format == "WEBP"
    assert image.size == (width, height)
    assert image.mode == "RGB"
    # No metadata: nothing that could carry a timestamp or differ between hosts.
    assert not {"exif", "icc_profile", "xmp"} & set(image.info)
    assert b"EXIF" not in data
    assert b"XMP " not in data
    assert b"ICCP" not in data


def test_the_sizes_are_the_documented_ones() -> None:
    assert IMAGE_SIZES == {"featured": (1200, 630), "in_article": (1200, 800),
                           "desktop": (1600, 900), "mobile": (800, 1000)}
    with pytest.raises(ValueError, match="image_type must be one of"):
        imaging.image_size("banner")


def test_same_input_same_bytes_and_the_prompt_sets_the_look() -> None:
    a = render_image("prompt one", headline=TITLE, label="Guide", width=1200, height=630)
    assert a == render_image("prompt one", headline=TITLE, label="Guide", width=1200,
                             height=630)
    b = render_image("prompt two", headline=TITLE, label="Guide", width=1200, height=630)
    assert a != b
    # Colours come from the prompt: the corners differ between prompts.
    assert _open(a).convert("RGB").getpixel((2, 2)) != _open(b).convert("RGB").getpixel((2, 2))


def test_the_bytes_are_the_same_in_another_process() -> None:
    here = render_image("cross-process", headline=TITLE, label="Comparison", width=1200,
                        height=630)
    code = (
        "import hashlib,sys;from services.writer.imaging import render_image;"
        f"sys.stdout.write(hashlib.sha256(render_image('cross-process', headline={TITLE!r}, "
        "label='Comparison', width=1200, height=630)).hexdigest())"
    )
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    assert other == hashlib.sha256(here).hexdigest()


@pytest.mark.parametrize("headline", [
    "A " + "very long headline that keeps going " * 12,
    "Supercalifragilisticexpialidocious" * 4,
    "Кроссовки для плоскостопия: как выбрать",
    "",
])
def test_awkward_headlines_still_render(headline: str) -> None:
    data = render_image("p", headline=headline, label="Guide", width=800, height=1000)
    assert _open(data).size == (800, 1000)


def test_fit_crops_any_provider_image_to_the_target() -> None:
    png = solid_image(1536, 1024, "PNG", "x")
    fitted = _open(fit_image(png, 1200, 630))
    assert fitted.format == "WEBP"
    assert fitted.size == (1200, 630)
    webp = render_image("p", headline="t", label="l", width=1200, height=630)
    assert fit_image(webp, 1200, 630) == webp  # already right: kept as it is
    with pytest.raises(ValueError, match="not a decodable image"):
        fit_image(b"<html>nope</html>", 1200, 630)


def test_fit_refuses_images_too_large_to_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imaging, "MAX_DECODE_PIXELS", 1000)
    with pytest.raises(ValueError, match="too large"):
        fit_image(solid_image(64, 64, "PNG"), 32, 32)


# --- engines ---------------------------------------------------------------------------------


def _requests() -> list[ImageRequest]:
    return [
        ImageRequest(prompt="featured prompt", width=1200, height=630, ref="1",
                     headline=TITLE, label="Guide"),
        ImageRequest(prompt="[refuse] in-article prompt", width=1200, height=800, ref="2",
                     headline="Arch support", label="Guide"),
        ImageRequest(prompt="mobile prompt", width=800, height=1000, ref="3"),
    ]


async def test_the_local_engine_makes_files_of_the_requested_sizes() -> None:
    engine = LocalImageEngine()
    assert isinstance(engine, ImageBatchGenerator)
    files = await make_image_files(engine, _requests())
    assert [f.ref for f in files] == ["1", "2", "3"]
    for file, request in zip(files, _requests(), strict=True):
        assert isinstance(file, ImageFile)
        assert _open(file.data).size == (request.width, request.height)
        assert (file.provider, file.model) == ("local", imaging.LOCAL_IMAGE_MODEL)
        # The image settings a new account is shown name this model (they said
        # "local-image", which nothing records).
        assert ImageSettings().model == file.model
        assert file.cost_usd is None
        assert file.usage.total_tokens == 0
    first = files[0]
    assert isinstance(first, ImageFile)
    assert first.data == render_image("featured prompt", headline=TITLE, label="Guide",
                                      width=1200, height=630)


async def test_runware_files_are_fitted_and_a_refused_image_stays_failed(
    fake_runware: FakeRunware,
) -> None:
    engine = RunwareProvider(fake_runware.api_key, base_url=fake_runware.url,
                             retry=RetryPolicy(attempts=2, base_delay=0.01))
    async with engine:
        files = await make_image_files(engine, _requests())
    ok, refused, mobile = files
    assert isinstance(ok, ImageFile)
    assert isinstance(mobile, ImageFile)
    assert isinstance(refused, ImageFailure)
    assert refused.ref == "2"
    assert _open(ok.data).size == (1200, 630)
    assert ok.provider_size == "1216x640"  # what Runware drew, for the usage log
    assert _open(mobile.data).size == (800, 1000)
    assert ok.cost_usd is not None
    assert ok.capture_fields() == {
        "units": 1, "tokens_input": 0, "tokens_output": 0, "model": "runware:100@1",
        "cost_usd": ok.cost_usd,
        "metadata": {"provider": "runware", "provider_size": "1216x640", "size": "1200x630",
                     "cost_reported": True},
    }


async def test_openai_files_are_fitted_and_keep_the_token_usage(fake_openai: FakeOpenAI) -> None:
    engine = image_engine("openai", api_key=fake_openai.api_key, base_url=fake_openai.url,
                          model="gpt-image-1")
    async with engine:  # type: ignore[attr-defined]
        [file] = await make_image_files(engine, _requests()[:1])
    assert isinstance(file, ImageFile)
    assert _open(file.data).size == (1200, 630)
    assert (file.provider, file.model, file.provider_size) == ("openai", "gpt-image-1",
                                                               "1536x1024")
    assert file.usage.prompt_tokens == GPT_IMAGE_USAGE["input_tokens"]
    fields = file.capture_fields()
    assert (fields["tokens_input"], fields["tokens_output"]) == (
        GPT_IMAGE_USAGE["input_tokens"], GPT_IMAGE_USAGE["output_tokens"])
    assert fields["cost_usd"] == 0
    assert fields["metadata"]["cost_reported"] is False


async def test_a_provider_answer_that_is_no_image_fails_that_image_only() -> None:
    class Broken:
        name = "broken"

        async def generate_images(self, requests: object, *, model: object = None) -> list:
            from libs.common.ai.base import GeneratedImage

            return [GeneratedImage(data=b"GIF89a broken", media_type="image/gif", model="m")]

        async def aclose(self) -> None:
            return None

    [outcome] = await make_image_files(Broken(), _requests()[:1])  # type: ignore[arg-type]
    assert isinstance(outcome, ImageFailure)
    assert outcome.code == "invalid"


def test_image_engine_builds_what_the_settings_name() -> None:
    assert isinstance(image_engine("local"), LocalImageEngine)
    assert isinstance(image_engine("runware", api_key="k"), RunwareProvider)
    built = image_engine("openai", api_key="k", base_url="http://127.0.0.1:9/v1")
    assert isinstance(built, OpenAIProvider)
    with pytest.raises(ValueError, match="needs an API key"):
        image_engine("runware")
    with pytest.raises(ValueError, match="unknown image provider"):
        image_engine("midjourney", api_key="k")


@pytest.mark.parametrize("provider", ["openai", "runware"])
async def test_remote_engines_call_through_the_outbound_guard(
    provider: str, fake_openai: FakeOpenAI, fake_runware: FakeRunware
) -> None:
    fake = fake_openai if provider == "openai" else fake_runware
    # The fakes live on loopback: refused by the production policy, called by the
    # development one. Nothing reaches the fake when refused, and each image fails alone.
    strict = image_engine(provider, api_key=fake.api_key, base_url=fake.url,
                          policy=OutboundPolicy(allow_private=False))
    async with strict:  # type: ignore[attr-defined]
        outcomes = await make_image_files(strict, _requests())
    assert [type(o) for o in outcomes] == [ImageFailure] * 3
    failure = outcomes[0]
    assert isinstance(failure, ImageFailure)
    assert "loopback" in failure.message
    assert not failure.retryable
    assert fake.requests == []

    dev = image_engine(provider, api_key=fake.api_key, base_url=fake.url,
                       policy=OutboundPolicy(allow_private=True))
    async with dev:  # type: ignore[attr-defined]
        [made] = await make_image_files(dev, _requests()[:1])
    assert isinstance(made, ImageFile)
    assert len(fake.requests) == 1
