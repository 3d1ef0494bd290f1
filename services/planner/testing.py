"""Planner for other services' tests: planner's real command handlers (`commands.py`) on
its own migrated database, answering on the test NATS, and a `PlannerBook` that makes
clusters there as planner's API would store them. Use it from a package-scoped fixture
in the package that needs it:

    @pytest.fixture(scope="package")
    async def planner(make_settings: MakeSettings, nc: NATS) -> AsyncIterator[PlannerBook]:
        async with answering_planner(make_settings, nc) as book:
            yield book

Planner's responders must not outlive that package: another package's tests may run
planner's worker, on another database, in the same queue group."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from nats.aio.client import Client as NATS

from libs.common.commands import serve
from libs.common.db import Database, TenantScope
from libs.common.ids import MAX_BIGINT
from libs.common.planner import PlannerClient
from libs.common.problems import ServiceUnavailable
from libs.common.repository import Row, Visibility
from libs.common.testing.factories import next_id
from libs.common.testing.plugin import MakeSettings
from libs.common.uow import unit_of_work
from services.planner.commands import command_handlers
from services.planner.main import MIGRATIONS
from services.planner.repository import ClusterRepository
from services.planner.settings import PlannerSettings


class PlannerBook:
    """Planner's database for one test package: clusters made there exist for planner,
    not (until a lookup or an event) for the service under test. `down()` stops the
    responders for a while (planner unreachable, as far as callers can tell)."""

    def __init__(self, db: Database, nc: NATS) -> None:
        self.db = db
        self.nc = nc
        self._stop = asyncio.Event()
        self._server: asyncio.Task[None] | None = None

    async def add_cluster(self, account_id: int, site_id: int, sector_id: int,
                          name: str = "Burr coffee grinders", **fields: Any) -> Row:
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            # An id of its own, as planner's one sequence gives in production: the
            # test database's sequence restarts at 1 and would name clusters that other
            # tests' read models already hold for other accounts.
            return await ClusterRepository(uow.session, Visibility(account_id)).insert({
                "id": next_id(), "site_id": site_id, "sector_id": sector_id, "name": name,
                **fields})

    async def delete_cluster(self, account_id: int, cluster_id: int) -> None:
        async with unit_of_work(self.db, TenantScope.account(account_id)) as uow:
            await ClusterRepository(uow.session, Visibility(account_id)).delete([cluster_id])

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self._server = asyncio.create_task(serve(self.nc, command_handlers(self.db),
                                                 stop=self._stop))
        await _until_answering(self.nc, self._server)

    async def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server, 20)
            self._server = None

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        await self.stop()
        try:
            yield
        finally:
            await self.start()


async def _until_answering(nc: NATS, server: asyncio.Task[None], within: float = 20.0) -> None:
    """Until a lookup gets planner's own answer (a cluster nobody has: not found)."""
    probe = PlannerClient(nc, timeout=1.0, retries=0)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        assert not server.done(), server.exception() if server.done() else None
        try:
            assert await probe.lookup_cluster(1, MAX_BIGINT) is None
            return
        except ServiceUnavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.1)


@asynccontextmanager
async def answering_planner(make_settings: MakeSettings, nc: NATS
                            ) -> AsyncIterator[PlannerBook]:
    settings = make_settings(PlannerSettings, MIGRATIONS)
    book = PlannerBook(Database(settings.database_url), nc)
    await book.start()
    try:
        yield book
    finally:
        await book.stop()
        await book.db.dispose()
