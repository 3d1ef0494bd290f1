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
endpoint's to check. A name at the top of a body that is no field of the route's body
model is dropped with its value by the model (ADR 0041), so whatever it holds is not
refused either; a body kept as it came (`dict[str, Any]`) has no unknown names.

A path with a control character in it (`%0A`, `%00`...) is 404 "Not found." here too: no
resource has one in its URL, and Starlette's route patterns end with `$`, which also
matches before a final newline, so `keywords/%0A` answered the keyword list and
`plans/%0A/` was redirected there (schemathesis' negative_data_rejection). Django's
patterns end with `\\Z`: DRF answers 404.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Container, Iterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.bodies import read_body, replay_body
from libs.common.forms import body_names, json_body_route
from libs.common.problems import problem_response

MESSAGE = "Null characters are not allowed."
_JSON_ESCAPE = b"\\u0000"
_QUERY_ESCAPE = b"%00"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def nul_fields(value: Any, path: str = "",
               fields: Container[str] | None = None) -> Iterator[str]:
    """The dotted names, in a parsed JSON document, of the strings holding U+0000 (a
    member name holding one names the member). A member of the body itself that is no
    field of it (not in `fields`, when the body's fields are known; any whose name holds
    U+0000) is dropped as every unknown name is (ADR 0041), not refused (schemathesis'
    positive_data_acceptance). Deeper, a name may be a key of a JSON blob kept as it came
    (jsonb cannot hold U+0000): refused."""
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "non_field_errors"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            if not path and ("\x00" in key or (fields is not None and key not in fields)):
                continue
            if "\x00" in key:
                yield name
            else:
                yield from nul_fields(item, name)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nul_fields(item, f"{path}.{index}" if path else str(index))


# Never compared as text: its terms are matched against a list's column names and a term
# that names none is dropped, as DRF's OrderingFilter drops it (ADR 0041); one holding
# U+0000 names none.
_MATCHED_NOT_STORED = frozenset({"ordering"})


def query_nul_fields(query: bytes) -> list[str]:
    return [name for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
            if "\x00" in name or ("\x00" in value and name not in _MATCHED_NOT_STORED)]


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
                    errors += nul_fields(orjson.loads(body), fields=_body_fields(scope))
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


def _body_fields(scope: Scope) -> Container[str] | None:
    """The names the route's body model reads, or None when they are not known (a body
    kept as it came, or no route that reads JSON)."""
    route = json_body_route(scope)
    return body_names(route.body_field.field_info.annotation) if route is not None else None
