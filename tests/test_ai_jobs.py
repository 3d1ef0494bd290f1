"""The kernel's billed AI job against billing's real worker: per-item holds for a job
that succeeds for some items only, one capture per item that worked, a release for the
others, the AI metrics, and a redelivered job that charges nothing twice."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY
from sqlalchemy import func, text, update
from sqlmodel import col, select

from libs.common import nats as nats_kernel
from libs.common.ai import Usage
from libs.common.ai_jobs import AIFunction, AIJobContext, AIJobRequests, AIJobRunner, Saver
from libs.common.ai_jobs.abandoned import AbandonedJobs
from libs.common.auth import AI_SETTINGS, AISettings, AISettingsRequest, AuthClient
from libs.common.billing import BillingClient
from libs.common.commands import CommandServer
from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.jobs import JobContext, JobFailed, ProgressReporter, TaskProgress
from libs.common.problems import PaymentRequired
from libs.common.provision import ServiceDatabase
from libs.common.security import Principal
from libs.common.testing.checks import eventually
from libs.common.testing.plugin import DatabaseFactory
from libs.common.tests.models import AI_TASK_LOGS
from libs.common.uow import UnitOfWork, unit_of_work
from services.billing.main import MIGRATIONS as BILLING_MIGRATIONS
from services.billing.models import CreditBalance, CreditHold, CreditTransaction
from services.billing.pricing import add_month
from services.billing.service import BillingService, utcnow
from services.billing.settings import BillingSettings
from services.billing.worker import run as run_billing_worker

MODELS = Path(__file__).resolve().parent.parent / "libs" / "common" / "tests" / "model_migrations"
IMAGES = AIFunction("kernel", "generate_images", "image_generation", ("image_prompt",))
_ids = itertools.count(random.randint(100, 900) * 1_000_000)


@pytest.fixture(scope="module")
def models_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("kernel_ai_jobs", MODELS)


@pytest.fixture(scope="module")
async def db(models_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    database = Database(models_db_info.app_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats_kernel.connect(nats_url, "kernel-ai-jobs-tests")
    yield conn
    await conn.drain()


@pytest.fixture(scope="module")
async def ledger(make_database: DatabaseFactory, nats_url: str,
                 nc: NATS) -> AsyncIterator[Database]:
    """Billing's real worker answering its commands; its database, to read the ledger."""
    info = make_database("billing", BILLING_MIGRATIONS)
    settings = BillingSettings(environment="test", database_url=info.app_url,
                               migration_database_url=info.owner_url, nats_url=nats_url)
    stop = asyncio.Event()
    task = asyncio.create_task(run_billing_worker(stop, settings))
    probe = BillingClient(nc, timeout=1.0, retries=0)
    for _ in range(200):
        try:
            await probe.release(0)
        except Exception as exc:  # noqa: BLE001 - NotFound once billing answers
            if type(exc).__name__ == "NotFound":
                break
            await asyncio.sleep(0.1)
    database = Database(info.app_url)
    yield database
    await database.dispose()
    stop.set()
    await asyncio.wait_for(task, 20)


@pytest.fixture(scope="module")
async def auth(nc: NATS) -> AsyncIterator[None]:
    """Auth's `ai_settings` for these accounts: no integration, the offline engines."""

    async def ai_settings(request: AISettingsRequest) -> AISettings:
        return AISettings(provider="local")

    stop = asyncio.Event()
    # A queue group of its own: auth's real responders may run in another test module.
    task = asyncio.create_task(CommandServer(nc, {AI_SETTINGS: ai_settings},
                                             queue="kernel-ai-jobs-tests").run(stop))
    await asyncio.sleep(0.05)
    yield
    stop.set()
    await asyncio.wait_for(task, 10)


async def fund(ledger: Database, account: int, credits: int) -> None:
    now = utcnow()
    async with ledger.session(TenantScope.system()) as session:
        await BillingService(session).reset_plan_credits(
            account, credits, period_start=now, period_end=add_month(now),
            idempotency_key="signup", description="kernel test credits")
        await session.commit()


async def holds(ledger: Database, account: int) -> list[tuple[str, int]]:
    async with ledger.session(TenantScope.system()) as session:
        rows = (await session.execute(select(CreditHold).where(
            col(CreditHold.account_id) == account).order_by(col(CreditHold.id)))).scalars()
        return [(h.status, h.captured_credits) for h in rows]


async def hold_statuses(ledger: Database, account: int) -> dict[int, str]:
    async with ledger.session(TenantScope.system()) as session:
        rows = (await session.execute(select(CreditHold).where(
            col(CreditHold.account_id) == account))).scalars()
        return {h.id: h.status for h in rows if h.id is not None}


