"""The gateway's own routes. The pipeline has already assigned the request id, checked
credentials (`request.state.principal`) and charged the rate limit before these run."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from fastapi import APIRouter, Request
from nats.js.errors import KeyNotFoundError
from starlette.responses import FileResponse, HTMLResponse, Response

from gateway import envelope
from libs.common.metrics import metrics_response
from libs.common.security import Principal

router = APIRouter()

# A KV key: subject tokens joined by dots (none empty: no dot at either end, no two together).
_VALID_KV_KEY = re.compile(r"^(?!\.)(?!.*\.\.)[-_=.a-zA-Z0-9]{1,256}(?<!\.)$")
_JSON = "application/json"


def _rid(request: Request) -> str:
    return str(request.state.request_id)


def _principal(request: Request) -> Principal | None:
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def ok(request: Request, data: Any, status_code: int = 200, message: str | None = None
       ) -> Response:
    return Response(envelope.success_value(data, _rid(request), message),
                    status_code=status_code, media_type=_JSON)


def fail(request: Request, status_code: int, message: str | None = None) -> Response:
    return Response(envelope.error_for_status(status_code, _rid(request), message),
                    status_code=status_code, media_type=_JSON)


@router.get("/api/v1/")
async def api_root(request: Request) -> Response:
    """The base URL `igny8 up` prints: where things are, not a 404."""
    from gateway.routes import modules

    base = request.app.state.gw.settings.public_url.rstrip("/")
    return ok(request, {
        "version": "v1", "docs": f"{base}/api/docs/", "redoc": f"{base}/api/redoc/",
        "schema": f"{base}/api/schema/",
        "modules": {m.split("/")[3]: base + m for m in modules()}})


@router.get("/api/v1/{module}/")
async def module_root(request: Request, module: str) -> Response:
    """A module's URL (as `/api/v1/` lists it): its resources and their URLs, as DRF's
    DefaultRouter root answered, from the paths the merged OpenAPI document holds."""
    from gateway.routes import MODULE_ROOTS

    prefix = f"/api/v1/{module}/"
    if prefix not in MODULE_ROOTS:
        return fail(request, 404)
    gw = request.app.state.gw
    paths = orjson.loads(await gw.schema.document()).get("paths", {})
    base = gw.settings.public_url.rstrip("/")
    resources = {}
    for path, operations in paths.items():
        name = path.removeprefix(prefix).removesuffix("/")
        if path.startswith(prefix) and name and "/" not in name and "get" in operations:
            resources[name] = base + path
    return ok(request, dict(sorted(resources.items())))


@router.get("/api/v1/system/ping/")
async def ping(request: Request) -> Response:
    return ok(request, {"status": "ok", "service": "gateway", "time": time.time()})


@router.get("/api/v1/system/status/")
async def system_status(request: Request) -> Response:
    gw = request.app.state.gw
    settings = gw.settings
    upstreams: dict[str, str | None] = settings.upstream_urls()
    timeout = aiohttp.ClientTimeout(total=settings.status_timeout_seconds)

    async def check(name: str, base: str | None) -> tuple[str, dict[str, Any]]:
        if not base:
            return name, {"status": "not_configured"}
        started = time.perf_counter()
        try:
            async with gw.session.get(base.rstrip("/") + "/readyz", timeout=timeout) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return name, {"status": "down", "error": exc.__class__.__name__}
        detail: dict[str, Any] = {}
        try:
            parsed = orjson.loads(body)
            if isinstance(parsed, dict):
                detail = {k: v for k, v in parsed.items() if k in ("database", "nats")}
        except orjson.JSONDecodeError:
            pass
        return name, {"status": "ok" if status == 200 else "down", **detail,
                      "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    results = dict(await asyncio.gather(*(check(n, u) for n, u in upstreams.items())))
    nats_ok = bool(gw.nc.is_connected)
    healthy = nats_ok and all(r["status"] == "ok" for r in results.values())
    return ok(request, {
        "status": "ok" if healthy else "degraded",
        "gateway": {"status": "ok", "nats": "ok" if nats_ok else "down"},
        "services": results,
        "time": time.time(),
    })


@router.get("/api/v1/system/settings/task_progress/{task_id}/")
async def task_progress(request: Request, task_id: str) -> Response:
    """The reference's raw `{state, meta}` shape (not enveloped), for the task's own
    account only: anyone else, and unknown ids, get 404."""
    principal = _principal(request)
    if principal is None:
        return fail(request, 401)
    if not _VALID_KV_KEY.match(task_id):
        return fail(request, 404)
    kv = request.app.state.gw.task_progress
    try:
        entry = await kv.get(task_id)
    except KeyNotFoundError:
        return fail(request, 404)
    try:
        doc = orjson.loads(entry.value or b"")
    except orjson.JSONDecodeError:
        return fail(request, 404)
    if not isinstance(doc, dict):
        return fail(request, 404)
    owner = doc.get("account_id")
    if not principal.is_platform_staff and (owner is None or int(owner) !=
                                            principal.account_id):
        return fail(request, 404)
    body = orjson.dumps({"state": doc.get("state"), "meta": doc.get("meta") or {}})
    return Response(body, media_type=_JSON, headers={"cache-control": "no-store"})


@router.get("/api/v1/system/request-metrics/{request_id}/")
async def request_metrics(request: Request, request_id: str) -> Response:
    principal = _principal(request)
    if principal is None:
        return fail(request, 401)
    log = request.app.state.gw.pipeline.request_log
    timing = log.get(principal.account_id, request_id)
    if timing is None and principal.is_platform_staff:
        timing = log.newest(request_id)
    if timing is None:
        return fail(request, 404)
    return ok(request, timing.as_dict())


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return metrics_response()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=_JSON)


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response:
    nats_ok = bool(request.app.state.gw.nc.is_connected)
    return Response(orjson.dumps({"nats": "ok" if nats_ok else "down"}), media_type=_JSON,
                    status_code=200 if nats_ok else 503)


# ---- documentation --------------------------------------------------------------------

@router.get("/api/schema/", include_in_schema=False)
async def schema(request: Request) -> Response:
    return Response(await request.app.state.gw.schema.document(),
                    media_type="application/vnd.oai.openapi+json")


def _package_file(package: str, relative: str) -> Path | None:
    """A file shipped inside an installed package (the documentation pages' assets are
    served from there: nothing is fetched from a CDN)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


