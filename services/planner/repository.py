"""All of planner's SQL. Functions take the unit of work's session; none commits.

Every query names `account_id` itself; row-level security is the second wall. Keyword
lists and counts read through the `keywords_visible` view (same tenant predicate, see
decision 0011) so the trigram index serves `search`; counts without search or range
filters come from the exact `keyword_counts` table.
"""

from __future__ import annotations

import csv
import io
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    column,
    func,
    insert,
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
from libs.common.repository import Visibility
from services.planner.models import (
    DIRECTORY,
    Cluster,
    ContentIdea,
    Keyword,
    KeywordCount,
    KeywordVersion,
    SeedKeywordRef,
)


def _table(model: type) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


keywords = _table(Keyword)
clusters = _table(Cluster)
ideas = _table(ContentIdea)
counts = _table(KeywordCount)
sectors = DIRECTORY.tables.sectors
seeds = _table(SeedKeywordRef)
versions = _table(KeywordVersion)

# The read path for keyword lists (created by the migration): the keywords table filtered
# by the same tenant predicate as its row-level security policy.
keywords_visible = table("keywords_visible", *(column(c.name) for c in keywords.columns))


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(col: Any, term: str) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], col.ilike(f"%{_escape_like(term)}%", escape="\\"))


@dataclass(frozen=True)
class Ordering:
    """(column name, descending) pairs; `id` is always the last tie-breaker."""

    keys: tuple[tuple[str, bool], ...]

    def clauses(self, t: Any) -> list[Any]:
        out = [t.c[name].desc() if desc else t.c[name].asc() for name, desc in self.keys]
        if not any(name == "id" for name, _ in self.keys):
            last_desc = self.keys[-1][1] if self.keys else True
            out.append(t.c.id.desc() if last_desc else t.c.id.asc())
        return out


@dataclass(frozen=True)
class KeywordFilters:
    status: str | None = None
    cluster_id: int | None = None
    intent: str | None = None
    seed_keyword_id: int | None = None
    difficulty_min: int | None = None
    difficulty_max: int | None = None
    volume_min: int | None = None
    volume_max: int | None = None
    site_id: int | None = None
    sector_id: int | None = None
    search: str | None = None

    @property
    def countable_from_counters(self) -> bool:
        """True when only site, sector and status narrow the list."""
        return all(
            v is None
            for v in (
                self.cluster_id,
                self.intent,
                self.seed_keyword_id,
                self.difficulty_min,
                self.difficulty_max,
                self.volume_min,
                self.volume_max,
                self.search,
            )
        )

    def conditions(self, t: Any) -> list[ColumnElement[bool]]:
        c = t.c
        conds: list[ColumnElement[bool]] = [c.deleted_at.is_(None)]
        pairs: list[tuple[Any, Any]] = [
            (c.status, self.status),
            (c.cluster_id, self.cluster_id),
            (c.intent, self.intent),
            (c.seed_keyword_id, self.seed_keyword_id),
            (c.site_id, self.site_id),
            (c.sector_id, self.sector_id),
        ]
        conds += [col == value for col, value in pairs if value is not None]
        if self.difficulty_min is not None:
            conds.append(c.difficulty >= self.difficulty_min)
        if self.difficulty_max is not None:
            conds.append(c.difficulty <= self.difficulty_max)
        if self.volume_min is not None:
            conds.append(c.volume >= self.volume_min)
        if self.volume_max is not None:
            conds.append(c.volume <= self.volume_max)
        if self.search:
            conds.append(contains(c.keyword, self.search))
        return conds


@dataclass(frozen=True)
class SimpleFilters:
    """Filters of clusters and ideas: equality on named columns, plus search."""

    equals: dict[str, Any] = field(default_factory=dict)
    search: str | None = None
    search_column: str = "name"

    def conditions(self, t: Any) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [t.c.deleted_at.is_(None)]
        conds += [t.c[name] == value for name, value in self.equals.items() if value is not None]
        if self.search:
            conds.append(contains(t.c[self.search_column], self.search))
        return conds


