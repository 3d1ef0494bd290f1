"""The hot path, in plain ASGI: request id → CORS → route → credentials → rate limit →
body → idempotency → upstream (`http1.Http1Pool`; aiohttp for HEAD and https upstreams) →
envelope by byte splicing → one write of head and body (`server.py`).

FastAPI is only entered for the gateway's own routes (`api.py`), after the same checks.
The gateway's own span is created only when something exports spans; the trace context
is forwarded upstream either way.
Nothing here formats an access log line; errors and upstream failures are logged with the
request id through the kernel's JSON logging.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

from gateway import envelope
from gateway.auth import Authenticated, Authenticator, AuthFailure
from gateway.http1 import (
    Http1Pool,
    Response,
    UpstreamBadResponse,
    UpstreamUnavailable,
    split_base,
)
from gateway.idempotency import REPLAY_HEADER, Claim, IdempotencyStore, fingerprint, valid_key
from gateway.ratelimit import RateLimiter, caller_key, lockout_headers
from gateway.request import RequestHead, RequestLog, RequestRecord
from gateway.routes import (
    AUTH_FAILURE_SCOPE,
    GATEWAY,
    PUBLIC_GATEWAY_PATHS,
    SLASHLESS_GATEWAY_PATHS,
    UNSTORED_ANSWERS,
    WRITE_METHODS,
    Resolved,
    RouteTable,
)
from gateway.settings import GatewaySettings
from libs.common import telemetry
from libs.common.logging import account_id_var, request_id_var, user_id_var
from libs.common.metrics import HTTP_METRICS, UPSTREAM_ERRORS
from libs.common.middleware import random_bytes, request_id_from

log = logging.getLogger("igny8.gateway")

ALLOWED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REVOKED_HEADER = b"x-igny8-revoked-sessions"
INLINE_HEADER = b"x-igny8-envelope"

# Response headers the gateway drops or sets itself.
_RESPONSE_DROP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server",
    b"date", b"x-request-id", b"server-timing", b"content-type", b"location",
    b"content-encoding",
})

_JSON = b"application/json"
_NO_STORE = (b"cache-control", b"no-store")
# The gateway's rate-limit headers (ratelimit.Decision.headers).
_THROTTLE_HEADERS = frozenset({b"x-throttle-limit", b"x-throttle-remaining",
                               b"x-throttle-reset", b"ratelimit", b"ratelimit-policy"})
# W3C traceparent (version ff is invalid); later versions may append fields.
_TRACEPARENT = re.compile(
    rb"((?!ff)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2})(?:-[0-9a-f].*)?")


class ClientGone(Exception):
    """The client disconnected while the body was being read."""


class Refusal(Exception):
    """A step refuses the request: the answer is this error, nothing goes upstream."""

    def __init__(self, status: int, message: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass(slots=True)
class Services:
    """What the pipeline uses, created in the app's lifespan."""

    session: aiohttp.ClientSession
    # Plain-http upstreams' requests (all but HEAD); None: everything through `session`.
    http1: Http1Pool | None
    authenticator: Authenticator
    limiter: RateLimiter | None
    idempotency: IdempotencyStore


class Cors:
    def __init__(self, settings: GatewaySettings) -> None:
        origins = settings.cors_allowed_origins
        self.any = "*" in origins
        self.origins = frozenset(o.encode() for o in origins if o != "*")
        self.credentials = settings.cors_allow_credentials
        self.max_age = str(settings.cors_max_age_seconds).encode()

    def headers(self, origin: bytes | None) -> list[tuple[bytes, bytes]]:
        if origin is None or not (self.any or origin.rstrip(b"/") in self.origins):
            return []
        out = [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
               (b"access-control-expose-headers",
                b"X-Request-ID, X-Throttle-Limit, X-Throttle-Remaining, X-Throttle-Reset, "
                b"RateLimit, RateLimit-Policy, Retry-After, Idempotent-Replayed")]
        if self.credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        return out

    def preflight(self, origin: bytes, request_headers: bytes | None) -> list[tuple[bytes, bytes]]:
        base = self.headers(origin)
        if not base:
            return []
        return [
            *base,
            (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers",
             request_headers or b"Authorization, Content-Type, Idempotency-Key, X-Request-ID"),
            (b"access-control-max-age", self.max_age),
        ]


