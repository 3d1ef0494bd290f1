"""`python -m gateway.server`: the gateway's HTTP/1.1 server.

A small ASGI server with one job: carry the gateway's requests at the least CPU per
request. The gateway spends its life between two sockets, so the server's own work per
request is a large share of the gateway's. Under uvicorn, a trivial ASGI app cost 113-145
µs of CPU per request at 190 requests/s on our 2-core machine. On this server it costs
61-72 µs (ADR 0016). The savings:
- no per-request objects beyond one `Exchange` (gateway/asgi.py: the app's side);
- no per-request timers (one sweeper closes idle connections);
- the response head and a complete body go out in one write;
- no proxy-headers rewriting: the gateway reads `X-Forwarded-For` itself, with its own
  count of trusted hops.

HTTP/1.1 as clients use it:
- keep-alive, and pipelining (answered in order);
- request bodies streamed to `receive()`, chunked or not, with `Expect: 100-continue`;
- responses with `content-length`, or chunked when the app streams;
- `HEAD`; HTTP/1.0; `Connection: close`;
- 400 for what cannot be parsed (a `#` in the request target too) and 431 for oversized
  heads;
- an upgrade it does not offer (h2c, WebSocket) answered as plain HTTP/1.1;
- a request answered before its body arrived ends its connection;
- idle connections closed after `keep_alive_seconds`;
- a graceful stop on SIGTERM that finishes the requests in flight.

What one client can make it hold is bounded (issue 13, H1 and H2):
- a request head must arrive within `head_timeout_seconds` of its first byte and a body
  within `body_timeout_seconds` of the end of its head (waiting for the budget included),
  else 408 and the connection closes;
- request bodies being received are reserved against a budget per client address and one
  for the process, by their declared length: a body that does not fit waits, unread,
  until earlier ones are answered;
- answers to pipelined requests are produced one at a time, and the next only once the
  client has read the previous one down to the transport's high-water mark; at most
  `max_pipelined` parsed requests wait per connection; a client that reads nothing for
  `write_timeout_seconds` while an answer waits is disconnected;
- at most `max_connections_per_address` connections per client address (0: no cap).

It does not do TLS (the ingress terminates it), HTTP/2 or WebSockets.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import email.utils
import logging
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import httptools
from starlette.types import ASGIApp, Scope

from gateway.asgi import ASGI_VERSION, BODY_HIGH_WATER, Exchange, Lifespan, plain_response
from gateway.settings import GatewaySettings

log = logging.getLogger("igny8.gateway.server")

# After an error answer, what the client still sends is read and dropped this long, so
# that closing does not reset the connection (and lose the answer) over unread bytes.
_LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class ServerConfig:
    """Built by `server_config` from the gateway's settings, which hold the defaults."""
    host: str
    port: int
    keep_alive_seconds: float
    graceful_seconds: float
    # Deadlines: a request head from its first byte; a body from the end of its head.
    head_timeout_seconds: float
    body_timeout_seconds: float
    # An answer the client does not read for this long ends the connection.
    write_timeout_seconds: float
    max_pipelined: int
    # Connections per client address (the socket's peer); 0: no cap.
    max_connections_per_address: int
    # Request bodies being received at once, by declared length (chunked: max_body_bytes).
    max_body_bytes: int
    body_budget_per_address: int
    body_budget: int
    # Other ports served by the same app (the gateway's metrics listener).
    extra_ports: tuple[int, ...] = ()
    max_head_bytes: int = 64 * 1024
    backlog: int = 2048

    @property
    def sweep_seconds(self) -> float:
        """How often the sweeper looks at every connection's deadlines."""
        return max(0.02, min(1.0, self.keep_alive_seconds, self.head_timeout_seconds,
                             self.body_timeout_seconds, self.write_timeout_seconds) / 2)


class _HeadTooLarge(Exception):
    pass


class _BadTarget(Exception):
    """A request target the services behind would read differently (a fragment)."""


class _PipelineFull(Exception):
    """More parsed requests wait on the connection than `max_pipelined`."""


