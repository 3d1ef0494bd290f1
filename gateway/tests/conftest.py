from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.main import create_app
from gateway.settings import GatewaySettings
from gateway.tests.upstream import Counters, build_upstream
from libs.common.embedded import free_port
from libs.common.testing.apps import running_app
from libs.common.testing.plugin import NatsIdentity
from libs.common.testing.tokens import TestIssuer


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    return TestIssuer()


@pytest.fixture(scope="session")
def counters() -> Counters:
    return Counters()


@pytest.fixture(scope="session")
async def upstream_url(issuer: TestIssuer, counters: Counters) -> AsyncIterator[str]:
    port = free_port()
    config = uvicorn.Config(build_upstream(issuer, counters), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "test upstream did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


@pytest.fixture(scope="session")
def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture(scope="session")
def make_gateway(nats_identity: NatsIdentity, upstream_url: str, closed_port_url: str,
                 issuer: TestIssuer) -> GatewayFactory:
    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        values: dict[str, Any] = {
            "environment": "test",
            "public_url": "http://testserver",
            **nats_identity("gateway"),
            "auth_url": upstream_url,
            "planner_url": upstream_url,
            "writer_url": upstream_url,
            "billing_url": None,
            "automation_url": closed_port_url,
            "upstream_timeout_seconds": 1.5,
            "max_body_bytes": 4096,
            "trusted_proxy_hops": 1,
            "cors_allowed_origins": ["https://app.igny8.test"],
            "debug": False,
            "debug_throttle": False,
        }
        values.update(overrides)
        app = create_app(GatewaySettings(**values), keys_fetcher=issuer.fetcher())
        async with running_app(app) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client

    return factory


@pytest.fixture(scope="session")
async def gw(make_gateway: GatewayFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with make_gateway() as client:
        yield client


def new_ids() -> tuple[int, int]:
    """A user and account nobody else in the session uses (rate-limit keys are per user)."""
    return random.randint(10**6, 10**9), random.randint(10**6, 10**9)


def random_address() -> str:
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"
