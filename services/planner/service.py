"""Planner's domain logic: who may see what, keywords, clusters, ideas, AI requests.

No HTTP and no commit here: the endpoint's unit of work commits. Errors are the kernel's
domain errors (mapped once to problem documents).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.ai_jobs import AIJobRequests, QueuedJob
from libs.common.auth import AuthClient
from libs.common.problems import Conflict, NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import Visibility
from libs.common.security import Principal
from libs.common.tenancy import UnitOfWork
from services.planner import events
from services.planner import repository as repo
from services.planner.events import AUTO_CLUSTER, AUTO_GENERATE_IDEAS
from services.planner.models import (
    CLUSTER_STATUSES,
    CONTENT_STRUCTURES,
    CONTENT_TYPES,
    DIRECTORY,
    IDEA_STATUSES,
    INTENTS,
    KEYWORD_STATUSES,
)
from services.planner.repository import (
    KeywordFilters,
    Ordering,
    SimpleFilters,
    clusters,
    ideas,
)
from services.planner.settings import PlannerSettings

SERVICE = "planner"

KEYWORD_ORDERING = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "id": "id",
    "keyword": "keyword",
    "volume": "volume",
    "difficulty": "difficulty",
    "status": "status",
    "seed_keyword__volume": "volume",
    "seed_keyword__difficulty": "difficulty",
}
CLUSTER_ORDERING = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "id": "id",
    "name": "name",
    "keywords_count": "keywords_count",
    "volume": "volume",
    "difficulty": "difficulty",
    "ideas_count": "ideas_count",
    "status": "status",
}
IDEA_ORDERING = {
    "created_at": "created_at",
    "updated_at": "updated_at",
    "id": "id",
    "idea_title": "idea_title",
    "status": "status",
    "estimated_word_count": "estimated_word_count",
}
DEFAULT_ORDERING = Ordering((("created_at", True),))


def parse_ordering(value: str | None, allowed: dict[str, str]) -> Ordering:
    """`-volume,created_at` → ((volume, desc), (created_at, asc)); unknown names are a 400."""
    if not value or not value.strip():
        return DEFAULT_ORDERING
    keys: list[tuple[str, bool]] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        desc = part.startswith("-")
        name = part.lstrip("-")
        if name not in allowed:
            raise ValidationFailed.field(
                "ordering", f"Cannot order by '{name}'. Choose from: {', '.join(sorted(allowed))}."
            )
        column = allowed[name]
        if all(column != seen for seen, _ in keys):
            keys.append((column, desc))
    return Ordering(tuple(keys)) if keys else DEFAULT_ORDERING


def _choice(field: str, value: str | None, allowed: Sequence[str]) -> str | None:
    if value is not None and value not in allowed:
        raise ValidationFailed.field(field, f"'{value}' is not a valid choice.")
    return value


def keyword_filters(
    *,
    status: str | None = None,
    cluster_id: int | None = None,
    intent: str | None = None,
    seed_keyword_id: int | None = None,
    difficulty_min: int | None = None,
    difficulty_max: int | None = None,
    volume_min: int | None = None,
    volume_max: int | None = None,
    site_id: int | None = None,
    sector_id: int | None = None,
    search: str | None = None,
) -> KeywordFilters:
    return KeywordFilters(
        status=_choice("status", status, KEYWORD_STATUSES),
        cluster_id=cluster_id,
        intent=_choice("seed_keyword__intent", intent, INTENTS),
        seed_keyword_id=seed_keyword_id,
        difficulty_min=difficulty_min,
        difficulty_max=difficulty_max,
        volume_min=volume_min,
        volume_max=volume_max,
        site_id=site_id,
        sector_id=sector_id,
        search=(search or "").strip() or None,
    )


@dataclass
class ImportReport:
    total_rows: int
    imported: int
    skipped_duplicates: int
    over_limit: int
    failed: int
    errors: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_rows": self.total_rows,
            "imported": self.imported,
            "skipped_duplicates": self.skipped_duplicates,
            "over_limit": self.over_limit,
            "failed": len(self.errors),
            "errors": self.errors,
        }


ImportRow = tuple[int, str, int, int, str, str]


def parse_keyword_csv(data: bytes) -> tuple[list[ImportRow], list[dict[str, Any]]]:
    """Rows that pass validation (with their line numbers) and the reasons the others fail.

    Header required; `keyword` column required; `volume`, `difficulty`, `intent`, `status`
    optional (defaults 0, 0, informational, active); other columns ignored.
    """
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed.field("file", "The file is not UTF-8 text.") from exc
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration as exc:
        raise ValidationFailed.field("file", "The file is empty.") from exc
    except csv.Error as exc:
        raise ValidationFailed.field("file", f"Not a CSV file: {exc}") from exc
    if "keyword" not in header:
        raise ValidationFailed.field("file", "The header must name a 'keyword' column.")
    col: dict[str, int] = {
        name: header.index(name)
        for name in ("keyword", "volume", "difficulty", "intent", "status")
        if name in header
    }
    valid: list[ImportRow] = []
    errors: list[dict[str, Any]] = []
    line = reader.line_num
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append({"line": reader.line_num, "errors": {"row": [str(exc)]}})
            line = reader.line_num
            continue
        line_no = line + 1
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        problems: dict[str, list[str]] = {}

        def cell(name: str, row: list[str] = record) -> str:
            index = col.get(name)
            return row[index].strip() if index is not None and index < len(row) else ""

        keyword = " ".join(cell("keyword").split())
        if not keyword:
            problems["keyword"] = ["This field may not be blank."]
        elif len(keyword) > 255:
            problems["keyword"] = ["Ensure this field has no more than 255 characters."]
        elif "\\" in keyword or "\t" in keyword:
            problems["keyword"] = ["Tabs and backslashes are not allowed."]
        numbers: dict[str, int] = {}
        for name, high in (("volume", None), ("difficulty", 100)):
            raw = cell(name).replace(",", "")
            if not raw:
                numbers[name] = 0
                continue
            try:
                number = int(float(raw)) if "." in raw else int(raw)
            except ValueError:
                problems[name] = ["A valid integer is required."]
                continue
            if number < 0 or (high is not None and number > high):
                bound = f"between 0 and {high}" if high is not None else "0 or more"
                problems[name] = [f"Must be {bound}."]
                continue
            numbers[name] = number
        intent = cell("intent").lower() or "informational"
        if intent not in INTENTS:
            problems["intent"] = [f"'{intent}' is not a valid choice."]
        status = cell("status").lower() or "active"
        if status not in KEYWORD_STATUSES:
            problems["status"] = [f"'{status}' is not a valid choice."]
        if problems:
            errors.append({"line": line_no, "errors": problems})
            continue
        valid.append((line_no, keyword, numbers["volume"], numbers["difficulty"], intent, status))
    return valid, errors


class Planner:
    """One caller's view of the planner: every method checks what the caller may touch."""

    def __init__(
        self,
        uow: UnitOfWork,
        principal: Principal,
        settings: PlannerSettings,
        auth: AuthClient,
        ai_jobs: AIJobRequests,
    ) -> None:
        self.uow = uow
        self.session = uow.session
        self.principal = principal
        self.settings = settings
        self.auth = auth
        self.ai_jobs = ai_jobs
        self.access = DIRECTORY.access(uow.session, principal, auth)

    @property
    def account_id(self) -> int:
        return self.principal.account_id

    # --- access -----------------------------------------------------------------------

    async def visibility(self) -> Visibility:
        return await self.access.visibility()

    async def site_and_sector(
        self, site_id: int, sector_id: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        return await self.access.site_and_sector(site_id, sector_id)

    async def _cluster_in_sector(self, cluster_id: int, site_id: int, sector_id: int) -> None:
        found = await repo.get_rows(self.session, clusters, await self.visibility(), [cluster_id])
        if not found or found[0]["sector_id"] != sector_id or found[0]["site_id"] != site_id:
            raise ValidationFailed.field("cluster_id", "The cluster must be in the same sector.")

    async def _room_for_keywords(self, adding: int) -> int | None:
        """How many more keywords the plan allows (None: no limit known). Serialises the
        account's keyword-creating transactions so the limit holds under concurrency."""
        state = await self.access.account()
        limit = state["max_keywords"] if state else None
        if not limit or limit <= 0:
            return None
        await repo.lock_account(self.session, self.account_id)
        used = await repo.live_keyword_total(self.session, self.account_id)
        return max(limit - used, 0)

    async def _check_room(self, adding: int) -> None:
        room = await self._room_for_keywords(adding)
        if room is not None and adding > room:
            raise PermissionDenied(
                f"Your plan's keyword limit is reached ({room} more allowed, {adding} asked)."
            )

    # --- keywords ---------------------------------------------------------------------

    async def list_keywords(
        self, filters: KeywordFilters, ordering: Ordering, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        vis = await self.visibility()
        total = await repo.count_keywords(self.session, vis, filters)
        if total == 0 or offset >= total:
            return total, []
        return total, await repo.list_keywords(self.session, vis, filters, ordering, offset, limit)

    async def get_keyword(self, keyword_id: int) -> dict[str, Any]:
        found = await repo.get_keywords(self.session, await self.visibility(), [keyword_id])
        if not found:
            raise NotFound("Keyword not found.")
        return found[0]

    async def create_keyword(self, values: dict[str, Any]) -> dict[str, Any]:
        site_id, sector_id = values["site_id"], values["sector_id"]
        await self.site_and_sector(site_id, sector_id)
        if values.get("cluster_id") is not None:
            await self._cluster_in_sector(values["cluster_id"], site_id, sector_id)
        await self._check_room(1)
        new_id = await repo.insert_keyword(self.session, {**values, "account_id": self.account_id})
        if new_id is None:
            raise Conflict(
                "This keyword already exists in the sector.",
                errors={"keyword": ["This keyword already exists in the sector."]},
            )
        await repo.refresh_cluster_stats(self.session, self.account_id, [values.get("cluster_id")])
        row = await self.get_keyword(new_id)
        await self.uow.publish(*events.keyword_events("created", self.account_id, [row]))
        return row

    async def update_keyword(self, keyword_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        current = await self.get_keyword(keyword_id)
        if not changes:
            return current
        if "keyword" in changes and await repo.keyword_text_taken(
            self.session,
            self.account_id,
            current["site_id"],
            current["sector_id"],
            changes["keyword"],
            except_id=keyword_id,
        ):
            raise Conflict(
                "This keyword already exists in the sector.",
                errors={"keyword": ["This keyword already exists in the sector."]},
            )
        if changes.get("cluster_id") is not None:
            await self._cluster_in_sector(
                changes["cluster_id"], current["site_id"], current["sector_id"]
            )
        await repo.update_keyword(self.session, self.account_id, keyword_id, changes)
        await repo.refresh_cluster_stats(
            self.session, self.account_id, [current["cluster_id"], changes.get("cluster_id")]
        )
        row = await self.get_keyword(keyword_id)
        await self.uow.publish(*events.keyword_events("updated", self.account_id, [row]))
        return row

    async def delete_keywords(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await repo.soft_delete_keywords(self.session, await self.visibility(), ids)
        if single and not deleted:
            raise NotFound("Keyword not found.")
        await repo.refresh_cluster_stats(
            self.session, self.account_id, [d["cluster_id"] for d in deleted]
        )
        await self.uow.publish(*events.keyword_events("deleted", self.account_id, deleted))
        return len(deleted)

    async def bulk_update_status(self, ids: Sequence[int], status: str) -> int:
        changed = await repo.set_keyword_status(self.session, await self.visibility(), ids, status)
        await self.uow.publish(*events.keyword_events("updated", self.account_id, changed))
        return len(changed)

    async def add_from_seed(
        self, seed_ids: Sequence[int], site_id: int, sector_id: int
    ) -> dict[str, Any]:
        await self.site_and_sector(site_id, sector_id)
        wanted = sorted(set(seed_ids))
        known = {s["id"]: s for s in await repo.get_seeds(self.session, wanted)}
        missing = [i for i in wanted if i not in known]
        if missing:
            for doc in await self.auth.seed_keywords(missing):
                await repo.upsert_seed(self.session, doc)
                known[doc.id] = {**doc.model_dump(), "deleted": False}
        usable = [known[i] for i in wanted if i in known and known[i].get("is_active", True)]
        not_found = [i for i in wanted if i not in known or not known[i].get("is_active", True)]
        taken = await repo.existing_texts(
            self.session, self.account_id, site_id, sector_id, [s["keyword"] for s in usable]
        )
        fresh: list[dict[str, Any]] = []
        seen: set[str] = set(taken)
        for s in usable:
            key = s["keyword"].lower()
            if key in seen:
                continue
            seen.add(key)
            fresh.append(
                {
                    "account_id": self.account_id,
                    "site_id": site_id,
                    "sector_id": sector_id,
                    "keyword": " ".join(s["keyword"].split()),
                    "volume": int(s.get("volume") or 0),
                    "difficulty": min(max(int(s.get("difficulty") or 0), 0), 100),
                    "intent": s.get("intent") if s.get("intent") in INTENTS else "informational",
                    "seed_keyword_id": s["id"],
                    "status": "active",
                }
            )
        await self._check_room(len(fresh))
        new_ids = await repo.insert_keywords(self.session, fresh)
        rows = await repo.get_keywords(self.session, await self.visibility(), new_ids)
        await self.uow.publish(*events.keyword_events("created", self.account_id, rows))
        return {
            "created": len(new_ids),
            "skipped": len(usable) - len(new_ids),
            "not_found": not_found,
            "keywords": rows,
        }

    async def import_keywords(self, data: bytes, site_id: int, sector_id: int) -> ImportReport:
        await self.site_and_sector(site_id, sector_id)
        valid, errors = parse_keyword_csv(data)
        total_rows = len(valid) + len(errors)
        room = await self._room_for_keywords(len(valid))
        inserted, skipped, over = await repo.import_rows(
            self.session, self.account_id, site_id, sector_id, valid, room
        )
        for line in over:
            errors.append(
                {"line": line, "errors": {"keyword": ["Your plan's keyword limit is reached."]}}
            )
        errors.sort(key=lambda e: e["line"])
        if inserted:
            docs = [{**r, "site_id": site_id, "sector_id": sector_id} for r in inserted]
            await self.uow.publish(*events.keyword_events("created", self.account_id, docs))
        return ImportReport(
            total_rows=total_rows,
            imported=len(inserted),
            skipped_duplicates=len(skipped),
            over_limit=len(over),
            failed=len(errors),
            errors=errors[: self.settings.import_max_error_rows],
        )

    # --- clusters ---------------------------------------------------------------------

    async def list_rows(
        self, kind: str, filters: SimpleFilters, ordering: Ordering, offset: int, limit: int
    ) -> tuple[int, list[dict[str, Any]]]:
        t = clusters if kind == "cluster" else ideas
        vis = await self.visibility()
        total = await repo.count_rows(self.session, t, vis, filters)
        if total == 0 or offset >= total:
            return total, []
        return total, await repo.list_rows(self.session, t, vis, filters, ordering, offset, limit)

    async def get_cluster(self, cluster_id: int) -> dict[str, Any]:
        found = await repo.get_rows(self.session, clusters, await self.visibility(), [cluster_id])
        if not found:
            raise NotFound("Cluster not found.")
        return found[0]

    async def create_cluster(self, values: dict[str, Any]) -> dict[str, Any]:
        await self.site_and_sector(values["site_id"], values["sector_id"])
        _choice("status", values.get("status"), CLUSTER_STATUSES)
        if await repo.cluster_name_taken(
            self.session, self.account_id, values["site_id"], values["sector_id"], values["name"]
        ):
            raise Conflict(
                "A cluster with this name exists in the sector.",
                errors={"name": ["A cluster with this name exists in the sector."]},
            )
        row = await repo.insert_row(
            self.session, clusters, {**values, "account_id": self.account_id}
        )
        await self.uow.publish(events.cluster_created(row))
        return row

    async def update_cluster(self, cluster_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        current = await self.get_cluster(cluster_id)
        if not changes:
            return current
        if "name" in changes and await repo.cluster_name_taken(
            self.session,
            self.account_id,
            current["site_id"],
            current["sector_id"],
            changes["name"],
            except_id=cluster_id,
        ):
            raise Conflict(
                "A cluster with this name exists in the sector.",
                errors={"name": ["A cluster with this name exists in the sector."]},
            )
        row = await repo.update_row(self.session, clusters, self.account_id, cluster_id, changes)
        if row is None:
            raise NotFound("Cluster not found.")
        return row

    async def delete_clusters(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await repo.soft_delete_rows(self.session, clusters, await self.visibility(), ids)
        if single and not deleted:
            raise NotFound("Cluster not found.")
        if deleted:
            cluster_ids = [d["id"] for d in deleted]
            freed = await repo.unassign_cluster_keywords(self.session, self.account_id, cluster_ids)
            if freed:
                rows = await repo.get_keywords(self.session, await self.visibility(), freed)
                await self.uow.publish(*events.keyword_events("updated", self.account_id, rows))
        return len(deleted)

    # --- ideas ------------------------------------------------------------------------

    async def get_idea(self, idea_id: int) -> dict[str, Any]:
        found = await repo.get_rows(self.session, ideas, await self.visibility(), [idea_id])
        if not found:
            raise NotFound("Idea not found.")
        return found[0]

    async def create_idea(self, values: dict[str, Any]) -> dict[str, Any]:
        await self.site_and_sector(values["site_id"], values["sector_id"])
        _choice("content_type", values.get("content_type"), CONTENT_TYPES)
        _choice("content_structure", values.get("content_structure"), CONTENT_STRUCTURES)
        _choice("status", values.get("status"), IDEA_STATUSES)
        if values.get("cluster_id") is not None:
            await self._cluster_in_sector(
                values["cluster_id"], values["site_id"], values["sector_id"]
            )
        row = await repo.insert_row(self.session, ideas, {**values, "account_id": self.account_id})
        await repo.refresh_cluster_stats(self.session, self.account_id, [row["cluster_id"]])
        return row

    async def update_idea(self, idea_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        current = await self.get_idea(idea_id)
        if not changes:
            return current
        if changes.get("cluster_id") is not None:
            await self._cluster_in_sector(
                changes["cluster_id"], current["site_id"], current["sector_id"]
            )
        row = await repo.update_row(self.session, ideas, self.account_id, idea_id, changes)
        if row is None:
            raise NotFound("Idea not found.")
        await repo.refresh_cluster_stats(
            self.session, self.account_id, [current["cluster_id"], row["cluster_id"]]
        )
        return row

    async def delete_ideas(self, ids: Sequence[int], *, single: bool = False) -> int:
        deleted = await repo.soft_delete_rows(self.session, ideas, await self.visibility(), ids)
        if single and not deleted:
            raise NotFound("Idea not found.")
        await repo.refresh_cluster_stats(
            self.session, self.account_id, [d["cluster_id"] for d in deleted]
        )
        return len(deleted)

    async def queue_to_writer(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        queued = await repo.queue_ideas(self.session, await self.visibility(), ids)
        await self.uow.publish(*(events.idea_queued(row) for row in queued))
        return queued

    # --- AI functions -----------------------------------------------------------------

    async def request_auto_cluster(self, ids: Sequence[int], sector_id: int | None) -> QueuedJob:
        limit = self.settings.auto_cluster_max_keywords
        wanted = sorted(set(ids))
        if len(wanted) > limit:
            raise ValidationFailed.field("ids", f"At most {limit} keywords per request.")
        found = await repo.get_keywords(self.session, await self.visibility(), wanted)
        if len(found) != len(wanted):
            raise NotFound("Keyword not found.")
        sectors = {(k["site_id"], k["sector_id"]) for k in found}
        if len(sectors) != 1:
            raise ValidationFailed.field("ids", "All keywords must belong to one sector.")
        site, sector = next(iter(sectors))
        if sector_id is not None and sector_id != sector:
            raise ValidationFailed.field("sector_id", "The keywords are not in this sector.")
        return await self.ai_jobs.queue(
            self.uow, self.principal, AUTO_CLUSTER,
            {"keyword_ids": wanted, "site_id": site, "sector_id": sector}, units=1)

    async def request_ideas(self, ids: Sequence[int]) -> QueuedJob:
        limit = self.settings.auto_generate_ideas_max_clusters
        wanted = sorted(set(ids))
        if len(wanted) > limit:
            raise ValidationFailed.field("ids", f"At most {limit} clusters per request.")
        found = await repo.get_rows(self.session, clusters, await self.visibility(), wanted)
        if len(found) != len(wanted):
            raise NotFound("Cluster not found.")
        return await self.ai_jobs.queue(
            self.uow, self.principal, AUTO_GENERATE_IDEAS, {"cluster_ids": wanted},
            units=self.settings.ideas_max_per_cluster * len(wanted))
