"""NUL characters refused at the edge of every service, naming the field.

PostgreSQL's `text` and `jsonb` cannot hold U+0000: a name, a search term or a filter
value carrying one failed in the driver and answered 500. DRF's `CharField` refuses it
("Null characters are not allowed.", its `ProhibitNullCharactersValidator`), so a client
of the reference knows the 400. One middleware holds the rule for every body and query
parameter of every service, instead of a validator on each of their string fields.

It costs a byte search per request: JSON can carry U+0000 only as the escape `\\u0000`,
and a query string only as `%00`. Only when one is there is the body or the query
parsed, to name the fields (`tags.0`, `config.site_url`); a JSON body that does not
parse is left to the endpoint, which says so. Other bodies (CSV uploads) are the
endpoint's to check.

A path with a control character in it (`%0A`, `%00`...) is 404 "Not found." here too: no
resource has one in its URL, and Starlette's route patterns end with `$`, which also
matches before a final newline, so `keywords/%0A` answered the keyword list and
`plans/%0A/` was redirected there (schemathesis' negative_data_rejection). Django's
patterns end with `\\Z`: DRF answers 404.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.problems import problem_response

MESSAGE = "Null characters are not allowed."
_JSON_ESCAPE = b"\\u0000"
_QUERY_ESCAPE = b"%00"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def nul_fields(value: Any, path: str = "") -> Iterator[str]:
    """The dotted names, in a parsed JSON document, of the strings holding U+0000 (a
    member name holding one names the member). A member of the body itself whose name
    holds one is no field of any body: it is dropped as every unknown name is (ADR 0041),
    not refused (schemathesis' positive_data_acceptance). Deeper, a name may be a key of
    a JSON blob kept as it came (jsonb cannot hold U+0000): refused."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "non_field_errors"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if "\x00" in key and not path:
                continue
            if "\x00" in key:
                yield name
            else:
                yield from nul_fields(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_fields(item, f"{path}.{index}" if path else str(index))


def query_nul_fields(query: bytes) -> list[str]:
    return [name for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if "\x00" in name or "\x00" in value]


class RefuseNulCharacters:
    """A 400 naming each body field and query parameter that holds U+0000."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _CONTROL.search(scope["path"]):
            await problem_response(404, "Not found", "Not found.")(scope, receive, send)
            return
        errors: list[str] = []
        query: bytes = scope.get("query_string", b"")
        if _QUERY_ESCAPE in query:
            errors += query_nul_fields(query)
        if _is_json(scope):
            body, more = await read_body(receive)
            if _JSON_ESCAPE in body:
                with contextlib.suppress(orjson.JSONDecodeError):
                    errors += nul_fields(orjson.loads(body))
            receive = replay_body(body, more, receive)
        if errors:
            response = problem_response(400, "Validation failed",
                                        errors={name: [MESSAGE] for name in errors})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False


async def read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body, and the message that ended it early (a disconnect), if any."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay_body(body: bytes, ended: Message | None, receive: Receive) -> Receive:
    """`receive` for the app: the body already read, then what the server sends next."""
    pending: list[Message] = [ended or {"type": "http.request", "body": body,
                                        "more_body": False}]
    if ended is not None:
        pending.insert(0, {"type": "http.request", "body": body, "more_body": True})

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
