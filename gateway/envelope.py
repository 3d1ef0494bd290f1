"""The public envelope, built by splicing bytes: service bodies are never re-parsed except
RFC 9457 problem documents (and the rare non-problem JSON error).

- success `{"success":true,"data":<body>,"request_id":"..."}`
- inline (`X-Igny8-Envelope: inline`) `{"success":true,<members of body>,"request_id":"..."}`
- error `{"success":false,"error":"...","errors":{...}?,"request_id":"..."}`

Request ids are sanitised (`libs.common.middleware.request_id_from`): they never need
JSON escaping, so they are spliced in as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

JSON_CONTENT_TYPE = b"application/json"
PROBLEM_CONTENT_TYPE = b"application/problem+json"

_SUCCESS_DATA = b'{"success":true,"data":'
_SUCCESS_OPEN = b'{"success":true,'
_RID = b',"request_id":"'
_CLOSE = b'"}'

# Status → the error message the gateway uses when nothing better is known.
STATUS_MESSAGES = {
    400: "Bad request",
    401: "Authentication required",
    402: "Insufficient credits",
    403: "Permission denied",
    404: "Not found.",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable entity",
    429: "Rate limit exceeded",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}


def success(body: bytes, request_id: str) -> bytes:
    """Wrap a plain JSON document as `data`."""
    if not body.strip():
        body = b"null"
    return b"".join((_SUCCESS_DATA, body, _RID, request_id.encode(), _CLOSE))


def inline(body: bytes, request_id: str) -> bytes | None:
    """Splice an object's members into the envelope; None when the body is not an object."""
    body = body.strip()
    if len(body) < 2 or body[0] != 0x7B or body[-1] != 0x7D:  # { ... }
        return None
    inner = body[1:-1].strip()
    if not inner:
        return b"".join((b'{"success":true', _RID, request_id.encode(), _CLOSE))
    return b"".join((_SUCCESS_OPEN, inner, _RID, request_id.encode(), _CLOSE))


def success_value(data: Any, request_id: str, message: str | None = None) -> bytes:
    """The gateway's own success answers."""
    doc: dict[str, Any] = {"success": True, "data": data}
    if message:
        doc["message"] = message
    doc["request_id"] = request_id
    return orjson.dumps(doc)


def error(
    message: str,
    request_id: str,
    errors: Mapping[str, Sequence[str]] | None = None,
) -> bytes:
    doc: dict[str, Any] = {"success": False, "error": message}
    if errors:
        doc["errors"] = errors
    doc["request_id"] = request_id
    return orjson.dumps(doc)


def error_for_status(status: int, request_id: str, message: str | None = None) -> bytes:
    return error(message or STATUS_MESSAGES.get(status, "Error"), request_id)


def from_problem(body: bytes, status: int, request_id: str) -> bytes:
    """An RFC 9457 problem (or any JSON error document) → the error envelope."""
    try:
        doc = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    message = _first_text(doc, "detail", "error", "title", "message")
    errors = doc.get("errors")
    if not isinstance(errors, dict):
        errors = None
    elif errors:
        errors = {str(k): v if isinstance(v, list) else [v] for k, v in errors.items()}
    return error(message or STATUS_MESSAGES.get(status, "Error"), request_id, errors)


def _first_text(doc: dict[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = doc.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == JSON_CONTENT_TYPE or (media.startswith(b"application/")
                                          and media.endswith(b"+json"))


def is_problem(content_type: bytes) -> bool:
    return content_type.split(b";", 1)[0].strip().lower() == PROBLEM_CONTENT_TYPE
