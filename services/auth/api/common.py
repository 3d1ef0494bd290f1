"""What auth's routers share: their prefixes' tags and the plain JSON answer."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.encoders import jsonable_encoder
from starlette.responses import Response

NO_CONTENT = 204


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON answer with extra headers (revoked sessions), which a returned model cannot carry."""
    return Response(
        # UTC as `Z`, as login's `message_response` and the resources' models write it.
        orjson.dumps(body, default=jsonable_encoder, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
