"""Planner's domain logic, one service per aggregate: keywords, clusters, ideas.

A service acts for one caller in one unit of work: it checks what the caller may touch
(the kernel's directory), reads and writes through the repositories, and publishes what
changed. No HTTP and no commit here: the unit of work commits. Errors are the kernel's
domain errors (mapped once to problem documents).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from libs.common.ai_jobs import AIJobRequests, QueuedJob
from libs.common.auth import AuthClient
from libs.common.directory import CallerService
from libs.common.problems import Conflict, NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import FilterSet, ListQuery, Ordering, Page, Row
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.planner import events
from services.planner.events import AUTO_CLUSTER, AUTO_GENERATE_IDEAS
from services.planner.intent import Intent, classify_intent
from services.planner.keyword_csv import ImportReport, export_csv, parse_keyword_csv
from services.planner.models import DIRECTORY, KeywordStatus
from services.planner.repository import (
    ClusterRepository,
    IdeaRepository,
    KeywordRepository,
    SeedKeywordRepository,
)
from services.planner.settings import PlannerSettings

DUPLICATE_KEYWORD = "This keyword already exists in the sector."
DUPLICATE_CLUSTER = "A cluster with this name exists in the sector."
INTENTS = frozenset(Intent)


def _deleted(rows: Sequence[Row], what: str, *, single: bool) -> int:
    """How many went; deleting one that is not the caller's (or not there) is a 404."""
    if single and not rows:
        raise NotFound(f"{what} not found.")
    return len(rows)


class PlannerService(CallerService):
    """What planner's services share: the caller, the unit of work, the directory, and
    repositories made for what the caller may see (`CallerService`)."""

    directory = DIRECTORY

    def __init__(self, uow: UnitOfWork, principal: Principal, settings: PlannerSettings,
                 auth: AuthClient | None = None, ai_jobs: AIJobRequests | None = None) -> None:
        super().__init__(uow, principal, auth)
        self.settings = settings
        self.auth = auth
        self.ai_jobs = ai_jobs

    async def keywords(self) -> KeywordRepository:
        return await self.repository(KeywordRepository)

    async def clusters(self) -> ClusterRepository:
        return await self.repository(ClusterRepository)

    async def ideas(self) -> IdeaRepository:
        return await self.repository(IdeaRepository)

    def _jobs(self) -> AIJobRequests:
        if self.ai_jobs is None:
            raise RuntimeError("this service was made without AI job requests")
        return self.ai_jobs

    async def _cluster_in_sector(self, cluster_id: int, site_id: int, sector_id: int) -> None:
        found = await (await self.clusters()).get(cluster_id)
        if found is None or found["sector_id"] != sector_id or found["site_id"] != site_id:
            raise ValidationFailed.field("cluster_id", "The cluster must be in the same sector.")



def _within_room(room: int | None, adding: int) -> None:
    if room is not None and adding > room:
        raise PermissionDenied(
            f"Your plan's keyword limit is reached ({room} more allowed, {adding} asked).")


