"""`/api/schema/`: the services' OpenAPI documents merged into one, with the public
envelope in every response schema. Each service's `/openapi.json` is fetched and cached; a
service that does not answer keeps its last good document, or is left out (and named in
`x-igny8-unavailable-services`) until it does.

The merge documents what the API answers, whatever a service declared (issue 13):
- a GET with `page` and `page_size` query parameters answers a page
  (`libs/common/pagination.py`), so its 200 is the page envelope; a declared array gives
  the items' schema;
- request validation answers 400 (the kernel's problem handlers), never FastAPI's 422;
- 400 on every operation, 403 on every operation that needs credentials, 404 on every
  path with a parameter, every list (a page past the end: DRF's "Invalid page.") and every
  operation that names a row by id in its query or body (another tenant's or a deleted
  row), beside the gateway's own 401, 429, 503 and 504;
- a page whose items the service left undeclared is typed by its detail GET;
- operation ids are unique across the merged document;
- a collection's create and list link to the operations that take its rows' ids
  (`gateway/openapi_links.py`)."""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from gateway.openapi_links import add_links
from gateway.routes import RATE_LIMITS, RouteTable, is_public, scope_for

log = logging.getLogger("igny8.gateway.openapi")

REF_PREFIX = "#/components/schemas/"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

ENVELOPE_SCHEMAS: dict[str, Any] = {
    "ErrorEnvelope": {
        "type": "object",
        "required": ["success", "error", "request_id"],
        "properties": {
            "success": {"type": "boolean", "enum": [False]},
            "error": {"type": "string", "description": "Readable top-level error message"},
            "errors": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
                "description": "Field-specific error messages",
            },
            "request_id": {"type": "string"},
        },
    },
    "InlineEnvelope": {
        "type": "object",
        "description": "Members of the answer placed directly in the envelope "
                       "(pages: count/next/previous/results).",
        "required": ["success", "request_id"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "request_id": {"type": "string"},
        },
    },
}

_ERROR_RESPONSES = {
    "400": "Bad request",
    "401": "Authentication required",
    "403": "Permission denied",
    "404": "Not found",
    "429": "Rate limit exceeded",
    "503": "Service unavailable",
    "504": "Gateway timeout",
}


def success_schema(schema: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data", "request_id"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "data": schema or {},
            "message": {"type": "string"},
            "request_id": {"type": "string"},
        },
    }


def page_schema(items: dict[str, Any] | None) -> dict[str, Any]:
    """A page of a list endpoint in the envelope."""
    link = {"type": ["string", "null"], "format": "uri"}
    return {
        "type": "object",
        "required": ["success", "count", "next", "previous", "results", "request_id"],
        "properties": {
            "success": {"type": "boolean", "enum": [True]},
            "count": {"type": "integer", "minimum": 0},
            "next": link,
            "previous": link,
            "results": {"type": "array", "items": items or {}},
            "request_id": {"type": "string"},
        },
    }


def error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF_PREFIX + "ErrorEnvelope"}}},
    }


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(REF_PREFIX):
        target = schemas.get(ref[len(REF_PREFIX):])
        if isinstance(target, dict):
            return target
    return schema


def _is_inline(schema: dict[str, Any], schemas: dict[str, Any]) -> bool:
    props = _resolve(schema, schemas).get("properties")
    if not isinstance(props, dict):
        return False
    return {"count", "results"} <= props.keys() or {"data", "message"} <= props.keys()


def _is_page(method: str, op: dict[str, Any]) -> bool:
    """A list endpoint: a GET taking `page` and `page_size` answers a page."""
    names = {p.get("name") for p in op.get("parameters", ())
             if isinstance(p, dict) and p.get("in") == "query"}
    return method == "get" and {"page", "page_size"} <= names


def _is_id(name: Any) -> bool:
    return isinstance(name, str) and (name.endswith(("_id", "_ids")) or name == "ids")