async def debits(ledger: Database, account: int) -> list[int]:
    async with ledger.session(TenantScope.system()) as session:
        rows = (await session.execute(select(CreditTransaction).where(
            col(CreditTransaction.account_id) == account,
            col(CreditTransaction.transaction_type) == "deduction"))).scalars()
        return sorted(t.amount for t in rows)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def generate_images(ctx: AIJobContext) -> Saver:
    """Three images; the second cannot be made. Each one made is charged on its own."""
    await ctx.phase("PREP", "Reading prompts")
    made = []
    for n, item in enumerate(ctx.data["items"]):
        await ctx.phase("AI_CALL", f"Image {item}", n / 3)
        if item == "img-2":
            continue
        ctx.charge(1, model="gpt-4o-mini", usage=Usage(1000, 0), item=item)
        made.append(item)

    async def save(uow: UnitOfWork) -> dict[str, Any]:
        return {"images": made}

    return save


async def queue_images(db: Database, nc: NATS, account: int) -> Any:
    requests = AIJobRequests(AI_TASK_LOGS, BillingClient(nc), None, hold_ttl_seconds=600)
    principal = Principal(user_id=1, account_id=account, role="owner")
    items = {"img-1": 1, "img-2": 1, "img-3": 1}
    async with unit_of_work(db, TenantScope.account(account)) as uow:
        job = await requests.queue(uow, principal, IMAGES, {"items": list(items)},
                                   items=items)
    return job


async def context(nc: NATS, job: Any, attempt: int = 1) -> JobContext:
    buckets = await nats_kernel.ensure_platform(nc.jetstream(), "kernel")
    progress = TaskProgress(buckets[nats_kernel.TASK_PROGRESS_BUCKET])
    event = Event(id=job.task_id, type="kernel.generate_images", account_id=job.account_id,
                  data={"items": ["img-1", "img-2", "img-3"]})
    return JobContext(event, attempt, ProgressReporter(progress, event.id, job.account_id))


@pytest.mark.usefixtures("auth")
async def test_per_item_holds_capture_what_worked(db: Database, nc: NATS,
                                                  ledger: Database) -> None:
    account = next(_ids)
    await fund(ledger, account, 100)
    job = await queue_images(db, nc, account)
    assert set(job.holds) == {"img-1", "img-2", "img-3"}
    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3)
    handler = runner.handler(IMAGES, generate_images)
    tokens_before = metric("igny8_ai_tokens_total", function="generate_images",
                           model="gpt-4o-mini", direction="input")
    result = await handler(await context(nc, job))
    # The result says what the ledger charged (automation closes a stage on it).
    assert result == {"images": ["img-1", "img-3"], "credits": 8}
    assert await holds(ledger, account) == [("captured", 4), ("released", 0), ("captured", 4)]
    assert await debits(ledger, account) == [-4, -4]
    assert metric("igny8_ai_tokens_total", function="generate_images", model="gpt-4o-mini",
                  direction="input") == tokens_before + 2000
    async with db.session(TenantScope.account(account)) as session:
        log = (await session.execute(AI_TASK_LOGS.select().where(
            AI_TASK_LOGS.c.task_id == job.task_id))).mappings().one()
    assert (log["status"], log["credits_held"], log["credits_charged"]) == ("success", 12, 8)
    assert log["cost_usd"] == Decimal("0.000300")
    assert [c["item"] for c in log["charges"]] == ["img-1", "img-3"]

    # Redelivered after it saved: it settles again, and billing charges nothing twice.
    again = await handler(await context(nc, job, attempt=2))
    assert again == result
    assert await debits(ledger, account) == [-4, -4]


@pytest.mark.usefixtures("auth")
async def test_short_credits_hold_nothing_and_a_failed_job_releases_all(
        db: Database, nc: NATS, ledger: Database) -> None:
    poor = next(_ids)
    await fund(ledger, poor, 10)  # two images' worth, three asked
    with pytest.raises(PaymentRequired):
        await queue_images(db, nc, poor)
    assert {status for status, _ in await holds(ledger, poor)} <= {"released"}
    async with db.session(TenantScope.account(poor)) as session:
        assert (await session.execute(AI_TASK_LOGS.select().where(
            AI_TASK_LOGS.c.account_id == poor))).first() is None

    account = next(_ids)
    await fund(ledger, account, 100)
    job = await queue_images(db, nc, account)

    async def refuses(ctx: AIJobContext) -> Saver:
        raise JobFailed("No images today.")

    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3)
    with pytest.raises(JobFailed):
        await runner.handler(IMAGES, refuses)(await context(nc, job))
    assert await holds(ledger, account) == [("released", 0)] * 3
    assert await debits(ledger, account) == []


# --- jobs no attempt will finish (ADR 0041) --------------------------------------------


async def held(ledger: Database, account: int) -> tuple[int, int]:
    """The balance's spendable credits and what it holds."""
    async with ledger.session(TenantScope.system()) as session:
        balance = await session.get(CreditBalance, account)
        assert balance is not None
        return balance.plan_credits + balance.purchased_credits, balance.held


