"""Jobs on the JetStream work queue, end to end through the outbox."""

import asyncio
import uuid
from typing import Any

import pytest
from nats.js import JetStreamContext

from libs.common import jobs
from libs.common import nats as nats_kernel
from libs.common.db import Database, TenantScope
from libs.common.jobs import JobContext, JobFailed, JobHandler, JobWorker, TaskProgress
from libs.common.outbox import OutboxRelay


@pytest.fixture
async def ctx(nats_url: str):  # type: ignore[no-untyped-def]
    nc = await nats_kernel.connect(nats_url, "jobs-test")
    js = nc.jetstream()
    buckets = await nats_kernel.ensure_platform(js, "kernel")
    yield js, TaskProgress(buckets[nats_kernel.TASK_PROGRESS_BUCKET])
    await nc.close()


async def _enqueue(db: Database, function: str, **data: Any) -> uuid.UUID:
    async with db.session(TenantScope.account(5)) as s:
        task_id = await jobs.enqueue(s, service="kernel", function=function, account_id=5,
                                     data=data)
        await s.commit()
    return task_id


async def _final_state(progress: TaskProgress, task_id: uuid.UUID,
                       timeout: float = 15) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        doc = await progress.get(task_id)
        if doc and doc["state"] in ("SUCCESS", "FAILURE"):
            return doc
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {await progress.get(task_id)}")


async def _run(
    worker: JobWorker, relay: OutboxRelay, stop: asyncio.Event
) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(worker.run(stop)), asyncio.create_task(relay.run(stop))]


async def test_job_runs_once_and_reports_progress(kernel_db: Database, ctx) -> None:  # type: ignore[no-untyped-def]
    js, progress = ctx
    function = f"fn{uuid.uuid4().hex[:6]}"
    runs: list[uuid.UUID] = []

    async def handler(job: JobContext) -> dict[str, Any]:
        await job.report.phase("AI_CALL", "Thinking", 0.5)
        runs.append(job.task_id)
        return {"doubled": job.job.data["n"] * 2}

    stop = asyncio.Event()
    worker = JobWorker("kernel", function, handler, js, progress)
    tasks = await _run(worker, OutboxRelay(kernel_db, js, service="kernel"), stop)
    task_id = await _enqueue(kernel_db, function, n=21)
    doc = await _final_state(progress, task_id)
    stop.set()
    await asyncio.gather(*tasks)
    assert doc["state"] == "SUCCESS"
    assert doc["account_id"] == 5
    assert doc["meta"]["phase"] == "DONE"
    assert doc["meta"]["percentage"] == 100
    assert doc["meta"]["result"] == {"doubled": 42}
    assert runs == [task_id]


async def test_failing_job_is_retried_then_fails(kernel_db: Database, ctx) -> None:  # type: ignore[no-untyped-def]
    js, progress = ctx
    function = f"fn{uuid.uuid4().hex[:6]}"
    attempts: list[int] = []

    async def handler(job: JobContext) -> None:
        attempts.append(job.attempt)
        if job.attempt < 2:
            raise ConnectionError("provider hiccup")
        raise JobFailed("The provider rejected the request")

    stop = asyncio.Event()
    worker = JobWorker("kernel", function, handler, js, progress, retry_delay=0.1)
    tasks = await _run(worker, OutboxRelay(kernel_db, js, service="kernel"), stop)
    task_id = await _enqueue(kernel_db, function)
    doc = await _final_state(progress, task_id)
    stop.set()
    await asyncio.gather(*tasks)
    assert attempts == [1, 2]
    assert doc["state"] == "FAILURE"
    assert doc["meta"]["error"] == "The provider rejected the request"


async def _after_its_worker_died(db: Database, js: JetStreamContext, progress: TaskProgress,
                                 then: JobHandler, max_deliver: int = 3) -> dict[str, Any]:
    """Enqueue a job, kill the worker running it, start another worker of its function
    with `then`, and answer the job's final state."""
    function = f"fn{uuid.uuid4().hex[:6]}"
    started = asyncio.Event()

    async def dies_midway(job: JobContext) -> None:
        started.set()
        await asyncio.sleep(3600)  # killed before it finishes

    relay_stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(db, js, service="kernel").run(relay_stop))
    first = JobWorker("kernel", function, dies_midway, js, progress, max_deliver=max_deliver,
                      ack_wait=1.0)
    first_task = asyncio.create_task(first.run(asyncio.Event()))
    task_id = await _enqueue(db, function)
    await asyncio.wait_for(started.wait(), 10)
    first_task.cancel()  # the worker process dies: no ack, no more in-progress signals
    with pytest.raises(asyncio.CancelledError):
        await first_task

    second = JobWorker("kernel", function, then, js, progress, max_deliver=max_deliver,
                       ack_wait=1.0)
    second_stop = asyncio.Event()
    second_task = asyncio.create_task(second.run(second_stop))
    doc = await _final_state(progress, task_id)
    for stop in (second_stop, relay_stop):
        stop.set()
    await asyncio.gather(second_task, relay)
    return doc


async def test_job_of_a_dead_worker_is_redelivered(kernel_db: Database, ctx) -> None:  # type: ignore[no-untyped-def]
    js, progress = ctx
    completed: list[int] = []

    async def finishes(job: JobContext) -> None:
        completed.append(job.attempt)

    doc = await _after_its_worker_died(kernel_db, js, progress, finishes)
    assert doc["state"] == "SUCCESS"
    assert completed == [2]


async def test_a_job_whose_last_attempt_died_is_delivered_once_more_to_close_it(
        kernel_db: Database, ctx) -> None:  # type: ignore[no-untyped-def]
    """One attempt allowed, and its worker dies in it: JetStream would deliver it no more
    and the job would stay `running` for ever; it comes once more, `exhausted`, for the
    handler to record how it ended."""
    js, progress = ctx
    seen: list[tuple[int, bool]] = []

    async def closes(job: JobContext) -> None:
        seen.append((job.attempt, job.exhausted))
        raise JobFailed("Its worker died on every attempt.")

    doc = await _after_its_worker_died(kernel_db, js, progress, closes, max_deliver=1)
    assert seen == [(2, True)]
    assert doc["state"] == "FAILURE"
    assert doc["meta"]["error"] == "Its worker died on every attempt."
