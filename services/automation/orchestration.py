"""The pipeline as persisted state: runs advanced one move at a time by the worker, each
move one transaction on the run's row, each step sent to its owner under a key.

A move looks at the run as the database holds it and does the one thing that comes
next: ask the owner for a recorded step (`queued` → `running`), read a running step's
job result from the task progress (`running` → `done` | `failed`), apply a pause or a
cancel once no step is active, take the next batch of the current stage (a step and its
items are recorded *before* the owner is asked), or close the stage and go to the next
(once billing's debits for the stage's jobs have come in, so a closed stage's credits
are final).
Nothing lives only in memory: a worker that dies between two moves leaves a state the
next move (in any process) continues from, and a step asked twice is one job, because
the job's task id is derived from the step's key (`libs/common/pipeline.task_id_for`).
Runs are advanced by one process at a time (an advisory lock per run).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

from libs.common.billing import BillingClient
from libs.common.db import Database, TenantScope
from libs.common.events import utcnow
from libs.common.jobs import TaskProgress
from libs.common.pipeline import PendingResult, PipelineClient, task_id_for
from libs.common.problems import DomainError, NotFound, PaymentRequired, ServiceUnavailable
from libs.common.repository import Row, Visibility
from libs.common.uow import UnitOfWork, unit_of_work
from services.automation import events
from services.automation.estimating import Ratios, batch_size, estimate
from services.automation.models import ItemStatus, PublishMode, RunStatus, StepStatus
from services.automation.repository import (
    ChargeRepository,
    ConfigRepository,
    ItemRepository,
    LogRepository,
    RunRepository,
    StepRepository,
)
from services.automation.schemas import STAGE_NAMES
from services.automation.settings import AutomationSettings

log = logging.getLogger(__name__)

JOB_STAGES = (1, 2, 4, 5, 6)
# Where a job's result names the items it failed (writer's jobs).
FAILED_KEYS = {4: "task_id", 6: "image_id"}
# How long stage 4 waits for writer to make the tasks of the ideas stage 3 queued.
TASKS_WAIT = timedelta(seconds=120)
# A job failure that says the account's provider refused its credentials: the run pauses.
CREDENTIALS = re.compile(r"\b(401|403)\b|api[ _-]?key|unauthori[sz]ed|credential|"
                         r"settings cannot be used|could not be decrypted", re.IGNORECASE)
MOVES_PER_ADVANCE = 50
# A step's job that shows no sign of starting after this long is asked for again.
STALE_JOB = timedelta(minutes=3)
# The reason kept on a stage-7 item that was published (the daily cap counts them), and
# on one whose publish was decided and asked for (asked again as it is, not judged again).
PUBLISHED = "published"
ASKING = "publishing"


# --- publishing (stage 7) ------------------------------------------------------------


@dataclass(frozen=True)
class PublishOutcome:
    published: bool
    reason: str = ""
    external_url: str | None = None
    # The site refused the saved credentials: the run pauses until a person fixes them.
    pause: bool = False
    # The publish was tried and did not succeed (the site's reason): the item is parked
    # as failed, not skipped.
    failed: bool = False


class Publisher(Protocol):
    """Approve and publish one content to its site (writer's `pipeline_publish`, through
    `services/automation/publishing.WriterPublisher`). The same `key` twice publishes once.
    Raises `ServiceUnavailable` when the owner did not answer (the gate asks again)."""

    async def publish(self, account_id: int, site_id: int, content_id: int, *, key: str,
                      user_id: int | None = None, run_id: str | None = None
                      ) -> PublishOutcome:
        ...


class CredentialsRefused(Exception):
    """The site refused the credentials: the gate stops and the run pauses."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the schedule ----------------------------------------------------------------------


def next_run_at(config: Row, after: datetime) -> datetime:
    """The first scheduled moment after `after`: `scheduled_time` in the configuration's
    time zone, every day, every Monday (weekly) or on the 1st (monthly)."""
    zone = ZoneInfo(config["timezone"] or "UTC")
    hour, minute = (int(p) for p in (config["scheduled_time"] or "00:00").split(":"))
    local = after.astimezone(zone)
    day = local.date()
    for _ in range(400):
        moment = datetime.combine(day, time(hour, minute), tzinfo=zone)
        fits = (config["frequency"] == "daily"
                or (config["frequency"] == "weekly" and day.weekday() == 0)
                or (config["frequency"] == "monthly" and day.day == 1))
        if fits and moment > local:
            return moment.astimezone(UTC)
        day += timedelta(days=1)
    raise ValueError("no next run")  # unreachable: a month has a 1st