class BodyBudget:
    """Request-body bytes being received, reserved by declared length per client address
    and for the whole process. A reservation that does not fit waits (its connection
    unread) until earlier ones are released; budgets of at least one maximal body
    guarantee that every waiting body eventually fits."""

    def __init__(self, per_address: int, total: int) -> None:
        self.per_address = per_address
        self.total = total
        self.reserved = 0
        self.by_address: dict[str, int] = {}
        self.waiting: collections.deque[Exchange] = collections.deque()

    def fits(self, address: str, size: int) -> bool:
        return (self.reserved + size <= self.total
                and self.by_address.get(address, 0) + size <= self.per_address)

    def reserve(self, exchange: Exchange) -> bool:
        """Reserves the exchange's body now (True), or queues it (False)."""
        if self.waiting or not self.fits(exchange.address, exchange.reservation):
            self.waiting.append(exchange)
            return False
        self._take(exchange)
        return True

    def _take(self, exchange: Exchange) -> None:
        self.reserved += exchange.reservation
        self.by_address[exchange.address] = (self.by_address.get(exchange.address, 0)
                                             + exchange.reservation)
        exchange.reserved = True

    def release(self, exchange: Exchange) -> None:
        if exchange.reserved:
            exchange.reserved = False
            self.reserved -= exchange.reservation
            left = self.by_address[exchange.address] - exchange.reservation
            if left:
                self.by_address[exchange.address] = left
            else:
                del self.by_address[exchange.address]
        elif exchange in self.waiting:
            self.waiting.remove(exchange)
            return
        if not self.waiting:  # (nearly always: no copy of an empty queue per request)
            return
        # Admit the waiting bodies that fit now, oldest first.
        for waiting in list(self.waiting):
            if self.fits(waiting.address, waiting.reservation):
                self.waiting.remove(waiting)
                self._take(waiting)
                waiting.admitted()


