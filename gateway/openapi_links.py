"""OpenAPI links in the merged document: what a created (or listed) row feeds.

A collection `P` (`/api/v1/auth/sites/`) with an item path `P{x}/` names its rows by `x`
(`site_id`) and by its last segment made singular (`sites` -> `site_id`;
`author-profiles` -> `author_profile_id`). Its `POST` (the new row in `data`) and its
list `GET` (the first row of `results`) link to every operation that takes one of those
names: a path parameter (under `P{x}/` for a generic name such as `row_id`, anywhere for
a specific one), a query parameter, or a top-level field of the JSON body. The link also
passes on the ids the row itself carries that the operation takes as well (a sector's
`site_id` to a cluster's create, beside the sector's id as its `sector_id`).

A client (and schemathesis' stateful phase) follows them from a row it made to the
operations on that row. A body link's `requestBody` names only the fields it sets: the
rest of the body is the client's own (schemathesis merges them)."""

from __future__ import annotations

import re
from typing import Any

REF_PREFIX = "#/components/schemas/"
_PARAM = re.compile(r"\{(\w+)\}")
_GENERIC = frozenset({"row_id", "id", "pk"})


def _resolve(schema: Any, schemas: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            target = schemas.get(ref[len(REF_PREFIX):])
            return target if isinstance(target, dict) else {}
        return schema
    return {}


def _singular(segment: str) -> str:
    word = segment.replace("-", "_")
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _row_fields(op: dict[str, Any], code: str, schemas: dict[str, Any],
                pointer: str) -> set[str]:
    """The properties of the row a 2xx answer carries at `data` or in `results`."""
    response = op.get("responses", {}).get(code)
    if not isinstance(response, dict):
        return set()
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    properties = _resolve(schema, schemas).get("properties", {})
    if pointer == "/data":
        row = _resolve(properties.get("data"), schemas)
    else:
        row = _resolve(_resolve(properties.get("results"), schemas).get("items"), schemas)
    fields = row.get("properties")
    return set(fields) if isinstance(fields, dict) else set()


def _inputs(path: str, op: dict[str, Any], schemas: dict[str, Any]
            ) -> tuple[list[str], list[str], list[str]]:
    """The operation's path parameters, query parameters and top-level body fields."""
    query = [p["name"] for p in op.get("parameters", ())
             if isinstance(p, dict) and p.get("in") == "query" and isinstance(p.get("name"), str)]
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    properties = _resolve(schema.get("schema") if isinstance(schema, dict) else None,
                          schemas).get("properties")
    body = list(properties) if isinstance(properties, dict) else []
    return _PARAM.findall(path), query, body


def _producers(paths: dict[str, Any], schemas: dict[str, Any]
               ) -> list[tuple[str, dict[str, Any], str, str, str, set[str], set[str]]]:
    """(collection, operation, status, pointer to the row, item parameter, names, fields)."""
    found = []
    for path, item in paths.items():
        if not isinstance(item, dict) or not path.endswith("/") or path.endswith("}/"):
            continue
        items = [m.group(1) for other in paths
                 if (m := re.fullmatch(re.escape(path) + r"\{(\w+)\}/", other))]
        if len(items) != 1:
            continue
        param = items[0]
        names = {_singular(path.rstrip("/").rsplit("/", 1)[-1]) + "_id"}
        if param not in _GENERIC:
            names.add(param)
        for method, pointer in (("post", "/data"), ("get", "/results/0")):
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            code = next((c for c in ("201", "200") if c in op.get("responses", {})), "")
            fields = _row_fields(op, code, schemas, pointer)
            if "id" in fields:
                found.append((path, op, code, pointer, param, names, fields))
    return found


def add_links(paths: dict[str, Any], schemas: dict[str, Any]) -> None:
    """Adds `links` to the 2xx answers of the collections' creates and lists."""
    consumers = [(path, op, *_inputs(path, op, schemas))
                 for path, item in paths.items() if isinstance(item, dict)
                 for op in item.values()
                 if isinstance(op, dict) and isinstance(op.get("operationId"), str)]
    for collection, producer, code, pointer, param, names, fields in _producers(paths, schemas):
        row = f"$response.body#{pointer}"
        links: dict[str, Any] = {}
        for path, op, path_params, query, body in consumers:
            if op is producer:
                continue
            own = path.startswith(f"{collection}{{{param}}}/")
            parameters = {f"path.{n}": f"{row}/id" for n in path_params
                          if (own and n == param) or (n in names and n not in _GENERIC)}
            parameters.update({f"query.{n}": f"{row}/id" for n in query if n in names})
            request = {n: f"{row}/id" for n in body if n in names}
            if not parameters and not request:
                continue
            # The row's own ids the operation also takes (a sector's site_id).
            carried = {n for n in fields if n != "id" and n.endswith("_id") and n not in names}
            parameters.update({f"path.{n}": f"{row}/{n}" for n in path_params
                               if n in carried and n not in _GENERIC})
            parameters.update({f"query.{n}": f"{row}/{n}" for n in query if n in carried})
            request.update({n: f"{row}/{n}" for n in body if n in carried})
            link: dict[str, Any] = {"operationId": op["operationId"]}
            if parameters:
                link["parameters"] = parameters
            if request:
                link["requestBody"] = request
            links[op["operationId"]] = link
        if links:
            producer["responses"][code].setdefault("links", {}).update(links)
