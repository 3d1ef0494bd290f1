"""Planner's answers to automation's pipeline commands (`libs/common/pipeline.py`): what
waits at stages 1-3 in a site, and starting planner's own jobs for a batch of it through
the same services the API uses (so the same limits, holds and events apply).

1 active keywords without a cluster, by sector (`auto_cluster` takes one sector: `items`
says each keyword's);
2 active clusters without ideas (`auto_generate_ideas`, a batch of clusters in one job:
`pipeline_ideas_max_clusters`, where the API takes one); 3 new ideas (queued to writer,
free). A job's task id is derived from automation's key: asking twice is one job.
"""

from __future__ import annotations

from typing import Any

from libs.common.pipeline import (
    PendingResult,
    PendingWork,
    PipelineAnswerer,
    QueueResult,
    QueueWork,
)
from libs.common.repository import Row, Visibility
from services.planner.models import AI_TASK_LOGS
from services.planner.repository import ClusterRepository, IdeaRepository, KeywordRepository
from services.planner.service import ClusterService, IdeaService, KeywordService
from services.planner.settings import PlannerSettings


class PlannerPipeline(PipelineAnswerer[PlannerSettings]):
    owner = "planner"
    ai_task_logs = AI_TASK_LOGS

    async def pending(self, req: PendingWork) -> PendingResult:
        items: dict[str, dict[str, Any]] = {}
        async with self.reading(req) as (session, vis):
            rows: list[Row]
            if req.stage == 1:
                kw = KeywordRepository(session, vis)
                rows = sorted(await kw.find(kw.table.c.status == "active",
                                            kw.table.c.cluster_id.is_(None)),
                              key=lambda r: (r["sector_id"], r["id"]))
                items = {str(r["id"]): {"sector_id": r["sector_id"]}
                         for r in req.chosen(rows)}
            elif req.stage == 2:
                cl = ClusterRepository(session, vis)
                rows = await cl.find(cl.table.c.status == "active", cl.table.c.ideas_count == 0)
            elif req.stage == 3:
                ideas = IdeaRepository(session, vis)
                rows = await ideas.find(ideas.table.c.status == "new")
            else:
                raise ValueError(f"planner has no stage {req.stage}")
        return PendingResult(stage=req.stage, count=len(rows),
                             ids=[r["id"] for r in req.chosen(rows)], items=items)

    async def queue(self, req: QueueWork) -> QueueResult:
        async with self.acting(req) as (uow, principal, requests):
            if req.stage == 1:
                job = await KeywordService(uow, principal, self.settings,
                                           ai_jobs=requests).request_auto_cluster(req.ids, None)
                return QueueResult(stage=1, task_id=job.task_id, ids=req.ids,
                                   replayed=job.replayed)
            if req.stage == 2:
                job = await ClusterService(uow, principal, self.settings,
                                           ai_jobs=requests).request_ideas(
                    req.ids, limit=self.settings.pipeline_ideas_max_clusters)
                return QueueResult(stage=2, task_id=job.task_id, ids=req.ids,
                                   replayed=job.replayed)
            if req.stage == 3:
                queued = [r["id"] for r in await IdeaService(
                    uow, principal, self.settings).queue_to_writer(req.ids)]
                # Asked again because the answer to an earlier ask was lost (a timeout, a
                # process or NATS that died after the commit): what that ask queued is
                # `queued` now and answered as queued, so automation counts it and waits
                # for its tasks (answering nothing made it skip them as "already queued").
                rest = sorted(set(req.ids) - set(queued))
                ideas = IdeaRepository(uow.session, Visibility(req.account_id, (req.site_id,)))
                earlier = [r["id"] for r in await ideas.find(
                    ideas.table.c.id.in_(rest), ideas.table.c.status == "queued")
                ] if rest else []
                return QueueResult(stage=3, ids=queued + earlier, replayed=bool(earlier))
        raise ValueError(f"planner has no stage {req.stage}")