class HttpServer:
    """Serves one ASGI app on one port; `serve` runs until `stop` is set."""

    def __init__(self, app: ASGIApp, config: ServerConfig) -> None:
        self.app = app
        self.config = config
        self.connections: set[HttpConnection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.state: dict[str, Any] = {}
        self.date_line = b""
        self.port: int | None = None  # the bound port, once listening
        self.per_address: dict[str, int] = {}  # open connections per client address
        self.budget = BodyBudget(config.body_budget_per_address, config.body_budget)

    async def serve(self, stop: asyncio.Event,
                    ready: Callable[[int], None] | None = None) -> None:
        lifespan = Lifespan(self.app, self.state)
        await lifespan.startup()
        loop = asyncio.get_running_loop()
        self._refresh_date()
        servers: list[asyncio.Server] = []
        try:
            for port in (self.config.port, *self.config.extra_ports):
                servers.append(await loop.create_server(
                    lambda: HttpConnection(self), self.config.host, port,
                    backlog=self.config.backlog))
        except BaseException:
            for server in servers:
                server.close()
            await lifespan.shutdown()
            raise
        self.port = servers[0].sockets[0].getsockname()[1]
        sweeper = asyncio.create_task(self._sweep(stop))
        log.info("listening on %s:%d", self.config.host, self.port)
        if ready is not None:
            ready(self.port)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            for server in servers:
                server.close()
            for conn in list(self.connections):
                if not conn.exchanges:  # idle keep-alive connections go at once
                    conn.close()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=self.config.graceful_seconds)
            for conn in list(self.connections):
                if conn.lingering_until:
                    conn.abort()
                else:
                    conn.close()
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await lifespan.shutdown()

    def _refresh_date(self) -> None:
        self.date_line = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"

    async def _sweep(self, stop: asyncio.Event) -> None:
        """The `date` header, and every connection's deadlines: one timer for all
        connections instead of one per request."""
        config = self.config
        while not stop.is_set():
            await asyncio.sleep(config.sweep_seconds)
            self._refresh_date()
            now = time.monotonic()
            idle = now - config.keep_alive_seconds
            for conn in list(self.connections):
                conn.check_deadlines(now, idle)


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests and answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.exchanges: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.max_head_bytes = server.config.max_head_bytes
        self.loop = asyncio.get_running_loop()
        self.last_heard = time.monotonic()
        self.closed = False
        self.reading_paused = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.address = ""  # the client's address, counted in server.per_address
        self.head_started = 0.0  # monotonic time of a request head's first byte, if any
        self.write_paused_since = 0.0  # since when the client has read none of our answer
        self.write_pending = 0  # bytes waiting to be written at the last look
        self.next_after_drain = False  # the next answer waits for the client to read
        self.stop_parsing = False  # nothing more is parsed on this connection
        self.lingering_until = 0.0  # answered and half-closed: closes by then at the latest

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's; they have the same methods.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if peer else None
        self.local = (str(local[0]), int(local[1])) if local else None
        server = self.server
        address = self.client[0] if self.client else ""
        count = server.per_address.get(address, 0)
        cap = server.config.max_connections_per_address
        if cap and count >= cap:
            self.transport.write(plain_response(503))
            self.transport.close()
            self.closed = self.stop_parsing = True
            return
        self.address = address
        server.per_address[address] = count + 1
        server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        server = self.server
        if self in server.connections:
            server.connections.discard(self)
            left = server.per_address.get(self.address, 1) - 1
            if left > 0:
                server.per_address[self.address] = left
            else:
                server.per_address.pop(self.address, None)
        self.writable.set()
        for exchange in self.exchanges:
            exchange.lost()
            server.budget.release(exchange)
        self.exchanges.clear()

    def data_received(self, data: bytes) -> None:
        if self.stop_parsing:
            return
        self.last_heard = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # An upgrade we do not offer (h2c, WebSocket): answer the request as plain
            # HTTP/1.1, then close (the parser stops at an upgrade).
            if self.parsing is not None and not self.parsing.complete:
                self.parsing.keep_alive = False
                self.parsing.body_complete()
            else:
                self._reject(400)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._reject(431)
            elif isinstance(exc.__context__, _BadTarget):
                self._reject(400)
            elif isinstance(exc.__context__, _PipelineFull):
                # Answer what is queued, then close: the client retries the rest.
                self.stop_parsing = True
                self.exchanges[-1].keep_alive = False
                self._pause_reading()
            else:
                log.exception("request parsing failed")
                self._reject(400)
        except httptools.HttpParserError:
            self._reject(400)

    def pause_writing(self) -> None:
        self.writable.clear()
        self.write_paused_since = time.monotonic()
        self.write_pending = self.buffered_bytes()

    def resume_writing(self) -> None:
        self.writable.set()
        self.write_paused_since = 0.0
        if self.next_after_drain:
            self.next_after_drain = False
            self._next()

    def check_deadlines(self, now: float, idle_since: float) -> None:
        """Called by the sweeper: ends what has run out of time."""
        config = self.server.config
        if self.lingering_until:
            if now > self.lingering_until:
                self.abort()
            return
        if self.write_paused_since:
            pending = self.buffered_bytes()
            if pending < self.write_pending:  # the client reads, slowly: progress
                self.write_pending = pending
                self.write_paused_since = now
            elif now - self.write_paused_since > config.write_timeout_seconds:
                self.abort()  # the client reads nothing: what waits for it is dropped
                return
        # (While earlier requests are being answered, a 408 would interleave with their
        # answers: the head's time runs out once they are done.)
        if (self.head_started and not self.exchanges
                and now - self.head_started > config.head_timeout_seconds):
            self._reject(408)
            return
        parsing = self.parsing
        if (parsing is not None and parsing.body_deadline
                and parsing.more_body and now > parsing.body_deadline):
            parsing.time_out()
            return
        # No request in flight and nothing heard for a while: an idle keep-alive
        # connection, or a request head that stopped arriving.
        if not self.exchanges and self.last_heard < idle_since:
            self.close()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.head_started = self.last_heard  # when the bytes being parsed arrived

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > self.max_head_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.max_head_bytes:
            raise _HeadTooLarge

    def on_headers_complete(self) -> None:
        self.head_started = 0.0
        url = self.url
        if b"#" in url:
            raise _BadTarget
        if len(self.exchanges) >= self.server.config.max_pipelined:
            raise _PipelineFull
        if url[:1] != b"/":  # absolute-form (a proxy request) or `*`
            parsed = httptools.parse_url(url)
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        else:
            raw_path, _, query = url.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        parser = self.parser
        method = parser.get_method().decode("ascii")
        scope: Scope = {
            "type": "http", "asgi": ASGI_VERSION, "http_version": parser.get_http_version(),
            "method": method, "scheme": "http", "path": path, "raw_path": raw_path,
            "query_string": query, "root_path": "", "headers": self.headers,
            "client": self.client, "server": self.local, "state": dict(self.server.state),
        }
        exchange = Exchange(self, scope, keep_alive=parser.should_keep_alive(),
                             head_only=method == "HEAD",
                             expect_continue=(b"expect", b"100-continue") in self.headers)
        self.exchanges.append(exchange)
        self.parsing = exchange
        reservation = _body_reservation(self.headers, self.server.config.max_body_bytes)
        if reservation:
            exchange.reservation = reservation
            exchange.body_deadline = time.monotonic() + self.server.config.body_timeout_seconds
            if self.server.budget.reserve(exchange):
                exchange.admitted()
            else:  # its body waits, unread, until earlier bodies are answered
                self._pause_reading()
        if len(self.exchanges) == 1:
            exchange.start()
        else:  # pipelined: it waits for the answers before it
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        parsing = self.parsing
        assert parsing is not None
        if parsing.feed(body) > BODY_HIGH_WATER or not parsing.may_read:
            self._pause_reading()

    def on_message_complete(self) -> None:
        assert self.parsing is not None
        self.parsing.body_complete()

    # --- answering ----------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self.transport
        if (not self.closed and not self.lingering_until and transport is not None
                and not transport.is_closing()):
            transport.write(data)

    def answered(self, exchange: Exchange) -> None:
        """The response to the oldest request is complete: close, or go on to the next."""
        if self.exchanges and self.exchanges[0] is exchange:
            self.exchanges.popleft()
        if exchange.reservation:  # (without a body, it reserved nothing and freed nothing)
            self.server.budget.release(exchange)
        # Answered before its body arrived (a 401 or 413 before reading it): the rest of
        # the body would have to be read and thrown away, so the connection ends instead.
        if exchange.more_body:
            exchange.keep_alive = False
        if not exchange.keep_alive or self.server.stopping:
            self.close()
            return
        self.last_heard = time.monotonic()
        if self.write_paused_since:  # (as `not self.writable.is_set()`, without a call)
            # The client has not read this answer yet: the next one (and reading more
            # requests) waits until it has, so unread answers never pile up here.
            self.next_after_drain = True
            return
        # (`_next`, inline: once per answer)
        if self.exchanges:
            self.exchanges[0].start()
        if self.reading_paused:
            self.resume_reading()

    def _next(self) -> None:
        if self.closed:
            return
        if self.exchanges:
            self.exchanges[0].start()
        self.resume_reading()

    def resume_reading(self) -> None:
        if (self.reading_paused and not self.closed and not self.stop_parsing
                and self.transport is not None and not self.next_after_drain
                and (self.parsing is None or self.parsing.may_read)):
            self.reading_paused = False
            self.transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def _reject(self, status: int) -> None:
        self.write(plain_response(status))
        self.linger()

    def linger(self) -> None:
        """Ends the connection after an error answer without losing it: our side is
        half-closed after the answer, and what the client still sends is read and
        dropped (unread bytes would make closing a reset) until it closes too, or
        `_LINGER_SECONDS` have passed."""
        self.stop_parsing = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.lingering_until = time.monotonic() + _LINGER_SECONDS
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()

    def close(self) -> None:
        if self.lingering_until:  # closing now could reset the connection: it ends itself
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Closes at once with a reset, dropping whatever waits to be written, in the
        process and in the kernel (closed normally, the socket would live on, orphaned,
        holding what the client never read, and the client would not be told)."""
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()

    def buffered_bytes(self) -> int:
        """Bytes of answers waiting to be written to the client."""
        transport = self.transport
        return transport.get_write_buffer_size() if transport is not None else 0


def _body_reservation(headers: list[tuple[bytes, bytes]], max_body: int) -> int:
    """What a request's body is reserved at: its declared length (at most one byte more
    than the largest body accepted, which the app refuses without reading), or the
    largest body for a chunked one; 0 without a body."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return min(int(value), max_body + 1)
            except ValueError:
                return max_body + 1
        if name == b"transfer-encoding":
            return max_body + 1
    return 0


