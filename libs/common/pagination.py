"""Page-number pagination as the reference defines it: `page`, `page_size` (default 10,
at most 100), answering `count/next/previous/results` with absolute public URLs.

Services answer the page object with `X-Igny8-Envelope: inline`; the gateway splices its
members into the envelope without re-parsing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Query, Request
from pydantic import BaseModel
from starlette.responses import Response

from libs.common.ids import MAX_BIGINT
from libs.common.problems import NotFound

DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 100
ENVELOPE_HEADER = "x-igny8-envelope"


# DRF's `PageNumberPagination.last_page_strings`: `?page=last` is the last page.
LAST_PAGE = "last"


@dataclass(frozen=True, slots=True)
class PageParams:
    """The page a list request asks for. `page=last` names no number until the list's
    count is known: `resolved(count)` gives the number, and until then there is no offset
    (`Repository.page` and `page_response` resolve it; a hand-made list calls `resolved`)."""

    page: int
    page_size: int
    last: bool = False

    def resolved(self, count: int) -> PageParams:
        """The page of a list of `count` rows: `last` is its last page, that of an empty
        list being 1 (Django's `Paginator.num_pages` with an empty first page allowed)."""
        if not self.last:
            return self
        return PageParams(page=max(1, -(-count // self.page_size)), page_size=self.page_size)

    @property
    def offset(self) -> int:
        if self.last:
            raise ValueError("page=last has no offset before the count: call resolved()")
        return (self.page - 1) * self.page_size

    @property
    def limit(self) -> int:
        return self.page_size


def _integer_schema(minimum: int, default: int, *names: str
                    ) -> Callable[[dict[str, Any]], None]:
    """What OpenAPI says of a page parameter: a whole number (or one of `names`, `last`).
    The handler reads the text itself, so that a value the schema does not allow gets
    DRF's answer, not a 400."""
    def schema(s: dict[str, Any]) -> None:
        s.clear()
        number = {"type": "integer", "minimum": minimum}
        if names:
            s.update(anyOf=[number, {"type": "string", "enum": list(names)}], default=default)
        else:
            s.update(number, default=default)
    return schema


def _whole_number(value: str | None) -> int | None:
    """The number as DRF reads it (`int()`: `" 2"` and `+2` are 2), None if it is none."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


async def page_params(
    page: str | None = Query(None, json_schema_extra=_integer_schema(1, 1, LAST_PAGE),
                             description="Page number, from 1, or `last` for the last page."),
    page_size: str | None = Query(None, json_schema_extra=_integer_schema(1, DEFAULT_PAGE_SIZE),
                                  description="Items per page, at most 100."),
) -> PageParams:
    """The page as DRF's `PageNumberPagination` reads it (the reference is silent):
    `page_size` that is not a positive whole number (empty, `0`, `abc`) is the default
    size, and one over 100 is 100; `page` empty is 1, and one that is not a positive whole
    number is 404 "Invalid page.", as a page past the end is (so is one beyond what an
    OFFSET can express: never an overflow in the database); `last` is the last page, its
    number known once the list is counted (`PageParams.resolved`)."""
    size = _whole_number(page_size) or 0
    size = min(size, MAX_PAGE_SIZE) if size > 0 else DEFAULT_PAGE_SIZE
    if page == LAST_PAGE:
        return PageParams(page=1, page_size=size, last=True)
    # An absent or empty page is the first: DRF reads `query_params.get("page") or 1`.
    number = 1 if not page else _whole_number(page)
    if number is None or number < 1:
        raise NotFound("Invalid page.")
    params = PageParams(page=number, page_size=size)
    if params.offset > MAX_BIGINT:
        raise NotFound("Invalid page.")
    return params


def public_url(request: Request) -> str:
    """The URL the caller used, as seen through the gateway when there is one."""
    host = request.headers.get("x-forwarded-host")
    proto = request.headers.get("x-forwarded-proto", request.url.scheme)
    base = f"{proto}://{host}" if host else f"{request.url.scheme}://{request.url.netloc}"
    return base + request.url.path


def _page_link(request: Request, page: int | None) -> str | None:
    if page is None:
        return None
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    if page > 1:
        query.append(("page", str(page)))
    encoded = urlencode(query)
    return public_url(request) + (f"?{encoded}" if encoded else "")


def page_response(request: Request, params: PageParams, count: int, results: list[Any],
                  shape: type[BaseModel] | None = None) -> Response:
    """A page of `results`. Rows read as dicts are cut to `shape`'s fields, the resource
    a detail GET answers: a list item shows what its detail shows, no more (not the
    table's `deleted_at`, storage keys or working columns), without validating each row.
    `page=last` is the last page of `count` rows; its links name pages by number."""
    params = params.resolved(count)
    if params.page > 1 and params.offset >= count:
        raise NotFound("Invalid page.")
    if shape is not None:
        fields = shape.model_fields
        results = [{k: v for k, v in row.items() if k in fields} if isinstance(row, dict)
                   else row for row in results]
    has_next = params.offset + len(results) < count
    body = {
        "count": count,
        "next": _page_link(request, params.page + 1 if has_next else None),
        "previous": _page_link(request, params.page - 1 if params.page > 1 else None),
        "results": results,
    }
    return inline_response(body)


def inline_response(body: dict[str, Any], status_code: int = 200) -> Response:
    """A body whose members belong directly in the envelope (pages, `data` + `message`)."""
    return Response(
        # UTC as `Z`, as the resources' models (and DRF) write it.
        orjson.dumps(body, default=_default, option=orjson.OPT_UTC_Z),
        status_code=status_code,
        media_type="application/json",
        headers={ENVELOPE_HEADER: "inline"},
    )


def message_response(data: Any, message: str, status_code: int = 200) -> Response:
    return inline_response({"data": data, "message": message}, status_code)


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