async def set_log(db: Database, account: int, task_id: Any, sql: str) -> None:
    """The task log changed as earlier code, or time, left it (`sql`: a SET clause)."""
    async with db.session(TenantScope.account(account)) as session:
        await session.execute(text(f"UPDATE ai_task_logs SET {sql} WHERE task_id = :t"),
                              {"t": task_id})
        await session.commit()


async def log_of(db: Database, account: int, task_id: Any) -> dict[str, Any]:
    async with db.session(TenantScope.account(account), read_only=True) as session:
        return dict((await session.execute(AI_TASK_LOGS.select().where(
            AI_TASK_LOGS.c.task_id == task_id))).mappings().one())


async def progress_of(nc: NATS) -> TaskProgress:
    buckets = await nats_kernel.ensure_platform(nc.jetstream(), "kernel")
    return TaskProgress(buckets[nats_kernel.TASK_PROGRESS_BUCKET])


@pytest.mark.usefixtures("auth")
async def test_a_job_left_running_past_its_deadline_is_closed_once_and_its_holds_released(
        db: Database, nc: NATS, ledger: Database) -> None:
    """A job whose last attempt could not record its failure (the database away, before
    ADR 0040) was terminated with its log `running` and no delivery will ever reach it:
    its holds expired and billing released them, but the log said `running` for good.
    The sweep beside the job workers closes it as failed, releases what is still held
    (billing's expiry got one of its three holds first), once however many sweeps run,
    and never charges; it leaves alone a job an attempt is still at work on, and one
    whose deadline has not come (a redelivery may still reach it)."""
    account = next(_ids)
    await fund(ledger, account, 100)
    left = await queue_images(db, nc, account)
    # As the pre-fix worker left it: three attempts, `running`, two hours ago, no beat.
    await set_log(db, account, left.task_id, "status = 'running', attempts = 3, "
                  "created_at = now() - interval '2 hours', "
                  "started_at = now() - interval '2 hours'")
    async with ledger.session(TenantScope.system()) as session:  # one hold expired
        await session.execute(update(CreditHold).where(
            col(CreditHold.id) == left.holds["img-1"]).values(
            expires_at=func.now() - timedelta(seconds=1)))
        await session.commit()
    async with ledger.session(TenantScope.system()) as session:
        assert await BillingService(session).sweep_expired_holds() >= 1
        await session.commit()
    assert await held(ledger, account) == (100, 8)
    alive = await queue_images(db, nc, account)  # an attempt still beating
    await set_log(db, account, alive.task_id, "status = 'running', attempts = 1, "
                  "created_at = now() - interval '2 hours', heartbeat_at = now()")
    young = await queue_images(db, nc, account)  # its deadline has not come
    await set_log(db, account, young.task_id, "status = 'running', attempts = 3")
    assert await held(ledger, account) == (100, 32)

    progress = await progress_of(nc)
    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3,
                         deadline_seconds=3600, heartbeat_seconds=20)
    sweeps = [runner.abandoned(progress, "kernel"), runner.abandoned(progress, "kernel")]
    counted = metric("igny8_ai_jobs_abandoned_total", service="kernel",
                     function="generate_images")

    # Two replicas' sweeps at once, then again: closed once.
    assert sum(await asyncio.gather(*(s.close_once() for s in sweeps))) == 1
    assert await sweeps[0].close_once() == 0
    log = await log_of(db, account, left.task_id)
    assert log["status"] == "failed"
    assert log["error"].startswith("abandoned: no attempt finished")
    assert log["finished_at"] is not None
    assert metric("igny8_ai_jobs_abandoned_total", service="kernel",
                  function="generate_images") == counted + 1
    doc = await progress.get(left.task_id)
    assert doc is not None
    assert (doc["state"], doc["meta"]["error"]) == ("FAILURE", log["error"])

    # Its holds: the expired one left as billing left it, the two others released once
    # (held back to what the two other jobs hold; nothing charged, nothing given twice).
    ours = await hold_statuses(ledger, account)
    assert [ours[left.holds[i]] for i in ("img-1", "img-2", "img-3")] == [
        "expired", "released", "released"]
    assert await held(ledger, account) == (100, 24)
    assert await debits(ledger, account) == []
    for other in (alive, young):
        assert (await log_of(db, account, other.task_id))["status"] == "running"

    # A late delivery of the closed job does nothing and charges nothing.
    handler = runner.handler(IMAGES, generate_images)
    with pytest.raises(JobFailed, match="abandoned"):
        await handler(await context(nc, left, attempt=4))
    assert await debits(ledger, account) == []
    assert await held(ledger, account) == (100, 24)
    for other in (alive, young):  # the sweeps see every account: leave nothing open
        await set_log(db, account, other.task_id, "status = 'failed'")


