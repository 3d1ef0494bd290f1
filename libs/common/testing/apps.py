"""Running a service's FastAPI app in-process for tests, lifespan included: through httpx's
ASGI transport (`running_app`), or on a loopback port (`serving_app`) for what must
reach it over the network (another process, a gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from libs.common.embedded import free_port


@asynccontextmanager
async def running_app(
    app: FastAPI, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@asynccontextmanager
async def serving_app(app: Any, *, ready_within: float = 30.0) -> AsyncIterator[str]:
    """`app` (any ASGI app; its lifespan runs) served by uvicorn in this event loop on a
    free loopback port; yields its base URL."""
    port = free_port(None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + ready_within
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("the server stopped before it started")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the server did not start in {ready_within}s")
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