# Swagger UI 5 (it reads OpenAPI 3.1; the 4.x of swagger-ui-bundle cannot) and ReDoc, from
# fastapi-standalone-docs.
DOCS_PACKAGE = "fastapi_standalone_docs"
SWAGGER_FILES = {"swagger-ui.css": "static/swagger/swagger-ui.css",
                 "swagger-ui-bundle.js": "static/swagger/swagger-ui-bundle.js"}
REDOC_FILE = "static/redoc/redoc.standalone.js"


def swagger_asset_path(name: str) -> Path | None:
    relative = SWAGGER_FILES.get(name)
    return _package_file(DOCS_PACKAGE, relative) if relative else None


def redoc_bundle() -> Path | None:
    return _package_file(DOCS_PACKAGE, REDOC_FILE)


_SWAGGER_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>IGNY8 API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body></html>"""

# validatorUrl: null, or Swagger UI asks validator.swagger.io about the document.
_SWAGGER_INIT = """window.ui = SwaggerUIBundle({url: "/api/schema/", dom_id: "#swagger-ui",
  deepLinking: true, persistAuthorization: true, validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout"});"""

_REDOC_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>IGNY8 API</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><redoc spec-url="/api/schema/"></redoc>
<script src="/api/redoc/redoc.standalone.js"></script></body></html>"""

@router.get("/api/docs/", include_in_schema=False)
async def swagger_ui(request: Request) -> Response:
    if swagger_asset_path("swagger-ui-bundle.js") is None:
        return fail(request, 503, "Swagger UI assets are not installed: add the "
                                  "fastapi-standalone-docs package")
    return HTMLResponse(_SWAGGER_HTML)


@router.get("/api/docs/init.js", include_in_schema=False)
async def swagger_init() -> Response:
    return Response(_SWAGGER_INIT, media_type="application/javascript")


@router.get("/api/docs/{name}", include_in_schema=False)
async def swagger_asset(request: Request, name: str) -> Response:
    path = swagger_asset_path(name)
    if path is None:
        return fail(request, 404)
    return FileResponse(path, headers={"cache-control": "public, max-age=86400"})


@router.get("/api/redoc/", include_in_schema=False)
async def redoc(request: Request) -> Response:
    if redoc_bundle() is None:
        return fail(request, 503, "ReDoc assets are not installed: add the "
                                  "fastapi-standalone-docs package")
    return HTMLResponse(_REDOC_HTML)


@router.get("/api/redoc/redoc.standalone.js", include_in_schema=False)
async def redoc_js(request: Request) -> Response:
    bundle = redoc_bundle()
    if bundle is None:
        return fail(request, 404)
    return FileResponse(bundle, media_type="application/javascript",
                        headers={"cache-control": "public, max-age=86400"})


# ---- the gateway's own paths in the merged OpenAPI document -----------------------------

def _own_op(summary: str, data: dict[str, Any] | None, *, public: bool = False,
            raw: dict[str, Any] | None = None, params: tuple[str, ...] = ()) -> dict[str, Any]:
    from gateway.openapi import error_response, success_schema

    schema = raw if raw is not None else success_schema(data)
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["system"],
        "parameters": [{"name": p, "in": "path", "required": True,
                        "schema": {"type": "string"}} for p in params],
        "responses": {"200": {"description": "OK",
                              "content": {"application/json": {"schema": schema}}}},
    }
    if public:
        op["security"] = []
    else:
        op["responses"]["401"] = error_response("Authentication required")
        op["responses"]["404"] = error_response("Not found")
        op["responses"]["429"] = error_response("Rate limit exceeded")
    return op


def own_paths() -> dict[str, Any]:
    from gateway.routes import MODULE_ROOTS

    roots = {root: {"get": _own_op(f"The {root.split('/')[3]} module: its resources' URLs",
                                   {"type": "object"}, public=True)}
             for root in sorted(MODULE_ROOTS)}
    return {
        **roots,
        "/api/v1/": {"get": _own_op("API root: documentation and module URLs",
                                    {"type": "object"}, public=True)},
        "/api/v1/system/ping/": {"get": _own_op("Health check", {"type": "object"},
                                                public=True)},
        "/api/v1/system/status/": {"get": _own_op(
            "System status: every service's readiness, NATS, databases",
            {"type": "object"}, public=True)},
        "/api/v1/system/settings/task_progress/{task_id}/": {"get": _own_op(
            "Progress of an AI task (not enveloped)", None, params=("task_id",),
            raw={"type": "object", "required": ["state", "meta"], "properties": {
                "state": {"type": "string", "enum": ["PENDING", "PROGRESS", "SUCCESS",
                                                     "FAILURE", "REVOKED"]},
                "meta": {"type": "object"}}})},
        "/api/v1/system/request-metrics/{request_id}/": {"get": _own_op(
            "Timing breakdown of a recent request of your account", {"type": "object"},
            params=("request_id",))},
    }