# --- the engine ------------------------------------------------------------------------


def _result(run: Row, stage: int) -> dict[str, Any]:
    results = dict(run["results"] or {})
    entry = dict(results.get(str(stage)) or {})
    for k in ("processed", "created", "failed", "skipped"):
        entry.setdefault(k, 0)
    entry.setdefault("reasons", {})
    return entry


def _with_result(run: Row, stage: int, entry: dict[str, Any]) -> dict[str, Any]:
    return {**(run["results"] or {}), str(stage): entry}


def _reason(entry: dict[str, Any], reason: str, n: int = 1) -> None:
    reasons = dict(entry.get("reasons") or {})
    reasons[reason[:200]] = reasons.get(reason[:200], 0) + n
    entry["reasons"] = reasons


def _iso(moment: datetime) -> str:
    return moment.isoformat()


class Move:
    """One move of one run, in one unit of work (the run's row locked)."""

    def __init__(self, uow: UnitOfWork, account_id: int) -> None:
        vis = Visibility(account_id)
        self.uow = uow
        self.account_id = account_id
        self.runs = RunRepository(uow.session, vis)
        self.steps = StepRepository(uow.session, vis)
        self.items = ItemRepository(uow.session, vis)
        self.logs = LogRepository(uow.session, vis)
        self.configs = ConfigRepository(uow.session, vis)
        self.charges = ChargeRepository(uow.session, vis)

    async def say(self, run: Row, message: str, *, stage: int | None = None,
                  level: str = "info") -> None:
        await self.logs.add(self.account_id, run["id"], message, stage=stage, level=level)

    async def set_run(self, run: Row, values: dict[str, Any]) -> Row:
        changed = await self.runs.change(run["id"], values)
        assert changed is not None
        return changed


