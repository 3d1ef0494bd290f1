"""Faults: a process killed (SIGKILL) in the middle of a stage and started again — the
automation worker (as its own process), planner's and writer's workers (the package's
`planner_worker` and `writer_worker`) while a job of theirs is at work, and NATS (the
session's embedded server, back on the same port with the same store). Each time: the run
completes, no item is processed twice (no second cluster, idea, task, content or image for
the same thing), no hold is captured twice (billing's ledger), and no run is left
`running` once everything is back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from libs.common.billing import CAPTURE, CAPTURE_BATCH
from libs.common.db import Database
from libs.common.natsauth import TASK_PROGRESS_BUCKET
from libs.common.pipeline import QUEUE, task_id_for
from libs.common.testing.checks import eventually, rows
from libs.common.testing.factories import Tenant
from libs.common.testing.plugin import NatsServer
from libs.common.testing.workers import WorkerProcess, worker_process
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, add_keywords, automation_worker
from services.billing.testing import Ledger
from services.planner.settings import PlannerSettings
from services.writer.settings import WriterSettings

WORDS = ["espresso machine", "best espresso machine for home", "espresso machine grinder",
         "manual espresso machine", "espresso machine cleaning", "espresso descaling",
         "running shoes", "trail running shoes", "running shoes flat feet",
         "cushioned running shoes", "carbon plate running shoes", "running shoes women"]


async def history(client: httpx.AsyncClient, t: Tenant) -> list[dict[str, Any]]:
    r = await client.get(f"{API}/history/?site_id={t.site_id}", headers=t.headers())
    return list(r.json())


async def start_run(client: httpx.AsyncClient, t: Tenant, **config: int) -> str:
    r = await client.patch(f"{API}/update_config/?site_id={t.site_id}", headers=t.headers(),
                           json=config)
    assert r.status_code == 200, r.text
    r = await client.post(f"{API}/run_now/?site_id={t.site_id}", headers=t.headers())
    assert r.status_code == 200, r.text
    return str(r.json()["run_id"])


async def finished_and_reconciled(client: httpx.AsyncClient, billing: Ledger, t: Tenant,
                                  within: float = 420) -> dict[str, Any]:
    """The run once it is no longer `running` and its credits are the ledger's (the last
    debits reach the run after it completed, through billing's events)."""

    async def done() -> bool:
        return (await history(client, t))[0]["status"] != "running"

    await eventually(done, timeout=within, every=1.0)

    async def reconciled() -> bool:
        total = (await history(client, t))[0]["total_credits"]
        return total == sum(abs(d.amount) for d in await billing.debits(t.account_id))

    await eventually(reconciled, timeout=60)
    (run,) = await history(client, t)
    return run


async def assert_once(automation_db: Database, billing: Ledger, t: Tenant,
                      run: dict[str, Any]) -> None:
    """The run completed; every step and item of it once; every hold captured or released
    once; every capture of the ledger for one of the run's jobs."""
    assert run["status"] == "completed", run
    stages = {s["stage"]: s for s in run["stage_results"]}
    assert stages[1]["processed"] == len(WORDS)
    assert all(s["failed"] == 0 for s in stages.values()), stages
    # Nothing skipped before the review gate (which keeps drafts as drafts).
    assert all(s["skipped"] == 0 for n, s in stages.items() if n < 7), stages
    assert stages[4]["created"] == stages[3]["created"]
    steps = await rows(automation_db, t.account_id,
                       "SELECT key, task_id, status FROM automation_steps WHERE account_id = :a")
    assert len({s["key"] for s in steps}) == len(steps)
    assert {s["status"] for s in steps} == {"done"}
    items = await rows(automation_db, t.account_id,
                       "SELECT stage, item_id, count(*) AS n FROM automation_items "
                       "WHERE account_id = :a GROUP BY stage, item_id HAVING count(*) > 1")
    assert items == []
    holds = await billing.holds(t.account_id)
    assert holds
    assert all(hold.status in ("captured", "released") for hold in holds), holds
    usage = await billing.usage_logs(t.account_id)
    captured = [u.hold_id for u in usage]
    assert len(captured) == len(set(captured))  # one capture per hold
    assert {u.hold_id for u in usage} == {h.id for h in holds if h.status == "captured"}
    task_ids = {str(s["task_id"]) for s in steps if s["task_id"] is not None}
    assert {u.related_object_id for u in usage} <= task_ids
    assert run["total_credits"] == sum(u.credits_used for u in usage)


