"""What services' tests read to check an outcome that arrives later: a condition reached in
time, a service database's rows as an account sees them, a billed AI job's progress
document and log row (libs.common.ai_jobs), a request that has reached a lock another
transaction holds (a race replayed in order), and what an OpenAPI document says of unknown
names in bodies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client as NATS
from sqlalchemy import text

from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.jobs import TaskProgress


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 60.0,
                     every: float = 0.1) -> None:
    """Until `check()` is true; fails the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    raise AssertionError("condition not reached in time")


async def rows(db: Database, account_id: int, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a service's database as the account sees them (`:a` is the account)."""
    async with db.session(TenantScope.account(account_id), read_only=True) as s:
        result = await s.execute(text(sql), {"a": account_id, **params})
        return [dict(r) for r in result.mappings()]


async def task_progress(nc: NATS, service: str) -> TaskProgress:
    """The progress documents of the jobs `service` runs (what `task_progress` answers)."""
    buckets = await nats_kernel.ensure_platform(nc.jetstream(), service)
    return TaskProgress(buckets[nats_kernel.TASK_PROGRESS_BUCKET])


async def finished_task(progress: TaskProgress, task_id: str,
                        timeout: float = 60) -> dict[str, Any]:
    """The task's final progress document, with the phases seen on the way
    (`phases_seen`)."""
    seen: list[str] = []

    async def done() -> bool:
        doc = await progress.get(task_id)
        if doc and doc["meta"].get("phase") not in seen[-1:]:
            seen.append(doc["meta"]["phase"])
        return bool(doc and doc["state"] in ("SUCCESS", "FAILURE"))

    await eventually(done, timeout, every=0.05)
    doc = await progress.get(task_id)
    assert doc is not None
    doc["phases_seen"] = seen
    return doc


async def ai_task_log(db: Database, account_id: int, task_id: str) -> dict[str, Any]:
    """The job's AI task log row."""
    (row,) = await rows(db, account_id, "SELECT * FROM ai_task_logs WHERE task_id = :t",
                        t=uuid.UUID(task_id))
    return row


async def waiting_for_a_lock(db: Database, request: asyncio.Task[Any]) -> None:
    """Returns once some backend of this database waits for a lock (the racing `request`
    has reached the one the test's open transaction holds) or `request` is over: the test
    then commits and the request goes on, the race replayed in a fixed order. Each look is
    its own transaction: PostgreSQL keeps one statistics snapshot per transaction, so
    polling `pg_stat_activity` inside one never sees the wait start."""
    waiting = text("SELECT count(*) FROM pg_stat_activity"
                   " WHERE wait_event_type = 'Lock' AND datname = current_database()")
    while not request.done():
        async with db.session(read_only=True) as probe:
            if (await probe.execute(waiting)).scalar_one():
                return
        await asyncio.sleep(0.02)


def refusing_unknown_names(document: Any, at: str = "#") -> list[str]:
    """Where a JSON schema (an OpenAPI document) says `additionalProperties: false`: an
    object refusing the names it does not know, as no public body does (ADR 0041)."""
    if isinstance(document, list):
        return [p for i, item in enumerate(document)
                for p in refusing_unknown_names(item, f"{at}/{i}")]
    if not isinstance(document, dict):
        return []
    found = [at] if document.get("additionalProperties") is False else []
    return found + [p for key, value in document.items()
                    for p in refusing_unknown_names(value, f"{at}/{key}")]
