"""Credit holds + captures per second: through NATS against a running billing worker, and
the same work as direct SQL transactions in this process.

    python -m bench.billing [--callers 50] [--seconds 10] [--replicas 1]

Starts embedded PostgreSQL and NATS, migrates a billing database, starts
`python -m services.billing.worker` as a child process (`--replicas` of them), funds one
account per caller (different AI jobs of different accounts run at once; one account's
debits serialise on its balance row by design), then runs both phases and prints the
figures, and how long the relay took to publish the captures' events after the NATS phase.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

from libs.common import nats as nats_kernel
from libs.common import outbox
from libs.common.billing import BillingClient, CaptureRequest, HoldRequest
from libs.common.db import Database, TenantScope
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres, die_with_parent
from libs.common.provision import provision_service_database
from services.billing.main import MIGRATIONS
from services.billing.service import BillingPolicy, BillingService

POOL = 30


async def fund(db: Database, accounts: list[int], credits: int) -> None:
    async with db.session(TenantScope.system()) as session:
        svc = BillingService(session)
        for account in accounts:
            await svc.add_credits(account, credits, transaction_type="purchase",
                                  description="bench credits")
        await session.commit()


async def outbox_drained(db: Database, limit: float = 30.0) -> tuple[int, float]:
    """Events still unpublished, and the seconds waited for the relay to publish them all
    (the captures' `credits.debited` events must keep up, not pile up)."""
    start = time.perf_counter()
    for _ in range(int(limit / 0.05)):
        if not await outbox.pending_count(db):
            break
        await asyncio.sleep(0.05)
    return await outbox.pending_count(db), time.perf_counter() - start


async def drive(callers: int, seconds: float,
                pair: Callable[[int, int], Awaitable[None]]) -> tuple[int, float]:
    deadline = time.perf_counter() + seconds
    done = [0] * callers

    async def caller(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            await pair(i, n)
            n += 1
        done[i] = n

    start = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    return sum(done), time.perf_counter() - start


async def bench(callers: int, seconds: float, replicas: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="igny8-bench-"))
    pg, nats = EmbeddedPostgres(root / "pg"), EmbeddedNats(root / "nats")
    pg.start()
    nats.start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        info = provision_service_database(pg.url, "billing", MIGRATIONS,
                                          app_password=secrets.token_urlsafe(12))
        env = {**os.environ, "IGNY8_DATABASE_URL": info.app_url, "IGNY8_NATS_URL": nats.url,
               "IGNY8_ENVIRONMENT": "test", "IGNY8_LOG_LEVEL": "WARNING",
               "IGNY8_WORKER_DB_POOL_SIZE": str(POOL), "IGNY8_WORKER_DB_MAX_OVERFLOW": "0",
               "IGNY8_COMMAND_CONCURRENCY": str(POOL * 2)}
        workers = [subprocess.Popen(  # noqa: ASYNC220 - started once, before measuring
            [sys.executable, "-m", "services.billing.worker"], env=env,
            preexec_fn=die_with_parent()) for _ in range(replicas)]
        db = Database(info.app_url, pool_size=POOL, max_overflow=0)
        accounts = [900_000 + i for i in range(callers)]
        await fund(db, accounts, 10_000_000)
        nc = await nats_kernel.connect(nats.url, "bench-billing")
        client = BillingClient(nc, timeout=30)
        for _ in range(100):  # wait for the worker's responders
            try:
                await client.hold(accounts[0], "linking")
                break
            except Exception:
                await asyncio.sleep(0.2)

        async def over_nats(i: int, n: int) -> None:
            hold = await client.hold(accounts[i], "clustering", units=1,
                                     idempotency_key=f"nats-{i}-{n}")
            await client.capture(hold.hold_id, units=1, model="local-bench", cost_usd="0.0001")

        policy = BillingPolicy()

        async def direct(i: int, n: int) -> None:
            async with db.session(TenantScope.system()) as session:
                hold = await BillingService(session, policy).hold(HoldRequest(
                    account_id=accounts[i], operation_type="clustering", units=1,
                    idempotency_key=f"direct-{i}-{n}-{uuid.uuid4().hex[:6]}"))
                await session.commit()
            async with db.session(TenantScope.system()) as session:
                await BillingService(session, policy).capture(CaptureRequest(
                    hold_id=hold.hold_id, units=1, model="local-bench", cost_usd="0.0001"))
                await session.commit()

        await drive(callers, 1.0, over_nats)  # warm-up
        await drive(callers, 1.0, direct)
        nats_pairs, nats_time = await drive(callers, seconds, over_nats)
        backlog, drain_time = await outbox_drained(db)
        direct_pairs, direct_time = await drive(callers, seconds, direct)
        nats_rate, direct_rate = nats_pairs / nats_time, direct_pairs / direct_time
        print(f"billing bench: {callers} concurrent callers, {seconds:.0f} s per phase, "
              f"{os.cpu_count()} CPUs")
        print(f"  through NATS (worker process) : {nats_pairs:7d} hold+capture pairs "
              f"in {nats_time:5.1f} s = {nats_rate:8.1f} pairs/s")
        print(f"  direct SQL (in-process)       : {direct_pairs:7d} hold+capture pairs "
              f"in {direct_time:5.1f} s = {direct_rate:8.1f} pairs/s")
        print(f"  outbox after the NATS phase   : {backlog} events unpublished, "
              f"{drain_time:.2f} s to drain")
        print(f"  ratio NATS / direct           : {100 * nats_rate / direct_rate:5.1f} %")
        print(f"  goals: >= 1000 pairs/s ({'met' if nats_rate >= 1000 else 'NOT met'}), "
              f">= 50 % of direct ({'met' if nats_rate >= direct_rate / 2 else 'NOT met'})")
        await nc.drain()
        await db.dispose()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        nats.stop()
        pg.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--replicas", type=int, default=1,
                        help="billing worker processes (queue group `billing` shares commands)")
    args = parser.parse_args()
    # The callers stand for planner and writer workers, which run on uvloop
    # (libs/common/runtime.py): the same loop here keeps their cost on the shared cores
    # the same as in production.
    uvloop.install()
    asyncio.run(bench(args.callers, args.seconds, args.replicas))


if __name__ == "__main__":
    main()
