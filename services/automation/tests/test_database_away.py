"""The database away (restarting, failing over): automation's worker reaches PostgreSQL
through a TCP proxy the test cuts — every connection closed, new ones refused — for many
of the engine's ticks, then restores. The worker must ride the outage out (its engine and
scheduler poll the database at every tick; a loop that fails five times in a row ends the
worker, and `igny8 up` gives up on a worker that keeps ending) and move runs again after."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy.engine import make_url

from libs.common.runtime import RestartPolicy
from libs.common.testing.checks import eventually
from libs.common.testing.factories import Tenant
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, automation_worker


class CuttableProxy:
    """A TCP proxy to one upstream; `cut()` closes every connection and refuses new ones
    until `restore()`. `refused` counts the connections refused while cut."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cut_off = False
        self.refused = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        self.cut_off = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.discard(writer)
        self._open.discard(up_writer)


@contextlib.asynccontextmanager
async def proxied(settings: AutomationSettings
                  ) -> AsyncIterator[tuple[CuttableProxy, AutomationSettings]]:
    url = make_url(settings.database_url)
    proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    try:
        through = url.set(host="127.0.0.1", port=proxy.port)
        yield proxy, settings.model_copy(update={
            "database_url": through.render_as_string(hide_password=False)})
    finally:
        await proxy.stop()


async def test_the_worker_rides_out_the_database_going_away_and_moves_runs_after(
        client: httpx.AsyncClient, settings: AutomationSettings, tenant: Tenant) -> None:
    h = tenant.headers()
    # Restarts in quick succession: without riding the outage out, a polling loop would
    # fail its five times in a row within the outage, ending the worker.
    quick = RestartPolicy(first_delay=0.01, max_delay=0.05)
    async with proxied(settings) as (proxy, through), \
            automation_worker(through, restart=quick):
        proxy.cut()

        async def long_away() -> bool:
            # Many ticks of the engine (0.2 s) and scheduler (0.5 s), each refused.
            return proxy.refused >= 40

        await eventually(long_away, timeout=60, every=0.1)
        proxy.restore()
        # A run started after the database is back (through the API, its own connection)
        # is moved by the same worker to its end: the tenant has no keywords, so every
        # stage closes at once.
        r = await client.post(f"{API}/run_now/?site_id={tenant.site_id}", headers=h)
        assert r.status_code == 200, r.text
        run_id = r.json()["run_id"]

        async def the_run() -> dict[str, Any]:
            runs = (await client.get(f"{API}/history/?site_id={tenant.site_id}",
                                     headers=h)).json()
            return dict(next(run for run in runs if run["run_id"] == run_id))

        async def finished() -> bool:
            return (await the_run())["status"] != "running"

        await eventually(finished, timeout=120, every=0.2)
        run = await the_run()
        assert run["status"] == "completed", run