@pytest.mark.timeout(600)
async def test_a_killed_automation_worker_restarts_and_the_run_completes_once(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, billing: Ledger, tenant: Tenant,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    h = tenant.headers()
    await add_keywords(planner, tenant, WORDS)
    await start_run(client, tenant, stage_4_batch_size=2, stage_6_batch_size=4)
    log = tmp_path_factory.mktemp("logs") / "automation-worker.log"
    kills = 0
    for stage in (2, 4, 6):
        async with worker_process("services.automation.worker", settings, log) as worker:
            async def reached(stage: int = stage) -> bool:
                r = await client.get(f"{API}/current_processing/?site_id={tenant.site_id}",
                                     headers=h)
                body = r.json()
                if body is None:
                    return True  # finished before this stage was seen
                return bool(body["stage"] >= stage and body["step"]
                            and body["step"]["status"] == "running")

            await eventually(reached, timeout=240, every=0.1)
            await worker.kill()
            kills += 1
        await asyncio.sleep(1.0)
    async with worker_process("services.automation.worker", settings, log):
        run = await finished_and_reconciled(client, billing, tenant)
    assert kills == 3
    await assert_once(automation_db, billing, tenant, run)


# --- the owners' workers and NATS, killed while a job is at work ---------------------------


@dataclass
class Victim:
    """A process to kill, and how it comes back `down_for` seconds later."""

    name: str
    kill_now: Callable[[], None]
    start: Callable[[], Awaitable[Any]]
    down_for: float = 1.0


@dataclass
class Kill:
    """Kill `victim` the first time a job of the run's `stage` reports `phase`; with
    `phase="capture"`, the moment the job asks billing to capture its holds (its results are
    committed then, and billing captures while the job's process dies); with
    `phase="ask"`, the moment automation asks the stage's owner for a step (the owner
    takes it while the victim dies)."""

    stage: int
    phase: str
    victim: Victim
    times: int = 1  # more: the same job's next attempts too, each where the first was
    task_id: str | None = None  # the job at work when it was killed
    fired: int = 0
    down: bool = False
    retried: bool = False  # that job seen starting again ("Retrying (attempt n)")
    back: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def killing(nc: NATS, run_id: str, plan: list[Kill]) -> AsyncIterator[None]:
    """Watches the run's jobs (their task ids follow from the steps' keys,
    `automation:<run>:<stage>:<batch>`) through their progress and billing's capture
    commands: the moment a planned stage's job is where the plan says, its victim gets
    SIGKILL (from the callback, while the job is at it), and is started again after
    `down_for`."""
    planned: dict[str, Kill] = {}
    for kill in plan:
        for batch in range(200):
            planned[str(task_id_for(f"automation:{run_id}:{kill.stage}:{batch}"))] = kill
    comebacks: list[asyncio.Task[None]] = []

    async def come_back(kill: Kill) -> None:
        await asyncio.sleep(kill.victim.down_for)
        await kill.victim.start()
        kill.down = False
        kill.back.set()

    def fire(kill: Kill, task_id: str) -> None:
        kill.victim.kill_now()
        kill.task_id = task_id
        kill.fired += 1
        kill.down = True
        comebacks.append(asyncio.create_task(come_back(kill)))

    async def progress(msg: Msg) -> None:
        task_id = msg.subject.rsplit(".", 1)[-1]
        kill = planned.get(task_id)
        if kill is None or not msg.data:
            return
        doc = orjson.loads(msg.data)
        meta = doc.get("meta") or {}
        if kill.task_id == task_id and str(meta.get("message")).startswith("Retrying"):
            kill.retried = True
        elif (kill.task_id in (None, task_id) and kill.fired < kill.times and not kill.down
              and doc.get("state") == "PROGRESS" and meta.get("phase") == kill.phase):
            fire(kill, task_id)

    async def capture(msg: Msg) -> None:
        for task_id, kill in planned.items():
            if (kill.phase == "capture" and kill.task_id is None
                    and task_id.encode() in msg.data):
                fire(kill, task_id)
                return

    async def ask(msg: Msg) -> None:
        for kill in plan:
            key = f"automation:{run_id}:{kill.stage}:"
            if kill.phase == "ask" and kill.task_id is None and key.encode() in msg.data:
                batch = msg.data.split(key.encode(), 1)[1].split(b'"', 1)[0].decode()
                fire(kill, str(task_id_for(key + batch)))
                return

    subs = [await nc.subscribe(f"$KV.{TASK_PROGRESS_BUCKET}.>", cb=progress),
            *[await nc.subscribe(c.subject, cb=capture) for c in (CAPTURE, CAPTURE_BATCH)],
            *[await nc.subscribe(QUEUE[owner].subject, cb=ask) for owner in QUEUE]]
    try:
        yield
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await asyncio.gather(*comebacks)


async def task_log(settings: PlannerSettings | WriterSettings, t: Tenant,
                   task_id: str) -> dict[str, Any]:
    db = Database(settings.database_url)
    try:
        (found,) = await rows(db, t.account_id, "SELECT status, attempts, holds FROM "
                              "ai_task_logs WHERE account_id = :a AND task_id = :t",
                              t=task_id)
        return found
    finally:
        await db.dispose()


async def counts(settings: PlannerSettings | WriterSettings, t: Tenant,
                 queries: dict[str, str]) -> dict[str, Any]:
    db = Database(settings.database_url)
    try:
        return {name: [tuple(r.values()) for r in await rows(db, t.account_id, sql)]
                for name, sql in queries.items()}
    finally:
        await db.dispose()


@pytest.mark.timeout(600)
async def test_planner_writer_and_nats_killed_mid_stage_and_the_run_completes_once(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, billing: Ledger, tenant: Tenant, nc: NATS,
        nats_server: NatsServer, planner_worker: WorkerProcess, writer_worker: WorkerProcess,
        planner_settings: PlannerSettings, writer_settings: WriterSettings) -> None:
    if nats_server.embedded is None:
        pytest.skip("killing NATS needs the embedded server")
    await add_keywords(planner, tenant, WORDS)
    run_id = await start_run(client, tenant, stage_4_batch_size=2, stage_6_batch_size=4)
    planner_dies = Victim("planner worker", planner_worker.kill_now, planner_worker.restart)
    writer_dies = Victim("writer worker", writer_worker.kill_now, writer_worker.restart)
    nats_dies = Victim("NATS", nats_server.kill, lambda: asyncio.to_thread(nats_server.start),
                       down_for=2.0)
    plan = [Kill(1, "SAVE", planner_dies),       # clusters being saved
            Kill(2, "capture", planner_dies),    # ideas saved, their credits being captured
            Kill(3, "ask", nats_dies),           # ideas being queued to writer
            Kill(4, "AI_CALL", writer_dies),     # articles being written
            Kill(5, "capture", nats_dies),       # image prompts saved, billing capturing
            Kill(6, "PARSE", writer_dies)]       # image files being stored
    async with killing(nc, run_id, plan), automation_worker(settings):
        run = await finished_and_reconciled(client, billing, tenant)
        for kill in plan:
            await asyncio.wait_for(kill.back.wait(), 90)
    # Every planned kill happened in the middle of a job of its stage.
    assert all(kill.task_id is not None for kill in plan), [(k.stage, k.task_id) for k in plan]
    await assert_once(automation_db, billing, tenant, run)
    stages = {s["stage"]: s for s in run["stage_results"]}

    # A killed worker's job was delivered again and finished once; its holds were settled
    # once (the one killed while billing captured: captured once, not twice).
    holds = {h.id: h for h in await billing.holds(tenant.account_id)}
    captures = [u.hold_id for u in await billing.usage_logs(tenant.account_id)]
    for kill in plan:
        assert kill.task_id is not None
        if kill.victim is not nats_dies:
            assert kill.retried, kill
        if kill.stage == 3:
            continue  # no job
        owner = planner_settings if kill.stage <= 2 else writer_settings
        log = await task_log(owner, tenant, kill.task_id)
        assert log["status"] == "success", (kill.stage, log)
        for hold_id in (log["holds"] or {}).values():
            assert holds[int(hold_id)].status in ("captured", "released")
            assert captures.count(int(hold_id)) == (holds[int(hold_id)].status == "captured")

    # Nothing made twice: the owners hold exactly what the stages say they made.
    made = await counts(planner_settings, tenant, {
        "clusters": "SELECT count(*) FROM clusters WHERE account_id = :a "
                    "AND deleted_at IS NULL",
        "ideas": "SELECT count(*) FROM content_ideas WHERE account_id = :a "
                 "AND deleted_at IS NULL",
        "twice": "SELECT cluster_id, idea_title FROM content_ideas WHERE account_id = :a "
                 "AND deleted_at IS NULL GROUP BY 1, 2 HAVING count(*) > 1"})
    assert made == {"clusters": [(stages[1]["created"],)], "ideas": [(stages[2]["created"],)],
                    "twice": []}
    written = await counts(writer_settings, tenant, {
        "tasks": "SELECT count(*) FROM tasks WHERE account_id = :a AND deleted_at IS NULL",
        "contents": "SELECT count(*) FROM content WHERE account_id = :a "
                    "AND deleted_at IS NULL",
        "images": "SELECT count(*) FROM images WHERE account_id = :a AND deleted_at IS NULL",
        "generated": "SELECT count(*) FROM images WHERE account_id = :a "
                     "AND deleted_at IS NULL AND status = 'generated'",
        "twice": "SELECT content_id, image_type, position FROM images WHERE account_id = :a "
                 "AND deleted_at IS NULL GROUP BY 1, 2, 3 HAVING count(*) > 1"})
    assert written == {"tasks": [(stages[3]["created"],)],
                       "contents": [(stages[4]["created"],)],
                       "images": [(stages[5]["created"],)],
                       "generated": [(stages[6]["created"],)], "twice": []}


@pytest.mark.timeout(600)
async def test_a_job_whose_worker_dies_on_every_attempt_is_given_up_and_the_run_completes(
        client: httpx.AsyncClient, planner: httpx.AsyncClient, settings: AutomationSettings,
        automation_db: Database, billing: Ledger, tenant: Tenant, nc: NATS,
        writer_worker: WorkerProcess, writer_settings: WriterSettings) -> None:
    """A job that kills its worker (out of memory, say) on each of its attempts: JetStream
    stops delivering it after the last, silently. It must not stay `running` for ever
    with its run: it fails, its holds are released, its items are parked and the run goes
    on to the end."""
    await add_keywords(planner, tenant, WORDS[:6])
    run_id = await start_run(client, tenant, stage_4_batch_size=2)
    writer_dies = Victim("writer worker", writer_worker.kill_now, writer_worker.restart)
    kill = Kill(4, "AI_CALL", writer_dies, times=writer_settings.job_max_deliver)
    async with killing(nc, run_id, [kill]), automation_worker(settings):
        run = await finished_and_reconciled(client, billing, tenant, within=300)
    assert run["status"] == "completed", run
    assert kill.fired == writer_settings.job_max_deliver, run
    assert kill.task_id is not None
    stages = {s["stage"]: s for s in run["stage_results"]}
    (step,) = await rows(automation_db, tenant.account_id,
                         "SELECT item_ids, status, error FROM automation_steps "
                         "WHERE account_id = :a AND task_id = :t", t=kill.task_id)
    assert step["status"] == "failed", step
    lost = len(step["item_ids"])  # the batch whose job never finished, parked
    assert stages[4]["failed"] == lost, stages[4]
    assert stages[4]["created"] == stages[3]["created"] - lost
    assert stages[6]["created"] > 0  # the run went on with the others
    log = await task_log(writer_settings, tenant, kill.task_id)
    assert log["status"] == "failed", log
    holds = {h.id: h for h in await billing.holds(tenant.account_id)}
    usage = await billing.usage_logs(tenant.account_id)
    for hold_id in (log["holds"] or {}).values():
        assert holds[int(hold_id)].status == "released"
        assert all(u.hold_id != int(hold_id) for u in usage)
    assert all(h.status in ("captured", "released") for h in holds.values())
    captured = [u.hold_id for u in usage]
    assert len(captured) == len(set(captured))