# --- read models ---------------------------------------------------------------------


async def upsert_seed(session: AsyncSession, seed: SeedKeywordDoc, *, deleted: bool = False,
                      occurred_at: datetime | None = None) -> None:
    row = seed.model_dump(include={c.name for c in seeds.columns})
    await upsert(session, seeds, ["id"], {**row, "deleted": deleted}, occurred_at)


async def get_seeds(session: AsyncSession, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = (
        (
            await session.execute(
                select(seeds).where(seeds.c.id.in_(list(ids)), seeds.c.deleted.is_(False))
            )
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


async def lock_account(session: AsyncSession, account_id: int) -> None:
    """Serialise keyword-creating transactions of one account (plan limit checks)."""
    await session.execute(
        select(
            func.pg_advisory_xact_lock(
                literal_column("hashtextextended('igny8.planner.keywords', 0)") + account_id
            )
        )
    )


# --- keywords ------------------------------------------------------------------------


def _keyword_columns(k: Any) -> list[Any]:
    return [
        k.c.id,
        k.c.account_id,
        k.c.site_id,
        k.c.sector_id,
        k.c.keyword,
        k.c.volume,
        k.c.difficulty,
        k.c.intent,
        k.c.seed_keyword_id,
        k.c.cluster_id,
        k.c.status,
        k.c.disabled,
        k.c.created_at,
        k.c.updated_at,
    ]


def _keyword_select(k: Any) -> Select[Any]:
    return select(
        *_keyword_columns(k),
        clusters.c.name.label("cluster_name"),
        sectors.c.name.label("sector_name"),
    ).select_from(
        k.outerjoin(clusters, clusters.c.id == k.c.cluster_id).outerjoin(
            sectors, sectors.c.id == k.c.sector_id
        )
    )


async def count_keywords(session: AsyncSession, vis: Visibility, filters: KeywordFilters) -> int:
    if filters.countable_from_counters:
        conds = vis.conditions(counts)
        for name in ("site_id", "sector_id", "status"):
            value = getattr(filters, name)
            if value is not None:
                conds.append(counts.c[name] == value)
        total = (
            await session.execute(select(func.coalesce(func.sum(counts.c.n), 0)).where(*conds))
        ).scalar_one()
        return int(total)
    return await _counted(session, vis, filters)


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


def _version_of(account_id: int | None) -> Any:
    return (
        select(func.coalesce(func.max(versions.c.version), 0))
        .where(versions.c.account_id == account_id)
        .scalar_subquery()
    )


async def _counted(session: AsyncSession, vis: Visibility, filters: KeywordFilters) -> int:
    key = (vis, filters)
    version = (await session.execute(select(_version_of(vis.account_id)))).scalar_one()
    cached = COUNTS.get(key, int(version))
    if cached is not None:
        return cached
    kv = keywords_visible
    total = (
        select(func.count()).select_from(kv).where(*vis.conditions(kv), *filters.conditions(kv))
    ).scalar_subquery()
    version, count = (
        await session.execute(select(_version_of(vis.account_id), total))
    ).one()
    COUNTS.put(key, int(version), int(count))
    return int(count)


async def list_keywords(
    session: AsyncSession,
    vis: Visibility,
    filters: KeywordFilters,
    ordering: Ordering,
    offset: int,
    limit: int,
) -> list[dict[str, Any]]:
    """The page's ids come from the index alone (deferred join), then their rows."""
    kv = keywords_visible
    page = (
        select(kv.c.id)
        .where(*vis.conditions(kv), *filters.conditions(kv))
        .order_by(*ordering.clauses(kv))
        .offset(offset)
        .limit(limit)
    ).subquery("page")
    k = keywords
    query = (
        select(
            *_keyword_columns(k),
            clusters.c.name.label("cluster_name"),
            sectors.c.name.label("sector_name"),
        )
        .select_from(
            page.join(k, k.c.id == page.c.id)
            .outerjoin(clusters, clusters.c.id == k.c.cluster_id)
            .outerjoin(sectors, sectors.c.id == k.c.sector_id)
        )
        .order_by(*ordering.clauses(k))
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


async def get_keywords(
    session: AsyncSession, vis: Visibility, ids: Iterable[int]
) -> list[dict[str, Any]]:
    k = keywords
    query = (
        _keyword_select(k)
        .where(*vis.conditions(k), k.c.deleted_at.is_(None), k.c.id.in_(list(ids)))
        .order_by(k.c.id)
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


async def insert_keyword(session: AsyncSession, values: dict[str, Any]) -> int | None:
    """Insert one keyword; None when a live keyword with the same text exists."""
    stmt = (
        pg_insert(keywords)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=[
                keywords.c.site_id,
                keywords.c.sector_id,
                func.lower(keywords.c.keyword),
            ],
            index_where=keywords.c.deleted_at.is_(None),
        )
        .returning(keywords.c.id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def insert_keywords(session: AsyncSession, rows: list[dict[str, Any]]) -> list[int]:
    if not rows:
        return []
    stmt = (
        pg_insert(keywords)
        .values(rows)
        .on_conflict_do_nothing(
            index_elements=[
                keywords.c.site_id,
                keywords.c.sector_id,
                func.lower(keywords.c.keyword),
            ],
            index_where=keywords.c.deleted_at.is_(None),
        )
        .returning(keywords.c.id)
    )
    return [r[0] for r in await session.execute(stmt)]


async def keyword_text_taken(
    session: AsyncSession,
    account_id: int,
    site_id: int,
    sector_id: int,
    text_value: str,
    *,
    except_id: int | None = None,
) -> bool:
    return await _taken_in_sector(session, keywords.c.keyword, account_id, site_id, sector_id,
                                  text_value, except_id)


async def _taken_in_sector(
    session: AsyncSession,
    column: Any,
    account_id: int,
    site_id: int,
    sector_id: int,
    value: str,
    except_id: int | None,
) -> bool:
    """Whether a live row of `column`'s table in this sector already has `value`
    (case-insensitive): keyword texts and cluster names are unique that way."""
    t = column.table
    query = select(t.c.id).where(
        t.c.account_id == account_id,
        t.c.site_id == site_id,
        t.c.sector_id == sector_id,
        func.lower(column) == value.lower(),
        t.c.deleted_at.is_(None),
    )
    if except_id is not None:
        query = query.where(t.c.id != except_id)
    return (await session.execute(query.limit(1))).first() is not None


async def update_keyword(
    session: AsyncSession, account_id: int, keyword_id: int, values: dict[str, Any]
) -> None:
    await session.execute(
        update(keywords)
        .where(
            keywords.c.account_id == account_id,
            keywords.c.id == keyword_id,
            keywords.c.deleted_at.is_(None),
        )
        .values(**values, updated_at=func.now())
    )


async def soft_delete_keywords(
    session: AsyncSession, vis: Visibility, ids: Sequence[int]
) -> list[dict[str, Any]]:
    k = keywords
    stmt = (
        update(k)
        .where(*vis.conditions(k), k.c.deleted_at.is_(None), k.c.id.in_(list(ids)))
        .values(deleted_at=func.now(), updated_at=func.now())
        .returning(k.c.id, k.c.site_id, k.c.sector_id, k.c.cluster_id)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def set_keyword_status(
    session: AsyncSession, vis: Visibility, ids: Sequence[int], status: str
) -> list[dict[str, Any]]:
    k = keywords
    stmt = (
        update(k)
        .where(
            *vis.conditions(k),
            k.c.deleted_at.is_(None),
            k.c.id.in_(list(ids)),
            k.c.status != status,
        )
        .values(status=status, updated_at=func.now())
        .returning(k.c.id, k.c.site_id, k.c.sector_id, k.c.cluster_id, k.c.status)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def existing_texts(
    session: AsyncSession, account_id: int, site_id: int, sector_id: int, texts: Sequence[str]
) -> set[str]:
    k = keywords
    rows = await session.execute(
        select(func.lower(k.c.keyword)).where(
            k.c.account_id == account_id,
            k.c.site_id == site_id,
            k.c.sector_id == sector_id,
            k.c.deleted_at.is_(None),
            func.lower(k.c.keyword).in_([t.lower() for t in texts]),
        )
    )
    return {r[0] for r in rows}


async def live_keyword_total(session: AsyncSession, account_id: int) -> int:
    total = (
        await session.execute(
            select(func.coalesce(func.sum(counts.c.n), 0)).where(counts.c.account_id == account_id)
        )
    ).scalar_one()
    return int(total)


async def export_keywords(
    session: AsyncSession, vis: Visibility, filters: KeywordFilters, ordering: Ordering, batch: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching keyword, in pages of `batch`, from one server-side cursor."""
    kv = keywords_visible
    ids = (
        select(kv.c.id)
        .where(*vis.conditions(kv), *filters.conditions(kv))
        .order_by(*ordering.clauses(kv))
    ).subquery("ids")
    k = keywords
    query = (
        select(*_keyword_columns(k), clusters.c.name.label("cluster_name"))
        .select_from(
            ids.join(k, k.c.id == ids.c.id).outerjoin(clusters, clusters.c.id == k.c.cluster_id)
        )
        .order_by(*ordering.clauses(k))
    )
    result = await session.stream(query.execution_options(yield_per=batch))
    async for part in result.mappings().partitions(batch):
        yield [dict(r) for r in part]


# --- CSV import through COPY ---------------------------------------------------------

IMPORT_COLUMNS = ("line", "keyword", "volume", "difficulty", "intent", "status")


async def import_rows(
    session: AsyncSession,
    account_id: int,
    site_id: int,
    sector_id: int,
    rows: Sequence[tuple[int, str, int, int, str, str]],
    room: int | None,
) -> tuple[list[dict[str, Any]], list[int], list[int]]:
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


# --- clusters ------------------------------------------------------------------------


async def count_rows(
    session: AsyncSession, t: Table, vis: Visibility, filters: SimpleFilters
) -> int:
    query = select(func.count()).select_from(t).where(*vis.conditions(t), *filters.conditions(t))
    return int((await session.execute(query)).scalar_one())


async def list_rows(
    session: AsyncSession,
    t: Table,
    vis: Visibility,
    filters: SimpleFilters,
    ordering: Ordering,
    offset: int,
    limit: int,
) -> list[dict[str, Any]]:
    query = (
        select(t)
        .where(*vis.conditions(t), *filters.conditions(t))
        .order_by(*ordering.clauses(t))
        .offset(offset)
        .limit(limit)
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


async def get_rows(
    session: AsyncSession, t: Table, vis: Visibility, ids: Iterable[int]
) -> list[dict[str, Any]]:
    query = (
        select(t)
        .where(*vis.conditions(t), t.c.deleted_at.is_(None), t.c.id.in_(list(ids)))
        .order_by(t.c.id)
    )
    return [dict(r) for r in (await session.execute(query)).mappings()]


async def insert_row(session: AsyncSession, t: Table, values: dict[str, Any]) -> dict[str, Any]:
    row = (await session.execute(insert(t).values(**values).returning(t))).mappings().one()
    return dict(row)


async def update_row(
    session: AsyncSession, t: Table, account_id: int, row_id: int, values: dict[str, Any]
) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                update(t)
                .where(t.c.account_id == account_id, t.c.id == row_id, t.c.deleted_at.is_(None))
                .values(**values, updated_at=func.now())
                .returning(t)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def soft_delete_rows(
    session: AsyncSession, t: Table, vis: Visibility, ids: Sequence[int]
) -> list[dict[str, Any]]:
    stmt = (
        update(t)
        .where(*vis.conditions(t), t.c.deleted_at.is_(None), t.c.id.in_(list(ids)))
        .values(deleted_at=func.now(), updated_at=func.now())
        .returning(t)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def cluster_name_taken(
    session: AsyncSession,
    account_id: int,
    site_id: int,
    sector_id: int,
    name: str,
    *,
    except_id: int | None = None,
) -> bool:
    return await _taken_in_sector(session, clusters.c.name, account_id, site_id, sector_id,
                                  name, except_id)


async def sector_clusters(
    session: AsyncSession, account_id: int, sector_id: int
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(clusters)
        .where(
            clusters.c.account_id == account_id,
            clusters.c.sector_id == sector_id,
            clusters.c.deleted_at.is_(None),
        )
        .order_by(clusters.c.id)
    )
    return [dict(r) for r in rows.mappings()]


async def cluster_keyword_texts(
    session: AsyncSession, account_id: int, cluster_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    k = keywords
    rows = await session.execute(
        select(k.c.id, k.c.cluster_id, k.c.keyword, k.c.volume, k.c.difficulty, k.c.intent)
        .where(
            k.c.account_id == account_id,
            k.c.cluster_id.in_(list(cluster_ids)),
            k.c.deleted_at.is_(None),
        )
        .order_by(k.c.volume.desc(), k.c.id)
    )
    out: dict[int, list[dict[str, Any]]] = {cid: [] for cid in cluster_ids}
    for r in rows.mappings():
        out[r["cluster_id"]].append(dict(r))
    return out


async def unassign_cluster_keywords(
    session: AsyncSession, account_id: int, cluster_ids: Sequence[int]
) -> list[int]:
    """Keywords of deleted clusters go back to `active` without a cluster."""
    k = keywords
    stmt = (
        update(k)
        .where(
            k.c.account_id == account_id,
            k.c.cluster_id.in_(list(cluster_ids)),
            k.c.deleted_at.is_(None),
        )
        .values(
            cluster_id=None,
            updated_at=func.now(),
            status=func.coalesce(func.nullif(k.c.status, "mapped"), "active"),
        )
        .returning(k.c.id)
    )
    return [r[0] for r in await session.execute(stmt)]


async def assign_keywords(
    session: AsyncSession, account_id: int, cluster_id: int, keyword_ids: Sequence[int]
) -> None:
    k = keywords
    await session.execute(
        update(k)
        .where(
            k.c.account_id == account_id, k.c.id.in_(list(keyword_ids)), k.c.deleted_at.is_(None)
        )
        .values(cluster_id=cluster_id, status="mapped", updated_at=func.now())
    )


async def refresh_cluster_stats(
    session: AsyncSession, account_id: int, cluster_ids: Iterable[int | None]
) -> None:
    """Recompute the derived figures of clusters from their live keywords and ideas."""
    ids = sorted({cid for cid in cluster_ids if cid is not None})
    if not ids:
        return
    await session.execute(
        text("""
        UPDATE clusters c SET
            keywords_count = s.n, volume = s.v, difficulty = s.d, ideas_count = i.n,
            updated_at = now()
        FROM unnest(CAST(:ids AS bigint[])) AS x(id)
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, coalesce(sum(volume), 0) AS v,
                   coalesce(round(avg(difficulty)), 0)::int AS d
            FROM keywords WHERE cluster_id = x.id AND deleted_at IS NULL) s
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM content_ideas
            WHERE cluster_id = x.id AND deleted_at IS NULL) i
        WHERE c.id = x.id AND c.account_id = :account
    """),
        {"ids": ids, "account": account_id},
    )


# --- ideas ---------------------------------------------------------------------------


async def queue_ideas(
    session: AsyncSession, vis: Visibility, ids: Sequence[int]
) -> list[dict[str, Any]]:
    """`new` ideas among `ids` become `queued` (each exactly once)."""
    t = ideas
    stmt = (
        update(t)
        .where(
            *vis.conditions(t), t.c.deleted_at.is_(None), t.c.id.in_(list(ids)), t.c.status == "new"
        )
        .values(status="queued", queued_at=func.now(), updated_at=func.now())
        .returning(t)
    )
    return [dict(r) for r in (await session.execute(stmt)).mappings()]


async def insert_ideas(session: AsyncSession, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not rows:
        return []
    result = await session.execute(insert(ideas).values(rows).returning(ideas))
    return [dict(r) for r in result.mappings()]
