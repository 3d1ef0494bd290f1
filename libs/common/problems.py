"""Domain errors and their single mapping to RFC 9457 problem details.

Domain code raises these; only the handler installed by `install_problem_handlers`
knows about HTTP. The gateway turns problem documents into the public error envelope.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from libs.common.messages import drf_message

PROBLEM_CONTENT_TYPE = "application/problem+json"


log = logging.getLogger(__name__)

UNIQUE_VIOLATION = "23505"  # SQLSTATE
DUPLICATE_ROW = "A row with these values already exists."


class DomainError(Exception):
    """An error the caller can act on. `status` is the HTTP status it maps to; `code` names
    it on the command bus (`libs/common/commands.py`), where a subclass that declares its
    own code crosses as itself."""

    status: int = 400
    title: str = "Bad request"
    code: str = "bad_request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.detail = detail or self.title
        self.errors = {k: list(v) for k, v in errors.items()} if errors else None
        self.headers = dict(headers or {})
        super().__init__(self.detail)


class ValidationFailed(DomainError):
    status = 400
    title = "Validation failed"
    code = "invalid"

    @classmethod
    def field(cls, name: str, message: str) -> ValidationFailed:
        return cls(errors={name: [message]})


class NotAuthenticated(DomainError):
    status = 401
    title = "Authentication required"
    code = "not_authenticated"


class PaymentRequired(DomainError):
    status = 402
    title = "Insufficient credits"
    code = "insufficient_credits"


class PermissionDenied(DomainError):
    status = 403
    title = "Permission denied"
    code = "permission_denied"


class NotFound(DomainError):
    status = 404
    title = "Not found"
    code = "not_found"


class Conflict(DomainError):
    status = 409
    title = "Conflict"
    code = "conflict"


class Unprocessable(DomainError):
    status = 422
    title = "Unprocessable entity"
    code = "unprocessable"


class TooManyRequests(DomainError):
    status = 429
    title = "Rate limit exceeded"
    code = "rate_limited"


class ServiceUnavailable(DomainError):
    status = 503
    title = "Service unavailable"
    code = "unavailable"


Responses = dict[int | str, dict[str, Any]]


def answers(*errors: type[DomainError], description: str | None = None) -> Responses:
    """A route's `responses=` for the domain errors it raises beyond those the gateway's
    merged document gives every operation (400, 401, 403, 404, 429, 503, 504): a duplicate's
    409, the hold's 402. Undeclared, the document contradicted the answer (schemathesis'
    status_code_conformance)."""
    return {error.status: {"description": description or error.title} for error in errors}


# Where a unique field (a keyword in its sector, a taxonomy's slug) is taken: every service
# documents its 409 in the same words.
DUPLICATE_ANSWER: Responses = answers(Conflict, description="A duplicate of a unique field")


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    errors: Mapping[str, Sequence[str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail and detail != title:
        body["detail"] = detail
    if errors:
        body["errors"] = {k: list(v) for k, v in errors.items()}
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


def _field_name(loc: Sequence[Any]) -> str:
    """`("body", "email")` → `email`; `("query", "page")` → `page`; nested → dotted."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    return ".".join(parts) or "non_field_errors"


