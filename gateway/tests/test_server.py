# ruff: noqa: PT018 - compound assertions read as one fact about a response
"""The gateway's HTTP/1.1 server, spoken to over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from starlette.types import Receive, Scope, Send

from gateway.server import HttpServer, ServerConfig, server_config
from gateway.settings import GatewaySettings

Response = tuple[int, dict[bytes, bytes], bytes]


class App:
    """A small ASGI app whose routes exercise one server behaviour each."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.fail_startup = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    if self.fail_startup:
                        await send({"type": "lifespan.startup.failed", "message": "no"})
                        return
                    self.events.append("startup")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    self.events.append("shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for part in (b"one,", b"two,", b"three"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/reject":  # answers without reading the body
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/slow":
            await asyncio.sleep(0.3)
        if path == "/until-disconnect":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
            message = await receive()
            while message["type"] != "http.disconnect":
                message = await receive()
            self.events.append("disconnected")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = orjson.dumps({
            "method": scope["method"], "path": scope["path"],
            "raw_path": scope["raw_path"].decode(), "query": scope["query_string"].decode(),
            "body": body.decode(), "client": scope["client"][0],
            "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
        })
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


def loopback_config(**overrides: Any) -> ServerConfig:
    """The gateway's server configuration (its settings' defaults) on a free loopback
    port, with `overrides`."""
    return dataclasses.replace(server_config(GatewaySettings(), "127.0.0.1", 0), **overrides)


@contextlib.asynccontextmanager
async def serving(app: App, **config: Any) -> AsyncIterator[HttpServer]:
    server = HttpServer(app, loopback_config(**config))
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(server.serve(stop, ready=lambda _port: ready.set()))
    await asyncio.wait([task, asyncio.create_task(ready.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raises what startup raised
    try:
        yield server
    finally:
        stop.set()
        await task


async def connect(server: HttpServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert server.port is not None
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_response(reader: asyncio.StreamReader, *, head_only: bool = False) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower().encode()] = value.strip().encode()
    if head_only or status in (100, 204, 304):
        return status, headers, b""
    if b"content-length" in headers:
        return status, headers, await reader.readexactly(int(headers[b"content-length"]))
    assert headers.get(b"transfer-encoding") == b"chunked"
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, headers, body
        body += chunk[:-2]


def get(path: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_keep_alive_answers_each_request_in_turn() -> None:
    app = App()
    async with serving(app) as server:
        reader, writer = await connect(server)
        for i in range(3):
            writer.write(get(f"/echo/{i}?x={i}"))
            status, headers, body = await read_response(reader)
            answer = orjson.loads(body)
            assert status == 200 and answer["path"] == f"/echo/{i}" and answer["query"] == f"x={i}"
            assert headers[b"content-type"] == b"application/json" and b"date" in headers
            assert b"connection" not in headers
        writer.close()
    assert app.events == ["startup", "shutdown"]


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/slow") + get("/fast") + get("/third"))
        paths = [orjson.loads((await read_response(reader))[2])["path"] for _ in range(3)]
        assert paths == ["/slow", "/fast", "/third"]
        writer.close()


async def test_request_bodies_plain_chunked_and_with_expect_continue() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert orjson.loads((await read_response(reader))[2])["body"] == "hello"

        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n")
        await asyncio.sleep(0.05)  # the rest of the body arrives later
        writer.write(b"2\r\nde\r\n0\r\n\r\n")
        assert orjson.loads((await read_response(reader))[2])["body"] == "abcde"

        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        status, _, _ = await read_response(reader)
        assert status == 100
        writer.write(b"data")
        assert orjson.loads((await read_response(reader))[2])["body"] == "data"
        writer.close()


async def test_streamed_response_is_chunked_and_head_has_no_body() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/stream"))
        status, headers, body = await read_response(reader)
        assert status == 200 and headers[b"transfer-encoding"] == b"chunked"
        assert body == b"one,two,three"

        writer.write(get("/echo", method="HEAD"))
        status, headers, _ = await read_response(reader, head_only=True)
        assert status == 200 and int(headers[b"content-length"]) > 0
        writer.write(get("/echo/after-head"))  # nothing of a body was sent before this
        assert orjson.loads((await read_response(reader))[2])["path"] == "/echo/after-head"
        writer.close()


@pytest.mark.parametrize("request_bytes", [
    get("/echo", version="1.0"),
    get("/echo", "Connection: close"),
])
async def test_http_1_0_and_connection_close_end_the_connection(request_bytes: bytes) -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(request_bytes)
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers[b"connection"] == b"close"
        assert await reader.read() == b""  # closed by the server
        writer.close()


async def test_bad_requests_get_400_and_oversized_heads_431() -> None:
    async with serving(App(), max_head_bytes=2048) as server:
        reader, writer = await connect(server)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        assert (await read_response(reader))[0] == 400
        assert await reader.read() == b""
        writer.close()

        reader, writer = await connect(server)
        writer.write(get("/echo", "X-Big: " + "a" * 4096))
        assert (await read_response(reader))[0] == 431
        writer.close()


async def test_paths_are_decoded_and_raw_paths_kept() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/echo/a%20b/%C3%A9?q=%20"))
        answer = orjson.loads((await read_response(reader))[2])
        assert answer["path"] == "/echo/a b/é" and answer["raw_path"] == "/echo/a%20b/%C3%A9"
        assert answer["query"] == "q=%20" and answer["client"] == "127.0.0.1"
        writer.close()


async def test_an_app_error_is_a_500_and_a_disconnect_reaches_the_app() -> None:
    app = App()
    async with serving(app) as server:
        reader, writer = await connect(server)
        writer.write(get("/boom"))
        assert (await read_response(reader))[0] == 500
        writer.close()

        reader, writer = await connect(server)
        writer.write(get("/until-disconnect"))
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        for _ in range(100):
            if "disconnected" in app.events:
                break
            await asyncio.sleep(0.01)
        assert "disconnected" in app.events


async def test_idle_connections_close_after_the_keep_alive_timeout() -> None:
    async with serving(App(), keep_alive_seconds=0.2) as server:
        reader, writer = await connect(server)
        writer.write(get("/echo"))
        await read_response(reader)
        # The sweeper runs once a second; the connection is gone within two.
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()

        reader, writer = await connect(server)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: t\r\n")  # a head that never ends
        assert await asyncio.wait_for(reader.read(), 3) == b""
        writer.close()


async def test_a_request_task_leaves_the_server_by_itself() -> None:
    """The app's task is in the server's set while it runs (stopping waits for it) and
    removes itself as it ends: no done callback, which would take one more turn of the
    event loop after every answer (bench.gateway_count: one epoll_wait per request)."""
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/slow"))
        await asyncio.sleep(0.1)
        (task,) = server.tasks
        assert not task._callbacks
        await read_response(reader)
        writer.write(get("/echo"))
        await read_response(reader)
        assert task.done() and not server.tasks
        writer.close()


async def test_stopping_finishes_requests_in_flight() -> None:
    app = App()
    server = HttpServer(app, loopback_config())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(server.serve(stop, ready=lambda _port: ready.set()))
    await ready.wait()
    reader, writer = await connect(server)
    idle_reader, idle_writer = await connect(server)
    writer.write(get("/slow"))
    await asyncio.sleep(0.05)
    stop.set()
    status, headers, _ = await read_response(reader)
    assert status == 200 and headers[b"connection"] == b"close"
    assert await idle_reader.read() == b""
    await task
    assert app.events == ["startup", "shutdown"]
    writer.close()
    idle_writer.close()


async def test_a_failed_startup_stops_the_server() -> None:
    app = App()
    app.fail_startup = True
    with pytest.raises(RuntimeError, match="no"):
        async with serving(app):
            pass


async def test_an_answer_before_the_body_ends_the_connection() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(b"POST /reject HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert status == 401 and headers[b"connection"] == b"close"
        assert await reader.read() == b""  # the unread body is not parsed as a request
        writer.close()


async def test_an_upgrade_we_do_not_offer_is_answered_as_plain_http() -> None:
    async with serving(App()) as server:
        reader, writer = await connect(server)
        writer.write(get("/echo", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c",
                         "HTTP2-Settings: AAMAAABkAAQAAP__"))
        status, headers, body = await read_response(reader)
        assert status == 200 and orjson.loads(body)["path"] == "/echo"
        assert headers[b"connection"] == b"close"
        assert await reader.read() == b""
        writer.close()
