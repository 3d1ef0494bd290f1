"""The app factory every service uses: checks, errors, pagination, request ids, telemetry."""

import asyncio
import gc
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Depends
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, Field
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response

from libs.common import nats as nats_kernel
from libs.common.app import create_service_app
from libs.common.pagination import PageParams, page_params, page_response
from libs.common.problems import NotFound
from libs.common.provision import ServiceDatabase
from libs.common.security import revoke_sessions
from libs.common.settings import ServiceSettings
from libs.common.telemetry import configure_tracing
from libs.common.tenancy import CurrentPrincipal, Editor, UoW
from libs.common.testing.apps import running_app
from libs.common.testing.tcpproxy import CuttableProxy
from libs.common.testing.tokens import TestIssuer

from .conftest import MIGRATIONS

router = APIRouter(prefix="/api/v1/kernel")


class ItemCreate(BaseModel):
    name: str = Field(min_length=1)
    volume: int = Field(ge=0)
    tags: list[str] = []


@router.get("/items/")
async def list_items(request: Request, principal: CurrentPrincipal,
                     params: PageParams = Depends(page_params)) -> Response:
    items = [{"id": i, "account_id": principal.account_id} for i in range(1, 24)]
    params = params.resolved(len(items))  # `page=last` is a number once the count is known
    return page_response(request, params, len(items),
                         items[params.offset:params.offset + params.limit])


@router.post("/items/", status_code=201)
async def create_item(body: ItemCreate, principal: Editor) -> dict[str, object]:
    return {"name": body.name, "volume": body.volume}


@router.get("/items/{item_id}/")
async def get_item(item_id: int, principal: CurrentPrincipal) -> dict[str, int]:
    raise NotFound(f"Item {item_id} not found.")


@router.api_route("/transaction/", methods=["GET", "POST"])
async def transaction_mode(uow: UoW) -> dict[str, str]:
    mode = await uow.session.execute(text("SHOW transaction_read_only"))
    return {"read_only": str(mode.scalar_one())}


@router.post("/crash/")
async def crash() -> None:
    raise RuntimeError("a bug")


issuer = TestIssuer()
spans = InMemorySpanExporter()


