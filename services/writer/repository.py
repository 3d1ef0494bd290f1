"""All of writer's SQL, one repository per aggregate on the kernel's base
(`libs/common/repository.py`): every statement carries the caller's account and visible
sites, and skips soft-deleted rows. None commits: the unit of work does.

The read models of planner's clusters and keywords are written from planner's events
(`ClusterRefs`, `KeywordRefs`: the newest event wins) and read when a brief is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.directory import upsert, upsert_many
from libs.common.repository import Repository, Row, Visibility, table_of
from services.writer.models import (
    AuthorProfile,
    ClusterRef,
    Content,
    Image,
    ImageStatus,
    KeywordRef,
    Task,
    Taxonomy,
)

contents = table_of(Content)
cluster_refs, keyword_refs = table_of(ClusterRef), table_of(KeywordRef)


# --- tasks ---------------------------------------------------------------------------


class TaskRepository(Repository[Row]):
    table = table_of(Task)

    def select(self) -> Select[Any]:
        """A task with the id of its live content."""
        t, c = self.table, contents
        return (select(t, c.c.id.label("content_id"))
                .select_from(t.outerjoin(c, (c.c.task_id == t.c.id) & c.c.deleted_at.is_(None))))

    async def insert_from_idea(self, values: dict[str, Any]) -> Row | None:
        """The idea's task, unless the account already has one for this idea (whatever
        became of it): None then."""
        t = self.table
        statement = (pg_insert(t).values(self._owned(values))
                     .on_conflict_do_nothing(index_elements=[t.c.account_id, t.c.idea_id],
                                             index_where=t.c.idea_id.isnot(None))
                     .returning(t))
        row = (await self.session.execute(statement)).mappings().first()
        return {**row, "content_id": None} if row else None

    async def set_status(self, ids: Sequence[int], status: str) -> list[Row]:
        """Tasks among `ids` not yet in `status` move to it; those that moved."""
        return await self.update_many(ids, {"status": status}, self.table.c.status != status)


# --- content -------------------------------------------------------------------------


class ContentRepository(Repository[Row]):
    table = contents
    # The stored optimizer analysis (a document per content) is not part of the resource.
    unlisted = frozenset({"optimizer_analysis"})

    async def of_tasks(self, task_ids: Iterable[int]) -> dict[int, Row]:
        """The live content of each task that has one."""
        rows = await self.find(self.table.c.task_id.in_(list(task_ids)))
        return {r["task_id"]: r for r in rows}

    async def revise(self, content_id: int, values: dict[str, Any]) -> Row | None:
        """Change a content and bump its revision (the publisher's marker carries it)."""
        return await self.update(content_id, {**values,
                                              "revision": self.table.c.revision + 1})


# --- images --------------------------------------------------------------------------


class ImageRepository(Repository[Row]):
    table = table_of(Image)

    async def of_content(self, content_ids: Iterable[int]) -> list[Row]:
        """The live images of contents, featured first, then by position."""
        i = self.table
        return await self.fetch(self.select().where(*self.scope(), i.c.content_id.in_(
            list(content_ids))).order_by(i.c.content_id, i.c.position, i.c.id))

    async def set_status(self, ids: Sequence[int], status: str) -> list[Row]:
        return await self.update_many(ids, {"status": status}, self.table.c.status != status)

    async def claim(self, ids: Sequence[int]) -> list[Row]:
        """Images among `ids` that are not generated yet become `generating` (a retried
        job's own `generating` ones included); those claimed."""
        i = self.table
        return await self.update_many(ids, {"status": ImageStatus.GENERATING, "error": None},
                                      i.c.status != ImageStatus.GENERATED)

    async def replace_pending(self, content_id: int) -> list[Row]:
        """Retire a content's images that have no file yet (new prompts replace them)."""
        i = self.table
        return await self.update_many(
            [r["id"] for r in await self.of_content([content_id])],
            {"deleted_at": func.now()}, i.c.status != ImageStatus.GENERATED)


# --- taxonomies and author profiles ----------------------------------------------------


class TaxonomyRepository(Repository[Row]):
    table = table_of(Taxonomy)

    async def slug_taken(self, site_id: int, taxonomy_type: str, slug: str, *,
                         except_id: int | None = None) -> bool:
        """Unique per site, whoever's account (the constraint is the site's)."""
        t = self.table
        query = select(t.c.id).where(t.c.site_id == site_id, t.c.taxonomy_type == taxonomy_type,
                                     t.c.slug == slug)
        if except_id is not None:
            query = query.where(t.c.id != except_id)
        return (await self.session.execute(query.limit(1))).first() is not None


class AuthorProfileRepository(Repository[Row]):
    table = table_of(AuthorProfile)

    async def name_taken(self, name: str, *, except_id: int | None = None) -> bool:
        a = self.table
        # Both sides lowered by PostgreSQL: Python's `str.lower()` lowers `É` and the C
        # locale's `lower()` does not, so a second `ÉMILE` passed the check and broke the
        # unique constraint (a 500).
        query = select(a.c.id).where(*self.scope(),
                                     func.lower(a.c.name) == func.lower(name))
        if except_id is not None:
            query = query.where(a.c.id != except_id)
        return (await self.session.execute(query.limit(1))).first() is not None

    async def active_count(self, *, except_id: int | None = None) -> int:
        a = self.table
        query = select(func.count()).select_from(a).where(*self.scope(), a.c.is_active)
        if except_id is not None:
            query = query.where(a.c.id != except_id)
        return int((await self.session.execute(query)).scalar_one())

    async def lock_account(self) -> None:
        """Serialise the account's profile-creating transactions (the plan limit)."""
        await self.session.execute(select(func.pg_advisory_xact_lock(
            literal_column("hashtextextended('igny8.writer.author_profiles', 0)")
            + self.account_id)))


# --- planner's clusters and keywords (read models) -------------------------------------


class PlannerRefs:
    """What writer keeps of planner's clusters and keywords: written from planner's
    events in the event's account scope, read for briefs."""

    def __init__(self, session: AsyncSession, visibility: Visibility) -> None:
        self.session = session
        self.visibility = visibility

    async def upsert_cluster(self, values: dict[str, Any], *, deleted: bool = False,
                             occurred_at: datetime | None = None) -> None:
        row = {k: values.get(k) for k in ("id", "account_id", "site_id", "sector_id")}
        row.update({k: values.get(k) or "" for k in ("name", "description", "topic")})
        await upsert(self.session, cluster_refs, ["id"], {**row, "deleted": deleted},
                     occurred_at)

    async def upsert_keywords(self, account_id: int, rows: Sequence[dict[str, Any]], *,
                              deleted: bool = False,
                              occurred_at: datetime | None = None) -> None:
        await upsert_many(self.session, keyword_refs, ["id"], [{
            "id": k["id"], "account_id": account_id, "cluster_id": k.get("cluster_id"),
            "keyword": str(k.get("keyword") or "")[:255],
            "intent": str(k.get("intent") or "informational")[:20],
            "volume": int(k.get("volume") or 0), "deleted": deleted} for k in rows],
            occurred_at)

    async def assign(self, account_id: int, cluster_id: int, keyword_ids: Sequence[int],
                     occurred_at: datetime | None) -> None:
        """`planner.keywords.clustered`: these keywords now belong to the cluster (known
        keywords only; their texts come with their own events)."""
        k = keyword_refs
        query = k.update().where(k.c.account_id == account_id, k.c.id.in_(list(keyword_ids)))
        if occurred_at is not None:
            query = query.where((k.c.source_occurred_at.is_(None))
                                | (k.c.source_occurred_at <= occurred_at))
        await self.session.execute(query.values(cluster_id=cluster_id))

    async def cluster(self, cluster_id: int | None) -> Row | None:
        if cluster_id is None:
            return None
        c = cluster_refs
        row = (await self.session.execute(select(c).where(
            *self.visibility.conditions(c), c.c.id == cluster_id,
            c.c.deleted.is_(False)))).mappings().first()
        return dict(row) if row else None

    async def keywords_of(self, cluster_ids: Iterable[int]) -> dict[int, list[Row]]:
        """The live keywords of each cluster, by volume."""
        k = keyword_refs
        wanted = sorted(set(cluster_ids))
        out: dict[int, list[Row]] = {cid: [] for cid in wanted}
        if not wanted:
            return out
        rows = await self.session.execute(
            select(k.c.id, k.c.cluster_id, k.c.keyword, k.c.intent, k.c.volume)
            .where(*self.visibility.conditions(k, site_column=None),
                   k.c.cluster_id.in_(wanted), k.c.deleted.is_(False))
            .order_by(k.c.volume.desc(), k.c.id))
        for r in rows.mappings():
            out[r["cluster_id"]].append(dict(r))
        return out
