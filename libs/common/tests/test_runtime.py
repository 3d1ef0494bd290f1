"""Supervised workers: a loop that raises or is killed comes back; one that keeps failing
ends the process non-zero; `/healthz` says which loops run and whether NATS is there."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.embedded import free_port
from libs.common.provision import ServiceDatabase
from libs.common.runtime import RestartPolicy, WorkerContext, WorkerFailed, run_worker
from libs.common.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
QUICK = RestartPolicy(first_delay=0.05, max_delay=0.2, give_up_after=3)


def worker_settings(db: ServiceDatabase, nats_url: str) -> ServiceSettings:
    return ServiceSettings(service_name="kernel", database_url=db.app_url, nats_url=nats_url,
                           environment="test", metrics_port=free_port(None))


async def health(settings: ServiceSettings) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.get(f"http://127.0.0.1:{settings.metrics_port}/healthz")


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(400):
        try:
            if await check():
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


async def test_a_loop_that_raises_or_is_killed_is_restarted(
        kernel_db_info: ServiceDatabase, nats_url: str) -> None:
    settings = worker_settings(kernel_db_info, nats_url)
    starts = 0

    async def flaky(ctx: WorkerContext) -> None:
        nonlocal starts
        starts += 1
        if starts == 1:
            raise RuntimeError("lost its connection")
        await ctx.stop.wait()

    async def loop_state() -> dict[str, Any]:
        answer = await health(settings)
        return {"code": answer.status_code, **answer.json()["loops"].get("flaky", {})}

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, tasks=[flaky], stop=stop, restart=QUICK))
    try:
        await until(lambda: _is(loop_state(), code=200, state="running", starts=2),
                    "the loop restarted after raising")
        report = (await health(settings)).json()
        assert report["nats"] == "ok"
        assert report["loops"]["flaky"]["last_error"] == "RuntimeError: lost its connection"
        assert report["loops"]["outbox-relay"]["state"] == "running"
        assert report["loops"]["kernel-retention"]["state"] == "running"

        # Kill it from outside, as a crashed task would die.
        (victim,) = [t for t in asyncio.all_tasks() if t.get_name() == "flaky"]
        victim.cancel()
        await until(lambda: _is(loop_state(), code=200, state="running", starts=3),
                    "the killed loop restarted")
        assert starts == 3
    finally:
        stop.set()
        await asyncio.wait_for(worker, 20)


async def _is(found_state: Awaitable[dict[str, Any]], **expected: Any) -> bool:
    found = await found_state
    return all(found.get(k) == v for k, v in expected.items())


async def test_a_loop_that_keeps_failing_fails_health_then_the_worker(
        kernel_db_info: ServiceDatabase, nats_url: str) -> None:
    settings = worker_settings(kernel_db_info, nats_url)

    async def broken(ctx: WorkerContext) -> None:
        raise RuntimeError("misconfigured")

    async def unhealthy() -> bool:
        answer = await health(settings)
        loop = answer.json()["loops"].get("broken", {})
        return answer.status_code == 503 and loop.get("state") == "restarting"

    slow_restarts = RestartPolicy(first_delay=0.5, max_delay=0.5, give_up_after=3)
    worker = asyncio.create_task(run_worker(settings, tasks=[broken], restart=slow_restarts))
    await until(unhealthy, "health reported the failing loop")
    with pytest.raises(WorkerFailed, match="broken failed 3 times"):
        await asyncio.wait_for(worker, 20)


def test_the_worker_process_exits_non_zero_when_a_loop_keeps_failing(
        kernel_db_info: ServiceDatabase, nats_url: str) -> None:
    script = textwrap.dedent("""
        import asyncio
        from libs.common import runtime
        from libs.common.settings import ServiceSettings

        async def broken(ctx):
            raise RuntimeError("misconfigured")

        async def run(stop: asyncio.Event) -> None:
            await runtime.run_worker(
                ServiceSettings(service_name="kernel"), tasks=[broken], stop=stop,
                restart=runtime.RestartPolicy(first_delay=0.01, give_up_after=2))

        runtime.main(run)
    """)
    env = {**os.environ, "IGNY8_DATABASE_URL": kernel_db_info.app_url,
           "IGNY8_NATS_URL": nats_url, "IGNY8_ENVIRONMENT": "test"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "broken failed 2 times" in done.stdout + done.stderr


async def test_health_is_exported_as_metrics_and_a_stop_drains_running_work(
        kernel_db_info: ServiceDatabase, nats_url: str) -> None:
    """Alerts read /healthz as `igny8_worker_healthy` and `igny8_worker_nats_connected`;
    on stop, work in flight gets `worker_drain_seconds` to finish (Kubernetes' grace
    period is sized from it), not a fixed 10 s."""
    settings = worker_settings(kernel_db_info, nats_url).model_copy(
        update={"worker_drain_seconds": 30.0})
    finished = asyncio.Event()

    async def long_job(ctx: WorkerContext) -> None:
        await ctx.stop.wait()
        await asyncio.sleep(0.5)  # a job still running when SIGTERM came
        finished.set()

    async def exported() -> str:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{settings.metrics_port}/metrics")).text

    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, tasks=[long_job], stop=stop,
                                            restart=QUICK))
    try:
        for _ in range(600):  # a worker's start on a loaded machine takes seconds
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                if 'igny8_worker_healthy{service="kernel"} 1.0' in await exported():
                    break
            await asyncio.sleep(0.1)
        assert 'igny8_worker_nats_connected{service="kernel"} 1.0' in await exported()
    finally:
        stop.set()
        await asyncio.wait_for(worker, 60)
    assert finished.is_set()
