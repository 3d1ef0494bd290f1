"""`generate_image_prompts` and `generate_images`.

Prompts: per content, 1 featured and up to `max_in_article_images` (the account's image
settings; 2 by default) in-article prompts placed after chosen H2s, status `pending`
(those without a file are replaced; generated ones are kept); 2 credits per content.

Images: per image `pending` → `generating` (committed at once, so it shows) →
`generated` (the file stored through `libs/common/storage.py`, under a key made from the
image and its bytes, so a retried job overwrites its own file) | `failed` (the
provider's reason, charged nothing); 4 credits per generated image against its own hold.
Engines per the account's image settings: `local` (Pillow), `openai` (the account's
OpenAI integration) or `runware`; a missing integration fails the job naming it. The
content's in-article slots get the images' URLs and alt texts.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from libs.common.ai.images import ImageBatchGenerator, ImageFailure, ImageRequest
from libs.common.ai_jobs import AIJobContext, Saver
from libs.common.db import TenantScope
from libs.common.jobs import JobFailed
from libs.common.outbound import OutboundPolicy
from libs.common.repository import Row, Visibility
from libs.common.storage import FileStorage, named_key
from libs.common.uow import UnitOfWork, unit_of_work
from services.writer import events
from services.writer.imaging import (
    ImageFile,
    ImagePromptSet,
    image_engine,
    image_size,
    intent_label,
    local_image_prompts,
    make_image_files,
    openai_image_prompts,
)
from services.writer.jobs.briefs import image_brief, intent_of, place_images
from services.writer.models import ImageStatus, ImageType
from services.writer.repository import ContentRepository, ImageRepository, PlannerRefs
from services.writer.service.common import Platform

# --- prompts -------------------------------------------------------------------------


async def generate_image_prompts(ctx: AIJobContext) -> Saver:
    vis, run_id = Visibility(ctx.account_id), ctx.data.get("run_id")
    await ctx.phase("PREP", "Loading content")
    async with ctx.session() as session:
        contents = await ContentRepository(session, vis).get_many(ctx.data["content_ids"])
        refs = PlannerRefs(session, vis)
        keywords = await refs.keywords_of({c["cluster_id"] for c in contents
                                           if c["cluster_id"] is not None})
    if not contents:
        raise JobFailed("None of the content exists any more.")
    settings = ctx.ai.images
    prompts: list[tuple[Row, ImagePromptSet]] = []
    for n, content in enumerate(contents):
        await ctx.phase("AI_CALL", f"Image prompts for “{content['title']}”", n / len(contents))
        brief = image_brief(content, style=settings.image_type, intent=intent_of(
            content["primary_keyword"], keywords.get(content["cluster_id"], [])))
        negative = ctx.ai.prompts.get("negative_prompt")
        async with ctx.calling_ai(f"image prompts of “{content['title']}”"):
            if ctx.provider is None:
                found = local_image_prompts(
                    brief, max_in_article=settings.max_in_article_images,
                    template=ctx.ai.prompts.get("image_prompt_template"),
                    negative_prompt=negative)
            else:
                found = await openai_image_prompts(
                    ctx.provider, brief, max_in_article=settings.max_in_article_images,
                    instructions=ctx.ai.prompts.get("image_prompt_extraction"),
                    negative_prompt=negative, model=ctx.model)
        ctx.charge(1, model=found.model, usage=found.usage, item=str(content["id"]))
        prompts.append((content, found))
    ctx.step("AI_CALL", request=False, model=prompts[0][1].model,
             prompts=sum(len(p.prompts) for _, p in prompts))
    await ctx.phase("PARSE", "Reading prompts")

    async def save(uow: UnitOfWork) -> dict[str, Any]:
        images = ImageRepository(uow.session, vis)
        made: dict[int, list[int]] = {}
        for content, found in prompts:
            await images.replace_pending(content["id"])
            kept = {(r["image_type"], r["position"]) for r in
                    await images.of_content([content["id"]])}
            rows = await images.insert_many([{
                "content_id": content["id"], "task_id": content["task_id"],
                "site_id": content["site_id"], "sector_id": content["sector_id"],
                "image_type": p.image_type, "position": p.position, "prompt": p.prompt,
                "negative_prompt": p.negative_prompt, "alt_text": p.alt_text[:300],
                "status": ImageStatus.PENDING,
            } for p in found.prompts if (p.image_type, p.position) not in kept])
            made[content["id"]] = [r["id"] for r in rows]
            await uow.publish(events.image_prompts_generated(
                content, made[content["id"]], task_id=ctx.task_id, run_id=run_id))
        return {"content_ids": list(made), "image_ids": [i for ids in made.values() for i in ids],
                "model": prompts[0][1].model, "run_id": run_id}

    return save


# --- images --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def account_engine(ctx: AIJobContext, policy: OutboundPolicy
                         ) -> AsyncIterator[ImageBatchGenerator]:
    """The engine the account's image settings name, open for the job."""
    ai, wanted = ctx.ai, ctx.ai.images.provider
    try:
        if wanted == "local":
            engine = image_engine("local")
        elif wanted == "openai":
            if ai.openai is None:
                raise JobFailed("Images are set to OpenAI, but the account has no active "
                                "OpenAI integration with a key.")
            engine = image_engine("openai", api_key=ai.openai.api_key,
                                  base_url=ai.openai.base_url, policy=policy,
                                  model=ai.openai.image_model or None)
        elif wanted == "runware":
            if ai.runware is None:
                raise JobFailed("Images are set to Runware, but the account has no active "
                                "Runware integration with a key.")
            engine = image_engine("runware", api_key=ai.runware.api_key,
                                  base_url=ai.runware.base_url, model=ai.runware.model,
                                  policy=policy)
        else:
            raise JobFailed(f"The image provider {wanted!r} is not one writer knows.")
    except ValueError as exc:
        raise JobFailed(f"The image settings cannot be used: {exc}") from exc
    ctx.step("PREP", image_provider=wanted)
    try:
        yield engine
    finally:
        await engine.aclose()


