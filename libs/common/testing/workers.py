"""Running a service's worker in the test's event loop, as its process would run it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from libs.common.embedded import free_port
from libs.common.runtime import WorkerRun
from libs.common.settings import ServiceSettings


@asynccontextmanager
async def running_worker(run: WorkerRun[Any], settings: ServiceSettings,
                         *, ready_within: float = 30.0) -> AsyncIterator[dict[str, Any]]:
    """The worker started, yielding its first healthy `/healthz` report once every loop
    runs and NATS is connected; stopped (and drained) on exit."""
    settings = settings.model_copy(update={"metrics_host": "127.0.0.1",
                                           "metrics_port": free_port(None)})
    stop = asyncio.Event()
    task = asyncio.create_task(run(stop, settings))
    url = f"http://127.0.0.1:{settings.metrics_port}/healthz"
    try:
        async with httpx.AsyncClient() as client:
            deadline = asyncio.get_running_loop().time() + ready_within
            while True:
                if task.done():
                    task.result()  # raises what ended it
                    raise AssertionError("the worker returned before it was stopped")
                try:
                    answer = await client.get(url)
                    if answer.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"the worker was not healthy in {ready_within}s")
                await asyncio.sleep(0.05)
        yield answer.json()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
