# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""What one client can make the gateway's HTTP server hold (issue 13, H1 and H2), and the
request lines it must refuse (L1, L6), over real sockets. Deadlines are configured short;
the assertions are on bytes held and on connections being closed, never on elapsed time
(every wait is bounded generously, so a slow machine cannot fail them)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from gateway.server import HttpServer
from gateway.tests.test_server import App, connect, get, read_response, serving

LARGE = 256 * 1024


class HoldingApp(App):
    """`/large` answers 256 KiB; `/upload` counts the body bytes it holds (`holding`, until
    its request ends; `taken` in all) and answers once the whole body is in."""

    def __init__(self) -> None:
        super().__init__()
        self.large_answers = 0
        self.taken = 0
        self.holding = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/large":
            self.large_answers += 1
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", b"%d" % LARGE)]})
            await send({"type": "http.response.body", "body": b"x" * LARGE})
            return
        if scope["type"] == "http" and scope["path"] == "/upload":
            got = 0
            try:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    got += len(message.get("body", b""))
                    self.holding += len(message.get("body", b""))
                    if not message.get("more_body"):
                        break
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-length", b"2")]})
                await send({"type": "http.response.body", "body": b"ok"})
            finally:
                self.taken += got
                self.holding -= got
            return
        await super().__call__(scope, receive, send)


async def until(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Waits for `condition`; the bound only turns a hang into a failure."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server still sends before it closes the connection."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:
        return b""


TCP_CLOSE = 7  # Linux's TCP_CLOSE state: what a reset leaves


def tcp_state(sock: Any) -> int:
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0])


async def open_small(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client with a small receive buffer that will read nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    assert server.port is not None
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
    return await asyncio.open_connection(sock=sock, limit=4096)


async def test_unread_pipelined_answers_do_not_pile_up() -> None:
    """H1: 200 pipelined requests, none of the answers read. The server answers one at a
    time while the client reads, so at most about one answer waits in the process; it
    parses at most `max_pipelined` requests ahead; the connection goes once the client
    has read nothing for `write_timeout_seconds`; other clients are served meanwhile."""
    app = HoldingApp()
    async with serving(app, write_timeout_seconds=0.5, max_pipelined=200,
                       keep_alive_seconds=30) as server:
        _reader, writer = await open_small(server)
        writer.write(get("/large") * 200)
        await writer.drain()
        await until(lambda: any(c.next_after_drain for c in server.connections),
                    "the server waits for the client to read before answering again")
        conn = next(iter(server.connections))
        answered = app.large_answers
        print(f"answers produced: {answered}, buffered: {conn.buffered_bytes()}")
        assert conn.buffered_bytes() <= LARGE + 64 * 1024  # one answer, not 200
        assert answered < 40  # the rest of what the kernel's socket buffers took

        other_reader, other_writer = await connect(server)
        other_writer.write(get("/echo"))
        assert (await read_response(other_reader))[0] == 200

        await until(lambda: conn.closed, "the unread connection is dropped")
        assert app.large_answers == answered
        # With a reset: the kernel drops what it held for the client, and the client
        # learns it at once (a close would queue behind the unread bytes).
        client = writer.get_extra_info("socket")
        await until(lambda: tcp_state(client) == TCP_CLOSE, "the client sees a reset")
        writer.close()
        other_writer.close()


async def test_deep_pipelining_is_answered_up_to_the_cap_then_closed() -> None:
    async with serving(App(), max_pipelined=4) as server:
        reader, writer = await connect(server)
        writer.write(get("/echo") * 10)
        answers = [await read_response(reader) for _ in range(4)]
        assert [a[0] for a in answers] == [200] * 4
        assert answers[-1][1][b"connection"] == b"close"
        assert await closed_by_server(reader) == b""
        writer.close()


async def test_a_head_that_keeps_trickling_gets_408() -> None:
    """H2: one header line at a time keeps the connection busy, never idle; the head's
    own deadline ends it."""
    async with serving(App(), head_timeout_seconds=0.3, keep_alive_seconds=30) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n")
        answer = asyncio.ensure_future(read_response(reader))
        for i in range(1000):
            if answer.done():
                break
            writer.write(b"X-Slow-%d: 1\r\n" % i)
            await asyncio.sleep(0.02)
        status, headers, _ = await asyncio.wait_for(answer, 10)
        assert status == 408 and headers[b"connection"] == b"close"
        assert await closed_by_server(reader) == b""
        writer.close()


async def send_head(server: HttpServer, length: int) -> tuple[asyncio.StreamReader,
                                                                asyncio.StreamWriter]:
    reader, writer = await connect(server)
    writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % length)
    await writer.drain()
    return reader, writer


