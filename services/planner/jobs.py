"""The AI job handlers: auto_cluster and auto_generate_ideas.

A job arrives with its task id (the API placed a billing hold under that id and wrote the
AI task log row in the same transaction that queued it). Handlers are idempotent by task
id: the results are saved in one transaction together with the log row turning
`success`; a redelivered job whose log already says `success` only makes sure the hold
is captured (billing captures a hold once) and answers the saved result. A job that
cannot succeed releases its hold and leaves the log `failed`.

Engines: when a job starts it asks auth for the account's AI settings
(`igny8.cmd.auth.ai_settings`). An account with an active OpenAI integration runs on the
OpenAI-compatible engines with its saved prompt (account prompt → built-in); every other
account runs on the offline engines. Auth not answering is a transient failure (the job
is retried): an account that configured OpenAI never silently runs locally.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import func

from libs.common.ai import AIError, AIProviderError, AIResponseInvalid
from libs.common.ai.base import Usage
from libs.common.ai.openai import OpenAIProvider
from libs.common.auth import AISettings, AuthClient
from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.jobs import JobContext, JobFailed
from libs.common.problems import DomainError, ServiceUnavailable
from libs.common.tenancy import UnitOfWork
from services.planner import events
from services.planner import repository as repo
from services.planner.clustering import (
    DEFAULT_CLUSTERING_PROMPT,
    ClusteringResult,
    ExistingCluster,
    KeywordInput,
    LocalClusteringEngine,
    OpenAIClusteringEngine,
)
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
from services.planner.repository import Visibility, clusters
from services.planner.settings import PlannerSettings

# How long a job waits for auth's AI settings before it counts as a transient failure.
AI_SETTINGS_TIMEOUT_SECONDS = 3.0

ClusterFn = Callable[
    [Sequence[KeywordInput], Sequence[ExistingCluster]], Awaitable[ClusteringResult]
]
IdeasFn = Callable[[IdeaCluster], Awaitable[IdeasResult]]


class LocalEngines:
    """The offline engines (the default): CPU work runs in a thread, off the event loop.
    The embedding model loads on first use."""

    def __init__(self) -> None:
        self._clustering: LocalClusteringEngine | None = None

    async def cluster(
        self, keywords: Sequence[KeywordInput], existing: Sequence[ExistingCluster]
    ) -> ClusteringResult:
        def run() -> ClusteringResult:
            if self._clustering is None:
                self._clustering = LocalClusteringEngine()
            return self._clustering.cluster(keywords, existing)

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
    def openai(cls, provider: OpenAIProvider, settings: AISettings, model: str) -> Engines:
        """The OpenAI-compatible engines with the account's prompts (or the built-ins)."""
        cluster_prompt = settings.prompt("clustering", DEFAULT_CLUSTERING_PROMPT)
        # Auth's ideas prompt names the cluster's keywords `[IGNY8_KEYWORDS]`.
        ideas_prompt = settings.prompt("ideas", DEFAULT_IDEAS_PROMPT).replace(
            "[IGNY8_KEYWORDS]", IDEAS_KEYWORDS_PLACEHOLDER
        )
        clustering = OpenAIClusteringEngine(provider, cluster_prompt, model=model)
        return cls(
            cluster=clustering.cluster,
            ideas=functools.partial(generate_ideas_openai, provider, prompt=ideas_prompt,
                                    model=model),
        )


# USD per million (input, output) tokens of well-known chat models, matched by the
# longest prefix of the model name the provider answered with. Other models (self-hosted
# endpoints) are recorded at 0: their tokens are still logged and captured.
PRICES_PER_MILLION: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-4o-mini": (Decimal("0.15"), Decimal("0.60")),
    "gpt-4o": (Decimal("2.50"), Decimal("10.00")),
    "gpt-4.1-nano": (Decimal("0.10"), Decimal("0.40")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("1.60")),
    "gpt-4.1": (Decimal("2.00"), Decimal("8.00")),
    "gpt-3.5-turbo": (Decimal("0.50"), Decimal("1.50")),
}


