"""The gateway's app factory, served by `python -m gateway.server` (its own HTTP/1.1
server, ADR 0016; any ASGI server can run it too).

`create_app` returns one ASGI app: HTTP requests go through the plain-ASGI pipeline
(`proxy.Pipeline`); FastAPI serves only the gateway's own routes and runs the lifespan.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from nats.aio.client import Client as NATS
from nats.js.kv import KeyValue
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import envelope
from gateway.api import own_paths, router
from gateway.auth import Authenticator
from gateway.http1 import Http1Pool
from gateway.idempotency import IdempotencyStore
from gateway.openapi import SchemaCache
from gateway.proxy import Pipeline, Services
from gateway.ratelimit import RateLimiter
from gateway.routes import RATE_LIMITS, RATE_PERIOD_SECONDS
from gateway.settings import GatewaySettings
from libs.common import nats as nats_kernel
from libs.common.app import NO_NATIVE_TELEMETRY
from libs.common.logging import configure_logging
from libs.common.natsauth import GATEWAY_USER
from libs.common.problems import validation_errors
from libs.common.runtime import settled_heap
from libs.common.security import JwtVerifier, KeysFetcher, RevocationList, http_jwks_fetcher
from libs.common.telemetry import configure_tracing

log = logging.getLogger("igny8.gateway")


@dataclass
class GatewayRuntime:
    """What the gateway's own routes reach through `request.app.state.gw`."""

    settings: GatewaySettings
    pipeline: Pipeline
    nc: NATS
    session: aiohttp.ClientSession
    verifier: JwtVerifier
    task_progress: KeyValue
    schema: SchemaCache


class GatewayApp(FastAPI):
    """FastAPI for the lifespan and the gateway's own routes; every HTTP request enters
    through the pipeline, which hands own routes back to FastAPI after its checks."""

    pipeline: Pipeline

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.pipeline(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def serve_own(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None, *,
               keys_fetcher: KeysFetcher | None = None) -> GatewayApp:
    """`keys_fetcher` replaces the JWKS fetch from `IGNY8_JWKS_URL` (tests)."""
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging("gateway", settings.log_level)
        configure_tracing("gateway", settings.otlp_endpoint,
                          sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)))
        nc = await nats_kernel.connect_as(settings, GATEWAY_USER, "gateway")
        js = nc.jetstream()
        buckets = await nats_kernel.ensure_platform(js, GATEWAY_USER, user=settings.nats_user)
        # The limiter's round trips get a short deadline: a slow store admits, never stalls.
        fast_js = nc.jetstream(timeout=settings.rate_limit_store_timeout_seconds)
        rate_kv = await fast_js.key_value(nats_kernel.RATE_LIMIT_BUCKET)
        revocations = RevocationList()
        await revocations.start(buckets[nats_kernel.REVOCATIONS_BUCKET])
        verifier = JwtVerifier(
            keys_fetcher or http_jwks_fetcher(settings.jwks_url),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
            revocations=revocations,
        )
        await verifier.start()
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.upstream_pool_size,
                                           limit_per_host=0, ttl_dns_cache=300,
                                           keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=settings.upstream_timeout_seconds,
                                          connect=settings.upstream_connect_timeout_seconds),
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        http1 = Http1Pool(limit=settings.upstream_pool_size,
                          connect_timeout=settings.upstream_connect_timeout_seconds,
                          timeout=settings.upstream_timeout_seconds)
        limiter = RateLimiter(rate_kv, settings.rate_limits(RATE_LIMITS), RATE_PERIOD_SECONDS)
        if not settings.throttle_disabled:
            await limiter.start()
        pipeline = gateway.pipeline
        pipeline.services = Services(
            session=session,
            http1=http1,
            authenticator=Authenticator(verifier, lambda: session, settings.auth_url,
                                        cache_seconds=settings.exchange_cache_seconds),
            limiter=limiter,
            idempotency=IdempotencyStore(
                buckets[nats_kernel.IDEMPOTENCY_BUCKET],
                stale_after_seconds=settings.upstream_timeout_seconds + 30),
        )
        app.state.gw = GatewayRuntime(
            settings=settings, pipeline=pipeline, nc=nc, session=session, verifier=verifier,
            task_progress=buckets[nats_kernel.TASK_PROGRESS_BUCKET],
            schema=SchemaCache(pipeline.upstreams, lambda: session, pipeline.routes,
                               settings.public_url, own_paths(),
                               cache_seconds=settings.openapi_cache_seconds),
        )
        log.info("gateway ready", extra={"fields": {"upstreams": sorted(pipeline.upstreams)}})
        try:
            with settled_heap():
                yield
        finally:
            pipeline.services = None
            await limiter.stop()
            await verifier.stop()
            await revocations.stop()
            await http1.close()
            await session.close()
            with contextlib.suppress(Exception):
                await nc.drain()

    gateway = GatewayApp(title="IGNY8 gateway", version="1.0.0", lifespan=lifespan,
                         docs_url=None, redoc_url=None, openapi_url=None,
                         telemetry=NO_NATIVE_TELEMETRY)
    gateway.pipeline = Pipeline(settings, gateway.serve_own)
    gateway.include_router(router)
    _install_error_handlers(gateway)
    return gateway


def _install_error_handlers(app: FastAPI) -> None:
    def rid(request: Request) -> str:
        return str(getattr(request.state, "request_id", "") or "unknown")

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        message = (_not_allowed(request.method) if status == 405
                   else envelope.STATUS_MESSAGES.get(status) or str(exc.detail))
        return Response(envelope.error(message, rid(request)), status_code=status,
                        media_type="application/json", headers=exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        body = envelope.error("Validation failed", rid(request), validation_errors(exc))
        return Response(body, status_code=400, media_type="application/json")

    async def on_error(request: Request, exc: Exception) -> Response:
        log.exception("gateway route failed")
        return Response(envelope.error_for_status(500, rid(request)), status_code=500,
                        media_type="application/json")

    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_error)


def _not_allowed(method: str) -> str:
    """DRF's text, as the services answer a method their route does not take."""
    return f'Method "{method}" not allowed.'