class Pipeline:
    """Every HTTP request of the gateway: `__call__` reads the head, then one step per
    concern runs in turn; a step that refuses raises `Refusal`, answered as an error."""

    def __init__(self, settings: GatewaySettings,
                 own_app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.settings = settings
        self.own_app = own_app
        self.routes = RouteTable()
        self.cors = Cors(settings)
        self.upstreams = {name: url.rstrip("/") for name, url in settings.upstream_urls().items()
                          if url}
        self.request_log = RequestLog(settings.request_metrics_size)
        # Upstreams the lean client can reach (plain http): service → (host, port, prefix).
        self.http1_targets = {name: split_base(url) for name, url in self.upstreams.items()
                              if url.startswith("http://")}
        self.services: Services | None = None
        self.max_body = settings.max_body_bytes
        self.throttle = not settings.throttle_disabled
        self.hops = settings.trusted_proxy_hops
        self.tracer = trace.get_tracer("igny8.gateway")
        # The gateway's own span per request, when something exports it.
        self.spans = settings.trace_sample_ratio > 0
        # Links and redirects name the configured public URL, never the client's Host.
        public = urlsplit(settings.public_url)
        self.public_base = f"{public.scheme}://{public.netloc}"
        self.public_host = public.netloc.encode("latin-1")
        self.public_proto = public.scheme.encode("latin-1")
        self.server_timing = settings.server_timing or settings.debug
        self.metrics_port = settings.metrics_port

    # ---- entry -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        head = RequestHead(scope)
        rid_in = head.request_id
        request_id = request_id_from(rid_in.decode("latin-1") if rid_in else None)
        rid_token = request_id_var.set(request_id)
        extra: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        if head.origin is not None:
            extra.extend(self.cors.headers(head.origin))
        ctx = RequestRecord(request_id, head.method, head.path, started, extra)
        try:
            await self._handle(ctx, head, receive, send)
        except Refusal as refusal:
            if refusal.headers:
                ctx.extra.extend(refusal.headers)
            await self._error(ctx, send, refusal.status, refusal.message)
        except ClientGone:
            ctx.status = 499
        except Exception:
            log.exception("gateway failed on %s %s", head.method, head.path)
            if not ctx.responded:
                await self._error(ctx, send, 500)
            ctx.status = 500
        finally:
            self._record(ctx)
            request_id_var.reset(rid_token)
            account_id_var.set(None)
            user_id_var.set(None)

    async def _handle(self, ctx: RequestRecord, head: RequestHead, receive: Receive,
                      send: Send) -> None:
        """The steps, in order. Each returns what the next needs or raises `Refusal`."""
        if head.method == "OPTIONS" and head.origin is not None and head.cors_method is not None:
            await self._preflight(ctx, head, send)
            return
        if head.path in SLASHLESS_GATEWAY_PATHS:
            await self._append_slash(ctx, head, send)
            return
        resolved = self._route(ctx, head)
        services = self.services
        assert services is not None, "gateway used outside its lifespan"
        client = self._client_address(head)
        # (Each step's condition is checked here: a coroutine not created costs nothing.)
        auth = None
        if not resolved.public:
            auth = self._credentials(ctx, head, resolved, services)
            if auth is None:  # not verified before: the only case that needs a coroutine
                auth = await self._verify(ctx, head, resolved, client, services)
        if self.throttle and resolved.scope is not None and services.limiter is not None:
            await self._limit(ctx, resolved.scope, auth, client, services.limiter)
        if resolved.service == GATEWAY:
            await self._own(ctx, head, receive, send, auth)
            return
        base = self.upstreams.get(resolved.service)
        if base is None:
            raise Refusal(503)
        body = (await self._body(receive)
                if head.chunked or head.content_length is not None
                or head.method in WRITE_METHODS else b"")
        claim = (await self._claim(ctx, head, auth, client, body, services)
                 if head.idempotency_key is not None and head.method == "POST"
                 and head.path not in UNSTORED_ANSWERS else None)
        if claim is not None and claim.outcome == "replay" and claim.stored is not None:
            stored = claim.stored
            ctx.extra = [h for h in ctx.extra if h[0] != b"x-request-id"]
            ctx.extra.append(REPLAY_HEADER)
            await self._send(ctx, send, stored.status, stored.headers, stored.body)
            return
        self._forward(ctx, head, client, auth)
        try:
            result = await self._upstream(ctx, head, services, body)
        except BaseException:
            if claim is not None:
                await _quietly(services.idempotency.release(claim))
            raise
        if result is None:
            if claim is not None:
                await _quietly(services.idempotency.release(claim))
            raise Refusal(ctx.status)
        status, headers, out_body = self._shape(ctx, head, result, base)
        if claim is not None:
            stored_headers = [*headers, (b"x-request-id", ctx.request_id.encode())]
            await _quietly(services.idempotency.finish(claim, claim.fingerprint, status,
                                                       stored_headers, out_body))
        await self._send(ctx, send, status, headers, out_body)

    # ---- CORS --------------------------------------------------------------------------

    async def _preflight(self, ctx: RequestRecord, head: RequestHead, send: Send) -> None:
        assert head.origin is not None
        headers = self.cors.preflight(head.origin, head.cors_headers)
        ctx.extra = [(b"x-request-id", ctx.request_id.encode()), *headers]
        await self._send(ctx, send, 204 if headers else 403, [], b"")

    async def _append_slash(self, ctx: RequestRecord, head: RequestHead, send: Send) -> None:
        """307 to the slashed path (the method and body stay, as a service's redirect)."""
        query: bytes = head.scope.get("query_string") or b""
        location = (self.public_base + head.path + "/").encode("latin-1")
        if query:
            location += b"?" + query
        await self._send(ctx, send, 307, [(b"location", location)], b"")

    # ---- routing -----------------------------------------------------------------------

    def _route(self, ctx: RequestRecord, head: RequestHead) -> Resolved:
        """Where the request goes, and whether its declared size is acceptable."""
        if head.method not in ALLOWED_METHODS:
            raise Refusal(405, f'Method "{head.method}" not allowed.')
        resolved = self.routes.resolve(head.method, head.path)
        if resolved is None or (head.path == "/metrics" and not self._may_scrape(head)):
            raise Refusal(404)
        ctx.service = resolved.service
        if head.content_length is not None:
            try:
                declared = int(head.content_length)
            except ValueError:
                raise Refusal(400, "Invalid Content-Length header") from None
            if declared > self.max_body:
                raise Refusal(413)
        return resolved

    def _may_scrape(self, head: RequestHead) -> bool:
        """/metrics: on the metrics port, or to a loopback client that came through no
        proxy (`igny8 up`); never to the public (issue 13, L5)."""
        server = head.scope.get("server")
        if self.metrics_port and server and server[1] == self.metrics_port:
            return True
        client = head.scope.get("client")
        return (head.forwarded_for is None and client is not None
                and str(client[0]).startswith(("127.", "::1")))

    # ---- credentials -------------------------------------------------------------------

    def _credentials(self, ctx: RequestRecord, head: RequestHead, resolved: Resolved,
                     services: Services) -> Authenticated | None:
        """The caller, for a route that needs one, when its credentials were verified
        before (most requests): they pass at once. None: `_verify` decides."""
        authorization = head.authorization
        if not authorization:
            raise Refusal(401)
        t = time.perf_counter()
        auth = services.authenticator.known(authorization.decode("latin-1"),
                                            apikey_allowed=resolved.apikey_allowed)
        if auth is not None:
            ctx.auth_ms = (time.perf_counter() - t) * 1000
            _set_caller(ctx, auth)
        return auth

    async def _verify(self, ctx: RequestRecord, head: RequestHead, resolved: Resolved,
                      client: str, services: Services) -> Authenticated:
        """Credentials not verified before: checked only while the client's address is
        within its budget of failed attempts, and a failure spends it (issue 13, M3)."""
        assert head.authorization is not None
        t = time.perf_counter()
        try:
            auth = await self._check(ctx, head.authorization.decode("latin-1"), resolved,
                                     client, services)
        finally:
            ctx.auth_ms = (time.perf_counter() - t) * 1000
        _set_caller(ctx, auth)
        return auth

    async def _check(self, ctx: RequestRecord, credentials: str, resolved: Resolved,
                     client: str, services: Services) -> Authenticated:
        limiter = services.limiter if self.throttle else None
        key = caller_key(AUTH_FAILURE_SCOPE, None, client)
        if limiter is not None:
            refusal = limiter.refused(AUTH_FAILURE_SCOPE, key)
            if refusal is not None:
                raise Refusal(429, "Too many failed authentication attempts",
                              refusal.headers())
        try:
            return await services.authenticator.authenticate(
                credentials, apikey_allowed=resolved.apikey_allowed,
                request_id=ctx.request_id, client_address=client)
        except AuthFailure as exc:
            if exc.status == 401 and limiter is not None:
                await limiter.check_or_admit(AUTH_FAILURE_SCOPE, key)
            headers = (lockout_headers(exc.retry_after, time.time())
                       if exc.retry_after is not None else None)
            raise Refusal(exc.status, exc.message, headers) from None

    def _client_address(self, head: RequestHead) -> str:
        xff = head.forwarded_for
        if self.hops and xff:
            parts = [p.strip() for p in xff.decode("latin-1").split(",") if p.strip()]
            if parts:
                return parts[-self.hops] if len(parts) >= self.hops else parts[0]
        client = head.scope.get("client")
        return str(client[0]) if client else "unknown"

    # ---- rate limits -------------------------------------------------------------------

    async def _limit(self, ctx: RequestRecord, scope: str, auth: Authenticated | None,
                     client: str, limiter: RateLimiter) -> None:
        """Charges the request to its scope; refuses it (429) past the limit."""
        t = time.perf_counter()
        user_id = auth.principal.user_id if auth else None
        decision = await limiter.check_or_admit(scope, caller_key(scope, user_id, client))
        ctx.rate_limit_ms = (time.perf_counter() - t) * 1000
        ctx.extra.extend(decision.headers())
        if not decision.allowed:
            raise Refusal(429)

    # ---- body --------------------------------------------------------------------------

    async def _body(self, receive: Receive) -> bytes:
        """The whole request body, at most `max_body`."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > self.max_body:
                    raise Refusal(413)
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # ---- idempotency -------------------------------------------------------------------

    async def _claim(self, ctx: RequestRecord, head: RequestHead, auth: Authenticated | None,
                     client: str, body: bytes, services: Services) -> Claim | None:
        """A POST with an Idempotency-Key claims it: the first runs (and its answer is
        stored), a repeat replays the stored answer, a different request with the same
        key or one while the first still runs is refused."""
        assert head.idempotency_key is not None
        key = head.idempotency_key.decode("latin-1").strip()
        if not valid_key(key):
            raise Refusal(400, "Invalid Idempotency-Key header")
        tenant = f"a{auth.principal.account_id}" if auth else f"ip{client}"
        fp = fingerprint(head.method, head.path, head.scope.get("query_string", b""), body)
        try:
            claim = await services.idempotency.begin(tenant, key, fp)
        except Exception as exc:  # noqa: BLE001 - any store failure is the same answer
            UPSTREAM_ERRORS.labels("nats", "idempotency_store").inc()
            log.warning("idempotency store unavailable: %s", exc)
            raise Refusal(503, "Idempotency store unavailable") from None
        if claim.outcome == "mismatch":
            raise Refusal(422, "Idempotency-Key was already used with a different request")
        if claim.outcome == "conflict":
            raise Refusal(409, "A request with this Idempotency-Key is still in progress")
        return claim

    # ---- upstream ----------------------------------------------------------------------

    def _forward(self, ctx: RequestRecord, head: RequestHead, client: str,
                 auth: Authenticated | None) -> None:
        """Completes the headers sent upstream (`head.forward`). The forwarded host and
        scheme are the public URL's: services build links from them (issue 13, L2)."""
        forward = head.forward
        forward.append((b"x-request-id", ctx.request_id.encode()))
        forward.append((b"x-forwarded-for", client.encode("latin-1")))
        forward.append((b"x-forwarded-proto", self.public_proto))
        forward.append((b"x-forwarded-host", self.public_host))
        if auth is not None:
            forward.append((b"authorization", b"Bearer " + auth.token.encode("latin-1")))
        elif head.authorization and head.authorization[:7].lower() == b"bearer ":
            forward.append((b"authorization", head.authorization))
        if head.idempotency_key is not None:
            forward.append((b"idempotency-key", head.idempotency_key))

    async def _upstream(self, ctx: RequestRecord, head: RequestHead, services: Services,
                        body: bytes) -> Response | None:
        """The upstream's whole answer, or None (with `ctx.status` set) when it failed."""
        method, service, headers = head.method, ctx.service, head.forward
        span: trace.Span | None = None
        if self.spans and telemetry.exporting():
            traceparent = head.traceparent
            parent = (propagate.extract({"traceparent": traceparent.decode("latin-1")})
                      if traceparent else None)
            span = self.tracer.start_span(f"{method} {service}", context=parent,
                                          kind=SpanKind.SERVER,
                                          attributes={"http.request.method": method,
                                                      "url.path": ctx.path,
                                                      "igny8.request_id": ctx.request_id})
            sc = span.get_span_context()
            if sc.is_valid:
                headers.append((b"traceparent", f"00-{sc.trace_id:032x}-{sc.span_id:016x}-"
                                                f"{sc.trace_flags:02x}".encode()))
        else:
            # Nothing could export a gateway span: skip it, keep the trace going.
            headers.append((b"traceparent", _forwarded_traceparent(head.traceparent)))
        target = head.target
        # HEAD is asked as GET: the answer's length is the enveloped GET's, and the
        # server sends no body for HEAD (issue 13, L6).
        upstream_method = "GET" if method == "HEAD" else method
        t = time.perf_counter()
        lean = self.http1_targets.get(service) if services.http1 is not None else None
        result: Response
        try:
            if lean is not None:
                assert services.http1 is not None
                host, port, prefix = lean
                result = await services.http1.request(upstream_method, host, port,
                                                      prefix + target, headers, body)
            else:
                async with services.session.request(
                    upstream_method, URL(self.upstreams[service] + target, encoded=True),
                    headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                    data=body or None, allow_redirects=False,
                ) as resp:
                    upstream_body = await resp.read()
                    result = (resp.status, [(name.lower(), value)
                                            for name, value in resp.raw_headers], upstream_body)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError,
                aiohttp.ServerDisconnectedError, ConnectionError,
                UpstreamUnavailable) as exc:
            self._upstream_failed(ctx, span, 503, "unavailable", exc)
            return None
        except TimeoutError as exc:
            self._upstream_failed(ctx, span, 504, "timeout", exc)
            return None
        except (aiohttp.ClientError, UpstreamBadResponse) as exc:
            self._upstream_failed(ctx, span, 502, "bad_gateway", exc)
            return None
        finally:
            ctx.upstream_ms = (time.perf_counter() - t) * 1000
        if span is not None:
            span.set_attribute("http.response.status_code", result[0])
            if result[0] >= 500:
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        return result

    def _upstream_failed(self, ctx: RequestRecord, span: trace.Span | None, status: int, kind: str,
                         exc: BaseException) -> None:
        UPSTREAM_ERRORS.labels(ctx.service, kind).inc()
        log.error("upstream %s %s: %s", ctx.service, kind, exc.__class__.__name__,
                  extra={"fields": {"upstream": ctx.service, "path": ctx.path}})
        if span is not None:
            span.set_status(Status(StatusCode.ERROR))
            span.set_attribute("http.response.status_code", status)
            span.end()
        ctx.status = status

    # ---- response shaping --------------------------------------------------------------

    def _shape(self, ctx: RequestRecord, head: RequestHead, result: Response, base: str
               ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The upstream's answer as the client gets it: the headers it may see, and the
        body in the public envelope (also for HEAD: the server sends only its length)."""
        status, raw_headers, body = result
        headers: list[tuple[bytes, bytes]] = []
        content_type = b""
        is_inline = False
        for name, value in raw_headers:  # names are lowercase
            if name in _RESPONSE_DROP or name.startswith(b"x-igny8-"):
                if name == b"content-type":
                    content_type = value
                elif name == b"server-timing":
                    ctx.upstream_timing = value.decode("latin-1")
                elif name == INLINE_HEADER:
                    is_inline = value.strip().lower() == b"inline"
                elif name == REVOKED_HEADER:
                    self._apply_revocations(value)
                elif name == b"location":
                    headers.append((b"location",
                                    _public_location(value, base, self.public_base)))
                continue
            headers.append((name, value))
        rid = ctx.request_id
        if status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if status >= 400:
            if status == 429:
                self._upstream_refused(ctx, headers)
            if envelope.is_json(content_type) or envelope.is_problem(content_type):
                out = envelope.from_problem(body, status, rid)
            else:
                out = envelope.error_for_status(status, rid)
            headers.append((b"content-type", _JSON))
            return status, headers, out
        if content_type:
            headers.append((b"content-type", content_type))
        if not (200 <= status < 300) or not envelope.is_json(content_type):
            return status, headers, body
        wrapped = envelope.inline(body, rid) if is_inline else None
        return status, headers, wrapped if wrapped is not None else envelope.success(body, rid)

    @staticmethod
    def _upstream_refused(ctx: RequestRecord, headers: list[tuple[bytes, bytes]]) -> None:
        """A service's own 429 (auth's sign-in lockout): the gateway's scope admitted the
        request, so its throttle headers would promise what the service refuses. The
        service's Retry-After says when to come back; the throttle headers say the same."""
        retry_after = next((v for n, v in headers if n == b"retry-after"), None)
        if retry_after is None or any(n == b"x-throttle-remaining" for n, _ in headers):
            return
        try:
            seconds = max(1, int(retry_after))
        except ValueError:
            return
        ctx.extra = [h for h in ctx.extra if h[0] not in _THROTTLE_HEADERS]
        headers.extend(h for h in lockout_headers(seconds, time.time())
                       if h[0] != b"retry-after")

    def _apply_revocations(self, value: bytes) -> None:
        sids = [s.strip() for s in value.decode("latin-1").split(",") if s.strip()]
        if sids and self.services is not None:
            self.services.authenticator.verifier.revocations.add_local(*sids)

    # ---- the gateway's own routes ------------------------------------------------------

    async def _own(self, ctx: RequestRecord, head: RequestHead, receive: Receive, send: Send,
                   auth: Authenticated | None) -> None:
        scope = head.scope
        state = scope.setdefault("state", {})
        state["request_id"] = ctx.request_id
        state["principal"] = auth.principal if auth else None
        extra = ctx.extra

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.status = message["status"]
                ctx.responded = True
                names = {h[0] for h in extra}
                headers: list[tuple[bytes, bytes]] = []
                cache_control = False
                for name, value in message.get("headers", ()):  # one pass, no generator
                    lowered = name.lower()
                    if lowered not in names:
                        cache_control = cache_control or lowered == b"cache-control"
                        headers.append((name, value))
                if not cache_control:
                    headers.append(_NO_STORE)
                message["headers"] = headers + extra
            await send(message)

        await self.own_app(scope, receive, send_wrapper)

    # ---- answering ---------------------------------------------------------------------

    async def _error(self, ctx: RequestRecord, send: Send, status: int,
                     message: str | None = None) -> None:
        body = envelope.error_for_status(status, ctx.request_id, message)
        await self._send(ctx, send, status, [(b"content-type", _JSON)], body)

    async def _send(self, ctx: RequestRecord, send: Send, status: int,
                    headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Answers with `headers`, the request's own (`ctx.extra`), Cache-Control: no-store
        unless the answer has its own (tokens and tenant data stay out of caches), and
        Server-Timing when configured (it tells outsiders how long things take)."""
        ctx.status = status
        out = [*headers, *ctx.extra]
        for name, _ in headers:
            if name == b"cache-control":
                break
        else:
            out.append(_NO_STORE)
        if self.server_timing:
            upstream_ms = ctx.upstream_ms
            gateway_ms = (time.perf_counter() - ctx.started) * 1000 - upstream_ms
            out.append((b"server-timing",
                        b"gateway;dur=%.3f, upstream;dur=%.3f" % (gateway_ms, upstream_ms)
                        if upstream_ms else b"gateway;dur=%.3f" % gateway_ms))
        out.append((b"content-length", b"%d" % len(body)))
        ctx.responded = True
        # With content-length known, gateway/server.py writes the head and the body in one.
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})

    def _record(self, ctx: RequestRecord) -> None:
        elapsed = time.perf_counter() - ctx.started
        ctx.total_ms = elapsed * 1000
        # Any other method is one label: clients choose methods, series must stay few.
        method = ctx.method if ctx.method in ALLOWED_METHODS else "OTHER"
        route = ctx.service or "unmatched"
        if route == GATEWAY and ctx.path in PUBLIC_GATEWAY_PATHS:
            route = ctx.path  # scrapes and probes, which dashboards leave out of traffic
        HTTP_METRICS.record("gateway", method, route, ctx.status, elapsed)
        if ctx.status >= 500:
            log.error("%s %s -> %d", ctx.method, ctx.path, ctx.status,
                      extra={"fields": {"status": ctx.status, "ms": round(elapsed * 1e3, 2)}})
        self.request_log.add(ctx)


def _set_caller(ctx: RequestRecord, auth: Authenticated) -> None:
    """The request's caller, in its record and in the logs' context."""
    principal = auth.principal
    ctx.account_id = principal.account_id
    account_id_var.set(principal.account_id)
    user_id_var.set(principal.user_id)


def _forwarded_traceparent(incoming: bytes | None) -> bytes:
    """The client's trace context when it is valid W3C, else a new sampled trace."""
    if incoming is not None:
        match = _TRACEPARENT.fullmatch(incoming.strip().lower())
        if match is not None and match[2] != b"0" * 32 and match[3] != b"0" * 16:
            return bytes(match[1])
    ids = random_bytes(24).hex().encode()  # an all-zero (invalid) id: odds of 2**-64
    return b"00-" + ids[:32] + b"-" + ids[32:] + b"-01"


def _public_location(value: bytes, base: str, public_base: str) -> bytes:
    """A redirect to the upstream's own address becomes one to the public URL."""
    location = value.decode("latin-1")
    if location.startswith(base):
        return (public_base + location[len(base):]).encode("latin-1")
    return value


async def _quietly(awaitable: Awaitable[None]) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - best effort, logged
        log.warning("idempotency store update failed: %s", exc)
