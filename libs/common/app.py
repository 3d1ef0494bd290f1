"""The app factory every service's `main.py` calls, so all services start, check their
schema, connect, verify tokens, expose health and metrics the same way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from starlette.requests import Request
from starlette.responses import Response

from libs.common import nats as nats_kernel
from libs.common.db import Database
from libs.common.forms import ReadFormBodies
from libs.common.ids import MAX_BIGINT
from libs.common.logging import configure_logging
from libs.common.metrics import metrics_response
from libs.common.middleware import ObservabilityMiddleware
from libs.common.migrations import assert_current
from libs.common.nul import RefuseNulCharacters
from libs.common.problems import install_problem_handlers
from libs.common.runtime import settled_heap
from libs.common.security import JwtVerifier, KeysFetcher, RevocationList, http_jwks_fetcher
from libs.common.settings import ServiceSettings
from libs.common.telemetry import configure_tracing

log = logging.getLogger(__name__)

Hook = Callable[[FastAPI], Awaitable[None]]
S = TypeVar("S", bound=ServiceSettings)
S_in = TypeVar("S_in", bound=ServiceSettings, contravariant=True)

# FastAPI's own OpenTelemetry (spans, metrics and logs per request, on as soon as a tracer
# provider is set) would repeat per request what `ObservabilityMiddleware` already records
# for every service the same way (one span, Prometheus metrics, JSON logs).
NO_NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    routers: Sequence[APIRouter],
    migrations_dir: Path | None,
    keys_fetcher: KeysFetcher | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
) -> FastAPI:
    service = settings.service_name

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(service, settings.log_level)
        configure_tracing(service, settings.otlp_endpoint)
        if migrations_dir is not None:
            assert_current(migrations_dir, settings.database_url)
        app.state.settings = settings
        app.state.db = Database(settings.database_url, pool_size=settings.db_pool_size,
                                max_overflow=settings.db_max_overflow)
        app.state.nc = await nats_kernel.connect_as(settings, service, f"{service}-api")
        app.state.js = app.state.nc.jetstream()
        app.state.buckets = await nats_kernel.ensure_platform(
            app.state.js, service, user=settings.nats_user)
        revocations = RevocationList()
        await revocations.start(app.state.buckets[nats_kernel.REVOCATIONS_BUCKET])
        app.state.verifier = JwtVerifier(
            keys_fetcher or http_jwks_fetcher(settings.jwks_url),
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
            revocations=revocations,
        )
        for hook in on_startup:
            await hook(app)
        await app.state.verifier.start()
        try:
            with settled_heap():
                yield
        finally:
            for hook in on_shutdown:
                with contextlib.suppress(Exception):
                    await hook(app)
            await app.state.verifier.stop()
            await revocations.stop()
            with contextlib.suppress(Exception):
                await app.state.nc.drain()
            await app.state.db.dispose()

    app = FastAPI(
        title=title,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        telemetry=NO_NATIVE_TELEMETRY,
    )
    install_problem_handlers(app)
    for router in routers:
        app.include_router(router)
    exact_integer_bounds(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        db_ok = await request.app.state.db.ping()
        nats_ok = bool(request.app.state.nc.is_connected)
        body = {"database": "ok" if db_ok else "down", "nats": "ok" if nats_ok else "down"}
        return JSONResponse(body, status_code=200 if db_ok and nats_ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return metrics_response()

    app.add_middleware(RefuseNulCharacters)
    # Outside the NUL check, so that a form read as JSON is checked as JSON is.
    app.add_middleware(ReadFormBodies)
    app.add_middleware(ObservabilityMiddleware, service=service)
    return app


def exact_integer_bounds(app: FastAPI) -> None:
    """`/openapi.json` with the bounds its models declare. FastAPI passes the document
    through its own models, which type `minimum`/`maximum` as floats: `le=2**63 - 1` (every
    `Id`) came out as 9.223372036854776e+18, that is 2**63, a value the API refuses, so
    the document told clients (and schemathesis) to send it. Decimal strings get their
    pattern in the same pass (`_decimal_string`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            for node in list(_every_object(document)):
                _exact_bounds(node)
                _decimal_string(node)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _every_object(node: Any) -> Iterator[dict[str, Any]]:
    """Every object of a JSON document, outermost first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _every_object(value)
    elif isinstance(node, list):
        for item in node:
            yield from _every_object(item)


BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


def _exact_bounds(node: dict[str, Any]) -> None:
    """Whole-number bounds as integers; the float of `MAX_BIGINT` (rounded up to 2**63,
    a bound no model declares) as `MAX_BIGINT`."""
    for key in BOUNDS:
        value = node.get(key)
        if isinstance(value, float) and value.is_integer():
            node[key] = MAX_BIGINT if int(value) == MAX_BIGINT + 1 else int(value)


# A decimal as a string (`"12.50"`, `"-3"`, `".5"`): what pydantic's Decimal reads.
DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
UNSIGNED_PATTERN = r"^\+?(\d+(\.\d*)?|\.\d+)$"  # where the number has a minimum >= 0
# Where it must be more than 0 (a payment's amount, a package's price): some digit other
# than 0, so neither "0" nor "0.00" (nor "-1"); no look-ahead, which generators of
# matching strings (schemathesis' hypothesis) do not all support.
POSITIVE_PATTERN = r"^\+?(0*[1-9]\d*(\.\d*)?|0*\.\d*[1-9]\d*)$"


def _decimal_string(node: dict[str, Any]) -> None:
    """A `Decimal` field is documented `anyOf: [number, string]` with any string allowed;
    `"price": ""` or `"abc"` is a 400 ("A valid number is required."), so the string
    says it is a decimal's (schemathesis' positive_data_acceptance sent them), and, like
    the number beside it, whether it may be negative or 0 (`"0"` for a `gt=0` amount)."""
    variants = node.get("anyOf")
    variants = variants if isinstance(variants, list) else []
    numbers = [v for v in variants if isinstance(v, dict) and v.get("type") == "number"]
    if numbers:
        bounds = [_lowest(v) for v in numbers]
        if all(low > 0 or (low == 0 and exclusive) for low, exclusive in bounds):
            pattern = POSITIVE_PATTERN
        elif all(low >= 0 for low, _ in bounds):
            pattern = UNSIGNED_PATTERN
        else:
            pattern = DECIMAL_PATTERN
        for variant in variants:
            if variant == {"type": "string"}:
                variant["pattern"] = pattern


def _lowest(number: dict[str, Any]) -> tuple[float, bool]:
    """The number's lower bound and whether it is exclusive (-1 when it has none)."""
    for key, exclusive in (("exclusiveMinimum", True), ("minimum", False)):
        bound = number.get(key)
        if isinstance(bound, int | float):
            return float(bound), exclusive
    return -1.0, False


class AppFactory(Protocol[S_in]):
    def __call__(self, settings: S_in | None = None, *,
                 keys_fetcher: KeysFetcher | None = None) -> FastAPI: ...


def app_factory(settings_class: type[S], *, title: str, routers: Sequence[APIRouter],
                migrations_dir: Path | None, on_startup: Sequence[Hook] = (),
                on_shutdown: Sequence[Hook] = ()) -> AppFactory[S]:
    """A service's `create_app` (what `uvicorn services.<name>.main:create_app --factory`
    calls): settings from the environment unless a test passes its own."""

    def create_app(settings: S | None = None, *,
                   keys_fetcher: KeysFetcher | None = None) -> FastAPI:
        return create_service_app(settings or settings_class(), title=title, routers=routers,
                                  migrations_dir=migrations_dir, keys_fetcher=keys_fetcher,
                                  on_startup=on_startup, on_shutdown=on_shutdown)

    return create_app
