"""The command bus over real NATS: one declaration for both ends, domain errors that cross
as themselves, bounded retries for idempotent commands, batches (group commit)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest
from nats.aio.client import Client as NATS
from pydantic import BaseModel, Field

from libs.common import nats as nats_kernel
from libs.common.auth import AISettingsUnusable
from libs.common.commands import (
    INTERNAL,
    Batched,
    Command,
    CommandClient,
    CommandServer,
    Handler,
    error_codes,
)
from libs.common.ids import Id
from libs.common.problems import (
    Conflict,
    NotFound,
    PaymentRequired,
    ServiceUnavailable,
    ValidationFailed,
)


class Add(BaseModel):
    account_id: Id
    amount: int = Field(ge=0)


class Sum(BaseModel):
    account_id: int
    total: int
    batch: int = 1


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats_kernel.connect(nats_url, "kernel-commands-tests")
    yield conn
    await conn.drain()


def command(idempotent: bool = True) -> Command[Add, Sum]:
    """A command of a service of its own: tests never answer each other's subjects."""
    return Command(f"t{uuid.uuid4().hex[:8]}", "add", Add, Sum, idempotent=idempotent)


@contextlib.asynccontextmanager
async def serving(nc: NATS, handlers: Mapping[Command[Any, Any], Handler | Batched]
                  ) -> AsyncIterator[CommandServer]:
    server = CommandServer(nc, handlers)
    stop = asyncio.Event()
    task = asyncio.create_task(server.run(stop))
    await asyncio.sleep(0.05)
    await nc.flush()
    try:
        yield server
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_one_declaration_both_ends_and_errors_cross_as_themselves(nc: NATS) -> None:
    add = command()

    async def handle(request: Add) -> Sum:
        if request.amount == 404:
            raise NotFound("No such account.")
        if request.amount == 402:
            raise PaymentRequired("Not enough.", errors={"amount": ["too much"]})
        if request.amount == 422:
            raise AISettingsUnusable("Save the key again.")
        if request.amount == 500:
            raise RuntimeError("a bug")
        return Sum(account_id=request.account_id, total=request.amount * 2)

    client = CommandClient(nc, timeout=2)
    async with serving(nc, {add: handle}):
        assert await client.call(add, Add(account_id=1, amount=21)) == Sum(account_id=1,
                                                                           total=42)
        with pytest.raises(NotFound, match="No such account"):
            await client.call(add, Add(account_id=1, amount=404))
        with pytest.raises(PaymentRequired) as paid:
            await client.call(add, Add(account_id=1, amount=402))
        assert paid.value.errors == {"amount": ["too much"]}
        with pytest.raises(AISettingsUnusable):  # a code a command module added
            await client.call(add, Add(account_id=1, amount=422))
        with pytest.raises(ServiceUnavailable):  # internal: no detail leaks
            await client.call(add, Add(account_id=1, amount=500))
        raw = await nc.request(add.subject, orjson.dumps({"account_id": "x", "amount": -1}),
                               timeout=2)
        answer = orjson.loads(raw.data)
        assert (answer["ok"], answer["code"]) == (False, ValidationFailed.code)
        assert set(answer["errors"]) == {"account_id", "amount"}
        raw = await nc.request(add.subject, b"{not json", timeout=2)
        assert orjson.loads(raw.data)["code"] == ValidationFailed.code
    assert error_codes()["unreadable_secret"] is AISettingsUnusable
    assert error_codes()[Conflict.code] is Conflict


async def test_idempotent_commands_are_retried_others_are_not(nc: NATS) -> None:
    seen: list[int] = []

    async def slow_once(request: Add) -> Sum:
        seen.append(request.amount)
        if len(seen) == 1:
            await asyncio.sleep(1.0)  # the caller gives up on this one
        return Sum(account_id=request.account_id, total=request.amount)

    client = CommandClient(nc, timeout=0.3, retries=2, backoff=0.01)
    again = command(idempotent=True)
    async with serving(nc, {again: slow_once}):
        assert (await client.call(again, Add(account_id=1, amount=5))).total == 5
    assert len(seen) == 2

    seen.clear()
    once = command(idempotent=False)
    async with serving(nc, {once: slow_once}):
        with pytest.raises(ServiceUnavailable, match="did not answer"):
            await client.call(once, Add(account_id=1, amount=5))
        await asyncio.sleep(0.8)
    assert len(seen) == 1

    # Nobody listening yet: nothing was delivered, so even a non-idempotent command is
    # sent again, and the responder that starts meanwhile answers it.
    late = command(idempotent=False)
    patient = CommandClient(nc, timeout=0.5, retries=6, backoff=0.05)

    async def start_late() -> None:
        await asyncio.sleep(0.2)
        async with serving(nc, {late: slow_once}):
            await asyncio.sleep(1.5)

    seen[:] = [0]  # not the first call: no sleep
    starter = asyncio.create_task(start_late())
    assert (await patient.call(late, Add(account_id=2, amount=7))).total == 7
    await starter
    # A bounded number of tries: nobody ever answers.
    with pytest.raises(ServiceUnavailable):
        await CommandClient(nc, timeout=0.2, retries=1, backoff=0.01).call(
            command(), Add(account_id=1, amount=1))


async def test_a_caller_that_lost_nats_answers_unavailable(nats_url: str) -> None:
    """A closed connection (NATS gone for good, or the process shutting down) is the
    platform's outage, a 503 through the problem handler, never an unhandled 500."""
    lost = await nats_kernel.connect(nats_url, "kernel-commands-tests")
    await lost.close()
    with pytest.raises(ServiceUnavailable, match="cannot be reached"):
        await CommandClient(lost, timeout=0.2, retries=2, backoff=0.01).call(
            command(), Add(account_id=1, amount=1))


async def test_batches_answer_each_command_in_order(nc: NATS) -> None:
    add = command()
    calls: list[list[tuple[int, int]]] = []

    async def run(requests: list[Add]) -> list[BaseModel | BaseException]:
        calls.append([(r.account_id, r.amount) for r in requests])
        out: list[BaseModel | BaseException] = []
        for r in requests:
            if r.amount == 0:
                out.append(Conflict("Zero is refused."))
            elif r.amount == 13:
                out.append(RuntimeError("unlucky"))
            else:
                out.append(Sum(account_id=r.account_id, total=r.amount, batch=len(requests)))
        return out

    async with serving(nc, {add: Batched(run, key=lambda r: r.account_id)}) as server:
        payloads = [orjson.dumps(p) for p in (
            {"account_id": 1, "amount": 1}, {"account_id": 2, "amount": 0},
            {"account_id": 1, "amount": 2}, {"account_id": "bad"},
            {"account_id": 3, "amount": 13}, {"account_id": 1, "amount": 3})]
        replies = [orjson.loads(r) for r in await server.answer(add, payloads)]
        assert [r["ok"] for r in replies] == [True, False, True, False, False, True]
        assert [r.get("code") for r in replies] == [
            None, Conflict.code, None, ValidationFailed.code, INTERNAL, None]
        # One account per round, in arrival order.
        assert calls == [[(1, 1), (2, 0), (3, 13)], [(1, 2)], [(1, 3)]]

        calls.clear()
        client = CommandClient(nc, timeout=5)
        results = await asyncio.gather(*(client.call(add, Add(account_id=n, amount=100 + n))
                                         for n in range(1, 41)))
        assert [r.total for r in results] == [100 + n for n in range(1, 41)]
        assert sum(len(c) for c in calls) == 40
        assert len(calls) < 40  # commands that arrived together shared a call
