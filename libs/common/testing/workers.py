"""Running a service's worker in the test's event loop, as its process would run it, or as
its own process (`WorkerProcess`) for tests that kill it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from libs.common.embedded import die_with_parent, free_port
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


def settings_env(settings: BaseSettings) -> dict[str, str]:
    """The environment (`IGNY8_*`, over this process's own) from which a child process
    builds the same settings: what a test made in-process, handed to a real process."""
    prefix = str(settings.model_config.get("env_prefix") or "")
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefix)}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        text = (orjson.dumps(value).decode() if isinstance(value, dict | list | tuple)
                else str(value))
        env[f"{prefix}{name.upper()}"] = text
    return env


class WorkerProcess:
    """A service's worker as its own process (`python -m <module>`, as deployed), for
    tests that kill it (SIGKILL: no drain, no cleanup, as a crash or an OOM kill) and start
    it again. Its output goes to `log_path`; it dies with the test process."""

    def __init__(self, module: str, settings: ServiceSettings, log_path: Path) -> None:
        self.module = module
        self.settings = settings
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, ready_within: float = 60.0) -> dict[str, Any]:
        """Started and healthy (its `/healthz` answers 200: every loop runs, NATS is
        connected); its first healthy report."""
        assert not self.running, f"{self.module} is running already"
        port = free_port(None)
        env = settings_env(self.settings)
        env.update({"IGNY8_METRICS_HOST": "127.0.0.1", "IGNY8_METRICS_PORT": str(port)})
        with self.log_path.open("ab") as log:  # noqa: ASYNC230 - a local file, once
            log.write(f"--- start {self.starts + 1}\n".encode())
            log.flush()
            self.proc = proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", self.module, env=env, stdout=log, stderr=log,
                preexec_fn=die_with_parent(signal.SIGKILL))
        self.starts += 1
        url = f"http://127.0.0.1:{port}/healthz"
        deadline = asyncio.get_running_loop().time() + ready_within
        async with httpx.AsyncClient() as client:
            while True:
                if proc.returncode is not None:
                    raise AssertionError(f"{self.module} exited with {proc.returncode} "
                                         f"(its output: {self.log_path})")
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(url)
                    if answer.status_code == 200:
                        return dict(answer.json())
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{self.module} was not healthy in {ready_within}s "
                                         f"(its output: {self.log_path})")
                await asyncio.sleep(0.1)

    def kill_now(self) -> None:
        """SIGKILL at once, without waiting (from a callback that must not await)."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        self.kill_now()
        if self.proc is not None:
            await asyncio.wait_for(self.proc.wait(), 10)

    async def restart(self, ready_within: float = 60.0) -> dict[str, Any]:
        """Killed if it still runs (gone in any case), then started again."""
        await self.kill()
        return await self.start(ready_within)

    async def stop(self) -> None:
        """SIGTERM (the worker drains), killed if it takes too long."""
        if not self.running:
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), self.settings.worker_drain_seconds + 10)
        except TimeoutError:
            await self.kill()


@asynccontextmanager
async def worker_process(module: str, settings: ServiceSettings, log_path: Path,
                         *, ready_within: float = 60.0) -> AsyncIterator[WorkerProcess]:
    """`WorkerProcess` started (healthy) and stopped on exit, however the test ended."""
    worker = WorkerProcess(module, settings, log_path)
    await worker.start(ready_within)
    try:
        yield worker
    finally:
        await worker.stop()
