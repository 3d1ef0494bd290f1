"""What automation publishes (through the outbox, `uow.publish`) and consumes.

Published, subject `igny8.<type>` on stream `IGNY8_AUTOMATION`, `data` fields:

- `automation.run.started` / `.paused` / `.resumed` / `.cancelled` / `.completed` /
  `.failed`: `run_id, site_id, trigger, status, current_stage, total_credits,
  estimated_credits, error`.
- `automation.stage.completed`: `run_id, site_id, stage, name, processed, created, failed,
  skipped, reasons`.

Consumed:
- auth's directory (kernel): sites for the tenant checks;
- `billing.credits.debited` whose `related_object_id` is the task of one of a run's steps:
  the run's charges (one per ledger transaction), so its credits are the ledger's; the
  one that completes a finished step's charges wakes the worker (a stage closes on it);
- planner's and writer's events, and the task progress of jobs: they only wake the worker
  (the state they signal is read from the owners, `libs/common/pipeline.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID

from sqlalchemy import event as sqlalchemy_event
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.consumer import EventConsumer
from libs.common.db import Database
from libs.common.events import Event, stream_name
from libs.common.repository import Row, Visibility
from services.automation.models import DIRECTORY, StepStatus
from services.automation.repository import ChargeRepository, RunRepository, StepRepository

SERVICE = "automation"
RUN_EVENTS = ("started", "paused", "resumed", "cancelled", "completed", "failed")


def run_event(verb: str, run: Row) -> Event:
    assert verb in RUN_EVENTS, verb
    return Event(type=f"{SERVICE}.run.{verb}", account_id=run["account_id"], data={
        "run_id": run["run_id"], "site_id": run["site_id"], "trigger": run["trigger"],
        "status": run["status"], "current_stage": run["current_stage"],
        "total_credits": run["total_credits"], "estimated_credits": run["estimated_credits"],
        "error": run["error"]})


def stage_completed(run: Row, stage: int, name: str, result: dict[str, Any]) -> Event:
    return Event(type=f"{SERVICE}.stage.completed", account_id=run["account_id"], data={
        "run_id": run["run_id"], "site_id": run["site_id"], "stage": stage, "name": name,
        **{k: result.get(k, 0) for k in ("processed", "created", "failed", "skipped")},
        "reasons": result.get("reasons") or {}})


def _debit(event: Event) -> dict[str, Any] | None:
    """A ledger deduction of an AI job, as a charge row without its run and stage."""
    data = event.data
    if data.get("related_object_type") != "ai_task" or not event.account_id:
        return None
    try:
        return {"task_id": UUID(str(data.get("related_object_id"))),
                "transaction_id": int(data["transaction_id"]), "amount": abs(int(data["amount"])),
                "operation_type": str(data.get("operation_type") or "")[:64]}
    except (KeyError, TypeError, ValueError):
        return None


async def apply_debits(session: AsyncSession, account_id: int, events: list[Event]
                       ) -> list[Row]:
    """Ledger deductions of one account for our steps' jobs become the runs' charges (once
    per transaction), in a few statements however many arrived together: the steps whose
    charges grew."""
    debits = [d for d in map(_debit, events) if d is not None]
    if not debits:
        return []
    vis = Visibility(account_id)
    steps = await StepRepository(session, vis).by_tasks([d["task_id"] for d in debits])
    rows = [{**d, "run_pk": step["run_pk"], "stage": step["stage"]}
            for d in debits if (step := steps.get(d["task_id"])) is not None]
    added = await ChargeRepository(session, vis).add_many(rows)
    grown: dict[int, int] = {}
    charged: dict[UUID, Row] = {}
    for row in rows:
        if row["transaction_id"] in added:
            added.discard(row["transaction_id"])  # one charge per transaction
            grown[row["run_pk"]] = grown.get(row["run_pk"], 0) + row["amount"]
            charged[row["task_id"]] = steps[row["task_id"]]
    runs = RunRepository(session, vis)
    for run_pk in sorted(grown):
        run = await runs.locked(run_pk)
        if run is not None:
            await runs.change(run["id"], {"total_credits": run["total_credits"] + grown[run_pk]})
    return list(charged.values())


async def settles_step(session: AsyncSession, step: Row) -> bool:
    """Whether the step's job is done and its charges now add up to what its result says
    the ledger charged: the debit a stage waiting to close waits for."""
    owed = int((step["result"] or {}).get("credits") or 0)
    if step["status"] != StepStatus.DONE or owed <= 0:
        return False
    charged = await ChargeRepository(session, Visibility(step["account_id"])).by_task(
        step["run_pk"], step["stage"])
    return charged.get(step["task_id"], 0) >= owed


def billing_consumer(db: Database, js: Any, wake: Callable[[], None]) -> EventConsumer:
    """The runs' charges. Only the debit that completes a finished step's charges wakes
    the engine, once committed (a job's hundred captures are a hundred debits; waking on
    each was a locked move for nothing): a stage waiting to close on its debits closes
    then. The engine's tick is the safety net (a debit that committed while the step's
    end did not show yet)."""

    async def handle_many(session: AsyncSession, events: list[Event]) -> None:
        # One unit of work holds one scope's events: the account's.
        steps = await apply_debits(session, events[0].account_id or 0, events)
        for step in steps:
            if await settles_step(session, step):
                sqlalchemy_event.listen(session.sync_session, "after_commit",
                                        lambda _session: wake(), once=True)
                return

    async def handle(session: AsyncSession, event: Event) -> None:
        await handle_many(session, [event])

    return EventConsumer(
        name=f"{SERVICE}-billing-events", stream=stream_name("billing"),
        subjects=["igny8.billing.credits.debited"], handler=handle, batch_handler=handle_many,
        db=db, js=js, service=SERVICE, source="billing")


def wake_consumer(db: Database, js: Any, source: str, subjects: list[str],
                  wake: Callable[[], None]) -> EventConsumer:
    """Planner's or writer's events that may let a run move on: they wake the worker."""

    async def handle(session: AsyncSession, event: Event) -> None:
        wake()

    return EventConsumer(
        name=f"{SERVICE}-{source}-events", stream=stream_name(source), subjects=subjects,
        handler=handle, db=db, js=js, service=SERVICE, source=source)


def auth_consumer(db: Database, js: Any) -> EventConsumer:
    """The directory (sites, sectors, site access, accounts, plans)."""
    return DIRECTORY.consumer(db, js, service=SERVICE)