class Orchestrator:
    def __init__(self, db: Database, pipeline: PipelineClient, progress: TaskProgress,
                 settings: AutomationSettings, publisher: Publisher | None = None) -> None:
        self.db = db
        self.pipeline = pipeline
        self.progress = progress
        self.settings = settings
        if publisher is None:
            from services.automation.publishing import WriterPublisher

            publisher = WriterPublisher.over(pipeline, timeout=settings.publish_timeout_seconds)
        self.publisher = publisher

    async def advance_due(self) -> int:
        """Advance every running run that is due; how many moved."""
        async with self.db.session(TenantScope.system(), read_only=True) as session:
            due = await RunRepository(session, Visibility.all_accounts()).due(utcnow())
        moved = 0
        for run in due:
            try:
                moved += await self.advance(run["id"], run["account_id"])
            except Exception:
                log.exception("automation run %s could not move", run["id"])
        return moved

    async def advance(self, run_pk: int, account_id: int) -> int:
        """Move the run as far as it can go now; how many moves it made. Another process
        advancing it already: nothing."""
        moves = 0
        async with self.db.session(TenantScope.account(account_id)) as guard:
            if not await RunRepository(guard, Visibility(account_id)).try_advance_lock(run_pk):
                await guard.rollback()
                return 0
            try:
                while moves < MOVES_PER_ADVANCE and await self.move(run_pk, account_id):
                    moves += 1
            finally:
                await guard.rollback()
        return moves

    async def move(self, run_pk: int, account_id: int) -> bool:
        """One move; whether the run changed (and may move again at once)."""
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            m = Move(uow, account_id)
            run = await m.runs.locked(run_pk)
            if run is None or run["status"] != RunStatus.RUNNING:
                return False
            if run["wake_at"] is not None and run["wake_at"] > utcnow():
                return False
            active = await m.steps.active(run_pk)
            if active:
                step = active[0]
                if step["stage"] == 7:
                    return await self._publish_next(m, run, step)
                if step["status"] == StepStatus.QUEUED:
                    return await self._ask(m, run, step)
                return await self._follow(m, run, step)
            if run["stop_requested"]:
                await self._stop(m, run)
                return True
            return await self._next(m, run)

    # --- a recorded step: ask its owner -----------------------------------------------

    async def _ask(self, m: Move, run: Row, step: Row) -> bool:
        stage = step["stage"]
        task_id = task_id_for(step["key"])
        try:
            answer = await self.pipeline.queue(
                run["account_id"], run["site_id"], stage=stage, ids=list(step["item_ids"]),
                key=step["key"], user_id=run["triggered_by"], run_id=run["run_id"])
        except ServiceUnavailable as exc:
            attempts = step["attempts"] + 1
            if attempts < self.settings.step_max_attempts:
                await m.steps.change(step["id"], {"attempts": attempts, "error": exc.detail})
                await m.set_run(run, {"wake_at": utcnow() + timedelta(
                    seconds=self.settings.step_retry_seconds)})
                await m.say(run, f"Stage {stage}: {exc.detail} Asking again.", stage=stage,
                            level="warning")
                return False
            await self._fail_step(m, run, step, f"The owner did not answer: {exc.detail}")
            return True
        except PaymentRequired as exc:
            # The owner took nothing (its hold was refused): the step stays queued, its
            # items with it, and the resume after a top-up asks again under the same key.
            await m.steps.change(step["id"], {"error": f"insufficient credits: {exc.detail}"})
            await self._pause(m, run, f"Paused: insufficient credits at stage {stage} "
                                      f"({exc.detail}). Add credits and resume.")
            return True
        except DomainError as exc:
            if stage in JOB_STAGES and await self.progress.get(task_id) is not None:
                # The owner took this step before and its items have moved on since (our
                # record of the answer was lost): follow the job it made.
                await m.steps.change(step["id"], {"status": StepStatus.RUNNING,
                                                  "attempts": step["attempts"] + 1,
                                                  "asked_at": utcnow()})
                return True
            await self._fail_step(m, run, step, _detail(exc))
            return True
        if answer.task_id is None:  # stage 3: no job, done at once
            await m.steps.change(step["id"], {"status": StepStatus.DONE, "finished_at": utcnow(),
                                              "result": {"queued": answer.ids}})
            done = await m.items.settle(step["id"], ItemStatus.DONE, "", answer.ids)
            skipped = await m.items.settle(step["id"], ItemStatus.SKIPPED, "already queued")
            entry = _result(run, stage)
            entry["processed"] += done + skipped
            entry["created"] += done
            entry["skipped"] += skipped
            if skipped:
                _reason(entry, "already queued", skipped)
            await m.set_run(run, {"results": _with_result(run, stage, entry),
                                  **await self._within_delay(m, run)})
            await m.say(run, f"Stage 3: {done} ideas queued to writer.", stage=3)
            return True
        await m.steps.change(step["id"], {"status": StepStatus.RUNNING,
                                          "task_id": answer.task_id, "error": None,
                                          "attempts": step["attempts"] + 1,
                                          "asked_at": utcnow()})
        await m.say(run, f"Stage {stage}: batch {step['batch'] + 1} ({len(step['item_ids'])} "
                         f"items) started, task {answer.task_id}.", stage=stage)
        return True

    # --- a running step: its job's result ---------------------------------------------

    async def _follow(self, m: Move, run: Row, step: Row) -> bool:
        task_id: UUID = step["task_id"]
        doc = await self.progress.get(task_id)
        state = (doc or {}).get("state")
        meta = (doc or {}).get("meta") or {}
        if state == "SUCCESS":
            await self._succeed_step(m, run, step, meta.get("result") or {})
            return True
        if state == "FAILURE":
            error = str(meta.get("error") or meta.get("message") or "The job failed.")
            if CREDENTIALS.search(error):
                await self._ask_again_after_resume(m, step, error)
                await self._pause(m, run, f"Paused: the AI provider refused the account's "
                                          f"credentials ({error[:300]}). Fix the integration "
                                          f"and resume.")
                return True
            await self._fail_step(m, run, step, error)
            return True
        asked = step["asked_at"] or step["created_at"]
        if state in (None, "PENDING") and utcnow() - asked > STALE_JOB * (
                step["attempts"] or 1):
            # Never started (an owner's transaction that did not commit leaves a PENDING
            # progress and no job): ask again under the same key; a job that exists is
            # answered as it is (replayed), one that does not is queued now. Judged from
            # the last ask, not from the step's recording: a step re-queued (credits,
            # credentials) and asked again after a long pause is not stale at once.
            await m.steps.change(step["id"], {"status": StepStatus.QUEUED})
            await m.say(run, f"Stage {step['stage']}: task {task_id} has not started; "
                             "asking its owner again.", stage=step["stage"], level="warning")
            return True
        return False

    async def _ask_again_after_resume(self, m: Move, step: Row, error: str) -> None:
        """A job the provider refused as a whole (the account's key) made nothing and
        charged nothing (its holds were released): its step goes back to queued with its
        items, under a new key (the old one names the failed job), so that the resume
        after the integration is fixed does the batch."""
        attempts = step["attempts"]
        key = f"{step['key'].split(':retry:')[0]}:retry:{attempts}"
        await m.steps.change(step["id"], {"status": StepStatus.QUEUED, "key": key,
                                          "task_id": task_id_for(key), "error": error})

    async def _succeed_step(self, m: Move, run: Row, step: Row, result: dict[str, Any]) -> None:
        stage = step["stage"]
        key = FAILED_KEYS.get(stage)
        failed: dict[int, str] = {}
        for f in result.get("failed") or ():
            if key and isinstance(f, dict) and isinstance(f.get(key), int):
                failed[int(f[key])] = str(f.get("error") or "failed")
        await m.steps.change(step["id"], {"status": StepStatus.DONE, "finished_at": utcnow(),
                                          "result": result}, StepStatus.RUNNING)
        entry = _result(run, stage)
        for item_id, reason in failed.items():
            n = await m.items.settle(step["id"], ItemStatus.FAILED, reason, [item_id])
            entry["failed"] += n
            _reason(entry, reason, n)
        done = await m.items.settle(step["id"], ItemStatus.DONE)
        entry["processed"] += done + len(failed)
        entry["created"] += _created(stage, result)
        await m.set_run(run, {"results": _with_result(run, stage, entry),
                              **await self._within_delay(m, run)})
        await m.say(run, f"Stage {stage}: batch {step['batch'] + 1} done: {done} items, "
                         f"{_created(stage, result)} made, {len(failed)} failed.", stage=stage)

    async def _fail_step(self, m: Move, run: Row, step: Row, reason: str) -> None:
        """The step's items are parked with the reason (their holds were released by the
        job or never placed); the run goes on."""
        stage = step["stage"]
        await m.steps.change(step["id"], {"status": StepStatus.FAILED, "error": reason,
                                          "finished_at": utcnow()})
        n = await m.items.settle(step["id"], ItemStatus.FAILED, reason)
        entry = _result(run, stage)
        entry["processed"] += n
        entry["failed"] += n
        _reason(entry, reason, n)
        await m.set_run(run, {"results": _with_result(run, stage, entry)})
        await m.say(run, f"Stage {stage}: batch {step['batch'] + 1} failed, {n} items parked: "
                         f"{reason}", stage=stage, level="error")

    # --- no step active ---------------------------------------------------------------

    async def _next(self, m: Move, run: Row) -> bool:
        stage = run["current_stage"]
        config = await m.configs.of_site(run["site_id"])
        entry = _result(run, stage)
        if "started_at" not in entry:
            entry["started_at"] = _iso(utcnow())
            run = await m.set_run(run, {"results": _with_result(run, stage, entry)})
        taken = await m.items.taken(run["id"], stage)
        size = batch_size(config, stage)
        expect: list[int] = []
        if stage == 4:
            expect = sorted(await self._stage3_ideas(m, run))
        try:
            # In draft mode the gate keeps every draft: writer need not score them.
            pending = await self.pipeline.pending(
                run["account_id"], run["site_id"], stage=stage, limit=size, expect=expect,
                exclude=sorted(taken),
                score=(config or {}).get("publish_mode") == PublishMode.AUTO)
        except ServiceUnavailable as exc:
            await m.set_run(run, {"wake_at": utcnow() + timedelta(
                seconds=self.settings.step_retry_seconds)})
            await m.say(run, f"Stage {stage}: {exc.detail} Asking again.", stage=stage,
                        level="warning")
            return False
        except DomainError as exc:
            await self._finish(m, run, RunStatus.FAILED, f"Stage {stage}: {_detail(exc)}")
            return True
        fresh = _batch(stage, pending, taken, size)
        if not fresh:
            if stage == 4 and pending.missing and utcnow() - datetime.fromisoformat(
                    entry["started_at"]) < TASKS_WAIT:
                # Writer makes the tasks from planner's events; its `task.created` events
                # wake the engine (the tick is the safety net), no timer of our own.
                return False
            if await self._charges_pending(m, run, stage):
                return False
            await self._close_stage(m, run, stage, entry, pending)
            return True
        if stage == 7:
            await self._gate(m, run, config, fresh, pending)
            return True
        batch = len(await m.steps.of_run(run["id"], stage))
        key = f"automation:{run['run_id']}:{stage}:{batch}"
        step = await m.steps.add({
            "run_pk": run["id"], "stage": stage, "batch": batch, "key": key,
            "task_id": task_id_for(key) if stage in JOB_STAGES else None,
            "item_ids": fresh, "status": StepStatus.QUEUED})
        if step is None:  # recorded by an earlier move whose answer was lost
            return True
        await m.items.add_many(run["id"], stage, step["id"], fresh, ItemStatus.PROCESSING)
        return True

    async def _stage3_ideas(self, m: Move, run: Row) -> set[int]:
        found: set[int] = set()
        for step in await m.steps.of_run(run["id"], 3):
            found.update((step["result"] or {}).get("queued") or ())
        return found

    async def _charges_pending(self, m: Move, run: Row, stage: int) -> bool:
        """Whether the stage waits for debits: its jobs' results say what the ledger
        charged them (`credits`), the run's charges come from billing's events, later.
        Closing before they arrive showed a stage, and a finished run, with part of
        their credits (`igny8 automation run` printed 697 of 885)."""
        if stage not in JOB_STAGES:
            return False
        steps = [s for s in await m.steps.of_run(run["id"], stage)
                 if s["status"] == StepStatus.DONE and s["task_id"] is not None]
        charged = await m.charges.by_task(run["id"], stage)
        short = [s for s in steps if charged.get(s["task_id"], 0) < int(
            (s["result"] or {}).get("credits") or 0)]
        if not short:
            return False
        waited = utcnow() - max(s["finished_at"] or run["started_at"] for s in short)
        if waited >= timedelta(seconds=self.settings.settle_wait_seconds):
            await m.say(run, f"Stage {stage}: billing's debits for task(s) "
                             f"{', '.join(str(s['task_id']) for s in short)} have not all "
                             "arrived; the stage's credits may still grow.", stage=stage,
                        level="warning")
            return False
        # No `wake_at`: the run stays due, so the debit that completes the charges
        # (`events.billing_consumer`) wakes the engine straight into closing the stage.
        return True

    async def _close_stage(self, m: Move, run: Row, stage: int, entry: dict[str, Any],
                           pending: PendingResult) -> None:
        entry["finished_at"] = _iso(utcnow())
        if stage == 4 and pending.missing:
            _reason(entry, "writer made no task for the idea in time", pending.missing)
            entry["skipped"] += pending.missing
        run = await m.set_run(run, {"results": _with_result(run, stage, entry)})
        await m.uow.publish(events.stage_completed(run, stage, STAGE_NAMES[stage], entry))
        await m.say(run, f"Stage {stage} ({STAGE_NAMES[stage]}) completed: "
                         f"{entry['processed']} processed, {entry['created']} made, "
                         f"{entry['failed']} failed, {entry['skipped']} skipped.", stage=stage)
        if stage == 7:
            await self._finish(m, run, RunStatus.COMPLETED, None)
            return
        config = await m.configs.of_site(run["site_id"])
        delay = int((config or {}).get("between_stage_delay_seconds") or 0)
        await m.set_run(run, {"current_stage": stage + 1,
                              "wake_at": utcnow() + timedelta(seconds=delay) if delay else None})

    async def _gate(self, m: Move, run: Row, config: Row | None, ids: list[int],
                    pending: PendingResult) -> None:
        """Stage 7 on one batch: each draft is reviewed (`review`); what stays a draft is
        recorded with its reason at once, what may be published is recorded `processing`
        in a running step, *before* anything is published. `_publish_next` then publishes
        those one per move."""
        cfg = config or {}
        mode = cfg.get("publish_mode") or PublishMode.DRAFT
        verdicts = {i: review(cfg, mode, pending.items.get(str(i)) or {}) for i in ids}
        publish = [i for i, reason in verdicts.items() if reason is None]
        batch = len(await m.steps.of_run(run["id"], 7))
        step = await m.steps.add({
            "run_pk": run["id"], "stage": 7, "batch": batch,
            "key": f"automation:{run['run_id']}:7:{batch}", "item_ids": ids,
            "status": StepStatus.RUNNING if publish else StepStatus.DONE,
            "finished_at": None if publish else utcnow()})
        if step is None:
            return
        entry = _result(run, 7)
        for content_id, reason in verdicts.items():
            if reason is not None:
                await m.items.add_many(run["id"], 7, step["id"], [content_id],
                                       ItemStatus.SKIPPED, reason)
                entry["processed"] += 1
                entry["skipped"] += 1
                _reason(entry, reason)
        await m.items.add_many(run["id"], 7, step["id"], publish, ItemStatus.PROCESSING)
        run = await m.set_run(run, {"results": _with_result(run, 7, entry)})
        await m.say(run, f"Stage 7: batch {batch + 1}: {len(ids)} drafts reviewed, "
                         f"{len(publish)} to publish (mode {mode}).", stage=7)

    async def _publish_next(self, m: Move, run: Row, step: Row) -> bool:
        """The next `processing` item of a stage-7 step: published (within the daily cap
        and the window) and settled in this move's transaction. A worker that dies after
        writer published leaves the item `processing`; the next move asks again under the
        same key and writer answers from its record. Pause and cancel apply between two
        items; refused credentials pause the run with the item still to do."""
        items = sorted((i for i in await m.items.of_step(step["id"])
                        if i["status"] == ItemStatus.PROCESSING), key=lambda i: i["id"])
        entry = _result(run, 7)
        if run["stop_requested"] == "cancel" and items:
            # What was not asked for yet stays a draft; one already asked for is asked
            # again to the end (it may be on the site).
            waiting = [i["item_id"] for i in items if i["reason"] != ASKING]
            n = await m.items.settle(step["id"], ItemStatus.SKIPPED, "run cancelled",
                                     waiting) if waiting else 0
            entry["processed"] += n
            entry["skipped"] += n
            if n:
                _reason(entry, "run cancelled", n)
                run = await m.set_run(run, {"results": _with_result(run, 7, entry)})
            items = [i for i in items if i["reason"] == ASKING]
        if not items:
            done = await m.items.of_step(step["id"])
            published = sum(1 for i in done if i["status"] == ItemStatus.DONE)
            await m.steps.change(step["id"], {"status": StepStatus.DONE,
                                              "finished_at": utcnow()})
            delay = await self._within_delay(m, run)
            if delay:
                await m.set_run(run, delay)
            await m.say(run, f"Stage 7: batch {step['batch'] + 1} done: {published} "
                             "published.", stage=7)
            return True
        if run["stop_requested"] == "pause":
            await self._stop(m, run)
            return True
        content_id = int(items[0]["item_id"])
        if items[0]["reason"] != ASKING:
            # The cap and the window first, then the decision to publish is committed
            # (`ASKING`) before writer is asked: a move that asks again after a lost
            # answer or a dead worker does not judge the item a second time (the window
            # may have closed meanwhile on a post that is on the site).
            cfg = await m.configs.of_site(run["site_id"]) or {}
            held = held_back(cfg, await m.items.published_since(run["site_id"],
                                                                 _day_start(cfg)))
            if held is None:
                await m.items.settle(step["id"], ItemStatus.PROCESSING, ASKING, [content_id])
                return True
            status, reason = ItemStatus.SKIPPED, held
        else:
            try:
                status, reason = await self._publish_one(run, content_id)
            except ServiceUnavailable as exc:
                await m.set_run(run, {"wake_at": utcnow() + timedelta(
                    seconds=self.settings.step_retry_seconds)})
                await m.say(run, f"Stage 7: {exc.detail} Asking again.", stage=7,
                            level="warning")
                return False
            except CredentialsRefused as exc:
                await self._pause(m, run, f"Paused at stage 7: WordPress refused the "
                                          f"credentials ({exc.reason}). Fix the site's "
                                          f"integration and resume.")
                return True
        await m.items.settle(step["id"], status, reason, [content_id])
        entry["processed"] += 1
        if status == ItemStatus.DONE:
            entry["created"] += 1
        else:
            entry["failed" if status == ItemStatus.FAILED else "skipped"] += 1
            _reason(entry, reason)
            if status == ItemStatus.FAILED:
                await m.say(run, f"Stage 7: content {content_id} not published: {reason}",
                            stage=7, level="error")
        await m.set_run(run, {"results": _with_result(run, 7, entry)})
        return True

    async def _publish_one(self, run: Row, content_id: int) -> tuple[ItemStatus, str]:
        """What became of a content writer was asked to publish: `done`; `skipped` with
        the reason it stays a draft (no active integration, the content gone); `failed`
        with the site's reason when the publish did not succeed."""
        try:
            outcome = await self.publisher.publish(
                run["account_id"], run["site_id"], content_id,
                key=f"automation:{run['run_id']}:7:{content_id}",
                user_id=run["triggered_by"], run_id=run["run_id"])
        except NotFound:
            return ItemStatus.SKIPPED, "the content no longer exists"
        if outcome.pause:
            raise CredentialsRefused(outcome.reason)
        if outcome.published:
            return ItemStatus.DONE, PUBLISHED
        return (ItemStatus.FAILED if outcome.failed else ItemStatus.SKIPPED,
                outcome.reason or "not published")

    # --- stopping and finishing -------------------------------------------------------

    async def _stop(self, m: Move, run: Row) -> None:
        if run["stop_requested"] == "cancel":
            await self._finish(m, run, RunStatus.CANCELLED, None)
        else:
            await self._pause(m, run, None)

    async def _pause(self, m: Move, run: Row, reason: str | None) -> None:
        run = await m.set_run(run, {"status": RunStatus.PAUSED, "paused_at": utcnow(),
                                    "stop_requested": None, "error": reason})
        await m.uow.publish(events.run_event("paused", run))
        await m.say(run, reason or f"Paused at stage {run['current_stage']}.",
                    level="warning" if reason else "info")

    async def _finish(self, m: Move, run: Row, status: RunStatus, error: str | None) -> None:
        run = await m.set_run(run, {"status": status, "finished_at": utcnow(),
                                    "stop_requested": None, "error": error})
        verb = {RunStatus.COMPLETED: "completed", RunStatus.CANCELLED: "cancelled",
                RunStatus.FAILED: "failed"}[status]
        await m.uow.publish(events.run_event(verb, run))
        await m.say(run, error or f"Run {verb}.", level="error" if error else "info")

    async def _reload(self, m: Move, run: Row) -> Row:
        found = await m.runs.locked(run["id"])
        assert found is not None
        return found

    async def _within_delay(self, m: Move, run: Row) -> dict[str, Any]:
        """The configured pause between two batches of a stage, if any."""
        config = await m.configs.of_site(run["site_id"])
        delay = int((config or {}).get("within_stage_delay_seconds") or 0)
        return {"wake_at": utcnow() + timedelta(seconds=delay)} if delay else {}