@pytest.fixture(scope="module")
async def client(
    kernel_db_info: ServiceDatabase, nats_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    configure_tracing("kernel", exporter=spans)
    settings = ServiceSettings(service_name="kernel", database_url=kernel_db_info.app_url,
                               nats_url=nats_url, environment="test")
    app = create_service_app(settings, title="kernel", routers=[router],
                             migrations_dir=MIGRATIONS, keys_fetcher=issuer.fetcher())
    async with running_app(app) as c:
        yield c


async def test_requests_without_valid_tokens_are_refused(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/kernel/items/")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["title"] == "Authentication required"
    garbage = await client.get("/api/v1/kernel/items/", headers={"Authorization": "Bearer x.y.z"})
    assert garbage.status_code == 401
    foreign = TestIssuer().headers(user_id=1, account_id=1)  # signed by an unknown key
    assert (await client.get("/api/v1/kernel/items/", headers=foreign)).status_code == 401
    expired = issuer.headers(user_id=1, account_id=1, ttl=-120)
    assert (await client.get("/api/v1/kernel/items/", headers=expired)).status_code == 401


async def test_role_checks_and_field_errors(client: httpx.AsyncClient) -> None:
    viewer = issuer.headers(user_id=2, account_id=9, role="viewer")
    denied = await client.post("/api/v1/kernel/items/", json={"name": "a", "volume": 1},
                               headers=viewer)
    assert denied.status_code == 403
    editor = issuer.headers(user_id=3, account_id=9, role="editor")
    bad = await client.post("/api/v1/kernel/items/", json={"name": "", "volume": -1},
                            headers=editor)
    assert bad.status_code == 400
    assert set(bad.json()["errors"]) == {"name", "volume"}
    missing = await client.post("/api/v1/kernel/items/", json={"volume": 1}, headers=editor)
    assert missing.json()["errors"] == {"name": ["This field is required."]}
    ok = await client.post("/api/v1/kernel/items/", json={"name": "a", "volume": 1},
                           headers=editor)
    assert ok.status_code == 201


async def test_pages_link_through_the_gateway_and_cap_page_size(client: httpx.AsyncClient) -> None:
    headers = {**issuer.headers(user_id=1, account_id=4), "X-Forwarded-Host": "api.example.com",
               "X-Forwarded-Proto": "https"}
    first = await client.get("/api/v1/kernel/items/?page_size=10&status=active", headers=headers)
    assert first.headers["x-igny8-envelope"] == "inline"
    body = first.json()
    assert body["count"] == 23
    assert len(body["results"]) == 10
    assert body["previous"] is None
    assert body["next"] == ("https://api.example.com/api/v1/kernel/items/"
                            "?page_size=10&status=active&page=2")
    last = (await client.get("/api/v1/kernel/items/?page=3&page_size=10", headers=headers)).json()
    assert last["next"] is None
    assert len(last["results"]) == 3
    capped = (await client.get("/api/v1/kernel/items/?page_size=1000", headers=headers)).json()
    assert len(capped["results"]) == 23  # all of them: at most 100 per page
    beyond = await client.get("/api/v1/kernel/items/?page=9", headers=headers)
    assert beyond.status_code == 404
    bad = await client.get("/api/v1/kernel/items/?page=zero", headers=headers)
    assert bad.status_code == 404  # DRF's "Invalid page."
    # DRF's `last_page_strings`: `page=last` is the last page, linked by number.
    by_name = (await client.get("/api/v1/kernel/items/?page=last&page_size=10&status=active",
                                headers=headers)).json()
    assert (by_name["count"], len(by_name["results"]), by_name["next"]) == (23, 3, None)
    assert by_name["previous"] == ("https://api.example.com/api/v1/kernel/items/"
                                   "?page_size=10&status=active&page=2")


async def test_request_ids_spans_and_metrics(client: httpx.AsyncClient) -> None:
    headers = {**issuer.headers(user_id=1, account_id=4), "X-Request-ID": "req-abc.123"}
    answer = await client.get("/api/v1/kernel/items/7/", headers=headers)
    assert answer.status_code == 404
    assert answer.headers["x-request-id"] == "req-abc.123"
    assert answer.json()["detail"] == "Item 7 not found."
    insane = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert insane.headers["x-request-id"] != "bad id\twith spaces"
    assert len(insane.headers["x-request-id"]) == 36
    configure_tracing("kernel").force_flush()
    routes = {s.attributes.get("http.route") for s in spans.get_finished_spans()}
    assert "/api/v1/kernel/items/{item_id}/" in routes
    metrics = (await client.get("/metrics")).text
    assert 'igny8_http_requests_total{method="GET",route="/api/v1/kernel/items/{item_id}/",' \
           'service="kernel",status="404"}' in metrics


async def test_revoked_sessions_stop_passing(client: httpx.AsyncClient, nats_url: str) -> None:
    headers = issuer.headers(user_id=1, account_id=4, session_id="session-to-revoke")
    assert (await client.get("/api/v1/kernel/items/", headers=headers)).status_code == 200
    nc = await nats_kernel.connect(nats_url, "revoker")
    buckets = await nats_kernel.ensure_platform(nc.jetstream(), "kernel")
    await revoke_sessions(buckets[nats_kernel.REVOCATIONS_BUCKET], "session-to-revoke")
    await nc.close()
    for _ in range(100):
        if (await client.get("/api/v1/kernel/items/", headers=headers)).status_code == 401:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("revoked session still accepted")


async def test_readiness_reports_dependencies(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.json() == {"database": "ok", "nats": "ok"}


def test_minted_request_ids_are_random_uuid4s() -> None:
    import uuid

    from libs.common.middleware import new_request_id

    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    for rid in list(ids)[:50]:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


async def test_what_startup_built_is_out_of_the_collectors_sight_while_serving(
        client: httpx.AsyncClient) -> None:
    assert gc.get_freeze_count() > 10_000
    assert (await client.get("/healthz")).status_code == 200


async def test_get_runs_in_a_read_only_transaction_and_post_does_not(
        client: httpx.AsyncClient) -> None:
    headers = issuer.headers(user_id=1, account_id=4)
    read = await client.get("/api/v1/kernel/transaction/", headers=headers)
    write = await client.post("/api/v1/kernel/transaction/", headers=headers)
    assert (read.json()["read_only"], write.json()["read_only"]) == ("on", "off")


async def test_an_unhandled_error_is_a_500_that_keeps_the_connection(
        client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    """The exception stops at the app: one escaping to uvicorn after Starlette's 500 made it
    close the kept-alive connection, which the gateway could already have handed to the
    next tenant's POST (a 503 for that request). The ASGI client raises what escapes."""
    headers = {**issuer.headers(user_id=1, account_id=4), "X-Request-ID": "req-crash"}
    with caplog.at_level("ERROR", logger="igny8.http"):
        crashed = await client.post("/api/v1/kernel/crash/", headers=headers)
    assert crashed.status_code == 500
    assert crashed.headers["content-type"] == "application/problem+json"
    assert crashed.headers["x-request-id"] == "req-crash"
    assert crashed.json()["title"] == "Internal server error"
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
    metrics = (await client.get("/metrics")).text
    assert 'route="/api/v1/kernel/crash/",service="kernel",status="500"}' in metrics


async def test_a_path_with_a_control_character_is_404(client: httpx.AsyncClient) -> None:
    """Starlette's route patterns end with `$`, which matches before a final newline:
    `items/%0A` answered the list, `items/%0A/` was redirected there (schemathesis'
    negative_data_rejection); Django's end with `\\Z` and DRF answers 404."""
    headers = issuer.headers(user_id=3, account_id=9, role="editor")
    for path in ("items/%0A", "items/%0A/", "items/%00/", "items/1/%0A", "items%09/"):
        answer = await client.get(f"/api/v1/kernel/{path}", headers=headers)
        assert answer.status_code == 404, (path, answer.status_code)
        assert answer.json()["detail"] == "Not found."
    assert (await client.get("/api/v1/kernel/items/", headers=headers)).status_code == 200


async def test_nul_characters_are_a_400_naming_the_field(client: httpx.AsyncClient) -> None:
    """PostgreSQL text cannot hold U+0000 (the driver's error was a 500): refused as DRF's
    CharField refuses it, for a body field at any depth and for a query parameter."""
    headers = issuer.headers(user_id=3, account_id=9, role="editor")
    refused = await client.post("/api/v1/kernel/items/", headers=headers,
                                json={"name": "a\x00b", "volume": 1, "tags": ["ok", "\x00"]})
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"name": ["Null characters are not allowed."],
                                        "tags.1": ["Null characters are not allowed."]}
    search = await client.get("/api/v1/kernel/items/?search=a%00&page=1", headers=headers)
    assert search.status_code == 400
    assert search.json()["errors"] == {"search": ["Null characters are not allowed."]}
    # An ordering term is only matched against the columns: one holding U+0000 names none
    # and is dropped as any unknown term (DRF's OrderingFilter; schemathesis' ST202).
    ordered = await client.get("/api/v1/kernel/items/?ordering=a%00,-id", headers=headers)
    assert ordered.status_code == 200, ordered.text
    # A name at the top of the body that is no field of it (one holding U+0000 never is)
    # is ignored as any unknown name is (ADR 0041), with whatever its value holds.
    for extra in ({"x\x00": "y\x00"}, {"note": "y\x00"}, {"blob": {"k\x00": ["\x00"]}}):
        unknown = await client.post("/api/v1/kernel/items/", headers=headers,
                                    json={"name": "a", "volume": 1, **extra})
        assert unknown.status_code == 201, (extra, unknown.text)
        assert unknown.json() == {"name": "a", "volume": 1}
    # A backslash written before "u0000" is text, not a NUL; the body reaches the endpoint.
    literal = await client.post("/api/v1/kernel/items/", headers=headers,
                                json={"name": "C:\\u0000", "volume": 1})
    assert literal.status_code == 201
    assert literal.json()["name"] == "C:\\u0000"


async def test_a_database_that_is_away_is_a_503_to_retry(
        kernel_db_info: ServiceDatabase, nats_url: str) -> None:
    """Probed on `igny8 up` with PostgreSQL stopped: every API answered 500 "Internal
    server error", as for a bug. The database away is a 503 with Retry-After, and the
    same request succeeds once it is back."""
    headers = issuer.headers(user_id=1, account_id=4)
    async with CuttableProxy.to(kernel_db_info.app_url, own_thread=True) as proxy:
        settings = ServiceSettings(service_name="kernel", database_url=proxy.url,
                                   nats_url=nats_url, environment="test")
        app = create_service_app(settings, title="kernel", routers=[router],
                                 migrations_dir=MIGRATIONS, keys_fetcher=issuer.fetcher())
        async with running_app(app) as c:
            proxy.cut()
            away = await c.post("/api/v1/kernel/transaction/", headers=headers)
            assert away.status_code == 503, away.text
            assert away.headers["content-type"] == "application/problem+json"
            assert away.headers["retry-after"] == "5"
            assert away.json()["title"] == "Service unavailable"
            proxy.restore()
            back = await c.post("/api/v1/kernel/transaction/", headers=headers)
            assert back.status_code == 200, back.text
