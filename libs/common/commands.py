"""Commands: typed request-reply over NATS, declared once and used by both ends.

    LOOKUP_SITE = Command("auth", "lookup_site", LookupSite, SiteAndSectors, idempotent=True)

    # the service that answers (its worker)
    await serve(nc, {LOOKUP_SITE: lookup_site}, stop=stop)      # lookup_site(request) -> result

    # a caller
    found = await CommandClient(nc).call(LOOKUP_SITE, LookupSite(account_id=1, site_id=2))

Subjects are `igny8.cmd.<service>.<name>` (core NATS, outside every stream, ADR 0001), one
queue group per service. On the wire: the request as JSON; the answer
`{"ok": true, ...result}` or `{"ok": false, "code", "error", "errors"?}`.

Errors cross the bus as what they are: a handler raises the kernel's domain errors
(`libs/common/problems.py`), each carries a `code`, and the caller raises the same class
again (a NotFound on the server is a NotFound at the caller, an API answers 404). A request
that does not validate is `invalid` with the fields named; anything else is `internal`,
which a caller sees as `ServiceUnavailable`.

Callers retry: a command nobody answered (no responders) is sent again whatever it is; a
command that timed out only when it is declared `idempotent`, with backoff, a bounded
number of times.

`Batched` handlers answer commands that arrive together in one call (group commit, ADR
0015): under load, a few large transactions instead of many small ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import (
    ConnectionClosedError,
    NoRespondersError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from pydantic import BaseModel, ValidationError

from libs.common.events import command_subject
from libs.common.messages import drf_message
from libs.common.problems import DomainError, ServiceUnavailable, ValidationFailed

log = logging.getLogger(__name__)

Req = TypeVar("Req", bound=BaseModel)
Res = TypeVar("Res", bound=BaseModel)
T = TypeVar("T")

# A failure that is no domain error: a bug or an outage on the answering side.
INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Command(Generic[Req, Res]):
    """One command of one service: what it takes, what it answers, whether sending it
    twice does what sending it once does (then callers retry it after a timeout)."""

    service: str
    name: str
    request: type[Req]
    result: type[Res]
    idempotent: bool = False

    @property
    def subject(self) -> str:
        return command_subject(self.service, self.name)


# --- the error-code table ------------------------------------------------------------


def error_codes() -> dict[str, type[DomainError]]:
    """Every domain error that declares its own `code`, by code: the kernel's and any
    subclass a command module adds (auth's `unreadable_secret`, for instance)."""
    table: dict[str, type[DomainError]] = {}
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        kind = pending.pop()
        if "code" in vars(kind):
            table.setdefault(kind.code, kind)
        pending.extend(kind.__subclasses__())
    return table


def raise_for(answer: dict[str, Any], service: str) -> None:
    """Raise the domain error a failed answer stands for."""
    code, error, errors = answer.get("code"), answer.get("error"), answer.get("errors")
    kind = error_codes().get(str(code))
    if kind is None:
        raise ServiceUnavailable(f"{service.capitalize()} could not apply the command.")
    raise kind(error, errors=errors)


def ok(result: BaseModel) -> bytes:
    return orjson.dumps({"ok": True, **result.model_dump(mode="json")})


def failure(code: str, error: str, errors: Mapping[str, Sequence[str]] | None = None) -> bytes:
    body: dict[str, Any] = {"ok": False, "code": code, "error": error}
    if errors:
        body["errors"] = {k: list(v) for k, v in errors.items()}
    return orjson.dumps(body)


def reply_for(outcome: BaseModel | BaseException) -> bytes:
    """The answer to one command: its result, its domain error, or `internal`."""
    if isinstance(outcome, BaseModel):
        return ok(outcome)
    if isinstance(outcome, DomainError):
        return failure(outcome.code, outcome.detail, outcome.errors)
    return failure(INTERNAL, "The command could not be applied.")


def invalid(exc: ValidationError | ValueError) -> bytes:
    errors: dict[str, list[str]] = {}
    if isinstance(exc, ValidationError):
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "non_field_errors"
            errors.setdefault(field, []).append(drf_message(err))
    return failure(ValidationFailed.code, "Invalid command.", errors or None)


# --- answering -----------------------------------------------------------------------

Handler = Callable[[Any], Awaitable[BaseModel]]
BatchRunner = Callable[[list[Any]], Awaitable[Sequence[BaseModel | BaseException]]]


@dataclass(frozen=True)
class Batched:
    """A command answered in batches: `run` takes the requests that arrived together and
    answers each, in order, with its result, its domain error, or another exception for a
    failure of its own (`internal`): one bad request must not fail the others. Requests
    with the same `key` (an account, a hold) go to successive rounds, in arrival order, so
    each round changes a row once. At most `in_flight` batches run at once; while they do,
    the next one grows, up to `max_batch`. Unloaded, a command runs at once, alone: no
    timer, no added latency."""

    run: BatchRunner
    key: Callable[[Any], Hashable] | None = None
    in_flight: int = 8
    max_batch: int = 100


def rounds(items: Sequence[T], key: Callable[[T], object]) -> list[list[T]]:
    """Split `items` into consecutive batches in which `key` is distinct, keeping order
    (the second command for an account runs after the first, in the next batch)."""
    batches: list[list[T]] = []
    seen: list[set[object]] = []
    for item in items:
        k = key(item)
        for batch, keys in zip(batches, seen, strict=True):
            if k not in keys:
                batch.append(item)
                keys.add(k)
                break
        else:
            batches.append([item])
            seen.append({k})
    return batches


class CommandServer:
    """Answers one service's commands, one queue group for all its replicas. Single
    commands each run in their own task (at most `concurrency` at once; nats-py runs one
    callback at a time per subscription); `Batched` ones as described there."""

    def __init__(self, nc: NATS, handlers: Mapping[Command[Any, Any], Handler | Batched], *,
                 queue: str | None = None, concurrency: int = 64) -> None:
        services = {command.service for command in handlers}
        if queue is None and len(services) != 1:
            raise ValueError("commands of several services need an explicit queue group")
        self.nc = nc
        self.handlers = {command.subject: (command, handler)
                         for command, handler in handlers.items()}
        self.queue = queue or services.pop()
        self.concurrency = concurrency

    async def answer(self, command: Command[Any, Any], payloads: Sequence[bytes]) -> list[bytes]:
        """The answers to commands of one kind that arrived together, in order."""
        _, handler = self.handlers[command.subject]
        replies: list[bytes | None] = [None] * len(payloads)
        valid: list[tuple[int, BaseModel]] = []
        for i, data in enumerate(payloads):
            try:
                valid.append((i, command.request.model_validate_json(data)))
            except ValidationError as exc:
                replies[i] = invalid(exc)
        if isinstance(handler, Batched):
            key = handler.key
            batches = (rounds(valid, lambda item: key(item[1])) if key
                       else [valid] if valid else [])
            for batch in batches:
                outcomes = await self._run_batch(command, handler, [r for _, r in batch])
                for (i, _), outcome in zip(batch, outcomes, strict=True):
                    replies[i] = reply_for(outcome)
        else:
            for i, request in valid:
                replies[i] = reply_for(await self._run_one(command, handler, request))
        return [r for r in replies if r is not None]

    async def _run_one(self, command: Command[Any, Any], handler: Handler,
                       request: BaseModel) -> BaseModel | BaseException:
        try:
            return await handler(request)
        except DomainError as exc:
            return exc
        except Exception as exc:
            log.exception("command %s failed", command.subject)
            return exc

    async def _run_batch(self, command: Command[Any, Any], handler: Batched,
                         requests: list[BaseModel]) -> Sequence[BaseModel | BaseException]:
        try:
            outcomes = await handler.run(requests)
        except DomainError as exc:
            return [exc] * len(requests)
        except Exception as exc:
            log.exception("command %s failed (a batch of %d)", command.subject, len(requests))
            return [exc] * len(requests)
        if len(outcomes) != len(requests):
            raise RuntimeError(f"{command.subject}: {len(outcomes)} answers to "
                               f"{len(requests)} commands")
        return outcomes

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop`; then answer what already arrived and return."""
        singles = asyncio.Semaphore(self.concurrency)
        running: set[asyncio.Task[None]] = set()
        queues: dict[str, asyncio.Queue[Msg]] = {
            subject: asyncio.Queue() for subject, (_, handler) in self.handlers.items()
            if isinstance(handler, Batched)}

        async def respond(msgs: Sequence[Msg]) -> None:
            command, _ = self.handlers[msgs[0].subject]
            replies = await self.answer(command, [m.data for m in msgs])
            for msg, reply in zip(msgs, replies, strict=True):
                if msg.reply:
                    with contextlib.suppress(Exception):
                        await msg.respond(reply)

        def spawn(msgs: Sequence[Msg], slot: asyncio.Semaphore | None) -> None:
            task = asyncio.create_task(respond(msgs))
            running.add(task)
            task.add_done_callback(running.discard)
            if slot is not None:
                task.add_done_callback(lambda _: slot.release())

        async def batcher(queue: asyncio.Queue[Msg], batched: Batched) -> None:
            # A slot first, then the messages: while every slot is busy, the next batch
            # grows in the queue, and a cancelled batcher never holds a message.
            slots = asyncio.Semaphore(batched.in_flight)
            while True:
                await slots.acquire()
                batch = [await queue.get()]
                while len(batch) < batched.max_batch and not queue.empty():
                    batch.append(queue.get_nowait())
                spawn(batch, slots)

        async def on_message(msg: Msg) -> None:
            queue = queues.get(msg.subject)
            if queue is not None:
                queue.put_nowait(msg)
                return
            await singles.acquire()
            spawn([msg], singles)

        batchers = [asyncio.create_task(batcher(queues[subject], handler))
                    for subject, (_, handler) in self.handlers.items()
                    if isinstance(handler, Batched)]
        subs = [await self.nc.subscribe(subject, queue=self.queue, cb=on_message,
                                        pending_msgs_limit=100_000)
                for subject in self.handlers]
        log.info("answering %s", ", ".join(self.handlers))
        try:
            await stop.wait()
        finally:
            for sub in subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            for task in batchers:
                task.cancel()
            for subject, queue in queues.items():  # answer what arrived before unsubscribing
                _, handler = self.handlers[subject]
                assert isinstance(handler, Batched)
                while not queue.empty():
                    spawn([queue.get_nowait()
                           for _ in range(min(queue.qsize(), handler.max_batch))], None)
            if running:
                await asyncio.wait(running, timeout=10)


async def serve(nc: NATS, handlers: Mapping[Command[Any, Any], Handler | Batched], *,
                stop: asyncio.Event, queue: str | None = None, concurrency: int = 64) -> None:
    """Answer `handlers`' commands until `stop` (a worker's loop)."""
    await CommandServer(nc, handlers, queue=queue, concurrency=concurrency).run(stop)


# --- calling -------------------------------------------------------------------------


class CommandClient:
    """Sends commands and returns their typed results, or raises their domain errors.
    Service clients (`BillingClient`, `AuthClient`) are thin typed methods over `call`."""

    def __init__(self, nc: NATS, *, timeout: float = 5.0, retries: int = 2,
                 backoff: float = 0.05) -> None:
        self.nc = nc
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    async def call(self, command: Command[Req, Res], request: Req, *,
                   timeout: float | None = None) -> Res:
        payload = request.model_dump_json().encode()
        attempt = 0
        while True:
            try:
                msg = await self.nc.request(command.subject, payload,
                                            timeout=timeout or self.timeout)
                break
            except (NatsTimeoutError, TimeoutError, NoRespondersError) as exc:
                # Nobody received a command without responders; a timed-out one may have
                # been applied, so only an idempotent command is sent again.
                again = isinstance(exc, NoRespondersError) or command.idempotent
                if not again or attempt >= self.retries:
                    raise ServiceUnavailable(
                        f"{command.service.capitalize()} did not answer in time.") from exc
                await asyncio.sleep(self.backoff * 2**attempt)
                attempt += 1
            except (ConnectionClosedError, NoServersError, OutboundBufferLimitError,
                    StaleConnectionError) as exc:
                # Not sent: this process has lost NATS (its supervisor sees it too). An
                # outage of the platform, not a fault of the request: 503, not 500.
                raise ServiceUnavailable(
                    f"{command.service.capitalize()} cannot be reached.") from exc
        answer = orjson.loads(msg.data)
        if not answer.get("ok"):
            raise_for(answer, command.service)
        try:
            return command.result.model_validate(answer)
        except ValidationError as exc:  # the two ends disagree: treated as an outage
            log.error("%s answered what %s cannot read: %s", command.subject,
                      command.result.__name__, exc)
            raise ServiceUnavailable(
                f"{command.service.capitalize()} answered something unexpected.") from exc