def validation_errors(exc: RequestValidationError | ValidationError) -> dict[str, list[str]]:
    """`{"field": ["message"]}` in DRF's words (`libs.common.messages`, ADR 0037)."""
    errors: dict[str, list[str]] = {}
    for err in exc.errors():
        field = _field_name(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            # The location is a character offset, not a field (DRF's wording).
            field = "non_field_errors"
            message = f"JSON parse error - {(err.get('ctx') or {}).get('error', err['msg'])}"
        else:
            # A query parameter sent in the body instead (automation's `site_id`) reads
            # "This query parameter is required.", a hint where it was expected.
            message = drf_message(err)
        errors.setdefault(field, []).append(message)
    return errors


def allowed_methods(request: Request) -> list[str]:
    """The methods that work on the request's path. A route whose path is all literal
    (`keywords/bulk_delete/`) outranks one that matched through a parameter
    (`keywords/{id}/`), as the reference's URL patterns resolve them."""
    matching = [route for route in endpoint_routes(request.app.router.routes)
                if getattr(route, "methods", None)
                and route.matches(request.scope)[0] != Match.NONE]
    literal = [route for route in matching if not route.param_convertors]
    return sorted({m for route in (literal or matching) for m in route.methods or ()})


def endpoint_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """Every endpoint route. FastAPI 0.16x keeps an included router as one entry that
    resolves its routes (with the prefix) lazily, through `effective_candidates()`."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            yield from endpoint_routes(candidates())
        elif hasattr(route, "param_convertors"):  # an endpoint, not a mount or websocket
            yield route


def _wrong_method(request: Request, allowed: Sequence[str]) -> Response:
    allow = ", ".join([*allowed, "OPTIONS"])
    if request.method == "OPTIONS":
        return Response(orjson.dumps({"allowed_methods": [*allowed, "OPTIONS"]}),
                        media_type="application/json", headers={"Allow": allow})
    return problem_response(405, "Method not allowed",
                            f'Method "{request.method}" not allowed.', headers={"Allow": allow})


def install_problem_handlers(app: FastAPI) -> None:
    async def on_domain_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, DomainError)
        return problem_response(exc.status, exc.title, exc.detail, exc.errors, exc.headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        media_type = request.headers.get("content-type", "")
        if "json" not in media_type.lower() and any(
                tuple(err.get("loc", ())) == ("body",) and err.get("type") != "missing"
                for err in exc.errors()):
            # A JSON body sent as something else (text/plain, XML): read as bytes, it
            # failed as "not a dictionary". DRF says what is wrong instead. A form or
            # multipart body never gets here: `libs.common.forms` reads it as JSON.
            return problem_response(415, "Unsupported media type",
                                    f'Unsupported media type "{media_type}" in request.')
        if all(err.get("loc", ("",))[0] == "path" for err in exc.errors()):
            # `GET keywords/bulk_delete/` reached `keywords/{id}/`: the path names an
            # action that takes other methods, not a malformed id.
            allowed = allowed_methods(request)
            if allowed and request.method not in allowed:
                return _wrong_method(request, allowed)
            # `keywords/abc/`, `keywords/0/`: no such row, as DRF answers a lookup that
            # cannot match (and as a path no route matches, such as auth's `{id:int}`).
            return problem_response(404, "Not found", "Not found.")
        return problem_response(400, "Validation failed", errors=validation_errors(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return _wrong_method(request, allowed_methods(request))
        titles = {404: "Not found", 405: "Method not allowed", 401: "Authentication required"}
        title = titles.get(exc.status_code, str(exc.detail))
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":  # Starlette's: no route matched
            detail = "Not found."  # as a path id no row can have, and as DRF says
        return problem_response(exc.status_code, title, detail, headers=exc.headers)

    async def on_integrity_error(request: Request, exc: Exception) -> Response:
        """A unique constraint broken by a write that passed the service's own check: two
        requests creating the same name at once (each checked before the other wrote). It
        is the second caller's conflict, not a server error; the unit of work has rolled
        back, so nothing of the request is kept. Any other integrity error is a bug."""
        assert isinstance(exc, IntegrityError)
        if getattr(exc.orig, "sqlstate", None) != UNIQUE_VIOLATION:
            raise exc
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
        log.warning("unique constraint %s broken by %s %s: answered 409", constraint,
                    request.method, request.url.path)
        return problem_response(409, Conflict.title, DUPLICATE_ROW)

    app.add_exception_handler(DomainError, on_domain_error)
    async def on_stale_row(request: Request, exc: Exception) -> Response:
        """An ORM update or delete of a row that another request deleted after this one
        read it (SQLAlchemy: "expected to update 1 row(s); 0 were matched"): the row is
        gone, as DRF answers a lookup of a deleted row. The unit of work rolled back."""
        log.warning("%s %s changed a row deleted meanwhile: answered 404 (%s)",
                    request.method, request.url.path, exc)
        return problem_response(404, NotFound.title, "Not found.")

    async def on_database_away(request: Request, exc: Exception) -> Response:
        """The database not answering (restarting, failing over, cut off), or refusing the
        statement for a passing reason (a deadlock, a timeout): a 503 the client may retry,
        not a 500 that says the request found a bug. The unit of work rolled back."""
        log.warning("%s %s: the database failed (%s): answered 503", request.method,
                    request.url.path, str(getattr(exc, "orig", None) or exc).splitlines()[0])
        return problem_response(503, ServiceUnavailable.title,
                                "The database is not answering; try again shortly.",
                                headers={"Retry-After": "5"})

    app.add_exception_handler(IntegrityError, on_integrity_error)
    app.add_exception_handler(OperationalError, on_database_away)
    app.add_exception_handler(StaleDataError, on_stale_row)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
