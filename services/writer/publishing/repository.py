"""Publishing's SQL: integrations, sync events, publications, and the publisher's store
(`DbPublicationStore`: each step its own short transaction, committed before it returns,
as `store.py` asks) and the webhook replay store. Every statement carries the caller's
account (and visible sites); row-level security is the second wall."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.db import Database, TenantScope
from libs.common.repository import Repository, Row, table_of
from libs.common.uow import unit_of_work
from services.writer.publishing import models
from services.writer.publishing.store import MediaRecord, Outcome, PublicationRecord

publications = table_of(models.Publication)
media_table = table_of(models.PublicationMedia)
terms_table = table_of(models.PublicationTerm)
receipts = table_of(models.WebhookReceipt)


class IntegrationRepository(Repository[Row]):
    table = table_of(models.SiteIntegration)

    async def of_site(self, site_id: int, platform: str = "wordpress") -> Row | None:
        found = await self.find(self.table.c.site_id == site_id,
                                self.table.c.platform == platform)
        return found[0] if found else None


class SyncEventRepository(Repository[Row]):
    table = table_of(models.SyncEvent)
    deleted_column = None

    async def recent(self, integration_id: int, limit: int = 20) -> list[Row]:
        t = self.table
        return await self.fetch(select(t).where(*self.scope(), t.c.integration_id == integration_id)
                                .order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit))


class PublicationRepository(Repository[Row]):
    table = publications

    async def ensure(self, *, site_id: int, integration_id: int, content_id: int,
                     task_id: str | None) -> Row:
        """The publication of a content on an integration, made when missing; the job
        about to run is noted on it."""
        t = self.table
        statement = (pg_insert(t).values(self._owned({
            "site_id": site_id, "integration_id": integration_id, "content_id": content_id,
            "task_id": task_id}))
            .on_conflict_do_update(constraint="uq_publications_integration_content",
                                   set_={"task_id": task_id, "updated_at": func.now()})
            .returning(t))
        (row,) = await self.fetch(statement)
        return row

    async def of_content(self, integration_id: int, content_id: int) -> Row | None:
        t = self.table
        found = await self.find(t.c.integration_id == integration_id, t.c.content_id == content_id)
        return found[0] if found else None


class WebhookReceipts:
    """`ReplayStore` over `webhook_receipts`, in the request's transaction: an id is
    accepted once per integration until it expires."""

    def __init__(self, session: AsyncSession, account_id: int, integration_id: int) -> None:
        self.session = session
        self.account_id = account_id
        self.integration_id = integration_id

    async def first_time(self, message_id: str, expires_at: float) -> bool:
        r = receipts
        now = datetime.now(UTC)
        await self.session.execute(delete(r).where(
            r.c.integration_id == self.integration_id, r.c.expires_at < now))
        inserted = await self.session.execute(
            pg_insert(r).values(integration_id=self.integration_id, message_id=message_id[:255],
                                account_id=self.account_id,
                                expires_at=datetime.fromtimestamp(expires_at, UTC))
            .on_conflict_do_nothing().returning(r.c.message_id))
        return inserted.first() is not None


class DbPublicationStore:
    """The publisher's `PublicationStore` on writer's database, for one account and one
    integration (`site_key` is the integration id). Each method commits on its own."""

    def __init__(self, db: Database, account_id: int, integration_id: int, site_id: int) -> None:
        self.db = db
        self.account_id = account_id
        self.integration_id = integration_id
        self.site_id = site_id

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """One step's own unit of work: committed when the block returns."""
        async with unit_of_work(self.db, TenantScope.account(self.account_id)) as uow:
            yield uow.session

    def _mine(self, t: Any) -> list[Any]:
        return [t.c.account_id == self.account_id, t.c.integration_id == self.integration_id]

    async def _record(self, session: AsyncSession, content_id: int) -> Row:
        p = publications
        row = (await session.execute(select(p).where(*self._mine(p), p.c.content_id == content_id)
                                     .with_for_update())).mappings().first()
        if row is None:
            row = (await session.execute(pg_insert(p).values(
                account_id=self.account_id, site_id=self.site_id,
                integration_id=self.integration_id, content_id=content_id)
                .returning(p))).mappings().one()
        return dict(row)

    async def _set(self, content_id: int, **values: Any) -> None:
        p = publications
        async with self._session() as s:
            await s.execute(update(p).where(*self._mine(p), p.c.content_id == content_id)
                            .values(**values, updated_at=func.now()))

    async def begin(self, site_key: str, content_id: int) -> PublicationRecord:
        p = publications
        async with self._session() as s:
            row = await self._record(s, content_id)
            row = dict((await s.execute(update(p).where(p.c.id == row["id"]).values(
                attempt=p.c.attempt + 1, status="pending", error=None, updated_at=func.now())
                .returning(p))).mappings().one())
        return PublicationRecord(
            site_key=site_key, content_id=content_id, attempt=row["attempt"],
            status="pending", post_id=row["external_id"],
            create_started=row["create_started"], url=row["url"], slug=row["slug"],
            revision=row["revision"])

    async def creating_post(self, record: PublicationRecord) -> None:
        await self._set(record.content_id, create_started=True)
        record.create_started = True

    async def post_created(self, record: PublicationRecord, post_id: int) -> None:
        await self._set(record.content_id, external_id=post_id)
        record.post_id = post_id

    async def post_gone(self, record: PublicationRecord) -> None:
        await self._set(record.content_id, external_id=None, create_started=False)
        record.post_id, record.create_started = None, False

    async def media(self, site_key: str, sha256: str) -> MediaRecord | None:
        m = media_table
        async with self._session() as s:
            row = (await s.execute(select(m).where(*self._mine(m), m.c.sha256 == sha256))
                   ).mappings().first()
        return MediaRecord(sha256, row["media_id"], row["url"]) if row else None

    async def uploading_media(self, site_key: str, sha256: str) -> None:
        m = media_table
        async with self._session() as s:
            await s.execute(pg_insert(m).values(
                account_id=self.account_id, integration_id=self.integration_id, sha256=sha256)
                .on_conflict_do_nothing())

    async def media_uploaded(self, site_key: str, sha256: str, media_id: int, url: str) -> None:
        m = media_table
        async with self._session() as s:
            statement = pg_insert(m).values(
                account_id=self.account_id, integration_id=self.integration_id, sha256=sha256,
                media_id=media_id, url=url)
            await s.execute(statement.on_conflict_do_update(
                constraint="uq_publication_media_integration_sha256",
                set_={"media_id": media_id, "url": url}))

    async def media_gone(self, site_key: str, sha256: str) -> None:
        m = media_table
        async with self._session() as s:
            await s.execute(delete(m).where(*self._mine(m), m.c.sha256 == sha256))

    async def term_ids(self, site_key: str, taxonomy: str, names: Iterable[str]) -> dict[str, int]:
        t = terms_table
        wanted = {n.casefold(): n for n in names}
        if not wanted:
            return {}
        async with self._session() as s:
            rows = (await s.execute(select(t.c.name_key, t.c.term_id).where(
                *self._mine(t), t.c.taxonomy == taxonomy, t.c.name_key.in_(list(wanted))))
            ).all()
        return {wanted[key]: int(term_id) for key, term_id in rows}

    async def terms_found(self, site_key: str, taxonomy: str, ids: Mapping[str, int]) -> None:
        t = terms_table
        if not ids:
            return
        async with self._session() as s:
            for name, term_id in ids.items():
                statement = pg_insert(t).values(
                    account_id=self.account_id, integration_id=self.integration_id,
                    taxonomy=taxonomy, name_key=name.casefold()[:255], term_id=term_id)
                await s.execute(statement.on_conflict_do_update(
                    constraint="uq_publication_terms_integration_name",
                    set_={"term_id": term_id}))

    async def terms_gone(self, site_key: str, taxonomy: str, ids: Iterable[int]) -> None:
        t = terms_table
        async with self._session() as s:
            await s.execute(delete(t).where(*self._mine(t), t.c.taxonomy == taxonomy,
                                            t.c.term_id.in_(list(ids))))

    async def finished(self, record: PublicationRecord, outcome: Outcome) -> None:
        await self._set(record.content_id, status=outcome.status, external_id=outcome.post_id,
                        url=outcome.url, slug=outcome.slug, revision=outcome.revision,
                        error=None)

    async def failed(self, record: PublicationRecord, reason: str) -> None:
        await self._set(record.content_id, status="failed", error=reason)