@pytest.mark.usefixtures("auth")
async def test_an_attempt_says_it_is_alive_and_one_whose_job_was_closed_keeps_nothing(
        db: Database, nc: NATS, ledger: Database) -> None:
    """An attempt at work touches its log's `heartbeat_at`, so the sweep leaves it alone
    however old the job; if the sweep closed the job anyway (its worker was silent, then
    came back), the attempt saves and charges nothing when it ends."""
    account = next(_ids)
    await fund(ledger, account, 100)
    job = await queue_images(db, nc, account)
    await set_log(db, account, job.task_id, "created_at = now() - interval '2 hours'")
    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3,
                         deadline_seconds=3600, heartbeat_seconds=0.05)
    working, go_on = asyncio.Event(), asyncio.Event()

    async def slow(ctx: AIJobContext) -> Saver:
        working.set()
        await go_on.wait()
        return await generate_images(ctx)

    handler = runner.handler(IMAGES, slow)
    ctx = await context(nc, job)

    async def run_it() -> dict[str, Any] | None:
        return await handler(ctx)

    attempt = asyncio.create_task(run_it())
    try:
        await asyncio.wait_for(working.wait(), 30)
        first = (await log_of(db, account, job.task_id))["heartbeat_at"]
        assert first is not None  # said when the attempt began

        async def beats() -> bool:
            return (await log_of(db, account, job.task_id))["heartbeat_at"] > first

        await eventually(beats, timeout=30, every=0.05)
        progress = await progress_of(nc)
        patient = AbandonedJobs(db, AI_TASK_LOGS, BillingClient(nc), progress,
                                service="kernel", deadline_seconds=3600, silent_seconds=600,
                                interval_seconds=60)
        assert await patient.close_once() == 0  # alive: left alone
        # Its worker silent too long, say: the sweep closes it under the attempt.
        hasty = AbandonedJobs(db, AI_TASK_LOGS, BillingClient(nc), progress,
                              service="kernel", deadline_seconds=3600, silent_seconds=0,
                              interval_seconds=60)
        assert await hasty.close_once() == 1
    finally:
        go_on.set()
    with pytest.raises(JobFailed, match="abandoned"):
        await attempt
    log = await log_of(db, account, job.task_id)
    assert (log["status"], log["charges"], log["credits_charged"]) == ("failed", [], 0)
    assert await debits(ledger, account) == []
    assert await held(ledger, account) == (100, 0)


async def test_the_sweep_runs_beside_the_job_workers(db: Database, nc: NATS,
                                                      ledger: Database) -> None:
    """`AIJobRunner.workers` gives the service's job workers and its sweep, which closes
    what is abandoned every `sweep_seconds` until the worker stops."""
    account = next(_ids)
    await fund(ledger, account, 100)
    job = await queue_images(db, nc, account)
    await set_log(db, account, job.task_id, "status = 'running', "
                  "created_at = now() - interval '2 hours'")
    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3,
                         deadline_seconds=3600, sweep_seconds=0.05)
    loops = runner.workers(nc.jetstream(), await progress_of(nc),
                           {IMAGES: generate_images}, ack_wait=30)
    (sweep,) = [loop for loop in loops if isinstance(loop, AbandonedJobs)]
    assert len(loops) == 2
    stop = asyncio.Event()
    task = asyncio.create_task(sweep.run(stop))
    try:
        async def closed() -> bool:
            return (await log_of(db, account, job.task_id))["status"] == "failed"

        await eventually(closed, timeout=30, every=0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await held(ledger, account) == (100, 0)


async def test_the_sweep_counts_each_function_from_zero(db: Database, nc: NATS) -> None:
    """`igny8_ai_jobs_abandoned_total` exists at 0 for each of the service's functions once
    its sweep runs: the first job closed is then an increase, which IGNY8AIJobsAbandoned
    (deploy/prometheus/rules) sees; a series born at 1 would show none."""
    probe = AIFunction("kernel-probe", "probe_images", "image_generation", ("image_prompt",))
    labels = {"service": probe.service, "function": probe.name}
    assert REGISTRY.get_sample_value("igny8_ai_jobs_abandoned_total", labels) is None
    runner = AIJobRunner(db, AI_TASK_LOGS, BillingClient(nc), AuthClient(nc), max_deliver=3)
    loops = runner.workers(nc.jetstream(), await progress_of(nc),
                           {probe: generate_images}, ack_wait=30)
    (sweep,) = [loop for loop in loops if isinstance(loop, AbandonedJobs)]
    stopped = asyncio.Event()
    stopped.set()
    await asyncio.wait_for(sweep.run(stopped), 10)
    assert REGISTRY.get_sample_value("igny8_ai_jobs_abandoned_total", labels) == 0.0