def held(server: HttpServer, app: HoldingApp) -> int:
    """Request-body bytes in the process: taken by the app, or parsed and waiting."""
    waiting = sum(e.body_size for c in server.connections for e in c.exchanges)
    return app.holding + waiting


async def test_stalled_bodies_are_bounded_by_the_budget_and_get_408() -> None:
    """H2: five uploads of 900 KiB from one address, each stalling before its end. Only
    what fits the address's budget is read; the rest waits in the kernel, unread; each
    body that ran out of time gets 408 and its connection is closed, and the next
    waiting body is read."""
    app = HoldingApp()
    budget = 1536 * 1024
    async with serving(app, body_timeout_seconds=0.5, keep_alive_seconds=30,
                       body_budget_per_address=budget, max_body_bytes=1024 * 1024) as server:
        clients = []
        for _ in range(5):
            clients.append(await send_head(server, 1024 * 1024))
            await until(lambda n=len(clients): sum(len(c.exchanges)
                                                   for c in server.connections) == n,
                        "the head is parsed")
        for _, writer in clients:
            writer.write(b"b" * (900 * 1024))  # then nothing more: stalled
        peak = 0
        answers: list[Awaitable[bytes]] = [closed_by_server(reader) for reader, _ in clients]
        gathered = asyncio.ensure_future(asyncio.gather(*answers))
        while not gathered.done():
            peak = max(peak, held(server, app), server.budget.reserved)
            await asyncio.sleep(0.005)
        assert peak <= budget
        for answer in await gathered:
            assert answer.startswith(b"HTTP/1.1 408 ")
        assert server.budget.reserved == 0 and not server.budget.waiting
        for _, writer in clients:
            writer.close()


async def test_a_body_that_arrives_is_read_once_the_budget_frees() -> None:
    app = HoldingApp()
    async with serving(app, body_budget_per_address=1024 * 1024 + 1,
                       max_body_bytes=1024 * 1024) as server:
        first = await send_head(server, 1024 * 1024)
        second = await send_head(server, 1024)
        await until(lambda: len(server.budget.waiting) == 1, "the second body waits")
        second[1].write(b"s" * 1024)
        first[1].write(b"f" * (1024 * 1024))
        for reader, _ in (first, second):
            status, _, body = await asyncio.wait_for(read_response(reader), 10)
            assert status == 200 and body == b"ok"
        assert app.taken == 1024 * 1024 + 1024
        for _, writer in (first, second):
            writer.close()


async def test_connections_per_address_are_capped() -> None:
    async with serving(App(), max_connections_per_address=3) as server:
        kept = [await connect(server) for _ in range(3)]
        for reader, writer in kept:
            writer.write(get("/echo"))
            assert (await read_response(reader))[0] == 200
        reader, writer = await connect(server)
        status, headers, _ = await read_response(reader)
        assert status == 503 and headers[b"connection"] == b"close"
        writer.close()
        kept[0][1].close()
        await until(lambda: server.per_address.get("127.0.0.1") == 2, "a connection ends")
        reader, writer = await connect(server)
        writer.write(get("/echo"))
        assert (await read_response(reader))[0] == 200
        writer.close()
        for _, w in kept[1:]:
            w.close()


async def test_a_fragment_in_the_request_target_is_400() -> None:
    """L1: the services behind drop `#...`; the gateway would route the path with it."""
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/api/v1/auth/login/#x"))
        status, headers, _ = await read_response(reader)
        assert status == 400 and headers[b"connection"] == b"close"
        writer.close()


async def test_http_1_0_keep_alive_is_said_and_kept() -> None:
    """L6: an HTTP/1.0 client asking to keep the connection is told it is kept."""
    async with serving(App()) as server:
        reader, writer = await connect(server)
        for i in range(2):
            writer.write(get(f"/echo/{i}", "Connection: keep-alive", version="1.0"))
            status, headers, body = await read_response(reader)
            assert status == 200 and headers[b"connection"] == b"keep-alive"
            assert orjson.loads(body)["path"] == f"/echo/{i}"
        writer.close()


async def test_a_late_head_behind_an_answer_in_progress_waits_its_turn() -> None:
    """The 408 of a head that ran out of time never lands inside an earlier answer."""
    async with serving(App(), head_timeout_seconds=0.05, keep_alive_seconds=30) as server:
        reader, writer = await connect(server)
        writer.write(get("/slow") + b"GET /echo HTTP/1.1\r\nHost: t\r\n")  # never finished
        status, _, body = await asyncio.wait_for(read_response(reader), 10)
        assert status == 200 and orjson.loads(body)["path"] == "/slow"
        status, headers, _ = await asyncio.wait_for(read_response(reader), 10)
        assert status == 408 and headers[b"connection"] == b"close"
        writer.close()
