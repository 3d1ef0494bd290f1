"""Long-running work (AI functions, imports) on the JetStream work queue, with progress.

A job is enqueued through the outbox in the same transaction as whatever records it (so
it is never lost nor sent for work that rolled back); its id is the task id the API
returns at once. Workers pull one job at a time, tell JetStream they are still working
(`in_progress`) so a long job is not redelivered, and ack at the end. A worker that dies
stops sending those signals, so the job is redelivered after `ack_wait`: handlers must be
idempotent by task id (billing holds are keyed by it, for instance).

Progress lives in the KV bucket `igny8_task_progress` under the task id:
`{"state", "meta", "account_id"}`, the reference's shape plus the owner the gateway checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID, uuid4

import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common import outbox
from libs.common.events import JOBS_STREAM, Event, job_consumer, job_subject
from libs.common.metrics import JOB_DURATION
from libs.common.natsauth import TASK_PROGRESS_BUCKET
from libs.common.pull import pull_forever

log = logging.getLogger(__name__)

# Phase → (start %, end %) as the reference's progress tracking describes.
PHASES: dict[str, tuple[int, int]] = {
    "INIT": (0, 10),
    "PREP": (10, 20),
    "AI_CALL": (20, 80),
    "PARSE": (80, 90),
    "SAVE": (90, 100),
    "DONE": (100, 100),
}
STATES = ("PENDING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED")


class JobFailed(Exception):
    """The job cannot succeed; retrying is pointless. `message` is shown to the user."""


class TaskProgress:
    """Reads and writes the progress documents of tasks."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    def in_buckets(cls, buckets: Mapping[str, Any]) -> TaskProgress:
        """The platform's progress bucket among a process's buckets (`app.state.buckets`,
        `WorkerContext.buckets`)."""
        return cls(buckets[TASK_PROGRESS_BUCKET])

    async def put(self, task_id: UUID | str, account_id: int | None, state: str,
                  meta: dict[str, Any]) -> None:
        assert state in STATES, state
        doc = {"state": state, "meta": meta, "account_id": account_id}
        await self.kv.put(str(task_id), orjson.dumps(doc))

    async def get(self, task_id: UUID | str) -> dict[str, Any] | None:
        try:
            entry = await self.kv.get(str(task_id))
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        value: dict[str, Any] = orjson.loads(entry.value)
        return value

    async def pending(self, task_id: UUID | str, account_id: int | None,
                      message: str = "Queued") -> None:
        await self.put(task_id, account_id, "PENDING",
                       {"phase": "INIT", "percentage": 0, "message": message,
                        "request_steps": [], "response_steps": []})


@dataclass
class ProgressReporter:
    """What a running job tells its caller: phase, percentage within the phase, steps,
    cost and tokens so far."""

    progress: TaskProgress
    task_id: UUID
    account_id: int | None
    request_steps: list[dict[str, Any]] = field(default_factory=list)
    response_steps: list[dict[str, Any]] = field(default_factory=list)
    cost: float = 0.0
    tokens: int = 0
    phase_name: str = "INIT"

    def meta(self, phase: str, message: str, fraction: float = 0.0) -> dict[str, Any]:
        start, end = PHASES[phase]
        percentage = round(start + (end - start) * max(0.0, min(fraction, 1.0)))
        return {
            "phase": phase, "percentage": percentage, "message": message,
            "request_steps": self.request_steps, "response_steps": self.response_steps,
            "cost": round(self.cost, 6), "tokens": self.tokens,
        }

    async def phase(self, phase: str, message: str, fraction: float = 0.0) -> None:
        self.phase_name = phase
        await self.progress.put(self.task_id, self.account_id, "PROGRESS",
                                self.meta(phase, message, fraction))

    def step(self, name: str, *, request: bool = True, **details: Any) -> None:
        entry = {"step": name, "at": time.time(), **details}
        (self.request_steps if request else self.response_steps).append(entry)

    async def succeed(self, message: str, result: dict[str, Any] | None = None) -> None:
        meta = self.meta("DONE", message, 1.0)
        if result is not None:
            meta["result"] = result
        await self.progress.put(self.task_id, self.account_id, "SUCCESS", meta)

    async def fail(self, message: str) -> None:
        meta = self.meta(self.phase_name, message)
        meta["error"] = message
        await self.progress.put(self.task_id, self.account_id, "FAILURE", meta)