def cost_usd(model: str, usage: Usage) -> Decimal:
    name = model.lower()
    for prefix in sorted(PRICES_PER_MILLION, key=len, reverse=True):
        if name.startswith(prefix):
            price_in, price_out = PRICES_PER_MILLION[prefix]
            cost = (price_in * usage.prompt_tokens + price_out * usage.completion_tokens) / (
                Decimal(1_000_000)
            )
            return cost.quantize(Decimal("0.000001"))
    return Decimal("0")


def _ai_failure(exc: Exception, what: str) -> JobFailed | None:
    """The job-level failure for an engine error, or None for transient provider trouble
    (HTTP 429/5xx, no answer), which is retried. A failed job's hold is released in full."""
    if isinstance(exc, AIProviderError) and exc.retryable:
        return None
    if isinstance(exc, AIResponseInvalid):
        return JobFailed(f"The AI answer for the {what} could not be used: {exc.message}")
    if isinstance(exc, AIError):
        return JobFailed(f"The AI provider failed on the {what}: {exc.message}")
    return JobFailed(f"The {what} could not be made: {exc}")


def _intent(value: str | None) -> Intent | None:
    try:
        return Intent(value) if value else None
    except ValueError:
        return None


class PlannerJobs:
    def __init__(
        self,
        db: Database,
        billing: BillingClient,
        settings: PlannerSettings,
        engines: Engines | None = None,
        *,
        auth: AuthClient | None = None,
    ) -> None:
        """`engines` are the offline ones (accounts without an OpenAI integration); `auth`
        answers the AI settings (by default over billing's NATS connection, with a short
        timeout: a job waits on it before any work)."""
        self.db = db
        self.billing = billing
        self.settings = settings
        self.engines = engines or Engines.local()
        self.auth = auth or AuthClient(
            billing.nc, timeout=min(settings.command_timeout_seconds, AI_SETTINGS_TIMEOUT_SECONDS)
        )

    @contextlib.asynccontextmanager
    async def _engines_for(self, ctx: JobContext, prompt_type: str) -> AsyncIterator[Engines]:
        """The engines this account's job runs on. Auth not answering raises
        `ServiceUnavailable` (the job is retried, never run locally instead)."""
        try:
            ai = await self.auth.ai_settings(ctx.job.account_id or 0, [prompt_type])
        except ServiceUnavailable:
            raise
        except DomainError as exc:  # unusable settings: retrying will not help
            raise JobFailed(exc.detail) from exc
        if ai.openai is None:
            ctx.report.step("PREP", provider="local")
            yield self.engines
            return
        try:
            provider = OpenAIProvider(ai.openai.base_url, ai.openai.api_key,
                                      chat_model=ai.openai.model)
        except AIError as exc:
            raise JobFailed(f"The OpenAI settings cannot be used: {exc.message}") from exc
        ctx.report.step("PREP", provider="openai", model=ai.openai.model)
        async with provider:
            yield Engines.openai(provider, ai, ai.openai.model)

    # --- shared steps -----------------------------------------------------------------

    async def _begin(self, ctx: JobContext) -> dict[str, Any] | None:
        """Mark the run started; return the saved log when an earlier attempt finished."""
        scope = TenantScope.account(ctx.job.account_id or 0)
        async with self.db.session(scope) as session:
            log = await repo.lock_task_log(session, ctx.task_id)
            if log is None:
                raise JobFailed("This task is unknown to the planner.")
            if log["status"] == "success":
                return log
            if log["status"] == "failed":
                raise JobFailed(log["error"] or "The task failed.")
            await repo.update_task_log(
                session,
                ctx.task_id,
                {"status": "running", "attempts": ctx.attempt, "started_at": func.now()},
            )
            await session.commit()
        return None

    async def _capture(self, ctx: JobContext, log: dict[str, Any], units: int) -> int:
        """Charge the actual cost against the hold (billing does it once per hold)."""
        captured = await self.billing.capture(
            log["hold_id"],
            account_id=log["account_id"],
            units=units,
            tokens_input=log["tokens_input"],
            tokens_output=log["tokens_output"],
            model=log["model"],
            cost_usd=log["cost_usd"],
            related_object_type="ai_task",
            related_object_id=str(ctx.task_id),
            metadata={"function": log["function"]},
        )
        if captured.credits_charged != log["credits_charged"]:
            async with self.db.session(TenantScope.account(log["account_id"])) as session:
                await repo.update_task_log(
                    session, ctx.task_id, {"credits_charged": captured.credits_charged}
                )
                await session.commit()
        ctx.report.step("CAPTURE", request=False, credits=captured.credits_charged)
        return captured.credits_charged

    async def _fail(self, ctx: JobContext, error: str, started: float) -> None:
        """Give the credits back and record the failure (once, whoever gets here first)."""
        account_id = ctx.job.account_id or 0
        async with self.db.session(TenantScope.account(account_id)) as session:
            log = await repo.lock_task_log(session, ctx.task_id)
            if log is None or log["status"] in ("success", "failed"):
                return
            if log["hold_id"] is not None:
                await self.billing.release(log["hold_id"], account_id=account_id)
            await repo.update_task_log(
                session,
                ctx.task_id,
                {
                    "status": "failed",
                    "error": error[:2000],
                    "attempts": ctx.attempt,
                    "finished_at": func.now(),
                    "duration_ms": int((time.perf_counter() - started) * 1000),
                },
            )
            await session.commit()

    async def _guard(
        self, ctx: JobContext, run: Callable[[JobContext, float], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return await run(ctx, started)
        except JobFailed as exc:
            await self._fail(ctx, str(exc), started)
            raise
        except Exception as exc:
            if ctx.attempt >= self.settings.job_max_deliver:
                await self._fail(ctx, f"Failed after {ctx.attempt} attempts: {exc}", started)
            raise

    # --- auto_cluster -----------------------------------------------------------------

    async def auto_cluster(self, ctx: JobContext) -> dict[str, Any]:
        return await self._guard(ctx, self._auto_cluster)

    async def _auto_cluster(self, ctx: JobContext, started: float) -> dict[str, Any]:
        done = await self._begin(ctx)
        if done is not None:
            await self._capture(ctx, done, units=1)
            return dict(done["result"] or {})
        account_id = ctx.job.account_id or 0
        data = ctx.job.data
        sector_id, site_id = int(data["sector_id"]), int(data["site_id"])
        vis = Visibility(account_id)
        report = ctx.report
        await report.phase("PREP", "Loading keywords")
        async with self.db.session(TenantScope.account(account_id)) as session:
            found = [
                k
                for k in await repo.get_keywords(session, vis, data["keyword_ids"])
                if k["sector_id"] == sector_id
            ]
            existing_rows = await repo.sector_clusters(session, account_id, sector_id)
            members = await repo.cluster_keyword_texts(
                session, account_id, [c["id"] for c in existing_rows]
            )
        if not found:
            raise JobFailed("None of the keywords exist any more.")
        inputs = [KeywordInput(text=k["keyword"], volume=k["volume"], ref=k["id"]) for k in found]
        existing = [
            ExistingCluster(
                id=c["id"], name=c["name"], keywords=tuple(m["keyword"] for m in members[c["id"]])
            )
            for c in existing_rows
        ]
        report.step("PREP", keywords=len(inputs), existing_clusters=len(existing))
        async with self._engines_for(ctx, "clustering") as engines:
            await report.phase("AI_CALL", f"Clustering {len(inputs)} keywords")
            try:
                result = await engines.cluster(inputs, existing)
            except (ValueError, AIError) as exc:
                failure = _ai_failure(exc, "clusters")
                if failure is None:
                    raise
                raise failure from exc
        cost = cost_usd(result.model, result.usage)
        report.tokens = result.usage.total_tokens
        report.step("AI_CALL", request=False, model=result.model, clusters=len(result.clusters))
        await report.phase("PARSE", "Reading clusters")
        plan = [
            (c, sorted({int(ck.keyword.ref) for ck in c.keywords if ck.keyword.ref is not None}))
            for c in result.clusters
        ]
        await report.phase("SAVE", "Saving clusters")
        async with self.db.session(TenantScope.account(account_id)) as session:
            uow = UnitOfWork(session)
            log = await repo.lock_task_log(session, ctx.task_id)
            assert log is not None
            if log["status"] == "success":  # a parallel attempt got there first
                await session.rollback()
                await self._capture(ctx, log, units=1)
                return dict(log["result"] or {})
            saved: list[dict[str, Any]] = []
            touched: list[int] = []
            for cluster, keyword_ids in plan:
                if not keyword_ids:
                    continue
                row, created = await self._cluster_row(
                    session, account_id, site_id, sector_id, cluster.name,
                    cluster.description, cluster.existing_id,
                )
                if created:
                    await uow.publish(events.cluster_created(row))
                await repo.assign_keywords(session, account_id, row["id"], keyword_ids)
                touched.append(row["id"])
                saved.append(
                    {"id": row["id"], "name": row["name"], "created": created,
                     "keyword_ids": keyword_ids}
                )
            previous = {k["cluster_id"] for k in found}
            await repo.refresh_cluster_stats(session, account_id, [*touched, *previous])
            moved = await repo.get_keywords(session, vis, [k["id"] for k in found])
            await uow.publish(*events.keyword_events("updated", account_id, moved))
            await uow.publish(
                events.keywords_clustered(account_id, ctx.task_id, site_id, sector_id, saved)
            )
            outcome = {
                "clusters": saved,
                "keywords_clustered": sum(len(c["keyword_ids"]) for c in saved),
                "clusters_created": sum(1 for c in saved if c["created"]),
                "model": result.model,
            }
            await self._finish(session, ctx, log, result.model, result.usage.prompt_tokens,
                               result.usage.completion_tokens, cost, outcome, started)
            await session.commit()
        log = await self._saved_log(account_id, ctx.task_id)
        await self._capture(ctx, log, units=1)
        return outcome

    async def _cluster_row(
        self, session: Any, account_id: int, site_id: int, sector_id: int, name: str,
        description: str, existing_id: Any,
    ) -> tuple[dict[str, Any], bool]:
        vis = Visibility(account_id)
        if existing_id is not None:
            rows = await repo.get_rows(session, clusters, vis, [int(existing_id)])
            if rows:
                return rows[0], False
        same_name = [
            c for c in await repo.sector_clusters(session, account_id, sector_id)
            if c["name"].lower() == name.lower()
        ]
        if same_name:
            return same_name[0], False
        row = await repo.insert_row(session, clusters, {
            "account_id": account_id, "site_id": site_id, "sector_id": sector_id,
            "name": name[:255], "description": description, "status": "active",
        })
        return row, True

    async def _finish(
        self, session: Any, ctx: JobContext, log: dict[str, Any], model: str, tokens_in: int,
        tokens_out: int, cost: Decimal, outcome: dict[str, Any], started: float,
    ) -> None:
        await repo.update_task_log(session, ctx.task_id, {
            "status": "success", "model": model, "tokens_input": tokens_in,
            "tokens_output": tokens_out, "cost_usd": cost, "attempts": ctx.attempt,
            "result": outcome, "finished_at": func.now(),
            "duration_ms": int((time.perf_counter() - started) * 1000),
        })

    async def _saved_log(self, account_id: int, task_id: UUID) -> dict[str, Any]:
        async with self.db.session(TenantScope.account(account_id)) as session:
            log = await repo.get_task_log(session, task_id)
        assert log is not None
        return log

    # --- auto_generate_ideas ----------------------------------------------------------

    async def auto_generate_ideas(self, ctx: JobContext) -> dict[str, Any]:
        return await self._guard(ctx, self._auto_generate_ideas)

    async def _auto_generate_ideas(self, ctx: JobContext, started: float) -> dict[str, Any]:
        done = await self._begin(ctx)
        if done is not None:
            await self._capture(ctx, done, units=int((done["result"] or {}).get("ideas", 0)))
            return dict(done["result"] or {})
        account_id = ctx.job.account_id or 0
        vis = Visibility(account_id)
        report = ctx.report
        await report.phase("PREP", "Loading clusters")
        async with self.db.session(TenantScope.account(account_id)) as session:
            found = await repo.get_rows(session, clusters, vis, ctx.job.data["cluster_ids"])
            members = await repo.cluster_keyword_texts(session, account_id,
                                                       [c["id"] for c in found])
        if not found:
            raise JobFailed("The cluster does not exist any more.")
        report.step("PREP", clusters=len(found))
        drafts: list[tuple[dict[str, Any], IdeasResult]] = []
        async with self._engines_for(ctx, "ideas") as engines:
            for n, cluster in enumerate(found):
                await report.phase("AI_CALL", f"Writing ideas for {cluster['name']}",
                                   n / len(found))
                idea_cluster = IdeaCluster(
                    name=cluster["name"], description=cluster["description"],
                    keywords=tuple(
                        IdeaKeyword(text=k["keyword"], volume=k["volume"],
                                    intent=_intent(k["intent"]))
                        for k in members[cluster["id"]]
                    ),
                )
                try:
                    drafts.append((cluster, await engines.ideas(idea_cluster)))
                except (ValueError, AIError) as exc:
                    failure = _ai_failure(exc, f"ideas of {cluster['name']}")
                    if failure is None:
                        raise
                    raise failure from exc
        model = drafts[0][1].model
        tokens_in = sum(r.usage.prompt_tokens for _, r in drafts)
        tokens_out = sum(r.usage.completion_tokens for _, r in drafts)
        cost = sum((cost_usd(r.model, r.usage) for _, r in drafts), Decimal("0"))
        report.tokens = tokens_in + tokens_out
        report.step("AI_CALL", request=False, model=model,
                    ideas=sum(len(r.ideas) for _, r in drafts))
        await report.phase("PARSE", "Reading ideas")
        await report.phase("SAVE", "Saving ideas")
        async with self.db.session(TenantScope.account(account_id)) as session:
            uow = UnitOfWork(session)
            log = await repo.lock_task_log(session, ctx.task_id)
            assert log is not None
            if log["status"] == "success":
                await session.rollback()
                await self._capture(ctx, log, units=int((log["result"] or {}).get("ideas", 0)))
                return dict(log["result"] or {})
            created: list[int] = []
            for cluster, result in drafts:
                ids_by_text = {k["keyword"].lower(): k["id"] for k in members[cluster["id"]]}
                rows = await repo.insert_ideas(session, [
                    {
                        "account_id": account_id, "site_id": cluster["site_id"],
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
                await repo.update_row(session, clusters, account_id, cluster["id"],
                                      {"status": "mapped"})
                await uow.publish(events.ideas_generated(account_id, ctx.task_id, cluster,
                                                         idea_ids))
            await repo.refresh_cluster_stats(session, account_id, [c["id"] for c in found])
            outcome = {"ideas": len(created), "idea_ids": created,
                       "cluster_ids": [c["id"] for c in found], "model": model}
            await self._finish(session, ctx, log, model, tokens_in, tokens_out, cost, outcome,
                               started)
            await session.commit()
        log = await self._saved_log(account_id, ctx.task_id)
        await self._capture(ctx, log, units=len(created))
        return outcome
