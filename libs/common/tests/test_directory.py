"""The auth directory: auth's events folded in once and newest-first, and the checks a
request makes (blocked accounts, visible sites, a site and sector with a lookup on a miss
through auth's real command over NATS)."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from nats.aio.client import Client as NATS

from libs.common import nats as nats_kernel
from libs.common.auth import LOOKUP_SITE, AuthClient, LookupSite, SiteAndSectors
from libs.common.commands import CommandServer
from libs.common.consumer import PermanentError
from libs.common.db import Database, TenantScope
from libs.common.directory import apply_auth_event
from libs.common.events import Event
from libs.common.migrations import alembic_config
from libs.common.problems import NotFound, PermissionDenied, ValidationFailed
from libs.common.provision import ServiceDatabase
from libs.common.security import Principal
from libs.common.testing.plugin import DatabaseFactory
from libs.common.tests.models import DIRECTORY

MIGRATIONS = Path(__file__).parent / "model_migrations"
_ids = itertools.count(random.randint(10_000, 90_000) * 1000)


@pytest.fixture(scope="module")
def models_db_info(make_database: DatabaseFactory) -> ServiceDatabase:
    return make_database("kernel_directory", MIGRATIONS)


@pytest.fixture(scope="module")
async def db(models_db_info: ServiceDatabase) -> AsyncIterator[Database]:
    database = Database(models_db_info.app_url)
    yield database
    await database.dispose()


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    conn = await nats_kernel.connect(nats_url, "kernel-directory-tests")
    yield conn
    await conn.drain()


def site_event(verb: str, account: int, site: int, **data: Any) -> Event:
    return Event(type=f"auth.site.{verb}", account_id=account, data={
        "id": site, "account_id": account, "name": "Site", "slug": "site", "url": None,
        "industry_id": None, "industry_slug": None, "is_active": True, **data})


def sector_event(account: int, site: int, sector: int, **data: Any) -> Event:
    return Event(type="auth.sector.created", account_id=account, data={
        "id": sector, "account_id": account, "site_id": site, "name": "Sector",
        "slug": "sector", "industry_sector_id": None, "is_active": True, **data})


async def apply(db: Database, *events: Event) -> None:
    for event in events:
        scope = (TenantScope.account(event.account_id) if event.account_id
                 else TenantScope.system())
        async with db.session(scope) as session:
            await apply_auth_event(session, DIRECTORY.tables, event)
            await session.commit()


def principal(account: int, role: str = "owner", user: int = 1,
              site: int | None = None) -> Principal:
    return Principal(user_id=user, account_id=account, role=role, site_id=site)


async def test_events_fold_in_newest_first(db: Database) -> None:
    a, site = next(_ids), next(_ids)
    created = site_event("created", a, site, name="First")
    late = site_event("updated", a, site, name="Older")
    late = late.model_copy(update={"occurred_at": created.occurred_at - timedelta(minutes=1)})
    await apply(db, created, late, site_event("updated", a, site, name=None, url="https://x"))
    async with db.session(TenantScope.account(a)) as session:
        row = await DIRECTORY.repository(session).site(a, site)
    assert row is not None
    assert (row["name"], row["url"]) == ("", "https://x")  # a null name reads as empty
    await apply(db, site_event("deleted", a, site))
    async with db.session(TenantScope.account(a)) as session:
        assert await DIRECTORY.repository(session).site(a, site) is None

    plan = next(_ids)
    await apply(db, Event(type="auth.plan.created", data={"id": plan, "slug": "tiny",
                                                          "max_keywords": 7, "name": "Tiny",
                                                          "max_author_profiles": 3}),
                Event(type="auth.account.updated", account_id=a, data={
                    "account_id": a, "status": "active", "plan_id": plan, "name": "A"}))
    async with db.session(TenantScope.account(a)) as session:
        account = await DIRECTORY.repository(session).account(a)
    assert account == {"status": "active", "deleted": False, "plan_id": plan,
                       "max_keywords": 7, "max_author_profiles": 3}
    with pytest.raises(PermanentError):
        await apply(db, Event(type="auth.site.created", account_id=a, data={"name": "no id"}))
    with pytest.raises(PermanentError):
        await apply(db, Event(type="planner.keyword.created", account_id=a))


async def test_visibility_and_blocked_accounts(db: Database) -> None:
    a, one, two, editor = next(_ids), next(_ids), next(_ids), next(_ids)
    await apply(db, site_event("created", a, one), site_event("created", a, two),
                Event(type="auth.site_access.granted", account_id=a,
                      data={"account_id": a, "user_id": editor, "site_id": two}))
    async with db.session(TenantScope.account(a)) as session:
        assert (await DIRECTORY.access(session, principal(a)).visibility()).site_ids is None
        granted = await DIRECTORY.access(session, principal(a, "editor", editor)).visibility()
        assert granted.site_ids == (two,)
        keyed = await DIRECTORY.access(session, principal(a, "editor", 5, site=one)).visibility()
        assert keyed.site_ids == (one,)
    await apply(db, Event(type="auth.site_access.revoked", account_id=a,
                          data={"account_id": a, "user_id": editor, "site_id": two}),
                Event(type="auth.account.updated", account_id=a,
                      data={"account_id": a, "status": "suspended"}))
    async with db.session(TenantScope.account(a)) as session:
        with pytest.raises(PermissionDenied):
            await DIRECTORY.access(session, principal(a)).visibility()
    await apply(db, Event(type="auth.account.updated", account_id=a,
                          data={"account_id": a, "status": "trial"}))
    async with db.session(TenantScope.account(a)) as session:
        vis = await DIRECTORY.access(session, principal(a, "viewer", editor)).visibility()
        assert vis.site_ids == ()


async def test_site_and_sector_ask_auth_once_on_a_miss(db: Database, nc: NATS) -> None:
    a, b = next(_ids), next(_ids)
    site, sector, other_sector, inactive = next(_ids), next(_ids), next(_ids), next(_ids)
    known = site_event("created", a, site).data
    sectors = [sector_event(a, site, sector).data,
               sector_event(a, site, inactive, is_active=False).data]
    asked: list[LookupSite] = []

    async def lookup_site(request: LookupSite) -> SiteAndSectors:
        asked.append(request)
        if request.site_id != site or request.account_id != a:
            raise NotFound("Site not found.")
        return SiteAndSectors.model_validate({"site": known, "sectors": sectors})

    stop = asyncio.Event()
    server = asyncio.create_task(CommandServer(nc, {LOOKUP_SITE: lookup_site}).run(stop))
    await asyncio.sleep(0.05)
    auth = AuthClient(nc, timeout=2)
    try:
        async with db.session(TenantScope.account(a)) as session:
            access = DIRECTORY.access(session, principal(a), auth)
            found, its_sector = await access.site_and_sector(site, sector)
            assert (found["id"], its_sector["site_id"]) == (site, site)
            assert len(asked) == 1
            await access.site_and_sector(site, sector)  # known now: no second question
            assert len(asked) == 1
            with pytest.raises(ValidationFailed) as wrong:
                await access.site_and_sector(site, other_sector)
            assert wrong.value.errors == {
                "sector_id": ["This sector does not belong to the site."]}
            with pytest.raises(ValidationFailed):
                await access.site_and_sector(site, inactive)
            await session.commit()
        async with db.session(TenantScope.account(b)) as session:
            with pytest.raises(NotFound):  # another account's site
                await DIRECTORY.access(session, principal(b), auth).site_and_sector(site, sector)
        async with db.session(TenantScope.account(a)) as session:
            with pytest.raises(PermissionDenied):  # a site of the account, not granted
                await DIRECTORY.access(session, principal(a, "editor", 9), auth
                                       ).site_and_sector(site, sector)
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)


def test_the_migration_helpers_build_what_a_service_declares(
        models_db_info: ServiceDatabase) -> None:
    """The directory and the AI task log, created by `directory_tables(op)` and
    `ai_task_log_table(op)`, are what `Directory(metadata)` and `ai_task_logs_in(metadata)`
    declare (Alembic finds nothing to change)."""
    command.check(alembic_config(MIGRATIONS, models_db_info.owner_url))