def _request(image: Row, contents: dict[int, Row]) -> ImageRequest:
    width, height = image_size(image["image_type"])
    content = contents.get(image["content_id"]) or {}
    featured = image["image_type"] == ImageType.FEATURED
    return ImageRequest(
        prompt=image["prompt"] or image["alt_text"] or content.get("title") or "An image",
        width=width, height=height, ref=str(image["id"]),
        negative_prompt=image["negative_prompt"] or None,
        headline=(content.get("title") if featured else image["alt_text"]) or image["prompt"],
        label=intent_label("informational"))


async def _mark(ctx: AIJobContext, vis: Visibility, ids: Sequence[int], status: str,
                error: str | None = None) -> list[Row]:
    """Change images' status at once (its own transaction: the status shows while the
    job runs)."""
    async with unit_of_work(ctx.db, TenantScope.account(ctx.account_id)) as uow:
        images = ImageRepository(uow.session, vis)
        if status == ImageStatus.GENERATING:
            return await images.claim(ids)
        return await images.update_many(ids, {"status": status, "error": error},
                                        images.table.c.status == ImageStatus.GENERATING)


async def generate_images(ctx: AIJobContext, platform: Platform, policy: OutboundPolicy,
                          max_deliver: int) -> Saver:
    vis, run_id = Visibility(ctx.account_id), ctx.data.get("run_id")
    storage = platform.storage
    assert storage is not None
    await ctx.phase("PREP", "Loading images")
    async with ctx.session() as session:
        wanted = [i for i in await ImageRepository(session, vis).get_many(ctx.data["image_ids"])
                  if i["status"] != ImageStatus.GENERATED]
        contents = {c["id"]: c for c in await ContentRepository(session, vis).get_many(
            {i["content_id"] for i in wanted if i["content_id"] is not None})}
    if not wanted:
        raise JobFailed("None of the images is waiting for a file any more.")
    ids = [i["id"] for i in wanted]
    try:
        async with account_engine(ctx, policy) as engine:
            await _mark(ctx, vis, ids, ImageStatus.GENERATING)
            await ctx.phase("AI_CALL", f"Making {len(wanted)} images")
            async with ctx.calling_ai("images"):
                outcomes = await make_image_files(engine, [_request(i, contents)
                                                           for i in wanted])
        await ctx.phase("PARSE", "Storing files")
        stored = await _store(ctx, storage, outcomes)
    except JobFailed as exc:
        await _mark(ctx, vis, ids, ImageStatus.FAILED, str(exc)[:2000])
        raise
    except Exception as exc:
        if ctx.attempt >= max_deliver:  # the last attempt: the job fails for good
            await _mark(ctx, vis, ids, ImageStatus.FAILED, f"Failed: {exc}"[:2000])
        raise
    failed = {int(o.ref): o.message for o in outcomes if isinstance(o, ImageFailure)}
    ctx.step("AI_CALL", request=False, generated=len(stored), failed=len(failed))

    async def save(uow: UnitOfWork) -> dict[str, Any]:
        images = ImageRepository(uow.session, vis)
        for image_id, (file, key) in stored.items():
            await images.update(image_id, {
                "status": ImageStatus.GENERATED, "storage_key": key, "sha256": file_sha(file),
                "mime_type": file.media_type, "file_size": len(file.data), "width": file.width,
                "height": file.height, "provider": file.provider[:32], "model": file.model[:255],
                "error": None})
        for image_id, message in failed.items():
            await images.update(image_id, {"status": ImageStatus.FAILED, "error": message})
        touched = sorted({i["content_id"] for i in wanted if i["id"] in stored
                          and i["content_id"] is not None})
        await _place(uow, vis, platform, touched, ctx, run_id)
        await uow.publish(events.images_generated(
            ctx.account_id, task_id=ctx.task_id, run_id=run_id, generated=stored,
            failed=failed, content_ids=[i["content_id"] for i in wanted if i["content_id"]]))
        return {"generated": sorted(stored), "failed": [
            {"image_id": i, "error": m} for i, m in sorted(failed.items())],
            "content_ids": touched, "run_id": run_id}

    return save


