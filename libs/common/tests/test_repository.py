"""The repository base: tenancy, declared filters, ordering, paging, soft delete; and the
same declarations as an HTTP list (OpenAPI parameters, 400s naming the parameter, ids and
pages bounded to bigint)."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from libs.common.app import create_service_app
from libs.common.db import Database, TenantScope
from libs.common.ids import MAX_BIGINT, Id
from libs.common.pagination import PageParams, page_response
from libs.common.problems import NotFound, ValidationFailed
from libs.common.provision import ServiceDatabase
from libs.common.repository import (
    AtLeast,
    AtMost,
    Choice,
    DayFrom,
    Equals,
    FilterSet,
    ListQuery,
    Ordering,
    Orderings,
    Repository,
    Row,
    Search,
    Visibility,
    table_of,
)
from libs.common.settings import ServiceSettings
from libs.common.tenancy import CurrentPrincipal, UoW
from libs.common.testing.apps import running_app
from libs.common.testing.plugin import DatabaseFactory
from libs.common.testing.tokens import TestIssuer
from libs.common.tests.models import Colour, Label, Thing

MIGRATIONS = Path(__file__).parent / "model_migrations"
_ids = itertools.count(random.randint(1000, 9000) * 1000)


class ThingFilters(FilterSet):
    status = Choice(("new", "done"))
    site_id = Equals(Id)
    volume_min = AtLeast("volume")
    volume_max = AtMost("volume")
    search = Search("name", description="Search by name")
    start = DayFrom("created_at")


THING_ORDERING = Orderings("created_at", "id", "name", "volume", "status",
                           size="volume", default="-created_at")
ThingQuery = ListQuery.of(ThingFilters, THING_ORDERING)


class Things(Repository[Row]):
    table = table_of(Thing)


class Labels(Repository[Label]):
    table = table_of(Label)
    model = Label


class Colours(Repository[Row]):
    table = table_of(Colour)
    tenant_column = None


@pytest.fixture(scope="module")
def models_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("kernel_models", MIGRATIONS)


@pytest.fixture(scope="module")
async def db(models_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    database = Database(models_db_info.app_url)
    yield database
    await database.dispose()


def query(filters: FilterSet | None = None, ordering: str | None = None, page: int = 1,
          page_size: int = 10) -> ListQuery[Any]:
    return ListQuery(filters or ThingFilters(), THING_ORDERING.parse(ordering),
                     PageParams(page, page_size))


async def seed(db: Database, account: int, site: int, names: list[tuple[str, str, int]]
               ) -> list[Row]:
    async with db.session(TenantScope.account(account)) as session:
        rows = await Things(session, Visibility(account)).insert_many(
            [{"site_id": site, "name": n, "status": s, "volume": v} for n, s, v in names])
        await session.commit()
    return rows


async def test_another_tenants_rows_are_not_there(db: Database) -> None:
    a, b = next(_ids), next(_ids)
    mine = await seed(db, a, 1, [("mine", "new", 1)])
    theirs = await seed(db, b, 1, [("theirs", "new", 1)])
    async with db.session(TenantScope.system()) as session:  # even with RLS out of the way
        things = Things(session, Visibility(a))
        assert (await things.get(mine[0]["id"]))["name"] == "mine"
        assert await things.get(theirs[0]["id"]) is None
        assert await things.update(theirs[0]["id"], {"name": "x"}) is None
        assert await things.delete([theirs[0]["id"]]) == []
        assert (await things.page(query())).count == 1
        # New rows belong to the caller, whatever the values say.
        row = await things.insert({"site_id": 1, "name": "forged", "account_id": b})
        assert row["account_id"] == a
        await session.rollback()
    with pytest.raises(TypeError):
        Things(session, None)


async def test_site_visibility(db: Database) -> None:
    a = next(_ids)
    await seed(db, a, 1, [("one", "new", 1)])
    await seed(db, a, 2, [("two", "new", 1)])
    async with db.session(TenantScope.account(a)) as session:
        assert (await Things(session, Visibility(a)).page(query())).count == 2
        granted = await Things(session, Visibility(a, (2,))).page(query())
        assert [r["name"] for r in granted.rows] == ["two"]
        assert (await Things(session, Visibility(a, ())).page(query())).count == 0


class ThingsListedBare(Repository[Row]):
    table = table_of(Thing)
    unlisted = frozenset({"volume", "updated_at"})


async def test_unlisted_columns_are_not_read_by_lists(db: Database) -> None:
    a = next(_ids)
    (made,) = await seed(db, a, 1, [("bare", "new", 7)])
    async with db.session(TenantScope.account(a)) as session:
        things = ThingsListedBare(session, Visibility(a))
        (item,) = (await things.page(query())).rows
        assert item["name"] == "bare"
        assert "volume" not in item
        assert "updated_at" not in item
        assert (await things.get(made["id"]))["volume"] == 7  # a detail reads the row
    with pytest.raises(TypeError, match="unlisted"):
        type("LabelsBare", (Repository,), {"model": Label, "unlisted": frozenset({"x"})})


async def test_filters_ordering_and_pages(db: Database) -> None:
    a = next(_ids)
    await seed(db, a, 1, [("alpha 50%", "new", 10), ("beta", "done", 30), ("gamma", "new", 20),
                          ("delta", "done", 30)])
    async with db.session(TenantScope.account(a)) as session:
        things = Things(session, Visibility(a))

        async def names(filters: FilterSet | None = None, ordering: str | None = None,
                        **page: int) -> list[str]:
            return [r["name"] for r in (await things.page(query(filters, ordering,
                                                                 **page))).rows]

        assert await names() == ["delta", "gamma", "beta", "alpha 50%"]  # newest first
        assert await names(ThingFilters(status="done")) == ["delta", "beta"]
        assert await names(ThingFilters(volume_min=20, volume_max=29)) == ["gamma"]
        assert await names(ThingFilters(search="A 5")) == ["alpha 50%"]
        assert await names(ThingFilters(search="%")) == ["alpha 50%"]  # wildcards literal
        assert await names(ThingFilters(status="", search="  ")) == await names()
        assert await names(ordering="-size,name") == ["beta", "delta", "gamma", "alpha 50%"]
        # Ties end with id, in the direction of the last key.
        assert await names(ordering="status,-volume,volume") == [
            "delta", "beta", "gamma", "alpha 50%"]
        # An unknown name is dropped, as DRF's OrderingFilter drops it; none left: the
        # default order (ADR 0041).
        assert await names(ordering="-size,password,name") == await names(
            ordering="-size,name")
        assert await names(ordering="password") == await names()
        assert await names(ordering="-password, ,--volume") == await names()
        assert await names(page=2, page_size=3) == ["alpha 50%"]
        beyond = await things.page(query(page=3, page_size=3))
        assert (beyond.count, beyond.rows) == (4, [])
    with pytest.raises(ValidationFailed) as bad:
        ThingFilters(status="bogus")
    assert bad.value.errors is not None
    assert "status" in bad.value.errors
    assert THING_ORDERING.parse("name,password,-volume") == Ordering(
        (("name", False), ("volume", True)))
    assert THING_ORDERING.parse("password") == THING_ORDERING.default
    same = ThingFilters(status="new", volume_min=1)
    assert same == ThingFilters(volume_min=1, status="new")
    assert hash(same) == hash(ThingFilters(volume_min=1, status="new"))
    assert same.status == "new"
    assert same.search is None
    assert same.only("status", "volume_min")
    assert not same.only("status")


async def test_soft_and_hard_delete_and_model_rows(db: Database) -> None:
    a = next(_ids)
    rows = await seed(db, a, 1, [("keep", "new", 1), ("drop", "new", 1)])
    async with db.session(TenantScope.account(a)) as session:
        things = Things(session, Visibility(a))
        deleted = await things.delete([r["id"] for r in rows[1:]])
        assert [d["name"] for d in deleted] == ["drop"]
        assert deleted[0]["deleted_at"]
        assert await things.get(rows[1]["id"]) is None
        assert await things.delete([rows[1]["id"]]) == []  # once
        assert [r["name"] for r in (await things.page(query())).rows] == ["keep"]
        changed = await things.update(rows[0]["id"], {"status": "done"})
        assert changed is not None
        assert changed["updated_at"] >= rows[0]["updated_at"]

        labels = Labels(session, Visibility(a))
        label = await labels.insert({"text": "red"})
        assert isinstance(label, Label)
        assert label.account_id == a
        renamed = await labels.update(label.id or 0, {"text": "blue"})
        assert isinstance(renamed, Label)
        assert renamed.text == "blue"
        assert [x.text for x in await labels.get_many([label.id or 0, MAX_BIGINT])] == ["blue"]
        gone = await labels.delete([label.id or 0])
        assert [x.id for x in gone] == [label.id]
        assert await labels.get(label.id or 0) is None

        colours = Colours(session)
        colour = await colours.insert({"name": "green"})
        assert (await colours.get(colour["id"]))["name"] == "green"
        await session.commit()


# --- as an HTTP list ------------------------------------------------------------------

router = APIRouter(prefix="/api/v1/kernel")


@router.get("/things/")
async def list_things(request: Request, uow: UoW, principal: CurrentPrincipal,
                      q: ThingQuery) -> Response:
    page = await Things(uow.session, Visibility(principal.account_id)).page(q)
    return page_response(request, q.page, page.count, page.rows)


@router.get("/things/{thing_id}/")
async def get_thing(thing_id: Id, uow: UoW, principal: CurrentPrincipal) -> Row:
    row = await Things(uow.session, Visibility(principal.account_id)).get(thing_id)
    if row is None:
        raise NotFound("Thing not found.")
    return row


issuer = TestIssuer()


@pytest.fixture(scope="module")
async def client(models_db_info: ServiceDatabase, nats_url: str
                 ) -> AsyncIterator[httpx.AsyncClient]:
    settings = ServiceSettings(service_name="kernel", database_url=models_db_info.app_url,
                               nats_url=nats_url, environment="test")
    app = create_service_app(settings, title="kernel", routers=[router],
                             migrations_dir=MIGRATIONS, keys_fetcher=issuer.fetcher())
    async with running_app(app) as c:
        yield c


async def test_an_http_list_declared_once(client: httpx.AsyncClient, db: Database) -> None:
    a = next(_ids)
    rows = await seed(db, a, 1, [("one", "new", 5), ("two", "done", 7)])
    headers = issuer.headers(user_id=1, account_id=a)
    base = "/api/v1/kernel/things/"

    async def get(qs: str) -> httpx.Response:
        return await client.get(f"{base}?{qs}", headers=headers)

    listed = (await get("status=done&ordering=-volume")).json()
    assert [r["name"] for r in listed["results"]] == ["two"]
    assert listed["count"] == 1
    # An unknown ordering term or query parameter is ignored (DRF, django-filter).
    for qs in ("ordering=secret", "ordering=secret,-volume", "colour=red", "status=done&x="):
        answer = await get(qs)
        assert answer.status_code == 200, (qs, answer.text)
    assert [r["name"] for r in (await get("ordering=secret,-volume")).json()["results"]] == [
        "two", "one"]
    assert [r["name"] for r in (await get("ordering=secret")).json()["results"]] == [
        "two", "one"]
    assert [r["name"] for r in (await get("colour=red&status=new")).json()["results"]] == [
        "one"]
    for qs, field in (("status=bogus", "status"),
                      (f"site_id={MAX_BIGINT + 1}", "site_id"), ("site_id=0", "site_id"),
                      (f"volume_min={MAX_BIGINT + 1}", "volume_min"),
                      ("site_id=abc", "site_id"), ("start=2026-13-01", "start")):
        answer = await get(qs)
        assert answer.status_code == 400, (qs, answer.text)
        assert field in answer.json()["errors"], qs
    # An empty value filters nothing, whatever the filter's type (django-filter's rule:
    # a form's "any" sends `?site_id=`).
    for qs in ("site_id=", "status=", "volume_min=&volume_max=%20", "start=", "search="):
        answer = await get(qs)
        assert answer.status_code == 200, (qs, answer.text)
        assert answer.json()["count"] == 2, qs
    # Pages as DRF's PageNumberPagination reads them: a page size that is not a positive
    # number is the default one, more than 100 is 100; a page that is not a positive
    # number is 404 "Invalid page.", as one past the end is.
    for qs in ("page_size=0", "page_size=", "page_size=abc", "page_size=-3",
               f"page_size={MAX_BIGINT + 1}", "page=1&page_size=1.5"):
        answer = await get(qs)
        assert answer.status_code == 200, (qs, answer.text)
        assert len(answer.json()["results"]) == 2, qs
    assert len((await get("page_size=1")).json()["results"]) == 1
    # An empty page is the first (DRF: `query_params.get("page") or 1`), as a form sends it.
    assert (await get("page=&page_size=1")).json()["previous"] is None
    assert len((await get("page=&page_size=1")).json()["results"]) == 1
    assert (await get("page=+2&page_size=1")).json()["previous"] is not None
    # `page=last` (DRF's `last_page_strings`) is the last page the count makes, and its
    # links name pages by number; an empty list's last page is the first.
    last = (await get("page=last&page_size=1&ordering=name")).json()
    assert ([r["name"] for r in last["results"]], last["count"], last["next"]) == (
        ["two"], 2, None)
    assert last["previous"].endswith(f"{base}?page_size=1&ordering=name")
    assert (await get("page=last")).json()["previous"] is None
    nothing = await get("page=last&search=nothing-matches")
    assert (nothing.status_code, nothing.json()["count"], nothing.json()["results"]) == (
        200, 0, [])
    for qs in ("page=0", "page=-1", "page=%20", "page=abc", "page=1.0", f"page={MAX_BIGINT + 1}",
               "page=1133416100135823104", "page=2", "page=LAST", "page=last1"):
        answer = await get(qs)
        assert answer.status_code == 404, (qs, answer.text)
        assert answer.json()["detail"] == "Invalid page.", qs
    assert (await client.get(f"{base}{rows[0]['id']}/", headers=headers)).status_code == 200
    # An id no row can have is a row that is not there (DRF's answer), not bad input.
    assert (await client.get(f"{base}{MAX_BIGINT + 1}/", headers=headers)).status_code == 404
    other = issuer.headers(user_id=2, account_id=next(_ids))
    assert (await client.get(f"{base}{rows[0]['id']}/", headers=other)).status_code == 404

    schema = (await client.get("/openapi.json")).json()
    params = {p["name"]: p for p in schema["paths"][base]["get"]["parameters"]}
    assert {"status", "site_id", "volume_min", "volume_max", "search", "ordering", "page",
            "page_size"} <= set(params)
    assert params["status"]["schema"]["enum"] == ["new", "done"]
    # A page is a number from 1 or `last` (DRF's `last_page_strings`).
    assert params["page"]["schema"]["anyOf"] == [{"type": "integer", "minimum": 1},
                                                 {"type": "string", "enum": ["last"]}]
    assert params["page_size"]["schema"]["type"] == "integer"
    assert params["search"]["description"] == "Search by name"
    assert params["site_id"]["schema"]["anyOf"][0]["maximum"] == MAX_BIGINT
    # A day filter takes YYYY-MM-DD only ("Enter a valid date."): the document says so
    # (it said any string: schemathesis' positive_data_acceptance).
    assert params["start"]["schema"]["format"] == "date"


def test_a_last_page_has_no_offset_until_the_count_is_known() -> None:
    last = PageParams(page=1, page_size=10, last=True)
    with pytest.raises(ValueError, match="resolved"):
        _ = last.offset
    assert last.resolved(0) == PageParams(page=1, page_size=10)
    assert last.resolved(20) == PageParams(page=2, page_size=10)
    assert last.resolved(21).offset == 20