async def serve(app: ASGIApp, config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await HttpServer(app, config).serve(stop)


def server_config(settings: GatewaySettings, host: str, port: int) -> ServerConfig:
    """The server's configuration from the gateway's settings."""
    max_body = settings.max_body_bytes
    return ServerConfig(
        host=host, port=port,
        keep_alive_seconds=settings.keep_alive_seconds,
        graceful_seconds=settings.graceful_shutdown_seconds,
        head_timeout_seconds=settings.request_head_timeout_seconds,
        body_timeout_seconds=settings.request_body_timeout_seconds,
        write_timeout_seconds=settings.write_timeout_seconds,
        max_pipelined=settings.max_pipelined_requests,
        # Behind trusted proxies every peer is a proxy: they cap connections per client.
        max_connections_per_address=(0 if settings.trusted_proxy_hops
                                     else settings.max_connections_per_address),
        max_body_bytes=max_body,
        body_budget_per_address=settings.body_budget_per_address_bytes or max_body + 1,
        body_budget=max(settings.body_budget_bytes, max_body + 1),
        extra_ports=(settings.metrics_port,) if settings.metrics_port else (),
    )


def main(argv: list[str] | None = None) -> None:
    from gateway.main import create_app

    parser = argparse.ArgumentParser(description="The IGNY8 gateway's HTTP server.")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server's default
    parser.add_argument("--port", type=int, default=None,
                        help="default: IGNY8_HTTP_PORT, else 8000")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    config = server_config(settings, args.host, args.port or settings.http_port)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    asyncio.run(serve(create_app(settings), config))


if __name__ == "__main__":
    main()
