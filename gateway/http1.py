"""A lean pooled HTTP/1.1 client for the proxy's upstream requests.

aiohttp's client builds a request object, a multidict of headers, a response object, a
stream reader and a timer per request, and writes the request head and body separately.
The proxy needs none of that: its requests are already complete byte strings and its
responses are read whole. Here a request is one `transport.write`, parsing is httptools
(llhttp, the parser uvicorn uses) calling back into a per-connection protocol, and the
answer is `(status, [(lowercased name, value)], body)`. (Splitting a whole answer by hand
with bytes operations, to save httptools' per-header callbacks, measured 3x slower.)

- Connections are kept alive per upstream (LIFO, so the warmest is reused), at most
  `limit` at once per upstream, and an idle one is not reused after `idle_seconds`
  (below uvicorn's 5 s keep-alive, so an upstream rarely closes one under us).
- A request whose reused connection turns out to be closed before any answer byte is
  retried once on a new connection when its method is idempotent.
- A non-idempotent request cannot be retried once sent, so before it is sent on a reused
  connection, the socket is asked (`poll`, no wait) whether the upstream has closed it
  meanwhile: a service that closes a connection right after a 500 must not fail the next
  tenant's POST (issue 13, M4). The close may have arrived since the loop last looked.
- `UpstreamUnavailable` (connect failed or timed out, connection lost), `TimeoutError`
  (no whole answer within `timeout`), `UpstreamBadResponse` (unparsable answer).
- No timer and no semaphore per request: a request is a counter and a deadline, and one
  watchdog per pool fails the answers that are late (checked `timeout / 4` apart, at most
  a second). Per-request `asyncio.timeout` and `Semaphore` were ~5 % of the gateway's
  CPU per request.
- HEAD is not supported (httptools cannot be told a response has no body): the gateway
  asks GET instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections import deque
from typing import Any
from urllib.parse import urlsplit

import httptools

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_NEEDS_LENGTH = frozenset({"POST", "PUT", "PATCH"})
# poll() events saying a kept-alive connection cannot carry a request: the upstream closed
# it (or half-closed it), it failed, or it sent bytes nobody asked for.
_NOT_REUSABLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | getattr(
    select, "POLLRDHUP", 0x2000)


class UpstreamUnavailable(Exception):
    """The upstream could not be reached, or went away before answering in full."""


class UpstreamBadResponse(Exception):
    """The upstream's answer is not valid HTTP/1.1."""


Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class _Connection(asyncio.Protocol):
    __slots__ = ("body", "closed", "deadline", "delimited", "headers", "idle_since",
                 "keep_alive", "loop", "parser", "poller", "received", "status", "transport",
                 "waiter")

    def __init__(self) -> None:
        self.transport: Any = None  # asyncio's or uvloop's transport
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Response] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.keep_alive = True
        self.delimited = False  # the answer has a Content-Length or is chunked
        self.received = False
        self.closed = False
        self.deadline = 0.0  # loop time by which the answer in flight must be complete
        self.idle_since = 0.0
        self.poller: select.poll | None = None

    # ---- asyncio.Protocol ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A poll object holds the descriptor's number only: it owns nothing, and is
            # asked only while the transport keeps the socket open.
            self.poller = select.poll()
            self.poller.register(sock.fileno(), _NOT_REUSABLE)

    def still_open(self) -> bool:
        """Whether the upstream has neither closed this idle connection nor written to it
        since its last answer, as the socket says now (one poll, no wait)."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        return self.poller is None or not self.poller.poll(0)

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBadResponse(f"invalid HTTP/1.1 answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.status and not self.delimited:  # the answer ends with the connection
            self.keep_alive = False
            waiter.set_result((self.status, self.headers, b"".join(self.body)))
            return
        waiter.set_exception(UpstreamUnavailable(
            f"upstream closed the connection{': ' + str(exc) if exc else ''}"))

    # ---- httptools callbacks ----

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        for name, value in self.headers:
            if name == b"content-length" or (name == b"transfer-encoding"
                                             and b"chunked" in value.lower()):
                self.delimited = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200 and self.status != 101:  # interim: the answer follows
            self.status = 0
            self.headers = []
            self.body = []
            self.delimited = False
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            waiter.set_result((self.status, self.headers, body))

    # ---- use ----

    def exchange(self, request: bytes, deadline: float) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.status = 0
        self.headers = []
        self.body = []
        self.delimited = False
        self.received = False
        self.deadline = deadline
        self.waiter = self.loop.create_future()
        self.transport.write(request)
        return self.waiter

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Upstream:
    __slots__ = ("busy", "host", "idle", "port", "prefix", "queue")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: deque[_Connection] = deque()
        self.busy = 0  # requests holding one of the `limit` slots
        self.queue: deque[asyncio.Future[None]] = deque()  # requests waiting for a slot
        self.prefix = f"Host: {host}:{port}\r\n".encode("latin-1")


class Http1Pool:
    def __init__(self, *, limit: int = 512, connect_timeout: float = 3.0,
                 timeout: float = 30.0, idle_seconds: float = 4.0) -> None:
        self.limit = limit
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self._upstreams: dict[tuple[str, int], _Upstream] = {}
        self._closed = False
        self._in_flight: set[_Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one it serves, once known

    async def request(self, method: str, host: str, port: int, target: str,
                      headers: list[tuple[bytes, bytes]], body: bytes) -> Response:
        """One request with `headers` (no Host, Content-Length or Connection: added
        here); the whole answer, or one of the module's errors, within `timeout`."""
        upstream = self._upstreams.get((host, port))
        if upstream is None:
            upstream = self._upstreams[(host, port)] = _Upstream(host, port)
        lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1"), upstream.prefix]
        lines.extend([name + b": " + value + b"\r\n" for name, value in headers])
        if body or method in _NEEDS_LENGTH:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        request = b"".join(lines)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while upstream.busy >= self.limit:
            await self._wait_for_slot(upstream, deadline)
        upstream.busy += 1
        try:
            connection = self._idle_connection(upstream, loop, method not in IDEMPOTENT)
            reused = connection is not None
            if connection is None:
                connection = await self._connect(upstream)
            try:
                try:
                    response = await self._exchange(connection, request, deadline)
                except UpstreamUnavailable:
                    if not (reused and not connection.received and method in IDEMPOTENT):
                        raise
                    self._in_flight.discard(connection)
                    connection.close()
                    connection = await self._connect(upstream)
                    response = await self._exchange(connection, request, deadline)
            except BaseException:  # cancelled, timed out or failed: its state is unknown
                connection.close()
                raise
            finally:
                self._in_flight.discard(connection)
            self._release(upstream, connection)
            return response
        finally:
            upstream.busy -= 1
            if upstream.queue:
                _wake_next(upstream)

    def _exchange(self, connection: _Connection, request: bytes,
                  deadline: float) -> asyncio.Future[Response]:
        """Sends `request`; the answer's future, watched for its deadline."""
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch())
        self._in_flight.add(connection)
        return connection.exchange(request, deadline)

    async def _wait_for_slot(self, upstream: _Upstream, deadline: float) -> None:
        """All `limit` slots are taken (rare): wait, in order, until one frees."""
        waiter = asyncio.get_running_loop().create_future()
        upstream.queue.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():  # woken, but leaving: pass it on
                _wake_next(upstream)
            raise

    async def _watch(self) -> None:
        """Fails the answers in flight that are past their deadline."""
        loop = asyncio.get_running_loop()
        interval = min(1.0, self.timeout / 4)
        while self._in_flight and not self._closed:
            await asyncio.sleep(interval)
            now = loop.time()
            for connection in [c for c in self._in_flight if c.deadline <= now]:
                connection._fail(TimeoutError(f"no complete answer in {self.timeout:g} s"))
                connection.close()

    def _idle_connection(self, upstream: _Upstream, loop: asyncio.AbstractEventLoop,
                         unrepeatable: bool) -> _Connection | None:
        """The warmest kept-alive connection that is still fresh, if any. For a request
        that cannot be repeated, the socket itself confirms that it is still open (an
        idempotent one is repeated on a new connection instead, at no cost when the
        connection is fine)."""
        idle = upstream.idle
        while idle:
            connection = idle.pop()
            if (not connection.closed
                    and loop.time() - connection.idle_since < self.idle_seconds
                    and (not unrepeatable or connection.still_open())):
                return connection
            connection.close()
        return None

    async def _connect(self, upstream: _Upstream) -> _Connection:
        if self._closed:
            raise UpstreamUnavailable("client closed")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection, upstream.host, upstream.port)
        except TimeoutError as exc:
            raise UpstreamUnavailable(f"connect to {upstream.host}:{upstream.port} "
                                      "timed out") from exc
        except OSError as exc:
            raise UpstreamUnavailable(f"connect to {upstream.host}:{upstream.port}: "
                                      f"{exc}") from exc
        return connection

    def _release(self, upstream: _Upstream, connection: _Connection) -> None:
        if connection.closed or not connection.keep_alive or self._closed:
            connection.close()
            return
        connection.waiter = None
        connection.idle_since = connection.loop.time()
        upstream.idle.append(connection)
        if len(upstream.idle) > self.limit:
            upstream.idle.popleft().close()

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for upstream in self._upstreams.values():
            while upstream.idle:
                with contextlib.suppress(Exception):
                    upstream.idle.pop().close()
        await asyncio.sleep(0)


def _wake_next(upstream: _Upstream) -> None:
    while upstream.queue:
        waiter = upstream.queue.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def split_base(base: str) -> tuple[str, int, str]:
    """`http://host:port/prefix` → (host, port, prefix); only plain http is supported."""
    parts = urlsplit(base)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"upstream {base!r}: only http://host[:port] is supported")
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")
