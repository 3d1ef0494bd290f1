"""`auto_generate_content`: each task's brief → a draft (the offline engine, or the
account's model with its prompt) → the task's content (a new one, or a new revision of
its draft), the task → `review`; 1 credit per 100 words of each draft, captured against
that task's own hold. A task the engine cannot write for (a brief it refuses, a model
answer that stays malformed) is reported and charged nothing; the others are kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from libs.common.ai_jobs import AIJobContext, Saver
from libs.common.jobs import JobFailed
from libs.common.repository import Row, Visibility
from libs.common.uow import UnitOfWork
from services.writer import events
from services.writer.brief import Brief, Draft
from services.writer.drafting import draft_local
from services.writer.drafting_openai import draft_openai
from services.writer.jobs.briefs import task_brief
from services.writer.models import ContentStatus, TaskStatus
from services.writer.repository import (
    AuthorProfileRepository,
    ContentRepository,
    PlannerRefs,
    TaskRepository,
)

DraftFn = Callable[[Brief], Awaitable[Draft]]
# Drafts asked of the account's model at once (each is one long completion).
MODEL_CONCURRENCY = 4


async def draft_offline(brief: Brief) -> Draft:
    """The local engine, in a worker thread (it is CPU work)."""
    return await asyncio.to_thread(draft_local, brief)


def content_values(task: Row, brief: Brief, draft: Draft) -> dict[str, Any]:
    return {
        "task_id": task["id"], "site_id": task["site_id"], "sector_id": task["sector_id"],
        "cluster_id": task["cluster_id"], "title": draft.title[:255], "html": draft.html,
        "word_count": draft.word_count, "meta_title": draft.meta_title[:255],
        "meta_description": draft.meta_description[:500], "slug": draft.slug[:255],
        "primary_keyword": draft.primary_keyword[:255],
        "secondary_keywords": [*brief.secondary_keywords, *brief.question_keywords],
        "content_type": task["content_type"], "content_structure": task["content_structure"],
        "status": ContentStatus.DRAFT, "model": draft.model[:255],
    }


async def generate_content(ctx: AIJobContext, offline: DraftFn) -> Saver:
    account_id, vis = ctx.account_id, Visibility(ctx.account_id)
    run_id = ctx.data.get("run_id")
    await ctx.phase("PREP", "Loading tasks")
    async with ctx.session() as session:
        tasks = await TaskRepository(session, vis).get_many(ctx.data["task_ids"])
        existing = await ContentRepository(session, vis).of_tasks([t["id"] for t in tasks])
        refs = PlannerRefs(session, vis)
        cluster_ids = {t["cluster_id"] for t in tasks if t["cluster_id"] is not None}
        clusters = {cid: await refs.cluster(cid) for cid in cluster_ids}
        keywords = await refs.keywords_of(cluster_ids)
        authors = {a["id"]: a for a in await AuthorProfileRepository(session, vis).get_many(
            [t["author_profile_id"] for t in tasks if t["author_profile_id"]])}
    failed: list[dict[str, Any]] = []
    briefs: list[tuple[Row, Brief]] = []
    images = ctx.ai.images.max_in_article_images
    for task in tasks:
        if existing.get(task["id"], {}).get("status") == ContentStatus.PUBLISHED:
            failed.append({"task_id": task["id"], "error": "Its content is published."})
            continue
        try:
            briefs.append((task, task_brief(
                task, cluster=clusters.get(task["cluster_id"]),
                cluster_keywords=keywords.get(task["cluster_id"], []),
                author=authors.get(task["author_profile_id"]), in_article_images=images)))
        except ValidationError as exc:
            failed.append({"task_id": task["id"],
                           "error": f"The task cannot be briefed: {_first_error(exc)}"})
    if not briefs:
        raise JobFailed(failed[0]["error"] if failed else "None of the tasks exist any more.")
    ctx.step("PREP", tasks=len(briefs), skipped=len(failed))
    draft = _engine(ctx, offline)
    drafts = await _draft_all(ctx, briefs, draft, failed)
    if not drafts:
        raise JobFailed(failed[0]["error"])
    ctx.step("AI_CALL", request=False, model=drafts[0][2].model, drafts=len(drafts),
             words=sum(d.word_count for _, _, d in drafts))
    await ctx.phase("PARSE", "Reading drafts")

    async def save(uow: UnitOfWork) -> dict[str, Any]:
        contents = ContentRepository(uow.session, vis)
        now = await contents.of_tasks([t["id"] for t, _, _ in drafts])
        # New contents in one INSERT, redrafts as new revisions; one outbox insert (and
        # one NOTIFY) for all their events.
        values = {task["id"]: content_values(task, brief, written)
                  for task, brief, written in drafts}
        rows = {r["task_id"]: r for r in await contents.insert_many(
            [v for task_id, v in values.items() if task_id not in now])}
        for task_id, current in now.items():
            if task_id in values:
                revised = await contents.revise(current["id"], values[task_id])
                assert revised is not None
                rows[task_id] = revised
        saved = [rows[task["id"]]["id"] for task, _, _ in drafts]
        await uow.publish(*(events.content_generated(
            rows[task["id"]], task_id=ctx.task_id, run_id=run_id, idea_id=task["idea_id"])
            for task, _, _ in drafts))
        await TaskRepository(uow.session, vis).set_status([t["id"] for t, _, _ in drafts],
                                                          TaskStatus.REVIEW)
        return {"content_ids": saved, "task_ids": [t["id"] for t, _, _ in drafts],
                "failed": failed, "words": sum(d.word_count for _, _, d in drafts),
                "model": drafts[0][2].model, "run_id": run_id, "account_id": account_id}

    return save


def _engine(ctx: AIJobContext, offline: DraftFn) -> DraftFn:
    """The account's model with its content prompt (task override → account prompt →
    built-in, `drafting_openai.resolve_prompt`), or the offline engine."""
    provider = ctx.provider
    if provider is None:
        return offline
    prompt = ctx.ai.prompts.get("content_generation")

    async def through_model(brief: Brief) -> Draft:
        return await draft_openai(provider, brief, prompt, model=ctx.model)

    return through_model


async def _draft_all(ctx: AIJobContext, briefs: list[tuple[Row, Brief]], draft: DraftFn,
                     failed: list[dict[str, Any]]) -> list[tuple[Row, Brief, Draft]]:
    """Every brief's draft, charged to its task; one the engine cannot write is reported
    in `failed` (transient provider trouble fails the attempt: the job is retried)."""
    done: dict[int, Draft] = {}
    finished = 0
    gate = asyncio.Semaphore(1 if ctx.provider is None else MODEL_CONCURRENCY)

    async def one(task: Row, brief: Brief) -> None:
        nonlocal finished
        async with gate:
            try:
                async with ctx.calling_ai(f"article “{task['title']}”"):
                    done[task["id"]] = await draft(brief)
            except JobFailed as exc:
                failed.append({"task_id": task["id"], "error": str(exc)})
            finished += 1
            await ctx.phase("AI_CALL", f"Wrote {finished} of {len(briefs)} articles",
                            finished / len(briefs))

    await ctx.phase("AI_CALL", f"Writing {len(briefs)} articles")
    await asyncio.gather(*(one(task, brief) for task, brief in briefs))
    out = []
    for task, brief in briefs:
        written = done.get(task["id"])
        if written is not None:
            ctx.charge(written.word_count, model=written.model, usage=written.usage,
                       item=str(task["id"]))
            out.append((task, brief, written))
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "brief"
    return f"{where}: {err['msg']}"