def _batch(stage: int, pending: PendingResult, taken: set[int], size: int) -> list[int]:
    fresh = [i for i in pending.ids if i not in taken]
    if stage == 1 and fresh:  # auto_cluster takes keywords of one sector
        sector = (pending.items.get(str(fresh[0])) or {}).get("sector_id")
        fresh = [i for i in fresh
                 if (pending.items.get(str(i)) or {}).get("sector_id") == sector]
    return fresh[:size]


def _created(stage: int, result: dict[str, Any]) -> int:
    if stage == 1:
        return int(result.get("clusters_created") or 0)
    if stage == 2:
        return int(result.get("ideas") or 0)
    if stage == 4:
        return len(result.get("content_ids") or ())
    if stage == 5:
        return len(result.get("image_ids") or ())
    if stage == 6:
        return len(result.get("generated") or ())
    return 0


def _detail(exc: DomainError) -> str:
    if exc.errors:
        field, messages = next(iter(exc.errors.items()))
        return f"{field}: {'; '.join(messages)}"
    return exc.detail


def review(cfg: dict[str, Any], mode: str, info: dict[str, Any]) -> str | None:
    """Why a draft at the review gate stays a draft (writer's `items` for it: optimizer
    score, placeholders), or None when it may be published."""
    if mode != PublishMode.AUTO:
        return "kept as draft for review"
    threshold = int(cfg.get("quality_threshold") or 0)
    score = info.get("optimizer_score")
    if score is None:
        return "not optimized yet (no optimizer score)"
    if int(score) < threshold:
        return f"optimizer score below {threshold}"
    if info.get("placeholders"):
        return "placeholders left in the text"
    return None


