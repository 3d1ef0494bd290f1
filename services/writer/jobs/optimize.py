"""`optimize`: each content fixed without inventing facts, offline (`optimize_local`) or
through the account's model (`optimize_openai`: what the local fixes cannot do is
rewritten, and the rewrite checked); a new revision with its score and checks kept; 1
credit per 200 words, captured against that content's own hold. A content the model
cannot fix (its answer stays malformed or invents) is reported and charged nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from libs.common.ai_jobs import AIJobContext, Saver
from libs.common.jobs import JobFailed
from libs.common.repository import Row, Visibility
from libs.common.uow import UnitOfWork
from services.writer import events
from services.writer.models import DIRECTORY
from services.writer.optimizer import OptimizedContent, optimize_local
from services.writer.optimizer_openai import optimize_openai
from services.writer.repository import ContentRepository
from services.writer.service import content_input, site_host


async def optimize(ctx: AIJobContext) -> Saver:
    vis, run_id = Visibility(ctx.account_id), ctx.data.get("run_id")
    await ctx.phase("PREP", "Loading content")
    async with ctx.session() as session:
        contents = await ContentRepository(session, vis).get_many(ctx.data["content_ids"])
        directory = DIRECTORY.repository(session)
        hosts = {c["site_id"]: site_host(await directory.site(ctx.account_id, c["site_id"]))
                 for c in contents}
    if not contents:
        raise JobFailed("None of the content exists any more.")
    done: list[tuple[Row, OptimizedContent]] = []
    failed: list[dict[str, Any]] = []
    for n, content in enumerate(contents):
        await ctx.phase("AI_CALL", f"Optimizing “{content['title']}”", n / len(contents))
        given = content_input(content, hosts[content["site_id"]])
        try:
            async with ctx.calling_ai(f"optimization of “{content['title']}”"):
                if ctx.provider is None:
                    result = await asyncio.to_thread(optimize_local, given)
                else:
                    result = await optimize_openai(ctx.provider, given, model=ctx.model)
        except JobFailed as exc:
            failed.append({"content_id": content["id"], "error": str(exc)})
            continue
        ctx.charge(result.word_count, model=result.model, usage=result.usage,
                   item=str(content["id"]))
        done.append((content, result))
    if not done:
        raise JobFailed(failed[0]["error"])
    await ctx.phase("PARSE", "Reading results")

    async def save(uow: UnitOfWork) -> dict[str, Any]:
        rows = ContentRepository(uow.session, vis)
        report = []
        for content, result in done:
            fixed = result.content
            analysis = result.after.as_dict()
            changes: dict[str, Any] = {"optimizer_score": result.after.score,
                                       "optimizer_analysis": analysis}
            if result.changes:
                changes.update(html=fixed.html, meta_title=fixed.meta_title[:255],
                               meta_description=fixed.meta_description[:500],
                               slug=fixed.slug[:255], word_count=result.after.word_count)
                row = await rows.revise(content["id"], changes)
                assert row is not None
                await uow.publish(events.content_updated(row, "optimized", task_id=ctx.task_id,
                                                         run_id=run_id))
            else:
                await rows.update(content["id"], changes)
            report.append({"content_id": content["id"], "score_before": result.before.score,
                           "score_after": result.after.score, "changes": list(result.changes)})
        return {"optimized": report, "failed": failed, "model": done[0][1].model,
                "run_id": run_id}

    return save
