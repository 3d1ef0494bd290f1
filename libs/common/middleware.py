"""One pure-ASGI middleware for what every request needs: a request id, a server span
(when an exporter could send it), RED metrics per route template, the log context, and a
`Server-Timing` header the gateway folds into its request metrics."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import AbstractContextManager, nullcontext
from contextvars import Token
from types import TracebackType
from typing import Any

from opentelemetry import context, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.logging import account_id_var, request_id_var, user_id_var
from libs.common.metrics import HTTP_METRICS
from libs.common.problems import problem_response
from libs.common.telemetry import caller_context, context_from_headers, exporting

log = logging.getLogger("igny8.http")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(value: str | None) -> str:
    """Keep the caller's id when it is sane; otherwise mint one."""
    if value and _SANE_REQUEST_ID.match(value):
        return value
    return new_request_id()


def new_request_id() -> str:
    """A random UUID (version 4) as text, the same as `str(uuid.uuid4())` without building
    a UUID object or making a getrandom() call per id: paid on every request the gateway
    sees."""
    raw = bytearray(random_bytes(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_RANDOM_BLOCK = 4096
_random = threading.local()  # per thread: a block of os.urandom and how much is used


def random_bytes(n: int) -> bytes:
    """`os.urandom(n)` (n ≤ 4096), drawn from 4 KiB blocks: one system call per few hundred
    request ids instead of one each. Each thread has its own block, and a forked child
    starts a new one, so no two callers ever get the same bytes."""
    block: bytes = getattr(_random, "block", b"")
    offset: int = getattr(_random, "offset", 0)
    if offset + n > len(block):
        block = _random.block = os.urandom(_RANDOM_BLOCK)
        offset = 0
    _random.offset = offset + n
    return block[offset:offset + n]


def _new_random_state() -> None:
    global _random
    _random = threading.local()


os.register_at_fork(after_in_child=_new_random_state)


class _CallerTrace:
    """Makes a trace context current for the request, without a span."""

    def __init__(self, trace_context: context.Context) -> None:
        self.trace_context = trace_context
        self.token: Token[context.Context] | None = None

    def __enter__(self) -> None:
        self.token = context.attach(self.trace_context)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.token is not None:
            context.detach(self.token)


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self.tracer = trace.get_tracer("igny8.http")

    def _server_span(self, method: str, path: str, headers: dict[str, str],
                     request_id: str) -> AbstractContextManager[trace.Span | None]:
        """The request's server span when an exporter could send it. Otherwise none (a
        span costs on every request): the trace already current, else the caller's (or a
        new one), is current during the request, so logs and events still carry its id."""
        if exporting():
            return self.tracer.start_as_current_span(
                f"{method} {path}",
                context=context_from_headers(headers),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": path,
                            "igny8.request_id": request_id},
            )
        if trace.get_current_span().get_span_context().is_valid:
            return nullcontext()
        return _CallerTrace(caller_context(headers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = request_id_from(headers.get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        account_token = account_id_var.set(None)
        user_token = user_id_var.set(None)
        started = time.perf_counter()
        status_holder: dict[str, Any] = {"status": 500, "started": False}
        method = scope["method"]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                elapsed_ms = (time.perf_counter() - started) * 1000
                extra = [
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", f"app;dur={elapsed_ms:.2f}".encode()),
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        with self._server_span(method, scope["path"], headers, request_id) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception:
                log.exception("unhandled error")
                if span is not None:
                    span.set_status(Status(StatusCode.ERROR))
                if status_holder["started"]:
                    raise  # an answer cut short: the server must drop the connection
                # Answered here rather than re-raised: an exception that escapes the app
                # after Starlette's 500 makes uvicorn close the kept-alive connection,
                # and the gateway may already have taken it for the next tenant's POST,
                # which it cannot repeat (a 503 for a request that did nothing wrong).
                await problem_response(500, "Internal server error")(scope, receive,
                                                                     send_wrapper)
            finally:
                status = status_holder["status"]
                route = scope.get("route")
                template = getattr(route, "path", None) or "unmatched"
                if span is not None:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                    span.set_attribute("http.response.status_code", status)
                elapsed = time.perf_counter() - started
                HTTP_METRICS.record(self.service, method, template, status, elapsed)
                if status >= 500:
                    log.error("%s %s -> %d", method, scope["path"], status,
                              extra={"fields": {"status": status, "ms": round(elapsed * 1e3, 2)}})
                elif status >= 400:
                    log.warning("%s %s -> %d", method, scope["path"], status,
                                extra={"fields": {"status": status,
                                                  "ms": round(elapsed * 1e3, 2)}})
                request_id_var.reset(token)
                account_id_var.reset(account_token)
                user_id_var.reset(user_token)
