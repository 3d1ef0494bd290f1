"""All of planner's SQL, one repository per aggregate on the kernel's base
(`libs/common/repository.py`): every statement carries the caller's account and visible
sites, and skips soft-deleted rows. None commits: the unit of work does.

Keyword lists are planner's measured hot path (ADR 0011) and keep their hand-written
statements behind the same interface (`count`, `rows`): counts without search or range
filters come from the exact `keyword_counts` table, other counts are cached against the
account's keyword version, page ids come from an index-only scan of the
`keywords_visible` view (same tenant predicate as row-level security, so the trigram
index serves `search`), then their rows.
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Select,
    column,
    delete,
    func,
    literal_column,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.auth import SeedKeywordDoc
from libs.common.db import driver_connection
from libs.common.directory import upsert
from libs.common.repository import (
    FilterSet,
    Ordering,
    Repository,
    Row,
    table_of,
)
from services.planner.models import (
    DIRECTORY,
    Cluster,
    ClusterContent,
    ContentIdea,
    Keyword,
    KeywordCount,
    KeywordVersion,
    SeedKeywordRef,
)

keywords = table_of(Keyword)
clusters = table_of(Cluster)
cluster_contents = table_of(ClusterContent)
ideas = table_of(ContentIdea)
counts = table_of(KeywordCount)
versions = table_of(KeywordVersion)
seeds = table_of(SeedKeywordRef)
sectors = DIRECTORY.tables.sectors

# The read path for keyword lists (created by the migration): the keywords table filtered
# by the same tenant predicate as its row-level security policy.
keywords_visible = table("keywords_visible", *(column(c.name) for c in keywords.columns))

# A keyword as the API shows it (its cluster's and sector's names joined in).
KEYWORD_COLUMNS = ("id", "account_id", "site_id", "sector_id", "keyword", "volume",
                   "difficulty", "intent", "seed_keyword_id", "cluster_id", "status",
                   "disabled", "created_at", "updated_at")


def _in_sector(t: Any, account_id: int, site_id: int, sector_id: int) -> list[Any]:
    return [t.c.account_id == account_id, t.c.site_id == site_id, t.c.sector_id == sector_id,
            t.c.deleted_at.is_(None)]


# --- keywords ------------------------------------------------------------------------


class CountCache:
    """Counts of filtered keyword lists, each remembered with the account's keyword version
    it was computed at (read in the same statement, so in the same snapshot). A hit is
    returned only while the version still reads the same: no keyword of the account has
    changed, so the count is still exact. Bounded, least recently used out first."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[int, int]] = OrderedDict()

    def get(self, key: Hashable, version: int) -> int | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, version: int, count: int) -> None:
        self._entries[key] = (version, count)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)


COUNTS = CountCache()