def _names_a_row(op: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """An id in the query (`?site_id=`, `?run_id=`) or at the top of the JSON body
    (`{"content_id": ...}`, `{"ids": [...]}`): a row the caller may not see is a 404."""
    if any(isinstance(p, dict) and p.get("in") == "query" and _is_id(p.get("name"))
           for p in op.get("parameters", ())):
        return True
    content = op.get("requestBody", {}).get("content", {})
    for media in content.values() if isinstance(content, dict) else ():
        schema = media.get("schema") if isinstance(media, dict) else None
        if isinstance(schema, dict):
            properties = _resolve(schema, schemas).get("properties")
            if isinstance(properties, dict) and any(_is_id(n) for n in properties):
                return True
    return False


def _wrap(schema: Any, schemas: dict[str, Any], page: bool) -> dict[str, Any]:
    """A 2xx JSON schema as the client receives it, in the envelope."""
    declared = schema if isinstance(schema, dict) else None
    if declared is not None and _is_inline(declared, schemas):
        return {"allOf": [{"$ref": REF_PREFIX + "InlineEnvelope"}, declared]}
    if page:
        resolved = _resolve(declared, schemas) if declared is not None else {}
        items = resolved.get("items") if resolved.get("type") == "array" else None
        return page_schema(items if isinstance(items, dict) else None)
    return success_schema(declared)


def envelope_operation(op: dict[str, Any], schemas: dict[str, Any], *, public: bool,
                       limited: bool, method: str = "get", path: str = "") -> None:
    responses = op.setdefault("responses", {})
    page = _is_page(method, op)
    for code, response in list(responses.items()):
        if not isinstance(response, dict):
            continue
        code = str(code)
        content = response.get("content")
        if code.startswith("2") and code != "204":
            if not isinstance(content, dict):
                continue
            for media, media_obj in list(content.items()):
                if "json" not in media or not isinstance(media_obj, dict):
                    continue
                wrapped = _wrap(media_obj.get("schema"), schemas, page)
                content.pop(media)
                content["application/json"] = {"schema": wrapped}
        elif code == "422":  # FastAPI's validation answer: the kernel answers 400
            del responses[code]
            responses.setdefault("400", error_response("Validation failed"))
        elif code[0] in "45" or code == "default":
            responses[code] = error_response(response.get("description") or "Error")
    extra = dict(_ERROR_RESPONSES)
    if public:
        del extra["401"], extra["403"]
    if not limited:
        del extra["429"]
    if "{" not in path and not page and not _names_a_row(op, schemas):
        del extra["404"]
    for code, description in extra.items():
        responses.setdefault(code, error_response(description))


def merge(documents: dict[str, dict[str, Any]], routes: RouteTable, public_url: str,
          own_paths: dict[str, Any], unavailable: list[str]) -> dict[str, Any]:
    schemas: dict[str, Any] = dict(ENVELOPE_SCHEMAS)
    paths: dict[str, Any] = {}
    for service, original in sorted(documents.items()):
        doc = _rename_conflicts(service, original, schemas)
        for name, schema in doc.get("components", {}).get("schemas", {}).items():
            schemas.setdefault(name, schema)
        for path, item in doc.get("paths", {}).items():
            if routes.service_for(path) != service:
                continue  # internal or another service's path
            paths[path] = item
    operation_ids: set[str] = set()
    for path, item in paths.items():
        for method, op in item.items():
            if method not in METHODS or not isinstance(op, dict):
                continue
            public = is_public(method.upper(), path)
            scope = scope_for(method.upper(), path)
            envelope_operation(op, schemas, public=public, limited=scope is not None,
                               method=method, path=path)
            _unique_operation_id(op, method, operation_ids)
            if public:
                op["security"] = []
            if scope is not None:
                op["x-igny8-rate-limit-scope"] = scope
                op["x-igny8-rate-limit"] = f"{RATE_LIMITS[scope]}/min"
    _type_pages(paths)
    add_links(paths, schemas)
    paths.update(own_paths)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "IGNY8 API",
            "version": "1.0.0",
            "description": "Every answer is wrapped in the envelope: "
                           "`{success, data, message?, request_id}`, pages as "
                           "`{success, count, next, previous, results, request_id}`, errors "
                           "as `{success: false, error, errors?, request_id}`.",
        },
        "servers": [{"url": public_url}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basicAuth": {"type": "http", "scheme": "basic"},
                "apiKeyAuth": {"type": "apiKey", "in": "header", "name": "Authorization",
                               "description": "`ApiKey <site key>` (WordPress plugin; only "
                                              "integration, writer and auth/sites paths)"},
            },
        },
        "security": [{"bearerAuth": []}, {"basicAuth": []}, {"apiKeyAuth": []}],
    }
    if unavailable:
        document["x-igny8-unavailable-services"] = sorted(unavailable)
    return document