def held_back(cfg: dict[str, Any], published_today: int) -> str | None:
    """Why a reviewed draft is not published now: the daily cap (`published_today`: the
    site's stage-7 publishes since local midnight) or the publishing window."""
    if published_today >= int(cfg.get("daily_publish_cap") or 0):
        return "daily publishing cap reached"
    if not _in_window(cfg):
        return "outside the publishing window"
    return None


def _day_start(cfg: dict[str, Any]) -> datetime:
    """Midnight today in the configuration's time zone (the daily cap's day)."""
    zone = ZoneInfo(cfg.get("timezone") or "UTC")
    return datetime.combine(datetime.now(zone).date(), time(0, 0), tzinfo=zone)


def _in_window(cfg: dict[str, Any]) -> bool:
    zone = ZoneInfo(cfg.get("timezone") or "UTC")
    now = datetime.now(zone).strftime("%H:%M")
    start = cfg.get("publish_window_start") or "00:00"
    end = cfg.get("publish_window_end") or "23:59"
    return start <= now <= end if start <= end else (now >= start or now <= end)



# --- the scheduler ---------------------------------------------------------------------


class Scheduler:
    """Starts the runs of due configurations: whichever automation process gets a due
    configuration's row first (the others skip it, `SKIP LOCKED`) records the run under
    the schedule's key (`<site>:<moment>`, unique), and moves `next_run_at` on."""

    def __init__(self, db: Database, pipeline: PipelineClient, billing: BillingClient,
                 settings: AutomationSettings) -> None:
        self.db = db
        self.pipeline = pipeline
        self.billing = billing
        self.settings = settings

    async def run_due(self) -> list[str]:
        """The run ids started."""
        from services.automation.models import Trigger
        from services.automation.service import start_run

        started: list[str] = []
        now = utcnow()
        async with unit_of_work(self.db, TenantScope.system()) as uow:
            configs = ConfigRepository(uow.session, Visibility.all_accounts())
            for cfg in await configs.unscheduled():
                await configs.update(cfg["id"], {"next_run_at": next_run_at(cfg, now)})
            for cfg in await configs.due(now):
                key = f"{cfg['site_id']}:{cfg['next_run_at'].isoformat()}"
                runs = RunRepository(uow.session, Visibility(cfg["account_id"]))
                ratios = Ratios.measured(await runs.completed_results(cfg["site_id"]))
                try:
                    found = await estimate(self.pipeline, self.billing, cfg["account_id"],
                                           cfg["site_id"], cfg, self.settings.balance_margin,
                                           ratios)
                except DomainError as exc:
                    log.warning("schedule %s: no estimate (%s); will try next time", key,
                                exc.detail)
                    continue
                values: dict[str, Any] = {"next_run_at": next_run_at(cfg, now)}
                if not found.sufficient:
                    log.warning("schedule %s skipped: balance %d below %d", key,
                                found.current_balance, found.required_credits)
                else:
                    run = await start_run(uow, cfg["account_id"], cfg["site_id"],
                                          Trigger.SCHEDULED, None, found.estimated_credits,
                                          schedule_key=key)
                    if run is not None:
                        started.append(run["run_id"])
                        values["last_run_at"] = now
                await configs.update(cfg["id"], values)
        return started