class KeywordRepository(Repository[Row]):
    table = keywords

    def select(self, page: Any = None) -> Select[Any]:
        """Keywords with their cluster's and sector's names; `page`, a subquery of ids,
        narrows them first."""
        k = self.table
        rows = k if page is None else page.join(k, k.c.id == page.c.id)
        return (select(*(k.c[name] for name in KEYWORD_COLUMNS),
                       clusters.c.name.label("cluster_name"),
                       sectors.c.name.label("sector_name"))
                .select_from(rows.outerjoin(clusters, clusters.c.id == k.c.cluster_id)
                             .outerjoin(sectors, sectors.c.id == k.c.sector_id)))

    async def count(self, filters: FilterSet) -> int:
        if filters.only("site_id", "sector_id", "status"):
            assert self.visibility is not None  # counters count live keywords only
            conds = self.visibility.conditions(counts)
            conds += [counts.c[name] == value for name, value in filters.given().items()]
            total = (await self.session.execute(
                select(func.coalesce(func.sum(counts.c.n), 0)).where(*conds))).scalar_one()
            return int(total)
        key = (self.visibility, filters)
        version = (await self.session.execute(select(self._version()))).scalar_one()
        cached = COUNTS.get(key, int(version))
        if cached is not None:
            return cached
        kv = keywords_visible
        total = (select(func.count()).select_from(kv)
                 .where(*self.scope(kv), *filters.conditions(kv))).scalar_subquery()
        version, count = (await self.session.execute(select(self._version(), total))).one()
        COUNTS.put(key, int(version), int(count))
        return int(count)

    def _version(self) -> Any:
        return (select(func.coalesce(func.max(versions.c.version), 0))
                .where(versions.c.account_id == self.account_id).scalar_subquery())

    async def rows(self, filters: FilterSet, ordering: Ordering, offset: int,
                   limit: int) -> list[Row]:
        """The page's ids come from the index alone (deferred join), then their rows."""
        kv = keywords_visible
        page = (select(kv.c.id).where(*self.scope(kv), *filters.conditions(kv))
                .order_by(*ordering.clauses(kv)).offset(offset).limit(limit)).subquery("page")
        query = self.select(page).order_by(*ordering.clauses(self.table))
        return await self.fetch(query)

    async def export(self, filters: FilterSet, ordering: Ordering,
                     batch: int) -> AsyncIterator[list[Row]]:
        """Every matching keyword, in pages of `batch`, from one server-side cursor."""
        kv, k = keywords_visible, self.table
        ids = (select(kv.c.id).where(*self.scope(kv), *filters.conditions(kv))
               .order_by(*ordering.clauses(kv))).subquery("ids")
        query = (select(*(k.c[name] for name in KEYWORD_COLUMNS),
                        clusters.c.name.label("cluster_name"))
                 .select_from(ids.join(k, k.c.id == ids.c.id)
                              .outerjoin(clusters, clusters.c.id == k.c.cluster_id))
                 .order_by(*ordering.clauses(k)))
        result = await self.session.stream(query.execution_options(yield_per=batch))
        async for part in result.mappings().partitions(batch):
            yield [dict(r) for r in part]

    async def insert_new(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert keywords whose text the sector does not hold yet (case-insensitive); the
        ids of those inserted."""
        if not rows:
            return []
        k = self.table
        statement = (pg_insert(k).values([self._owned(r) for r in rows])
                     .on_conflict_do_nothing(
                         index_elements=[k.c.site_id, k.c.sector_id, func.lower(k.c.keyword)],
                         index_where=k.c.deleted_at.is_(None))
                     .returning(k.c.id))
        return [r[0] for r in await self.session.execute(statement)]

    async def text_taken(self, site_id: int, sector_id: int, value: str, *,
                         except_id: int | None = None) -> bool:
        return await _taken(self.session, self.table.c.keyword, self.account_id, site_id,
                            sector_id, value, except_id)

    async def set_status(self, ids: Sequence[int], status: str) -> list[Row]:
        """Keywords among `ids` not yet in `status` move to it; those that moved."""
        return await self.update_many(ids, {"status": status}, self.table.c.status != status)

    async def live_total(self) -> int:
        total = (await self.session.execute(
            select(func.coalesce(func.sum(counts.c.n), 0))
            .where(counts.c.account_id == self.account_id))).scalar_one()
        return int(total)

    async def lock_account(self) -> None:
        """Serialise the account's keyword-creating transactions (plan limit checks)."""
        await self.session.execute(select(func.pg_advisory_xact_lock(
            literal_column("hashtextextended('igny8.planner.keywords', 0)") + self.account_id)))

    async def in_clusters(self, cluster_ids: Sequence[int]) -> dict[int, list[Row]]:
        """The live keywords of each cluster, by volume."""
        k = self.table
        rows = await self.session.execute(
            select(k.c.id, k.c.cluster_id, k.c.keyword, k.c.volume, k.c.difficulty,
                   k.c.intent)
            .where(*self.scope(), k.c.cluster_id.in_(list(cluster_ids)))
            .order_by(k.c.volume.desc(), k.c.id))
        out: dict[int, list[Row]] = {cid: [] for cid in cluster_ids}
        for r in rows.mappings():
            out[r["cluster_id"]].append(dict(r))
        return out

    async def assign(self, cluster_id: int, keyword_ids: Sequence[int]) -> None:
        await self.update_many(keyword_ids, {"cluster_id": cluster_id, "status": "mapped"})

    async def unassign(self, cluster_ids: Sequence[int]) -> list[int]:
        """Keywords of deleted clusters go back to `active` without a cluster."""
        k = self.table
        freed = await self.session.execute(
            k.update().where(*self.scope(), k.c.cluster_id.in_(list(cluster_ids)))
            .values(cluster_id=None, updated_at=func.now(),
                    status=func.coalesce(func.nullif(k.c.status, "mapped"), "active"))
            .returning(k.c.id))
        return [r[0] for r in freed]

    async def import_rows(self, site_id: int, sector_id: int,
                          rows: Sequence[tuple[int, str, int, int, str, str]],
                          room: int | None) -> tuple[list[Row], list[int], list[int]]:
        """COPY validated rows into a temporary table, then insert the new ones (ADR
        0011). Returns (inserted keywords, lines skipped as duplicates, lines over the
        plan limit); `room` is how many keywords the plan still allows (None: no limit)."""
        return await import_rows(self.session, self.account_id, site_id, sector_id, rows,
                                 room)


async def _taken(session: AsyncSession, col: Any, account_id: int, site_id: int,
                 sector_id: int, value: str, except_id: int | None) -> bool:
    """Whether a live row of `col`'s table in this sector already has `value`
    (case-insensitive): keyword texts and cluster names are unique that way. Both sides
    are lowered by PostgreSQL, as the unique index is: Python's `str.lower()` also lowers
    `É`, PostgreSQL's `lower()` under the C locale does not, so a second `ÉCOLE` passed
    the check and broke the index (a 500)."""
    t = col.table
    query = select(t.c.id).where(*_in_sector(t, account_id, site_id, sector_id),
                                 func.lower(col) == func.lower(value))
    if except_id is not None:
        query = query.where(t.c.id != except_id)
    return (await session.execute(query.limit(1))).first() is not None


# --- clusters ------------------------------------------------------------------------


class ClusterRepository(Repository[Row]):
    table = clusters

    async def name_taken(self, site_id: int, sector_id: int, name: str, *,
                         except_id: int | None = None) -> bool:
        return await _taken(self.session, self.table.c.name, self.account_id, site_id,
                            sector_id, name, except_id)

    async def in_sector(self, sector_id: int) -> list[Row]:
        return await self.find(self.table.c.sector_id == sector_id)

    async def place_content(self, content_id: int, cluster_id: int | None) -> set[int]:
        """Writer's content `content_id` now belongs to `cluster_id` (None: to no cluster,
        or deleted); the clusters whose content count this changes."""
        cc = cluster_contents
        before = (await self.session.execute(
            select(cc.c.cluster_id).where(cc.c.content_id == content_id).with_for_update()
        )).scalar_one_or_none()
        if cluster_id is None:
            await self.session.execute(delete(cc).where(cc.c.content_id == content_id))
        else:
            await self.session.execute(
                pg_insert(cc).values(content_id=content_id, account_id=self.account_id,
                                  cluster_id=cluster_id)
                .on_conflict_do_update(index_elements=[cc.c.content_id],
                                       set_={"cluster_id": cluster_id}))
        return {c for c in (before, cluster_id) if c is not None and before != cluster_id}

    async def refresh_content_counts(self, cluster_ids: Iterable[int]) -> None:
        ids = sorted(set(cluster_ids))
        if not ids:
            return
        cc = cluster_contents
        counted = (select(func.count()).select_from(cc)
                   .where(cc.c.account_id == clusters.c.account_id,
                          cc.c.cluster_id == clusters.c.id).scalar_subquery())
        await self.session.execute(
            update(clusters).where(clusters.c.id.in_(ids),
                                   clusters.c.account_id == self.account_id)
            .values(content_count=counted))

    async def refresh_stats(self, cluster_ids: Iterable[int | None]) -> None:
        """Recompute the derived figures of clusters from their live keywords and ideas;
        the intent is the one carrying the most volume (at least 1 per keyword; ties to
        the more specific intent), as `intent.dominant_intent` computes it."""
        ids = sorted({cid for cid in cluster_ids if cid is not None})
        if not ids:
            return
        await self.session.execute(text("""
            UPDATE clusters c SET
                keywords_count = s.n, volume = s.v, difficulty = s.d, ideas_count = i.n,
                intent = coalesce(t.intent, 'informational'), updated_at = now()
            FROM unnest(CAST(:ids AS bigint[])) AS x(id)
            CROSS JOIN LATERAL (
                SELECT count(*) AS n, coalesce(sum(volume), 0) AS v,
                       coalesce(round(avg(difficulty)), 0)::int AS d
                FROM keywords WHERE cluster_id = x.id AND deleted_at IS NULL) s
            CROSS JOIN LATERAL (
                SELECT count(*) AS n FROM content_ideas
                WHERE cluster_id = x.id AND deleted_at IS NULL) i
            LEFT JOIN LATERAL (
                SELECT intent FROM keywords WHERE cluster_id = x.id AND deleted_at IS NULL
                GROUP BY intent
                ORDER BY sum(greatest(volume, 1)) DESC,
                         array_position(ARRAY['navigational', 'transactional', 'commercial',
                                              'informational']::text[], intent::text)
                LIMIT 1) t ON true
            WHERE c.id = x.id AND c.account_id = :account
        """), {"ids": ids, "account": self.account_id})


# --- ideas ---------------------------------------------------------------------------


class IdeaRepository(Repository[Row]):
    table = ideas

    async def queue(self, ids: Sequence[int]) -> list[Row]:
        """`new` ideas among `ids` become `queued` (each exactly once)."""
        return await self.update_many(ids, {"status": "queued", "queued_at": func.now()},
                                      self.table.c.status == "new")

    async def complete(self, ids: Sequence[int]) -> list[Row]:
        """Ideas among `ids` whose content is written become `completed`."""
        return await self.update_many(ids, {"status": "completed"},
                                      self.table.c.status != "completed")


# --- seed keywords (global) ----------------------------------------------------------


class SeedKeywordRepository:
    """Auth's seed keyword library as far as planner has seen it: global rows."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def upsert(self, seed: SeedKeywordDoc, *, deleted: bool = False,
                     occurred_at: datetime | None = None) -> None:
        row = seed.model_dump(include={c.name for c in seeds.columns})
        await upsert(self.session, seeds, ["id"], {**row, "deleted": deleted}, occurred_at)

    async def get_many(self, ids: Sequence[int]) -> list[Row]:
        rows = await self.session.execute(
            select(seeds).where(seeds.c.id.in_(list(ids)), seeds.c.deleted.is_(False)))
        return [dict(r) for r in rows.mappings()]


# --- CSV import through COPY ---------------------------------------------------------

IMPORT_COLUMNS = ("line", "keyword", "volume", "difficulty", "intent", "status")


async def import_rows(
    session: AsyncSession,
    account_id: int,
    site_id: int,
    sector_id: int,
    rows: Sequence[tuple[int, str, int, int, str, str]],
    room: int | None,
) -> tuple[list[Row], list[int], list[int]]:
    """COPY validated rows into a temporary table, then insert the new ones.

    Returns (inserted keywords, lines skipped as duplicates, lines over the plan limit).
    `room` is how many keywords the plan still allows (None: no limit).
    """
    await session.execute(
        text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS keyword_import ("
            " line integer NOT NULL, keyword varchar(255) NOT NULL, volume integer NOT NULL,"
            " difficulty integer NOT NULL, intent varchar(20) NOT NULL,"
            " status varchar(16) NOT NULL) ON COMMIT DROP"
        )
    )
    driver = await driver_connection(session)
    async with driver.cursor() as cur:
        copy_sql = f"COPY keyword_import ({', '.join(IMPORT_COLUMNS)}) FROM STDIN"
        async with cur.copy(copy_sql) as copy:
            buffer = io.StringIO()
            writer = csv.writer(
                buffer, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n"
            )
            for n, row in enumerate(rows, 1):
                writer.writerow(row)
                if n % 10000 == 0:
                    await copy.write(buffer.getvalue())
                    buffer.seek(0)
                    buffer.truncate()
            if buffer.tell():
                await copy.write(buffer.getvalue())
    # One row per text (the first line wins), new to the sector, in file order, up to the
    # plan's room; ON CONFLICT covers a concurrent insert of the same text.
    limit_sql = "" if room is None else "LIMIT :room"
    inserted = (
        (
            await session.execute(
                text(f"""
        WITH fresh AS (
            SELECT DISTINCT ON (lower(i.keyword)) i.*
            FROM keyword_import i
            WHERE NOT EXISTS (
                SELECT 1 FROM keywords k
                WHERE k.site_id = :site AND k.sector_id = :sector AND k.deleted_at IS NULL
                  AND lower(k.keyword) = lower(i.keyword))
            ORDER BY lower(i.keyword), i.line
        ), chosen AS (
            SELECT * FROM fresh ORDER BY line {limit_sql}
        ), ins AS (
            INSERT INTO keywords (account_id, site_id, sector_id, keyword, volume, difficulty,
                                  intent, status, disabled, created_at, updated_at)
            SELECT :account, :site, :sector, keyword, volume, difficulty, intent, status, false,
                   now(), now()
            FROM chosen ORDER BY line
            ON CONFLICT (site_id, sector_id, lower(keyword)) WHERE deleted_at IS NULL
            DO NOTHING
            RETURNING id, keyword, status
        )
        SELECT id, keyword, status FROM ins
    """),
                {
                    "account": account_id,
                    "site": site_id,
                    "sector": sector_id,
                    **({"room": room} if room is not None else {}),
                },
            )
        )
        .mappings()
        .all()
    )
    inserted_texts = {r["keyword"].lower() for r in inserted}
    over_limit: list[int] = []
    if room is not None:
        over_limit = [
            r[0]
            for r in await session.execute(
                text("""
            SELECT line FROM (
                SELECT DISTINCT ON (lower(i.keyword)) i.line, i.keyword FROM keyword_import i
                WHERE NOT EXISTS (
                    SELECT 1 FROM keywords k
                    WHERE k.site_id = :site AND k.sector_id = :sector AND k.deleted_at IS NULL
                      AND lower(k.keyword) = lower(i.keyword))
                ORDER BY lower(i.keyword), i.line) AS left_out ORDER BY line
        """),
                {"site": site_id, "sector": sector_id},
            )
        ]
    over = set(over_limit)
    first_line: dict[str, int] = {}
    for line, kw, *_ in rows:
        first_line.setdefault(kw.lower(), line)
    skipped = [
        line
        for line, kw, *_ in rows
        if line not in over
        and not (kw.lower() in inserted_texts and first_line[kw.lower()] == line)
    ]
    await session.execute(text("DROP TABLE IF EXISTS keyword_import"))
    return [dict(r) for r in inserted], skipped, over_limit


