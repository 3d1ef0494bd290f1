"""Planner's AI jobs, auto_cluster and auto_generate_ideas: only what is planner's.

The billed job around them (credits, the AI task log, idempotency by task id, the
account's engines, progress, failure) is the kernel's (`libs/common/ai_jobs`). Accounts
with an active OpenAI integration run on the OpenAI-compatible engines with their saved
prompt (account prompt → built-in); every other account on the offline engines.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.ai.openai import OpenAIProvider
from libs.common.ai_jobs import AIJobContext, AIJobRunner, Saver
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.db import Database
from libs.common.jobs import JobFailed
from libs.common.outbound import OutboundPolicy
from libs.common.repository import Visibility
from libs.common.tenancy import UnitOfWork
from services.planner import events
from services.planner.clustering import (
    DEFAULT_CLUSTERING_PROMPT,
    Cluster,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    LocalClusteringEngine,
    OpenAIClusteringEngine,
    TopicAnchor,
    display_name,
)
from services.planner.events import AUTO_CLUSTER, AUTO_GENERATE_IDEAS
from services.planner.ideas_local import (
    DEFAULT_IDEAS_PROMPT,
    IdeaCluster,
    IdeaKeyword,
    IdeasResult,
    generate_ideas_local,
    generate_ideas_openai,
)
from services.planner.ideas_local import KEYWORDS_PLACEHOLDER as IDEAS_KEYWORDS_PLACEHOLDER
from services.planner.intent import Intent
from services.planner.models import AI_TASK_LOGS
from services.planner.repository import (
    ClusterRepository,
    IdeaRepository,
    KeywordRepository,
    SeedKeywordRepository,
)
from services.planner.settings import PlannerSettings

# How long a job waits for auth's AI settings before it counts as a transient failure.
AI_SETTINGS_TIMEOUT_SECONDS = 3.0

ClusterFn = Callable[
    [Sequence[KeywordInput], Sequence[ExistingCluster], Sequence[TopicAnchor]],
    Awaitable[ClusteringResult],
]
IdeasFn = Callable[[IdeaCluster], Awaitable[IdeasResult]]


class LocalEngines:
    """The offline engines (the default): CPU work runs in a thread, off the event loop.
    The embedding model loads on first use."""

    def __init__(self) -> None:
        self._clustering: LocalClusteringEngine | None = None

    async def cluster(
        self, keywords: Sequence[KeywordInput], existing: Sequence[ExistingCluster],
        anchors: Sequence[TopicAnchor] = (),
    ) -> ClusteringResult:
        def run() -> ClusteringResult:
            if self._clustering is None:
                self._clustering = LocalClusteringEngine()
            return self._clustering.cluster(keywords, existing, anchors=anchors)

        return await asyncio.to_thread(run)

    async def ideas(self, cluster: IdeaCluster) -> IdeasResult:
        return await asyncio.to_thread(generate_ideas_local, cluster)


@dataclass
class Engines:
    cluster: ClusterFn
    ideas: IdeasFn

    @classmethod
    def local(cls) -> Engines:
        engines = LocalEngines()
        return cls(cluster=engines.cluster, ideas=engines.ideas)

    @classmethod
    def openai(cls, ctx: AIJobContext, provider: OpenAIProvider) -> Engines:
        """The OpenAI-compatible engines with the account's prompts (or the built-ins)."""
        model = ctx.model or ""
        cluster_prompt = ctx.prompt("clustering", DEFAULT_CLUSTERING_PROMPT)
        # Auth's ideas prompt names the cluster's keywords `[IGNY8_KEYWORDS]`.
        ideas_prompt = ctx.prompt("ideas", DEFAULT_IDEAS_PROMPT).replace(
            "[IGNY8_KEYWORDS]", IDEAS_KEYWORDS_PLACEHOLDER
        )
        clustering = OpenAIClusteringEngine(provider, cluster_prompt, model=model)

        async def cluster(keywords: Sequence[KeywordInput], existing: Sequence[ExistingCluster],
                          anchors: Sequence[TopicAnchor] = ()) -> ClusteringResult:
            # The chat model's contract has no topics: the user's topics are not sent.
            return await clustering.cluster(keywords, existing)

        return cls(
            cluster=cluster,
            ideas=functools.partial(generate_ideas_openai, provider, prompt=ideas_prompt,
                                    model=model),
        )