def _type_pages(paths: dict[str, Any]) -> None:
    """A page whose service declared no item is typed by its detail: a list item holds the
    fields its detail GET answers and nothing else (docs/contracts.md)."""
    for path, item in paths.items():
        results = _json_schema(item.get("get"), "200").get("properties", {}).get("results")
        if not isinstance(results, dict) or results.get("items") != {}:
            continue
        details = [other for other in paths if re.fullmatch(re.escape(path) + r"\{\w+\}/", other)]
        if len(details) != 1:
            continue
        data = _json_schema(paths[details[0]].get("get"), "200").get("properties", {}).get("data")
        if isinstance(data, dict) and data:
            results["items"] = copy.deepcopy(data)


def _json_schema(op: Any, code: str) -> dict[str, Any]:
    if not isinstance(op, dict):
        return {}
    schema = op.get("responses", {}).get(code, {}).get("content", {}).get(
        "application/json", {}).get("schema")
    return schema if isinstance(schema, dict) else {}


def _unique_operation_id(op: dict[str, Any], method: str, seen: set[str]) -> None:
    """A service that serves PUT and PATCH with one function gives both its name."""
    operation_id = op.get("operationId")
    if not isinstance(operation_id, str):
        return
    candidate, n = operation_id, 1
    while candidate in seen:
        n += 1
        candidate = f"{operation_id}_{method}" if n == 2 else f"{operation_id}_{method}{n}"
    op["operationId"] = candidate
    seen.add(candidate)


def _rename_conflicts(service: str, doc: dict[str, Any], merged: dict[str, Any]
                      ) -> dict[str, Any]:
    """A schema name another service already uses with a different body is prefixed with
    this service's name, and this document's references follow."""
    own = doc.get("components", {}).get("schemas", {})
    renames = {name: f"{service.capitalize()}{name}" for name, schema in own.items()
               if name in merged and merged[name] != schema}
    if not renames:
        return doc
    raw = orjson.dumps(doc)
    for old, new in renames.items():
        raw = raw.replace(f'"{REF_PREFIX}{old}"'.encode(), f'"{REF_PREFIX}{new}"'.encode())
    renamed: dict[str, Any] = orjson.loads(raw)
    components = renamed.setdefault("components", {}).setdefault("schemas", {})
    for old, new in renames.items():
        components[new] = components.pop(old)
    return renamed


class SchemaCache:
    def __init__(self, upstreams: dict[str, str], session: Callable[[], aiohttp.ClientSession],
                 routes: RouteTable, public_url: str, own_paths: dict[str, Any],
                 cache_seconds: float = 60.0, timeout_seconds: float = 3.0) -> None:
        self.upstreams = upstreams
        self._session = session
        self.routes = routes
        self.public_url = public_url
        self.own_paths = own_paths
        self.cache_seconds = cache_seconds
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._documents: dict[str, dict[str, Any]] = {}
        self._merged: bytes | None = None
        self._built_at = 0.0
        self._lock = asyncio.Lock()

    async def document(self) -> bytes:
        if self._merged is not None and time.monotonic() - self._built_at < self.cache_seconds:
            return self._merged
        async with self._lock:
            if (self._merged is not None
                    and time.monotonic() - self._built_at < self.cache_seconds):
                return self._merged
            names = sorted(self.upstreams)
            fetched = await asyncio.gather(*(self._fetch(n) for n in names))
            unavailable = []
            for name, doc in zip(names, fetched, strict=True):
                if doc is not None:
                    self._documents[name] = doc
                elif name not in self._documents:
                    unavailable.append(name)
            missing = [s for s in ("auth", "planner", "writer", "billing", "automation")
                       if s not in self.upstreams]
            merged = merge(copy.deepcopy(self._documents), self.routes, self.public_url,
                           copy.deepcopy(self.own_paths), unavailable + missing)
            self._merged = orjson.dumps(merged)
            # A document missing now is asked for again soon, not after the full period.
            self._built_at = time.monotonic() - (self.cache_seconds * 0.8 if unavailable else 0)
            return self._merged

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        url = self.upstreams[service] + "/openapi.json"
        try:
            async with self._session().get(url, timeout=self.timeout) as resp:
                if resp.status != 200:
                    return None
                doc = orjson.loads(await resp.read())
                return doc if isinstance(doc, dict) else None
        except (aiohttp.ClientError, TimeoutError, OSError, orjson.JSONDecodeError) as exc:
            log.info("OpenAPI document of %s unavailable: %s", service, exc)
            return None
