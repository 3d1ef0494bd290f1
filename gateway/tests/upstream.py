"""A test double of our own services' HTTP contract (docs/contracts.md): plain JSON,
inline pages and messages, problem details, 204, CSV, slow answers, revocation headers and
auth's credential exchange. One app plays every upstream."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import orjson
from fastapi import Depends, FastAPI, Request
from starlette.responses import JSONResponse, Response

from libs.common.pagination import PageParams, message_response, page_params, page_response
from libs.common.problems import (
    NotAuthenticated,
    NotFound,
    ValidationFailed,
    install_problem_handlers,
    problem_response,
)
from libs.common.testing.tokens import TestIssuer

GOOD_BASIC = ("owner@example.com", "s3cret-pass")
LOCKED_EMAIL = "locked@example.com"  # auth's sign-in lockout: 429, Retry-After 900
GOOD_API_KEY = "site-key-123"
BASIC_USER_ID = 424242
BASIC_ACCOUNT_ID = 4242


class Counters:
    def __init__(self) -> None:
        self.posts = 0
        self.failures = 0
        self.exchanges = 0
        self.exchange_addresses: list[str | None] = []


def build_upstream(issuer: TestIssuer, counters: Counters) -> FastAPI:
    app = FastAPI(title="test upstream")
    install_problem_handlers(app)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"database": "ok", "nats": "ok"}

    @app.get("/api/v1/auth/jwks/")
    async def jwks() -> dict[str, Any]:
        # What auth serves, so gateways running as real processes can verify tokens.
        return issuer.jwks()

    @app.get("/api/v1/planner/keywords/")
    async def keywords(request: Request, params: PageParams = Depends(page_params)) -> Response:
        rows = [{"id": i, "keyword": f"kw {i}"} for i in range(1, 26)]
        params = params.resolved(len(rows))
        return page_response(request, params, len(rows),
                             rows[params.offset:params.offset + params.limit])

    @app.get("/api/v1/planner/keywords/export/")
    async def export() -> Response:
        return Response(b"id,keyword\n1,seo\n", media_type="text/csv",
                        headers={"Content-Disposition": "attachment; filename=k.csv"})

    @app.get("/api/v1/planner/keywords/{keyword_id}/")
    async def keyword(keyword_id: int) -> dict[str, Any]:
        if keyword_id == 404:
            raise NotFound("Keyword not found")
        return {"id": keyword_id, "keyword": "seo tools", "volume": 1200}

    @app.delete("/api/v1/planner/keywords/{keyword_id}/")
    async def delete_keyword(keyword_id: int) -> Response:
        return Response(status_code=204)

    @app.post("/api/v1/planner/keywords/bulk_delete/")
    async def bulk_delete() -> Response:
        raise ValidationFailed(errors={"ids": ["This field is required."]})

    @app.post("/api/v1/planner/keywords/")
    async def create_keyword(request: Request) -> Response:
        body = orjson.loads(await request.body())
        if body.get("delay"):
            await asyncio.sleep(float(body["delay"]))
        counters.posts += 1
        doc = {"id": counters.posts, "keyword": body.get("keyword"), "at": time.time()}
        return JSONResponse(doc, status_code=201,
                            headers={"Location": f"/api/v1/planner/keywords/{counters.posts}/"})

    @app.post("/api/v1/planner/echo_body/", status_code=201)
    async def echo_body(request: Request) -> dict[str, Any]:
        """What reached the service: a form body must arrive as the client sent it."""
        counters.posts += 1
        return {"content_type": request.headers.get("content-type"),
                "body": (await request.body()).decode("latin-1"), "n": counters.posts}

    @app.post("/api/v1/planner/fail/")
    async def fail() -> Response:
        counters.failures += 1
        return problem_response(500, "Internal server error", "Database exploded")

    @app.get("/api/v1/planner/message/")
    async def message() -> Response:
        return message_response({"queued": 3}, "Keywords queued")

    @app.get("/api/v1/planner/empty/")
    async def empty_object() -> Response:
        return Response(b"{}", media_type="application/json",
                        headers={"X-Igny8-Envelope": "inline"})

    @app.get("/api/v1/planner/echo/")
    async def echo(request: Request) -> Response:
        return Response(orjson.dumps({"headers": dict(request.headers)}),
                        media_type="application/json", headers={"X-Igny8-Internal": "secret"})

    @app.get("/api/v1/planner/moved/")
    async def moved(request: Request) -> Response:
        """A redirect to the service's own address, as FastAPI's slash redirect builds it."""
        return Response(status_code=307, headers={
            "Location": f"{request.url.scheme}://{request.url.netloc}/api/v1/planner/keywords/"})

    @app.get("/api/v1/writer/slow/")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(3)
        return {"slow": True}

    @app.get("/api/v1/writer/content/")
    async def content(request: Request, params: PageParams = Depends(page_params)) -> Response:
        return page_response(request, params, 1, [{"id": 1, "title": "Hello"}])

    @app.get("/api/v1/writer/tasks/")
    async def tasks(request: Request) -> Response:
        return Response(orjson.dumps({"authorization": request.headers.get("authorization")}),
                        media_type="application/json")

    @app.get("/api/v1/integration/integrations/")
    async def integrations(request: Request) -> dict[str, Any]:
        return {"authorization": request.headers.get("authorization")}

    @app.post("/api/v1/webhooks/wordpress/status/")
    async def status_webhook(request: Request) -> dict[str, Any]:
        return {"authorization": request.headers.get("authorization")}

    @app.post("/api/v1/auth/login/")
    async def login(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        if body.get("email") == LOCKED_EMAIL:
            return problem_response(429, "Rate limit exceeded",
                                    "Too many failed sign-in attempts. Try again later.",
                                    headers={"Retry-After": "900"})
        return JSONResponse({"access": "token"})

    @app.post("/api/v1/auth/change-password/")
    async def change_password() -> Response:
        return message_response(None, "Password changed")

    @app.post("/api/v1/auth/logout/")
    async def logout(request: Request) -> Response:
        sid = request.query_params["sid"]
        return Response(status_code=204, headers={"X-Igny8-Revoked-Sessions": sid})

    @app.post("/internal/v1/auth/exchange", response_model=None)
    async def exchange(request: Request) -> dict[str, Any] | Response:
        counters.exchanges += 1
        doc = orjson.loads(await request.body())
        counters.exchange_addresses.append(doc.get("client_address"))
        scheme, _, value = doc["authorization"].partition(" ")
        now = int(time.time())
        if scheme.lower() == "basic":
            user, _, password = base64.b64decode(value).decode().partition(":")
            if user == LOCKED_EMAIL:
                return problem_response(429, "Rate limit exceeded",
                                        "Too many failed sign-in attempts. Try again later.",
                                        headers={"Retry-After": "900"})
            if (user, password) == GOOD_BASIC:
                token = issuer.issue(user_id=BASIC_USER_ID, account_id=BASIC_ACCOUNT_ID,
                                     ttl=300)
                return {"access": token, "expires_at": now + 300}
        if scheme.lower() == "apikey" and value == GOOD_API_KEY:
            token = issuer.issue(user_id=777001, account_id=777, role="system_bot",
                                 ttl=300, site_id=7)
            return {"access": token, "expires_at": now + 300}
        raise NotAuthenticated("Invalid credentials")

    return app