class KeywordService(PlannerService):
    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        return await (await self.keywords()).page(query)

    async def get(self, keyword_id: int) -> Row:
        found = await (await self.keywords()).get(keyword_id)
        if found is None:
            raise NotFound("Keyword not found.")
        return found

    async def _room(self) -> int | None:
        """How many more keywords the plan allows (None: no limit known). Serialises the
        account's keyword-creating transactions so the limit holds under concurrency."""
        state = await self.access.account()
        limit = state["max_keywords"] if state else None
        if not limit or limit <= 0:
            return None
        keywords = await self.keywords()
        await keywords.lock_account()
        return max(limit - await keywords.live_total(), 0)

    async def _check_room(self, adding: int) -> None:
        _within_room(await self._room(), adding)

    async def create(self, values: dict[str, Any]) -> Row:
        site_id, sector_id = values["site_id"], values["sector_id"]
        if values.get("intent") is None:
            values = {**values, "intent": classify_intent(values["keyword"]).value}
        await self.access.site_and_sector(site_id, sector_id)
        if values.get("cluster_id") is not None:
            await self._cluster_in_sector(values["cluster_id"], site_id, sector_id)
        await self._check_room(1)
        keywords = await self.keywords()
        new_ids = await keywords.insert_new([values])
        if not new_ids:
            raise Conflict(DUPLICATE_KEYWORD, errors={"keyword": [DUPLICATE_KEYWORD]})
        await (await self.clusters()).refresh_stats([values.get("cluster_id")])
        row = await self.get(new_ids[0])
        await self.uow.publish(*events.keyword_events("created", self.account_id, [row]))
        return row

    async def update(self, keyword_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(keyword_id)
        if not changes:
            return current
        if ("keyword" in changes or "intent" in changes) and changes.get("intent") is None:
            # New text and no intent given (or `intent: null`): the rules decide.
            text = changes.get("keyword") or current["keyword"]
            changes = {**changes, "intent": classify_intent(text).value}
        keywords = await self.keywords()
        if "keyword" in changes and await keywords.text_taken(
                current["site_id"], current["sector_id"], changes["keyword"],
                except_id=keyword_id):
            raise Conflict(DUPLICATE_KEYWORD, errors={"keyword": [DUPLICATE_KEYWORD]})
        if changes.get("cluster_id") is not None:
            await self._cluster_in_sector(changes["cluster_id"], current["site_id"],
                                          current["sector_id"])
        await keywords.update(keyword_id, changes)
        await (await self.clusters()).refresh_stats(
            [current["cluster_id"], changes.get("cluster_id")])
        row = await self.get(keyword_id)
        await self.uow.publish(*events.keyword_events("updated", self.account_id, [row]))
        return row

    async def delete(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await (await self.keywords()).delete(ids)
        _deleted(deleted, "Keyword", single=single)
        await (await self.clusters()).refresh_stats([d["cluster_id"] for d in deleted])
        await self.uow.publish(*events.keyword_events("deleted", self.account_id, deleted))
        return len(deleted)

    async def set_status(self, ids: Sequence[int], status: str) -> int:
        changed = await (await self.keywords()).set_status(ids, status)
        await self.uow.publish(*events.keyword_events("updated", self.account_id, changed))
        return len(changed)

    async def add_from_seed(self, seed_ids: Sequence[int], site_id: int,
                            sector_id: int) -> dict[str, Any]:
        """Keywords from auth's seed library (asked for the seeds planner has not seen);
        texts the sector holds already are skipped."""
        await self.access.site_and_sector(site_id, sector_id)
        wanted = sorted(set(seed_ids))
        library = SeedKeywordRepository(self.uow.session)
        known = {s["id"]: s for s in await library.get_many(wanted)}
        missing = [i for i in wanted if i not in known]
        if missing and self.auth is not None:
            for doc in await self.auth.seed_keywords(missing):
                await library.upsert(doc)
                known[doc.id] = doc.model_dump()
        usable = [known[i] for i in wanted if i in known and known[i].get("is_active", True)]
        not_found = [i for i in wanted if i not in known or not known[i].get("is_active", True)]
        # Which texts are new is the unique index's rule, PostgreSQL's lower() under the
        # database's collation (ADR 0012), not Python's str.lower(): 'STRAẞE' and 'straße'
        # are one text to Python and two to PostgreSQL under the C collation. So every
        # usable seed is offered and ON CONFLICT on that index skips the texts the sector
        # holds (or the batch already gave); what was inserted is what is counted.
        room = await self._room()
        keywords = await self.keywords()
        new_ids = await keywords.insert_new([{
            "site_id": site_id, "sector_id": sector_id,
            "keyword": " ".join(s["keyword"].split()),
            "volume": int(s.get("volume") or 0),
            "difficulty": min(max(int(s.get("difficulty") or 0), 0), 100),
            "intent": s.get("intent") if s.get("intent") in INTENTS
            else classify_intent(s["keyword"]).value,
            "seed_keyword_id": s["id"], "status": KeywordStatus.ACTIVE,
        } for s in usable])
        # Over the plan's limit: refused, and the unit of work rolls the inserts back.
        _within_room(room, len(new_ids))
        rows = await keywords.get_many(new_ids)
        await self.uow.publish(*events.keyword_events("created", self.account_id, rows))
        return {"created": len(new_ids), "skipped": len(usable) - len(new_ids),
                "not_found": not_found, "keywords": rows}

    async def import_csv(self, data: bytes, site_id: int, sector_id: int) -> ImportReport:
        await self.access.site_and_sector(site_id, sector_id)
        valid, errors = parse_keyword_csv(data)
        total_rows = len(valid) + len(errors)
        room = await self._room()
        inserted, skipped, over = await (await self.keywords()).import_rows(
            site_id, sector_id, valid, room)
        errors += [{"line": line, "errors": {"keyword": ["Your plan's keyword limit is reached."]}}
                   for line in over]
        errors.sort(key=lambda e: e["line"])
        if inserted:
            docs = [{**r, "site_id": site_id, "sector_id": sector_id} for r in inserted]
            await self.uow.publish(*events.keyword_events("created", self.account_id, docs))
        return ImportReport(total_rows=total_rows, imported=len(inserted),
                            skipped_duplicates=len(skipped), over_limit=len(over),
                            failed=len(errors),
                            errors=errors[: self.settings.import_max_error_rows])

    async def export_csv(self, filters: FilterSet, ordering: Ordering) -> AsyncIterator[bytes]:
        """Every keyword the filters select, as CSV chunks, from one server-side cursor."""
        keywords = await self.keywords()
        async for chunk in export_csv(keywords.export(filters, ordering,
                                                      self.settings.export_batch_rows)):
            yield chunk

    async def request_auto_cluster(self, ids: Sequence[int], sector_id: int | None,
                                   topics: Sequence[dict[str, Any]] = ()) -> QueuedJob:
        """Queue auto_cluster; `topics` ([{name, keywords}]) are the user's topics."""
        limit = self.settings.auto_cluster_max_keywords
        wanted = sorted(set(ids))
        if len(wanted) > limit:
            raise ValidationFailed.field("ids", f"At most {limit} keywords per request.")
        found = await (await self.keywords()).get_many(wanted)
        if len(found) != len(wanted):
            raise NotFound("Keyword not found.")
        sectors = {(k["site_id"], k["sector_id"]) for k in found}
        if len(sectors) != 1:
            raise ValidationFailed.field("ids", "All keywords must belong to one sector.")
        site, sector = next(iter(sectors))
        if sector_id is not None and sector_id != sector:
            raise ValidationFailed.field("sector_id", "The keywords are not in this sector.")
        return await self._jobs().queue(
            self.uow, self.principal, AUTO_CLUSTER,
            {"keyword_ids": wanted, "site_id": site, "sector_id": sector,
             "topics": list(topics)}, units=1)


class ClusterService(PlannerService):
    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        return await (await self.clusters()).page(query)

    async def get(self, cluster_id: int) -> Row:
        found = await (await self.clusters()).get(cluster_id)
        if found is None:
            raise NotFound("Cluster not found.")
        return found

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site_and_sector(values["site_id"], values["sector_id"])
        clusters = await self.clusters()
        if await clusters.name_taken(values["site_id"], values["sector_id"], values["name"]):
            raise Conflict(DUPLICATE_CLUSTER, errors={"name": [DUPLICATE_CLUSTER]})
        row = await clusters.insert(values)
        await self.uow.publish(events.cluster_event(row))
        return row

    async def update(self, cluster_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(cluster_id)
        if not changes:
            return current
        clusters = await self.clusters()
        if "name" in changes and await clusters.name_taken(
                current["site_id"], current["sector_id"], changes["name"], except_id=cluster_id):
            raise Conflict(DUPLICATE_CLUSTER, errors={"name": [DUPLICATE_CLUSTER]})
        row = await clusters.update(cluster_id, changes)
        if row is None:
            raise NotFound("Cluster not found.")
        await self.uow.publish(events.cluster_event(row, "updated"))
        return row

    async def delete(self, ids: Sequence[int], *, single: bool = False) -> int:
        """Their keywords go back to `active` without a cluster."""
        deleted = await (await self.clusters()).delete(ids)
        _deleted(deleted, "Cluster", single=single)
        await self.uow.publish(*(events.cluster_event(row, "deleted") for row in deleted))
        if deleted:
            keywords = await self.keywords()
            freed = await keywords.unassign([d["id"] for d in deleted])
            if freed:
                rows = await keywords.get_many(freed)
                await self.uow.publish(*events.keyword_events("updated", self.account_id, rows))
        return len(deleted)

    async def request_ideas(self, ids: Sequence[int], limit: int | None = None) -> QueuedJob:
        """Queue `auto_generate_ideas` for the clusters, at most `limit` of them (the API's
        `auto_generate_ideas_max_clusters` unless said)."""
        limit = limit or self.settings.auto_generate_ideas_max_clusters
        wanted = sorted(set(ids))
        if len(wanted) > limit:
            noun = "cluster" if limit == 1 else "clusters"
            raise ValidationFailed.field("ids", f"At most {limit} {noun} per request.")
        if len(await (await self.clusters()).get_many(wanted)) != len(wanted):
            raise NotFound("Cluster not found.")
        return await self._jobs().queue(
            self.uow, self.principal, AUTO_GENERATE_IDEAS, {"cluster_ids": wanted},
            units=self.settings.ideas_max_per_cluster * len(wanted))


class IdeaService(PlannerService):
    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        return await (await self.ideas()).page(query)

    async def get(self, idea_id: int) -> Row:
        found = await (await self.ideas()).get(idea_id)
        if found is None:
            raise NotFound("Idea not found.")
        return found

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site_and_sector(values["site_id"], values["sector_id"])
        if values.get("cluster_id") is not None:
            await self._cluster_in_sector(values["cluster_id"], values["site_id"],
                                          values["sector_id"])
        row = await (await self.ideas()).insert(values)
        await (await self.clusters()).refresh_stats([row["cluster_id"]])
        return row

    async def update(self, idea_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(idea_id)
        if not changes:
            return current
        if changes.get("cluster_id") is not None:
            await self._cluster_in_sector(changes["cluster_id"], current["site_id"],
                                          current["sector_id"])
        row = await (await self.ideas()).update(idea_id, changes)
        if row is None:
            raise NotFound("Idea not found.")
        await (await self.clusters()).refresh_stats([current["cluster_id"], row["cluster_id"]])
        return row

    async def delete(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await (await self.ideas()).delete(ids)
        _deleted(deleted, "Idea", single=single)
        await (await self.clusters()).refresh_stats([d["cluster_id"] for d in deleted])
        return len(deleted)

    async def queue_to_writer(self, ids: Sequence[int]) -> list[Row]:
        queued = await (await self.ideas()).queue(ids)
        await self.uow.publish(*(events.idea_queued(row) for row in queued))
        return queued