async def enqueue(session: AsyncSession, *, service: str, function: str,
                  account_id: int | None, data: dict[str, Any],
                  task_id: UUID | None = None) -> UUID:
    """Queue a job in the caller's transaction; returns the task id."""
    job = Event(id=task_id or uuid4(), type=f"{service}.{function}", account_id=account_id,
                data=data)
    await outbox.add(session, job, subject=job_subject(service, function))
    return job.id


@dataclass
class JobContext:
    job: Event
    attempt: int
    report: ProgressReporter
    # Delivered after its last attempt's worker died in it (no nak, no term): the job is
    # not to run again, only to record how it ended (a job already done settles; one that
    # is not fails, giving its credits back); a handler that ignores it runs the job once
    # more. See `JobWorker`.
    exhausted: bool = False

    @property
    def task_id(self) -> UUID:
        return self.job.id


JobHandler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]


@dataclass
class JobWorker:
    """Pulls jobs of one function and runs them, one at a time per worker loop.

    A job is tried `max_deliver` times; JetStream delivers it once more than that, so that
    a job whose worker died during its last attempt (killed, out of memory: it could
    neither nak nor term) reaches a worker that records how it ended (`exhausted`).
    Without it JetStream stopped delivering it silently, and the job, its holds and
    whatever waited for it (an automation run) stayed `running` for ever."""

    service: str
    function: str
    handler: JobHandler
    js: JetStreamContext
    progress: TaskProgress
    max_deliver: int = 3
    ack_wait: float = 60.0
    retry_delay: float = 2.0

    @property
    def durable(self) -> str:
        return job_consumer(self.service, self.function)

    async def provision(self) -> None:
        # Named as well as durable: the API subject then carries the filter, which is what
        # NATS permissions let a service create consumers for (its own jobs only).
        await self.js.add_consumer(JOBS_STREAM, ConsumerConfig(
            name=self.durable,
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            max_deliver=self.max_deliver + 1,
            ack_wait=self.ack_wait,
            filter_subject=job_subject(self.service, self.function),
            max_ack_pending=256,
        ))

    async def run(self, stop: asyncio.Event) -> None:
        await pull_forever(self.js, stream=JOBS_STREAM, durable=self.durable, batch=1,
                           handle=self.handle, provision=self.provision, stop=stop)

    async def handle(self, msg: Msg) -> None:
        try:
            job = Event.model_validate_json(msg.data)
        except ValidationError:
            log.error("job worker %s: unparseable job dropped", self.durable)
            await msg.term()
            return
        attempt = int(msg.metadata.num_delivered)
        exhausted = attempt > self.max_deliver
        report = ProgressReporter(self.progress, job.id, job.account_id)
        keepalive = asyncio.create_task(self._keep_alive(msg))
        started = time.perf_counter()
        outcome = "success"
        try:
            greeting = ("Starting" if attempt == 1 else "Closing" if exhausted
                        else f"Retrying (attempt {attempt})")
            await report.phase("INIT", greeting)
            result = await self.handler(JobContext(job, attempt, report, exhausted))
        except JobFailed as exc:
            outcome = "failed"
            await report.fail(str(exc))
            await msg.term()
        except Exception as exc:
            if attempt < self.max_deliver:
                outcome = "retry"
                log.warning("job %s %s failed (attempt %d), will retry: %r",
                            self.function, job.id, attempt, exc)
                await report.phase(report.phase_name, f"Temporary failure, retrying: {exc}")
                await msg.nak(delay=self.retry_delay * attempt)
            else:
                outcome = "failed"
                log.error("job %s %s failed for good: %r", self.function, job.id, exc)
                await report.fail(f"Failed after {attempt} attempts: {exc}")
                await msg.term()
        else:
            await report.succeed("Completed", result or None)
            await msg.ack_sync()
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
            JOB_DURATION.labels(self.service, self.function, outcome).observe(
                time.perf_counter() - started)

    async def _keep_alive(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(max(self.ack_wait / 3, 0.2))
            with contextlib.suppress(Exception):
                await msg.in_progress()


class WorkerLoop(Protocol):
    """What a worker task runs until `stop`: a job worker, or a loop beside the job
    workers (the billed-job runner's sweep of abandoned jobs)."""

    async def run(self, stop: asyncio.Event) -> None: ...


async def run_job_workers(workers: Iterable[WorkerLoop], stop: asyncio.Event) -> None:
    """A worker task's body: every job worker pulling its jobs until `stop`."""
    await asyncio.gather(*(worker.run(stop) for worker in workers))