def file_sha(file: ImageFile) -> str:
    return hashlib.sha256(file.data).hexdigest()


async def _store(ctx: AIJobContext, storage: FileStorage,
                 outcomes: Sequence[ImageFile | ImageFailure]) -> dict[int, tuple[ImageFile, str]]:
    """Each made image's file, stored under a key named after the image and its bytes
    (a retry overwrites its own file), and charged to the image's own hold."""
    stored: dict[int, tuple[ImageFile, str]] = {}
    for outcome in outcomes:
        if isinstance(outcome, ImageFailure):
            continue
        image_id = int(outcome.ref)
        key = named_key(ctx.account_id, "images", f"{image_id}-{file_sha(outcome)[:32]}",
                        outcome.media_type)
        await storage.put(key, outcome.data, account_id=ctx.account_id,
                          content_type=outcome.media_type)
        ctx.charge(1, model=outcome.model, usage=outcome.usage, cost=outcome.cost_usd,
                   item=str(image_id))
        stored[image_id] = (outcome, key)
    return stored


async def _place(uow: UnitOfWork, vis: Visibility, platform: Platform,
                 content_ids: Sequence[int], ctx: AIJobContext, run_id: str | None) -> None:
    """Put the contents' generated in-article images into their HTML (a new revision,
    announced as the job's change)."""
    contents = ContentRepository(uow.session, vis)
    images = await ImageRepository(uow.session, vis).of_content(content_ids)
    for content in await contents.get_many(content_ids):
        placed = [{"position": i["position"], "url": platform.image_url(i),
                   "alt_text": i["alt_text"]} for i in images
                  if i["content_id"] == content["id"] and i["image_type"] == ImageType.IN_ARTICLE
                  and i["status"] == ImageStatus.GENERATED]
        html = place_images(content["html"], placed)
        if html != content["html"]:
            row = await contents.revise(content["id"], {"html": html})
            assert row is not None
            await uow.publish(events.content_updated(row, "images", task_id=ctx.task_id,
                                                     run_id=run_id))
