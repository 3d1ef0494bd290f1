"""A TCP proxy on loopback that a test can cut, for a database (or any server) going away:
`cut()` closes every connection through it and refuses new ones until `restore()`, as a
PostgreSQL restart or a network cut does to its clients.

    async with CuttableProxy.to(url) as proxy:   # proxy.url: the same URL through it
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from sqlalchemy.engine import make_url


class CuttableProxy:
    """`refused` counts the connections refused while cut (how often clients tried)."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.cut_off = False
        self.refused = 0
        self.port = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # its own thread's, if any

    @classmethod
    @contextlib.asynccontextmanager
    async def to(cls, url: str, *, own_thread: bool = False) -> AsyncIterator[CuttableProxy]:
        """A proxy to the server of a database URL; `proxy.url` is that URL through it.
        `own_thread`: the proxy runs on its own event loop in a thread, for clients that
        connect synchronously from the test's loop (an app's startup checks)."""
        parsed = make_url(url)
        proxy = cls(parsed.host or "127.0.0.1", parsed.port or 5432)
        thread = None
        if own_thread:
            proxy._loop = asyncio.new_event_loop()
            thread = threading.Thread(target=proxy._loop.run_forever, daemon=True)
            thread.start()
            asyncio.run_coroutine_threadsafe(proxy.start(), proxy._loop).result(10)
        else:
            await proxy.start()
        proxy.url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False)
        try:
            yield proxy
        finally:
            if proxy._loop is not None and thread is not None:
                asyncio.run_coroutine_threadsafe(proxy.stop(), proxy._loop).result(10)
                proxy._loop.call_soon_threadsafe(proxy._loop.stop)
                thread.join(10)
            else:
                await proxy.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._cut_here()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(10)
        else:
            self._cut_here()

    async def _cut(self) -> None:
        self._cut_here()

    def _cut_here(self) -> None:
        self.cut_off = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self.cut_off = False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open.discard(writer)
        self._open.discard(up_writer)