def keyword_inputs(rows: Sequence[dict[str, Any]],
                   seeds: dict[int, dict[str, Any]]) -> list[KeywordInput]:
    """The engine's view of stored keywords: text, volume, the stored intent (kept), and
    the seed library sector of a seed-added keyword as a topic hint."""
    out = []
    for k in rows:
        seed = seeds.get(k["seed_keyword_id"]) if k["seed_keyword_id"] else None
        slug = (seed or {}).get("sector_slug") or ""
        out.append(KeywordInput(text=k["keyword"], volume=k["volume"], ref=k["id"],
                                intent=_intent(k["intent"]),
                                topic_hint=display_name(slug.replace("-", " ")) if slug else ""))
    return out


def _intent(value: str | None) -> Intent | None:
    try:
        return Intent(value) if value else None
    except ValueError:
        return None


class PlannerJobs:
    """Planner's job handlers for the kernel's job workers (`auto_cluster`,
    `auto_generate_ideas`). `engines` are the offline ones (accounts without an OpenAI
    integration); `auth` answers the AI settings (by default over billing's NATS
    connection, with a short timeout: a job waits on it before any work)."""

    def __init__(self, db: Database, billing: BillingClient, settings: PlannerSettings,
                 engines: Engines | None = None, *, auth: AuthClient | None = None) -> None:
        self.engines = engines or Engines.local()
        auth = auth or AuthClient(
            billing.nc, timeout=min(settings.command_timeout_seconds, AI_SETTINGS_TIMEOUT_SECONDS))
        self.runner = AIJobRunner(db, AI_TASK_LOGS, billing, auth,
                                  max_deliver=settings.job_max_deliver,
                                  policy=OutboundPolicy.from_settings(settings),
                                  deadline_seconds=settings.hold_ttl_seconds)
        self.bodies = {AUTO_CLUSTER: self.cluster, AUTO_GENERATE_IDEAS: self.ideas}
        self.auto_cluster = self.runner.handler(AUTO_CLUSTER, self.cluster)
        self.auto_generate_ideas = self.runner.handler(AUTO_GENERATE_IDEAS, self.ideas)

    def _engines(self, ctx: AIJobContext) -> Engines:
        return self.engines if ctx.provider is None else Engines.openai(ctx, ctx.provider)

    # --- auto_cluster -----------------------------------------------------------------

    async def cluster(self, ctx: AIJobContext) -> Saver:
        account_id, data = ctx.account_id, ctx.data
        sector_id, site_id = int(data["sector_id"]), int(data["site_id"])
        vis = Visibility(account_id)
        await ctx.phase("PREP", "Loading keywords")
        async with ctx.session() as session:
            found = [k for k in await KeywordRepository(session, vis).get_many(
                data["keyword_ids"]) if k["sector_id"] == sector_id]
            existing_rows = await ClusterRepository(session, vis).in_sector(sector_id)
            members = await KeywordRepository(session, vis).in_clusters(
                [c["id"] for c in existing_rows])
            seeds = await SeedKeywordRepository(session).get_many(
                sorted({k["seed_keyword_id"] for k in found if k["seed_keyword_id"]}))
        if not found:
            raise JobFailed("None of the keywords exist any more.")
        inputs = keyword_inputs(found, {s["id"]: s for s in seeds})
        existing = [ExistingCluster(id=c["id"], name=c["name"],
                                    keywords=tuple(m["keyword"] for m in members[c["id"]]),
                                    topic=c["topic"])
                    for c in existing_rows]
        anchors = [TopicAnchor(t["name"], tuple(t.get("keywords") or ()))
                   for t in data.get("topics") or ()]
        ctx.step("PREP", keywords=len(inputs), existing_clusters=len(existing))
        await ctx.phase("AI_CALL", f"Clustering {len(inputs)} keywords")
        async with ctx.calling_ai("clusters"):
            result = await self._engines(ctx).cluster(inputs, existing, anchors)
        ctx.charge(1, model=result.model, usage=result.usage)
        ctx.step("AI_CALL", request=False, model=result.model, clusters=len(result.clusters))
        await ctx.phase("PARSE", "Reading clusters")
        plan = [(c, sorted({int(ck.keyword.ref) for ck in c.keywords
                            if ck.keyword.ref is not None}))
                for c in result.clusters]
        await ctx.phase("SAVE", "Saving clusters")

        async def save(uow: UnitOfWork) -> dict[str, Any]:
            keywords = KeywordRepository(uow.session, vis)
            clusters = ClusterRepository(uow.session, vis)
            saved: list[dict[str, Any]] = []
            for cluster, keyword_ids in plan:
                if not keyword_ids:
                    continue
                row, created = await _cluster_row(clusters, site_id, sector_id, cluster)
                if created:
                    await uow.publish(events.cluster_event(row))
                await keywords.assign(row["id"], keyword_ids)
                saved.append({"id": row["id"], "name": row["name"], "topic": row["topic"],
                              "created": created, "keyword_ids": keyword_ids})
            previous = {k["cluster_id"] for k in found}
            await clusters.refresh_stats([*(c["id"] for c in saved), *previous])
            moved = await keywords.get_many([k["id"] for k in found])
            await uow.publish(*events.keyword_events("updated", account_id, moved))
            await uow.publish(events.keywords_clustered(account_id, ctx.task_id, site_id,
                                                        sector_id, saved))
            return {"clusters": saved,
                    "keywords_clustered": sum(len(c["keyword_ids"]) for c in saved),
                    "clusters_created": sum(1 for c in saved if c["created"]),
                    "model": result.model}

        return save

    # --- auto_generate_ideas ----------------------------------------------------------

    async def ideas(self, ctx: AIJobContext) -> Saver:
        account_id = ctx.account_id
        vis = Visibility(account_id)
        await ctx.phase("PREP", "Loading clusters")
        async with ctx.session() as session:
            found = await ClusterRepository(session, vis).get_many(ctx.data["cluster_ids"])
            members = await KeywordRepository(session, vis).in_clusters(
                [c["id"] for c in found])
        if not found:
            raise JobFailed("The cluster does not exist any more.")
        ctx.step("PREP", clusters=len(found))
        drafts: list[tuple[dict[str, Any], IdeasResult]] = []
        engines = self._engines(ctx)
        for n, cluster in enumerate(found):
            await ctx.phase("AI_CALL", f"Writing ideas for {cluster['name']}", n / len(found))
            idea_cluster = IdeaCluster(
                name=cluster["name"], description=cluster["description"],
                keywords=tuple(IdeaKeyword(text=k["keyword"], volume=k["volume"],
                                           intent=_intent(k["intent"]))
                               for k in members[cluster["id"]]))
            async with ctx.calling_ai(f"ideas of {cluster['name']}"):
                drafts.append((cluster, await engines.ideas(idea_cluster)))
        for _, result in drafts:  # billed per idea
            ctx.charge(len(result.ideas), model=result.model, usage=result.usage)
        ctx.step("AI_CALL", request=False, model=drafts[0][1].model,
                 ideas=sum(len(r.ideas) for _, r in drafts))
        await ctx.phase("PARSE", "Reading ideas")
        await ctx.phase("SAVE", "Saving ideas")

        async def save(uow: UnitOfWork) -> dict[str, Any]:
            clusters = ClusterRepository(uow.session, vis)
            created: list[int] = []
            for cluster, result in drafts:
                ids_by_text = {k["keyword"].lower(): k["id"] for k in members[cluster["id"]]}
                rows = await IdeaRepository(uow.session, vis).insert_many([
                    {
                        "site_id": cluster["site_id"],
                        "sector_id": cluster["sector_id"], "cluster_id": cluster["id"],
                        "idea_title": idea.title[:255], "description": idea.description,
                        "keywords": ", ".join(idea.keywords),
                        "keyword_ids": sorted({ids_by_text[t.lower()] for t in idea.keywords
                                               if t.lower() in ids_by_text}),
                        "content_type": str(idea.content_type),
                        "content_structure": str(idea.content_structure),
                        "estimated_word_count": idea.estimated_word_count, "status": "new",
                    }
                    for idea in result.ideas
                ])
                idea_ids = [r["id"] for r in rows]
                created += idea_ids
                await clusters.update(cluster["id"], {"status": "mapped"})
                await uow.publish(events.ideas_generated(account_id, ctx.task_id, cluster,
                                                         idea_ids))
            await clusters.refresh_stats([c["id"] for c in found])
            return {"ideas": len(created), "idea_ids": created,
                    "cluster_ids": [c["id"] for c in found], "model": drafts[0][1].model}

        return save


async def _cluster_row(clusters: ClusterRepository, site_id: int, sector_id: int,
                       cluster: Cluster) -> tuple[dict[str, Any], bool]:
    """The cluster a clustering result names (an existing one, or one of the same name in
    the sector), or a new one in its topic; whether it is new. An existing cluster without
    a topic (made before topics) gets the one it was placed in."""
    found = None
    if cluster.existing_id is not None:
        found = await clusters.get(int(cluster.existing_id))
    if found is None:
        found = next((c for c in await clusters.in_sector(sector_id)
                      if c["name"].lower() == cluster.name.lower()), None)
    if found is not None:
        if not found["topic"] and cluster.topic:
            found = await clusters.update(found["id"], {"topic": cluster.topic[:255]}) or found
        return found, False
    row = await clusters.insert({"site_id": site_id, "sector_id": sector_id,
                                 "name": cluster.name[:255], "description": cluster.description,
                                 "topic": cluster.topic[:255], "status": "active"})
    return row, True
