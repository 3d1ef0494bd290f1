"""Two gateway processes, as deployed, sharing one limit through NATS."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.routes import RATE_LIMITS
from gateway.tests.conftest import new_ids
from libs.common.embedded import free_port
from libs.common.testing.tokens import TestIssuer

STRICT = "/api/v1/auth/change-password/"


async def _start_gateway(nats_url: str,
                         upstream_url: str) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {**os.environ, "IGNY8_NATS_URL": nats_url, "IGNY8_AUTH_URL": upstream_url,
           "IGNY8_JWKS_URL": f"{upstream_url}/api/v1/auth/jwks/", "IGNY8_LOG_LEVEL": "WARNING"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.server", "--host", "127.0.0.1", "--port", str(port),
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert proc.returncode is None, "gateway process exited"
            try:
                if (await client.get(f"{url}/api/v1/system/ping/")).status_code == 200:
                    return proc, url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("gateway process did not start")


@pytest.fixture
async def two_gateways(nats_url: str, upstream_url: str) -> AsyncIterator[list[str]]:
    started = [await _start_gateway(nats_url, upstream_url) for _ in range(2)]
    yield [url for _, url in started]
    for proc, _ in started:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)


async def test_two_gateway_processes_never_admit_more_than_the_limit_together(
    two_gateways: list[str], issuer: TestIssuer
) -> None:
    user_id, account_id = new_ids()
    headers = issuer.headers(user_id=user_id, account_id=account_id)
    first, second = two_gateways
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(*(
            client.post((first if i % 2 else second) + STRICT, json={}, headers=headers)
            for i in range(30)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) == RATE_LIMITS["auth_strict"], statuses
