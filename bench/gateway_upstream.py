"""The smallest upstream for the gateway benchmark: raw ASGI, a fixed JSON answer, and the
JWKS the benchmark's issuer wrote to `BENCH_JWKS_FILE`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

_JWKS_FILE = Path(os.environ.get("BENCH_JWKS_FILE", ""))
# The benchmark writes the key set before starting this process.
_JWKS = _JWKS_FILE.read_bytes() if _JWKS_FILE.is_file() else b'{"keys":[]}'
_BODY = b'{"id":1,"keyword":"seo tools","volume":1200,"difficulty":35,"intent":"commercial"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = _JWKS if scope["path"] == "/jwks" else _BODY
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
