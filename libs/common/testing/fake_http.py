"""The base of the fake provider servers: an aiohttp app on 127.0.0.1 with a free port,
every request recorded, and failures that can be queued ahead of the real answers."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Failure:
    """An answer the fake gives instead of doing its job (a 429, a 503, a broken body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def response(self) -> web.StreamResponse:
        if self.raw is not None:
            return web.Response(status=self.status, body=self.raw, headers=self.headers)
        return web.json_response(self.body, status=self.status, headers=self.headers)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class FakeServer:
    """Subclasses add routes in `routes()`. Use as `async with Fake() as fake: fake.url`."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, times: int = 1, *, body: Any = None,
                  headers: dict[str, str] | None = None, raw: bytes | None = None) -> None:
        self.failures += [Failure(status, body, headers or {}, raw)] * times

    def handler(
        self, answer: Callable[[web.Request, Any], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Records the request (JSON body parsed when it is JSON), then answers the next
        queued failure, or `answer(request, body)`."""

        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body: Any = await request.json() if raw else None
            except ValueError:
                body = raw
            self.requests.append(Recorded(request.path, dict(request.headers), body))
            if self.failures:
                return self.failures.pop(0).response()
            return await answer(request, body)

        return handle

    async def start(self) -> FakeServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()


def solid_image(width: int, height: int, fmt: str, seed: str = "") -> bytes:
    """A small real image of the given size (a solid colour from `seed`)."""
    from PIL import Image

    colour = tuple(sum(map(ord, seed + c)) % 256 for c in "rgb")
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format=fmt)
    return out.getvalue()
