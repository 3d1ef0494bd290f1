"""The server's ASGI side (gateway/server.py is the HTTP side): one request's exchange
with the app, `Exchange`, which hands the body the connection read to `receive()` and
writes what `send()` gives it, head and complete body in one write; and the lifespan
protocol, `Lifespan`. The response bytes it builds are here too."""

from __future__ import annotations

import asyncio
import http
import logging
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Scope

if TYPE_CHECKING:
    from gateway.server import HttpConnection

log = logging.getLogger("igny8.gateway.server")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
STATUS_LINES = {status.value: f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()
                for status in http.HTTPStatus}
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NO_BODY_STATUSES = frozenset({204, 304})
# Pause reading a connection while this much request body waits for the app.
BODY_HIGH_WATER = 256 * 1024


def status_line(status: int) -> bytes:
    return STATUS_LINES.get(status) or f"HTTP/1.1 {status} \r\n".encode()


def plain_response(status: int, *, close: bool = True) -> bytes:
    phrase = http.HTTPStatus(status).phrase.encode()
    return (status_line(status) + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(phrase)
            + (b"connection: close\r\n" if close else b"") + b"\r\n" + phrase)


class Exchange:
    """One request and its response, between the connection and the app."""

    __slots__ = ("address", "body", "body_deadline", "body_delivered", "body_size", "chunked",
                 "complete", "conn", "continue_sent", "disconnected", "expect_continue",
                 "head", "head_only", "keep_alive", "more_body", "no_body", "reservation",
                 "reserved", "scope", "started", "task", "wakeup")
    task: asyncio.Task[None]  # the app's, set by `start`

    def __init__(self, conn: HttpConnection, scope: Scope, *, keep_alive: bool,
                 head_only: bool, expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.head_only = head_only
        self.expect_continue = expect_continue
        self.continue_sent = False
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.body_delivered = False
        self.disconnected = False
        self.wakeup: asyncio.Future[None] | None = None
        self.head: list[bytes] | None = None
        self.started = False
        self.complete = False
        self.chunked = False
        self.no_body = False
        self.address = conn.address
        self.reservation = 0  # body bytes reserved in the server's BodyBudget
        self.reserved = False
        self.body_deadline = 0.0  # monotonic time by which the body must have arrived

    # --- from the connection ------------------------------------------------------------

    def start(self) -> None:
        # The task leaves the server's set itself, at the end of `_run`: a done callback
        # would take one more turn of the event loop after every answer.
        self.task = self.conn.loop.create_task(self._run())
        self.conn.server.tasks.add(self.task)

    def feed(self, chunk: bytes) -> int:
        self.body.append(chunk)
        self.body_size += len(chunk)
        self._wake()
        return self.body_size

    def body_complete(self) -> None:
        self.more_body = False
        if self.reservation and not self.reserved:  # arrived whole while it waited
            self.conn.server.budget.release(self)
        self._wake()

    @property
    def may_read(self) -> bool:
        """Whether more of this request's body may be read from the socket."""
        return self.reserved or not self.reservation or not self.more_body

    def admitted(self) -> None:
        """The budget took this body: reading it may start."""
        if self.conn.parsing is self and self.body_size <= BODY_HIGH_WATER:
            self.conn.resume_reading()

    def time_out(self) -> None:
        """The body did not arrive in time: 408 if nothing was answered yet, then close.
        A pipelined request behind others cannot be answered out of turn: its connection
        is reset instead."""
        conn = self.conn
        if conn.exchanges and conn.exchanges[0] is not self:
            conn.abort()
            return
        if not self.started:
            self.started = True
            self.conn.write(plain_response(408))
        self.more_body = False
        self.disconnected = True  # the app's receive() ends, nothing it sends goes out
        self._wake()
        self.conn.server.budget.release(self)
        self.conn.linger()

    def lost(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def _wait(self) -> None:
        self.wakeup = self.conn.loop.create_future()
        try:
            await self.wakeup
        finally:
            self.wakeup = None

    # --- the app's side -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.conn.server.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("unhandled error in %s %s", self.scope["method"], self.scope["path"])
            if not self.started:
                self.conn.write(plain_response(500))
            self.conn.close()
            return
        finally:
            self.conn.server.tasks.discard(self.task)
        if not self.complete:  # the app returned without finishing its response
            if not self.started:
                self.conn.write(plain_response(500))
            self.conn.close()

    async def receive(self) -> Message:
        if self.expect_continue and not self.continue_sent and self.more_body:
            self.continue_sent = True
            self.conn.write(CONTINUE)
        while not self.body and self.more_body and not self.disconnected:
            await self._wait()
        if self.body:
            chunk = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            self.body = []
            self.body_size = 0
            self.body_delivered = not self.more_body
            self.conn.resume_reading()
            return {"type": "http.request", "body": chunk, "more_body": self.more_body}
        if not self.disconnected and not self.body_delivered:
            self.body_delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Asked again after the whole body: ASGI wants the call to wait for a disconnect;
        # the end of the response counts as one.
        while not (self.disconnected or self.complete):
            await self._wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("response already started")
            self.started = True
            status: int = message["status"]
            self.no_body = self.head_only or status in NO_BODY_STATUSES or status < 200
            head = [status_line(status)]
            has_length = False
            for name, value in message.get("headers", ()):
                lowered = name.lower()
                if lowered == b"content-length":
                    has_length = True
                elif lowered == b"connection" and value.lower() == b"close":
                    self.keep_alive = False
                elif lowered == b"transfer-encoding":
                    continue  # framing is the server's to choose
                head.append(b"%s: %s\r\n" % (name, value))
            head.append(self.conn.server.date_line)
            if self.conn.server.stopping or (self.more_body and not self.disconnected):
                self.keep_alive = False
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            elif self.scope["http_version"] == "1.0":
                head.append(b"connection: keep-alive\r\n")
            if has_length or self.no_body:
                head.append(b"\r\n")
            self.head = head
            return
        if kind != "http.response.body":
            return
        if not self.started or self.complete:
            raise RuntimeError("response body without a started, open response")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        out = b""
        if self.head is not None:
            head, self.head = self.head, None
            if head[-1] != b"\r\n":  # no content-length from the app: the server frames it
                if more:
                    self.chunked = True
                    head.append(b"transfer-encoding: chunked\r\n\r\n")
                else:
                    head.append(b"content-length: %d\r\n\r\n" % len(body))
            out = b"".join(head)
        if not self.no_body:
            if self.chunked:
                if body:
                    out += b"%x\r\n%s\r\n" % (len(body), body)
                if not more:
                    out += b"0\r\n\r\n"
            else:
                out += body
        if out:
            self.conn.write(out)
        if more:
            if not self.conn.writable.is_set():
                await self.conn.writable.wait()
            return
        self.complete = True
        self._wake()
        self.conn.answered(self)


class Lifespan:
    """The ASGI lifespan protocol: startup before the first request, shutdown after the
    last."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.started: asyncio.Future[None] | None = None
        self.stopped: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.started, self.stopped = loop.create_future(), loop.create_future()
        scope: Scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self.task = loop.create_task(self._run(scope))
        await self.inbox.put({"type": "lifespan.startup"})
        await self.started

    async def shutdown(self) -> None:
        if self.task is None or self.task.done():
            return
        await self.inbox.put({"type": "lifespan.shutdown"})
        assert self.stopped is not None
        await self.stopped

    async def _run(self, scope: Scope) -> None:
        try:
            await self.app(scope, self.inbox.get, self._send)
        except BaseException as exc:
            for future in (self.started, self.stopped):
                if future is not None and not future.done():
                    future.set_exception(RuntimeError(f"lifespan failed: {exc!r}"))
            if not isinstance(exc, Exception):
                raise
        finally:
            for future in (self.started, self.stopped):
                if future is not None and not future.done():
                    future.set_result(None)

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        target = self.started if kind.startswith("lifespan.startup") else self.stopped
        if target is None or target.done():
            return
        if kind.endswith(".failed"):
            target.set_exception(RuntimeError(message.get("message") or kind))
        else:
            target.set_result(None)
