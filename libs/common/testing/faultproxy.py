"""A fault-injecting HTTP proxy on loopback, for testing clients of outside services against
the network lying to them (issue 11: publishing exactly once when answers get lost).

`FaultProxy(upstream, choose)` forwards every request to `upstream` unless `choose(method,
path)` names a fault for it:

- `DROP_AFTER_SAVE`: forward, let the upstream finish (it saved), then close the client's
  connection without an answer: the write happened, the client cannot know.
- `UNAVAILABLE_AFTER_SAVE`: forward, then answer 503 instead of the upstream's answer.
- `BAD_GATEWAY`: answer 502 (an HTML page, as nginx does) without forwarding.
- `FIREWALL`: answer 403 with an HTML block page, without forwarding.
- `FIREWALL_CHALLENGE`: answer 200 with an HTML challenge page, without forwarding.
- `TOO_LARGE`: answer 413 (HTML, as nginx's body limit does) without forwarding.
- `SLOW_FORWARD`: hold the request `hold_seconds` before forwarding it, then answer: a
  client with a shorter timeout gives up before the upstream even starts the write.

`log` keeps (method, path, fault, upstream status) per request, for assertions and figures.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
               "trailer", "transfer-encoding", "upgrade", "host", "content-length"}


class Fault(enum.Enum):
    DROP_AFTER_SAVE = "drop after save"
    UNAVAILABLE_AFTER_SAVE = "503 after save"
    BAD_GATEWAY = "502"
    FIREWALL = "403 HTML firewall page"
    FIREWALL_CHALLENGE = "200 HTML challenge page"
    TOO_LARGE = "413"
    SLOW_FORWARD = "held before forwarding"


Chooser = Callable[[str, str], "Fault | None"]


@dataclass
class ProxiedRequest:
    method: str
    path: str
    fault: Fault | None
    upstream_status: int | None


def _page(title: str) -> str:
    return (f"<!DOCTYPE html><html><head><title>{title}</title></head>"
            f"<body><h1>{title}</h1><p>Request blocked.</p></body></html>")


class FaultProxy:
    """Start with `await proxy.start()` (returns its URL), stop with `await proxy.stop()`."""

    def __init__(self, upstream: str, choose: Chooser | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.choose = choose or (lambda method, path: None)
        self.log: list[ProxiedRequest] = []
        self.hold_seconds = 3.0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        self._session = aiohttp.ClientSession(auto_decompress=False,
                                              timeout=aiohttp.ClientTimeout(total=120))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def faults(self) -> dict[Fault, int]:
        counts: dict[Fault, int] = {}
        for entry in self.log:
            if entry.fault is not None:
                counts[entry.fault] = counts.get(entry.fault, 0) + 1
        return counts

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, dict[str, str],
                                                                         bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method, self.upstream + request.rel_url.raw_path_qs, headers=headers,
            data=body, allow_redirects=False,
        ) as resp:
            answer = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
            return resp.status, out, answer

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.rel_url.raw_path_qs
        fault = self.choose(request.method, path)
        entry = ProxiedRequest(request.method, path, fault, None)
        self.log.append(entry)
        if fault is Fault.BAD_GATEWAY:
            return web.Response(status=502, text=_page("502 Bad Gateway"), content_type="text/html")
        if fault is Fault.FIREWALL:
            return web.Response(status=403, text=_page("Access denied"), content_type="text/html")
        if fault is Fault.FIREWALL_CHALLENGE:
            return web.Response(status=200, text=_page("Checking your browser"),
                                content_type="text/html")
        if fault is Fault.TOO_LARGE:
            return web.Response(status=413, text=_page("413 Request Entity Too Large"),
                                content_type="text/html")
        if fault is Fault.SLOW_FORWARD:
            await asyncio.sleep(self.hold_seconds)
        status, headers, answer = await self._forward(request, body)
        entry.upstream_status = status
        if fault is Fault.DROP_AFTER_SAVE:
            assert request.transport is not None
            request.transport.abort()  # the answer is never written: nothing to send it on
            return web.Response(status=status, headers=headers, body=answer)
        if fault is Fault.UNAVAILABLE_AFTER_SAVE:
            return web.Response(status=503, text=_page("503 Service Unavailable"),
                                content_type="text/html")
        return web.Response(status=status, headers=headers, body=answer)
