"""Running a billed AI job (the worker side). The job function holds only domain code: it
reads, calls the AI through the context, records what it charges, and returns how to save
its results. Everything else is here, once:

- idempotency by task id: a redelivered job whose log says `success` only makes sure its
  charges are captured (billing captures a hold once) and answers the saved result;
- the engines: auth's `ai_settings` for the account (`openai` with its key, model and
  prompts, or `local`); auth not answering is a transient failure (the job is retried),
  never a silent switch to `local`;
- the reference's progress phases (INIT and DONE here, PREP/AI_CALL/PARSE/SAVE from the
  job);
- saving: the job's writes and the log turning `success` (with its charges) commit
  together; then each charge is captured against its hold and holds nobody charged are
  released (a job may succeed for some items only); the result says what the ledger
  charged (`credits`);
- failure: holds released, the log `failed` (once, whoever gets there first); a job
  delivered once more after its last attempt's worker died (`JobContext.exhausted`) is
  not run again but fails that way, unless that attempt had saved its results;
- liveness: an attempt touches its log's `heartbeat_at` while it works; logs no attempt
  will finish (open past their deadline, nobody alive) are closed the same way by the
  sweep that runs beside the job workers (`ai_jobs/abandoned.py`, ADR 0043), and an
  attempt that finds its log closed saves nothing;
- the AI metrics (`igny8_ai_tokens_total`, `igny8_ai_cost_usd_total`) per function and
  model.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from nats.js import JetStreamContext
from sqlalchemy import Table, func
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.ai import AIError, AIProviderError, AIResponseInvalid, Usage
from libs.common.ai.openai import DEFAULT_IMAGE_MODEL, OpenAIProvider
from libs.common.ai.pricing import cost_usd
from libs.common.ai_jobs.abandoned import AbandonedJobs
from libs.common.ai_jobs.log import Charge, TaskLogRepository, holds_of
from libs.common.ai_jobs.request import AIFunction
from libs.common.auth import AISettings, AuthClient
from libs.common.billing import BillingClient, CaptureRequest
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.jobs import (
    JobContext,
    JobFailed,
    JobHandler,
    JobWorker,
    TaskProgress,
    WorkerLoop,
)
from libs.common.metrics import AI_COST, AI_TOKENS
from libs.common.outbound import OutboundPolicy
from libs.common.problems import DomainError, ServiceUnavailable
from libs.common.uow import UnitOfWork, unit_of_work

# The longest one call to the account's model may take (a long article is written in one
# completion); the outbound guard's own limit is raised to it.
AI_CALL_TIMEOUT_SECONDS = 120.0

# Runs in the job's final transaction: the job's writes; returns the job's result.
Saver = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]
JobBody = Callable[["AIJobContext"], Awaitable[Saver]]


def ai_failure(exc: Exception, what: str) -> JobFailed | None:
    """The job-level failure for an engine error, or None for transient provider trouble
    (HTTP 429/5xx, no answer), which is retried."""
    if isinstance(exc, AIProviderError) and exc.retryable:
        return None
    if isinstance(exc, AIResponseInvalid):
        return JobFailed(f"The AI answer for the {what} could not be used: {exc.message}")
    if isinstance(exc, AIError):
        return JobFailed(f"The AI provider failed on the {what}: {exc.message}")
    return JobFailed(f"The {what} could not be made: {exc}")


@dataclass
class AIJobContext:
    """What a job function works with."""

    function: AIFunction
    job: Event
    attempt: int
    base: JobContext = field(repr=False)
    db: Database = field(repr=False)
    ai: AISettings
    # The account's OpenAI-compatible provider, open for the job; None: the offline engines.
    provider: OpenAIProvider | None = None
    charges: list[Charge] = field(default_factory=list)

    @property
    def task_id(self) -> UUID:
        return self.job.id

    @property
    def account_id(self) -> int:
        return self.job.account_id or 0

    @property
    def data(self) -> dict[str, Any]:
        return self.job.data

    @property
    def model(self) -> str | None:
        """The account's chat model when it runs on OpenAI."""
        return self.ai.openai.model if self.ai.openai is not None else None

    def prompt(self, prompt_type: str, default: str) -> str:
        """The account's saved prompt of this type, or the job's built-in."""
        return self.ai.prompt(prompt_type, default)

    async def phase(self, phase: str, message: str, fraction: float = 0.0) -> None:
        await self.base.report.phase(phase, message, fraction)

    def step(self, name: str, *, request: bool = True, **details: Any) -> None:
        self.base.report.step(name, request=request, **details)

    def session(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A read-only session in the account's scope, for the job's reads."""
        return self.db.session(TenantScope.account(self.account_id), read_only=True)

    @contextlib.asynccontextmanager
    async def calling_ai(self, what: str) -> AsyncIterator[None]:
        """Around an engine call: an error that retrying cannot fix fails the job with a
        message about `what`; transient provider trouble is retried."""
        try:
            yield
        except (ValueError, AIError) as exc:
            failure = ai_failure(exc, what)
            if failure is None:
                raise
            raise failure from exc

    def charge(self, units: int, *, model: str = "", usage: Usage | None = None,
               cost: Decimal | None = None, item: str = "") -> Charge:
        """Record work to capture once the results are saved: `units` of the function's
        operation against the hold of `item`, with the tokens and cost behind them."""
        usage = usage or Usage()
        charge = Charge(units=units, model=model, tokens_input=usage.prompt_tokens,
                        tokens_output=usage.completion_tokens,
                        cost_usd=cost if cost is not None else cost_usd(model, usage),
                        item=item)
        self.charges.append(charge)
        report = self.base.report
        report.tokens += usage.total_tokens
        report.cost += float(charge.cost_usd)
        return charge


class AIJobRunner:
    """The worker side of a service's billed AI jobs."""

    def __init__(self, db: Database, log: Table, billing: BillingClient, auth: AuthClient, *,
                 max_deliver: int, policy: OutboundPolicy | None = None,
                 deadline_seconds: float = 3600.0, heartbeat_seconds: float = 20.0,
                 sweep_seconds: float = 60.0) -> None:
        self.db = db
        self.log = log
        self.billing = billing
        self.auth = auth
        self.max_deliver = max_deliver
        # The outbound guard every call to the account's provider goes through (the
        # tenant chose its `base_url`): `OutboundPolicy.from_settings(settings)`.
        self.policy = policy or OutboundPolicy()
        # A job's deadline, from when it was asked for: its holds' lifetime
        # (`hold_ttl_seconds`), which outlasts every retry. An attempt at work says it is
        # alive every `heartbeat_seconds`; the sweep of abandoned jobs runs every
        # `sweep_seconds` (ADR 0043).
        self.deadline_seconds = deadline_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.sweep_seconds = sweep_seconds

    def handler(self, function: AIFunction, body: JobBody) -> JobHandler:
        """`body` as a job of the kernel's job worker (`libs/common/jobs.JobWorker`)."""

        async def handle(ctx: JobContext) -> dict[str, Any]:
            started = time.perf_counter()
            # A database outage is not the job's failure: the attempt (and the record of
            # a failure) goes on once it is back; the job worker keeps the job in progress.
            what = f"job {ctx.task_id}"
            alive = asyncio.create_task(self._heartbeat(ctx))
            try:
                return await self.db.outlasting_outages(
                    lambda: self._run(function, body, ctx, started), what=what,
                    verdicts=(JobFailed,))
            except JobFailed as exc:
                error = str(exc)
                await self.db.outlasting_outages(lambda: self._fail(ctx, error, started),
                                                 what=what)
                raise
            except Exception as exc:
                if ctx.attempt >= self.max_deliver:
                    error = f"Failed after {ctx.attempt} attempts: {exc}"
                    await self.db.outlasting_outages(lambda: self._fail(ctx, error, started),
                                                     what=what)
                raise
            finally:
                alive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await alive

        return handle

    def workers(self, js: JetStreamContext, progress: TaskProgress,
                bodies: Mapping[AIFunction, JobBody], *, ack_wait: float) -> list[WorkerLoop]:
        """A job worker per function, and the sweep of the service's abandoned jobs."""
        loops: list[WorkerLoop] = [
            JobWorker(function.service, function.name, self.handler(function, body), js,
                      progress, max_deliver=self.max_deliver, ack_wait=ack_wait)
            for function, body in bodies.items()]
        services = {function.service for function in bodies}
        if len(services) == 1:
            loops.append(self.abandoned(progress, services.pop(),
                                        functions=[function.name for function in bodies]))
        return loops

    def abandoned(self, progress: TaskProgress, service: str, *,
                  functions: Iterable[str] = ()) -> AbandonedJobs:
        """The sweep that closes this runner's jobs no attempt will finish (ADR 0043);
        `functions` are counted from 0 in `igny8_ai_jobs_abandoned_total`."""
        return AbandonedJobs(self.db, self.log, self.billing, progress, service=service,
                             deadline_seconds=self.deadline_seconds,
                             silent_seconds=3 * self.heartbeat_seconds,
                             interval_seconds=self.sweep_seconds, functions=functions)

    async def _heartbeat(self, ctx: JobContext) -> None:
        """While the attempt works: its log says so, every `heartbeat_seconds` (a beat
        the database does not take is skipped; the next one says it)."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            with contextlib.suppress(Exception):
                async with unit_of_work(self.db, self._scope(ctx)) as uow:
                    await TaskLogRepository(uow.session, self.log).heartbeat(ctx.task_id)

    def _scope(self, ctx: JobContext) -> TenantScope:
        return TenantScope.account(ctx.job.account_id or 0)

    async def _run(self, function: AIFunction, body: JobBody, ctx: JobContext,
                   started: float) -> dict[str, Any]:
        done = await self._begin(ctx)
        if done is not None:
            return {**(done["result"] or {}), "credits": await self._settle(ctx, done)}
        async with self._engines(function, ctx) as (ai, provider):
            job = AIJobContext(function, ctx.job, ctx.attempt, ctx, self.db, ai, provider)
            save = await body(job)
        if ctx.report.phase_name != "SAVE":
            await ctx.report.phase("SAVE", "Saving")
        outcome: dict[str, Any] | None = None
        async with unit_of_work(self.db, self._scope(ctx)) as uow:
            logs = TaskLogRepository(uow.session, self.log)
            log = await logs.get(ctx.task_id, lock=True)
            assert log is not None
            if log["status"] == "failed":  # closed meanwhile (the sweep): nothing is kept
                raise JobFailed(log["error"] or "The task failed.")
            if log["status"] != "success":  # else a parallel attempt got there first
                outcome = await save(uow)
                charges = job.charges
                await logs.update(ctx.task_id, {
                    "status": "success",
                    "model": next((c.model for c in charges if c.model), ""),
                    "tokens_input": sum(c.tokens_input for c in charges),
                    "tokens_output": sum(c.tokens_output for c in charges),
                    "cost_usd": sum((c.cost_usd for c in charges), Decimal("0")),
                    "charges": [c.as_json() for c in charges], "attempts": ctx.attempt,
                    "result": outcome, "finished_at": func.clock_timestamp(),
                    "duration_ms": int((time.perf_counter() - started) * 1000)})
                log = await logs.get(ctx.task_id)
                assert log is not None
        ctx.report.step("SAVE", request=False)
        if outcome is None:
            return {**(log["result"] or {}), "credits": await self._settle(ctx, log)}
        for c in job.charges:
            AI_TOKENS.labels(function.name, c.model, "input").inc(c.tokens_input)
            AI_TOKENS.labels(function.name, c.model, "output").inc(c.tokens_output)
            AI_COST.labels(function.name, c.model).inc(float(c.cost_usd))
        return {**outcome, "credits": await self._settle(ctx, log)}

    async def _begin(self, ctx: JobContext) -> dict[str, Any] | None:
        """Mark the run started; the saved log when an earlier attempt finished."""
        async with unit_of_work(self.db, self._scope(ctx)) as uow:
            logs = TaskLogRepository(uow.session, self.log)
            log = await logs.get(ctx.task_id, lock=True)
            if log is None:
                raise JobFailed("This task is unknown.")
            if log["status"] == "success":
                return log
            if log["status"] == "failed":
                raise JobFailed(log["error"] or "The task failed.")
            if ctx.exhausted:
                raise JobFailed(f"The job stopped without finishing {ctx.attempt - 1} times "
                                "(its worker died while running it); it is not tried again.")
            await logs.update(ctx.task_id, {"status": "running", "attempts": ctx.attempt,
                                            "started_at": func.now(),
                                            "heartbeat_at": func.now()})
        return None

    @contextlib.asynccontextmanager
    async def _engines(self, function: AIFunction, ctx: JobContext
                       ) -> AsyncIterator[tuple[AISettings, OpenAIProvider | None]]:
        """The account's AI settings, and its provider open for the job when it runs on
        OpenAI. Auth not answering raises `ServiceUnavailable`: retried, never local."""
        try:
            ai = await self.auth.ai_settings(ctx.job.account_id or 0,
                                             list(function.prompt_types))
        except ServiceUnavailable:
            raise
        except DomainError as exc:  # unusable settings: retrying will not help
            raise JobFailed(exc.detail) from exc
        if ai.openai is None:
            ctx.report.step("PREP", provider="local")
            yield ai, None
            return
        try:
            provider = OpenAIProvider(ai.openai.base_url, ai.openai.api_key,
                                      chat_model=ai.openai.model, policy=self.policy,
                                      timeout_seconds=AI_CALL_TIMEOUT_SECONDS,
                                      image_model=ai.openai.image_model or DEFAULT_IMAGE_MODEL)
        except AIError as exc:
            raise JobFailed(f"The OpenAI settings cannot be used: {exc.message}") from exc
        ctx.report.step("PREP", provider="openai", model=ai.openai.model)
        async with provider:
            yield ai, provider

    async def _settle(self, ctx: JobContext, log: dict[str, Any]) -> int:
        """Capture each item's charges against its hold, release holds nobody charged
        (billing does each once per hold, so a redelivered job may settle again); the
        credits the ledger charged, which the job's result carries as `credits` (the
        ledger's debits reach their readers later, as events: automation waits for them
        to add up to this before it closes a stage)."""
        holds = holds_of(log)
        charges = [Charge.from_json(c) for c in log.get("charges") or []]
        captures: list[CaptureRequest] = []
        unused: list[int] = []
        for item, hold_id in holds.items():
            mine = [c for c in charges if c.item == item]
            if not mine:
                unused.append(hold_id)
                continue
            captures.append(CaptureRequest(
                hold_id=hold_id, account_id=log["account_id"], units=sum(c.units for c in mine),
                tokens_input=sum(c.tokens_input for c in mine),
                tokens_output=sum(c.tokens_output for c in mine),
                model=next((c.model for c in mine if c.model), ""),
                cost_usd=sum((c.cost_usd for c in mine), Decimal("0")),
                related_object_type="ai_task", related_object_id=str(ctx.task_id),
                metadata={"function": log["function"], **({"item": item} if item else {})}))

        async def capture() -> int:
            if len(captures) == 1:  # one hold: billing's batched captures (ADR 0015)
                (one,) = captures
                done = await self.billing.capture(
                    one.hold_id, account_id=one.account_id, units=one.units,
                    tokens_input=one.tokens_input, tokens_output=one.tokens_output,
                    model=one.model, cost_usd=one.cost_usd,
                    related_object_type=one.related_object_type,
                    related_object_id=one.related_object_id, metadata=one.metadata)
                return done.credits_charged
            # A job's per-item captures in one command and one transaction: one command
            # each raced for the account's balance row.
            batch = await self.billing.capture_batch(captures)
            if batch.failed:
                first = batch.failed[0]
                raise RuntimeError(f"{len(batch.failed)} of the job's captures were refused "
                                   f"(hold {first.hold_id}: {first.detail})")
            return sum(r.credits_charged for r in batch.results)

        # Every capture and release is tried; the first failure then fails the attempt (a
        # retry settles again: billing captures and releases each hold once).
        settled = await asyncio.gather(
            *([capture()] if captures else []),
            *(self.billing.release(hold_id, account_id=log["account_id"]) for hold_id in unused),
            return_exceptions=True)
        failure = next((r for r in settled if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        charged = sum(r for r in settled if isinstance(r, int))
        if charged != log["credits_charged"]:
            async with unit_of_work(self.db, self._scope(ctx)) as uow:
                await TaskLogRepository(uow.session, self.log).update(
                    ctx.task_id, {"credits_charged": charged})
        ctx.report.step("CAPTURE", request=False, credits=charged)
        return charged

    async def _fail(self, ctx: JobContext, error: str, started: float) -> None:
        """Give the credits back and record the failure (once, whoever gets here first)."""
        async with unit_of_work(self.db, self._scope(ctx)) as uow:
            logs = TaskLogRepository(uow.session, self.log)
            log = await logs.get(ctx.task_id, lock=True)
            if log is None or log["status"] in ("success", "failed"):
                return
            await logs.release_and_fail(log, self.billing, error, {
                "attempts": ctx.attempt,
                "duration_ms": int((time.perf_counter() - started) * 1000)})
