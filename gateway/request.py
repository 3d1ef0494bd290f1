"""One request as the pipeline sees it: its head, read once from the ASGI scope
(`RequestHead`), and its record, filled in step by step and kept for
/api/v1/system/request-metrics/ (`RequestRecord`, `RequestLog`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from starlette.types import Scope

# Request headers not forwarded as they are (hop-by-hop, or set by the gateway).
REQUEST_DROP = frozenset({
    b"host", b"connection", b"keep-alive", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"content-length",
    b"accept-encoding", b"authorization", b"x-request-id", b"x-forwarded-for",
    b"x-forwarded-host", b"x-forwarded-proto", b"forwarded", b"x-real-ip", b"traceparent",
    b"tracestate", b"idempotency-key",
})


class RequestHead:
    """What the gateway reads from a request's head, in one pass over its headers: the
    headers it acts on by name, and the others (`forward`), sent upstream as they came."""

    __slots__ = ("authorization", "chunked", "content_length", "cors_headers", "cors_method",
                 "forward", "forwarded_for", "forwarded_proto", "host", "idempotency_key",
                 "method", "origin", "path", "request_id", "scope", "traceparent")

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.authorization: bytes | None = None
        self.request_id: bytes | None = None  # the client's X-Request-ID
        self.idempotency_key: bytes | None = None
        self.origin: bytes | None = None
        self.content_length: bytes | None = None
        self.chunked = False
        self.host = b""
        self.forwarded_for: bytes | None = None
        self.forwarded_proto: bytes | None = None
        self.traceparent: bytes | None = None
        self.cors_method: bytes | None = None  # Access-Control-Request-Method
        self.cors_headers: bytes | None = None  # Access-Control-Request-Headers
        forward: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:  # names are lowercase (ASGI)
            if name in REQUEST_DROP or name.startswith(b"x-igny8-"):
                if name == b"authorization":
                    self.authorization = value
                elif name == b"x-request-id":
                    self.request_id = value
                elif name == b"host":
                    self.host = value
                elif name == b"content-length":
                    self.content_length = value
                elif name == b"idempotency-key":
                    self.idempotency_key = value
                elif name == b"x-forwarded-for":
                    self.forwarded_for = value
                elif name == b"x-forwarded-proto":
                    self.forwarded_proto = value
                elif name == b"traceparent":
                    self.traceparent = value
                elif name == b"transfer-encoding":
                    self.chunked = True
                continue
            if name == b"origin":
                self.origin = value
            elif name == b"access-control-request-method":
                self.cors_method = value
            elif name == b"access-control-request-headers":
                self.cors_headers = value
            forward.append((name, value))
        self.forward = forward

    @property
    def target(self) -> str:
        """The request target as the client sent it (path still percent-encoded)."""
        scope = self.scope
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or self.path.encode()
        target = raw_path.decode("latin-1")
        return target + "?" + query.decode("latin-1") if query else target


class RequestRecord:
    """One request's outcome and timing breakdown, filled in step by step, then kept in
    the RequestLog as it is (no copy per request)."""

    __slots__ = ("account_id", "auth_ms", "extra", "method", "path", "rate_limit_ms",
                 "request_id", "responded", "service", "started", "status", "total_ms",
                 "upstream_ms", "upstream_timing")

    def __init__(self, request_id: str, method: str, path: str, started: float,
                 extra: list[tuple[bytes, bytes]]) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.started = started  # perf_counter()
        self.extra = extra  # headers every answer to this request carries
        self.service = ""
        self.status = 500
        self.account_id: int | None = None
        self.auth_ms = 0.0
        self.rate_limit_ms = 0.0
        self.upstream_ms = 0.0
        self.total_ms = 0.0
        self.upstream_timing: str | None = None
        self.responded = False

    def as_dict(self) -> dict[str, Any]:
        started_at = time.time() - (time.perf_counter() - self.started)
        return {
            "request_id": self.request_id, "method": self.method, "path": self.path,
            "service": self.service or "unmatched", "status": self.status,
            "started_at": started_at, "total_ms": round(self.total_ms, 3),
            "auth_ms": round(self.auth_ms, 3), "rate_limit_ms": round(self.rate_limit_ms, 3),
            "upstream_ms": round(self.upstream_ms, 3),
            "gateway_ms": round(self.total_ms - self.upstream_ms, 3),
            "upstream_server_timing": self.upstream_timing,
        }


class RequestLog:
    """Recent requests by account and id, for /api/v1/system/request-metrics/. Clients
    may choose their request ids: keyed by id alone, one tenant's request could take
    the place of another's (issue 13, L3)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[int | None, str], RequestRecord] = OrderedDict()

    def add(self, record: RequestRecord) -> None:
        key = (record.account_id, record.request_id)
        entries = self._entries
        if key in entries:  # the newest of an account's requests with this id
            del entries[key]
        entries[key] = record
        if len(entries) > self.size:
            entries.popitem(last=False)

    def get(self, account_id: int | None, request_id: str) -> RequestRecord | None:
        """The account's request with this id (account None: requests with no caller)."""
        return self._entries.get((account_id, request_id))

    def newest(self, request_id: str) -> RequestRecord | None:
        """The most recent request with this id, whatever its account (platform staff)."""
        for (_, rid), record in reversed(self._entries.items()):
            if rid == request_id:
                return record
        return None
