"""The lean upstream client against raw servers: reuse, retries, framing and failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import uvloop

from gateway.http1 import Http1Pool, UpstreamBadResponse, UpstreamUnavailable, split_base

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[tuple[int, list[int]]]:
    """A raw server; yields its port and the number of connections it accepted."""
    accepted: list[int] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        srv.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


async def answer_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError):
        while True:
            await read_request(reader)
            writer.write(OK)


async def test_one_connection_is_kept_alive_and_requests_are_whole() -> None:
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                seen.append(await read_request(reader))
                writer.write(OK)

    async with server(handler) as (port, accepted):
        pool = Http1Pool()
        for _ in range(3):
            status, headers, body = await pool.request(
                "POST", "127.0.0.1", port, "/a?b=1", [(b"X-Request-ID", b"r1")], b'{"k":1}')
            assert (status, body) == (200, b"{}")
            assert (b"content-type", b"application/json") in headers  # names lowercased
        await pool.close()
    assert len(accepted) == 1
    assert seen[0] == (f"POST /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "X-Request-ID: r1\r\nContent-Length: 7\r\n\r\n{\"k\":1}").encode()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
    b"HTTP/1.1 200 OK\r\nBad Name: 1\r\nContent-Length: 2\r\n\r\nhi",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nhi",
])
async def test_answers_httptools_refuses_are_refused(answer: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await reader.read()

    async with server(handler) as (port, _):
        with pytest.raises(UpstreamBadResponse):
            await Http1Pool(timeout=5).request("GET", "127.0.0.1", port, "/", [], b"")


async def test_chunked_and_close_delimited_answers_and_interim_responses() -> None:
    answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked"
        b"\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answers.pop(0))
        await writer.drain()

    async with server(handler) as (port, _):
        pool = Http1Pool()
        status, _, body = await pool.request("GET", "127.0.0.1", port, "/", [], b"")
        assert (status, body) == (201, b"abcde")
        status, _, body = await pool.request("GET", "127.0.0.1", port, "/", [], b"")
        assert (status, body) == (200, b"until the end")
        await pool.close()


async def test_a_stale_connection_is_retried_for_idempotent_methods_only() -> None:
    async def answer_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        await read_request(reader)  # the next request arrives; the server closes unanswered

    async with server(answer_once) as (port, accepted):
        pool = Http1Pool()
        assert (await pool.request("GET", "127.0.0.1", port, "/", [], b""))[0] == 200
        assert (await pool.request("GET", "127.0.0.1", port, "/", [], b""))[0] == 200
        assert len(accepted) == 2
        with pytest.raises(UpstreamUnavailable):
            await pool.request("POST", "127.0.0.1", port, "/", [], b"x")
        await pool.close()


async def test_failures_are_told_apart() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(2)

    async with server(garbage) as (port, _):
        with pytest.raises(UpstreamBadResponse):
            await Http1Pool().request("GET", "127.0.0.1", port, "/", [], b"")
    async with server(silent) as (port, _):
        with pytest.raises(TimeoutError):
            await Http1Pool(timeout=0.2).request("GET", "127.0.0.1", port, "/", [], b"")
    with pytest.raises(UpstreamUnavailable):
        await Http1Pool().request("GET", "127.0.0.1", port, "/", [], b"")


async def test_requests_past_the_limit_wait_their_turn_within_their_deadline() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):
            while True:
                await read_request(reader)
                await asyncio.sleep(0.15)
                writer.write(OK)

    async with server(slow) as (port, accepted):
        pool = Http1Pool(limit=1, timeout=5)
        answers = await asyncio.gather(*(pool.request("GET", "127.0.0.1", port, "/", [], b"")
                                         for _ in range(3)))
        assert [a[0] for a in answers] == [200, 200, 200]
        assert len(accepted) == 1  # one slot: one connection, used in turn

        hurried = Http1Pool(limit=1, timeout=0.2)
        results = await asyncio.gather(
            *(hurried.request("GET", "127.0.0.1", port, "/", [], b"") for _ in range(2)),
            return_exceptions=True)
        assert results[0][0] == 200  # type: ignore[index]
        assert isinstance(results[1], TimeoutError)  # its deadline passed while it waited
        await pool.close()
        await hurried.close()


def test_works_on_uvloop_as_deployed() -> None:
    async def main() -> None:
        async with server(answer_forever) as (port, accepted):
            pool = Http1Pool()
            results = await asyncio.gather(*(
                pool.request("GET", "127.0.0.1", port, "/", [], b"") for _ in range(20)))
            assert {r[0] for r in results} == {200}
            await pool.request("GET", "127.0.0.1", port, "/", [], b"")
            assert len(accepted) <= 20
            await pool.close()

    uvloop.run(main())


def test_only_plain_http_bases() -> None:
    assert split_base("http://auth:8101") == ("auth", 8101, "")
    assert split_base("http://127.0.0.1:8101/prefix/") == ("127.0.0.1", 8101, "/prefix")
    with pytest.raises(ValueError, match="only http"):
        split_base("https://auth")
