"""Publishing's domain logic: WordPress integrations (CRUD, connection tests, sync,
structure), publish and unpublish requests (jobs, `services/writer/publishing/jobs.py`),
publications, and the plugin's webhooks.

Who may call: editors and above, and the site's own API key (a token for the site's bot,
`site_id` set, which sees only that site). Every URL a tenant gives goes through the
outbound guard before it is saved (`config.site_url`: a 400 naming it), and again at
every call (`wp_client`). Credentials are encrypted at rest (`SecretBox`) together with the
URL they were saved with, and never answered.

Remote work that fails (the site is down, refuses the credentials...) is recorded (the
integration's `sync_status`/`last_error` and a sync event) in a unit of work of its own,
then answered as a 422 naming the fix: the request's own unit of work rolls back.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import select

from libs.common.crypto import InvalidToken, SecretBox
from libs.common.db import Database
from libs.common.jobs import enqueue
from libs.common.outbound import BoundSecret, HostResolver, OutboundPolicy, check_target_url
from libs.common.problems import NotFound, PermissionDenied, Unprocessable, ValidationFailed
from libs.common.repository import ListQuery, Page, Row
from libs.common.security import Principal
from libs.common.uow import UnitOfWork, unit_of_work
from services.writer import events
from services.writer.models import ContentSource, ContentStatus, TaxonomyType
from services.writer.publishing import connection
from services.writer.publishing import events as publishing_events
from services.writer.publishing import sync as wp_sync
from services.writer.publishing import webhooks as signatures
from services.writer.publishing.models import SyncKind, SyncStatus
from services.writer.publishing.repository import (
    IntegrationRepository,
    PublicationRepository,
    SyncEventRepository,
    WebhookReceipts,
)
from services.writer.publishing.wp_client import WordPressClient, WordPressError, WordPressSite
from services.writer.repository import ContentRepository, TaxonomyRepository
from services.writer.service.common import Platform, WriterService
from services.writer.service.library import slugify

CREDENTIALS_PURPOSE = "writer-wordpress-credentials"
WEBHOOK_SECRET_PURPOSE = "writer-wordpress-webhook-secret"
PUBLISH_FUNCTION = "publish"
UNPUBLISH_FUNCTION = "unpublish"
T = TypeVar("T")


def credentials_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, CREDENTIALS_PURPOSE)


def webhook_box(secret_key: str) -> SecretBox:
    return SecretBox(secret_key, WEBHOOK_SECRET_PURPOSE)


def may_publish(principal: Principal) -> bool:
    """Editors and above, or the site's own API key (its bot's token names the site)."""
    return principal.has_role("editor") or (
        principal.site_id is not None and principal.role == "system_bot")


def seal_credentials(box: SecretBox, username: str, app_password: str, url: str) -> str:
    bound = BoundSecret.bind(app_password, url)
    return box.encrypt(orjson.dumps({"username": username,
                                     "app_password": bound.to_dict()}).decode())


def open_credentials(box: SecretBox, sealed: str | None) -> tuple[str, BoundSecret] | None:
    if not sealed:
        return None
    try:
        data = orjson.loads(box.decrypt(sealed))
    except InvalidToken:
        return None
    return str(data["username"]), BoundSecret.from_dict(data["app_password"])


def site_of(integration: Row, box: SecretBox) -> WordPressSite:
    """The saved integration as the publisher's `WordPressSite` (400 naming `credentials`
    when none are saved or they cannot be read any more)."""
    opened = open_credentials(box, integration["credentials"])
    if opened is None:
        raise ValidationFailed.field(
            "credentials", "Save the WordPress username and Application Password first.")
    username, password = opened
    config = integration["config"] or {}
    seo = config.get("seo_fields")
    return WordPressSite(
        key=str(integration["id"]), url=str(config["site_url"]), username=username,
        app_password=password,
        rest_style="query" if config.get("rest_style") == "query" else "pretty",
        seo_fields=frozenset(seo) if isinstance(seo, list) else None)


class PublishingService(WriterService):
    """What integrations, publications and webhooks share: the guard's policy and
    resolver, the secret boxes, the database for failure records."""

    def __init__(self, uow: UnitOfWork, principal: Principal, platform: Platform, *,
                 db: Database | None = None, resolver: HostResolver | None = None) -> None:
        super().__init__(uow, principal, platform)
        self.db = db
        self.resolver = resolver
        self.policy = OutboundPolicy.from_settings(platform.settings)
        self.box = credentials_box(platform.settings.secret_key)
        self.webhook_box = webhook_box(platform.settings.secret_key)

    async def integrations(self) -> IntegrationRepository:
        return await self.repository(IntegrationRepository)

    async def integration(self, integration_id: int) -> Row:
        found = await (await self.integrations()).get(integration_id)
        if found is None:
            raise NotFound("Integration not found.")
        return found

    def public(self, row: Row) -> Row:
        """An integration as answered: no credentials, the webhook secret in clear."""
        opened = open_credentials(self.box, row["credentials"])
        out = {k: v for k, v in row.items() if k not in ("credentials", "deleted_at")}
        out["has_credentials"] = opened is not None
        out["username_hint"] = (opened[0][:2] + "…") if opened else None
        out["webhook_secret"] = self.webhook_box.decrypt(row["webhook_secret"])
        return out

    async def event(self, integration: Row, kind: SyncKind, *, success: bool,
                    started: float, error: str | None = None,
                    details: Mapping[str, Any] | None = None,
                    uow: UnitOfWork | None = None) -> None:
        rows = SyncEventRepository((uow or self.uow).session, await self.visibility())
        await rows.insert({
            "site_id": integration["site_id"], "integration_id": integration["id"],
            "kind": kind, "success": success, "error": error,
            "duration_ms": int((time.perf_counter() - started) * 1000),
            "details": dict(details or {})})

    async def failed(self, integration: Row, kind: SyncKind, started: float,
                     message: str, *, sync_state: bool = False) -> Unprocessable:
        """Records a remote failure in its own unit of work (the request's rolls back),
        and gives the 422 to raise."""
        if self.db is not None:
            async with unit_of_work(self.db, self.principal.scope) as uow:
                await self.event(integration, kind, success=False, started=started,
                                 error=message, uow=uow)
                if sync_state:
                    await IntegrationRepository(uow.session, await self.visibility()).update(
                        integration["id"], {"sync_status": SyncStatus.FAILED,
                                            "last_error": message})
        return Unprocessable(message)

    async def remote(self, integration: Row, kind: SyncKind, started: float,
                     work: Callable[[WordPressClient], Awaitable[T]], *,
                     sync_state: bool = False) -> T:
        site = site_of(integration, self.box)
        try:
            async with WordPressClient(site, policy=self.policy, resolver=self.resolver) as c:
                return await work(c)
        except WordPressError as exc:
            raise await self.failed(integration, kind, started, exc.message,
                                    sync_state=sync_state) from None


class IntegrationService(PublishingService):
    """`/api/v1/integration/integrations/`."""

    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        found = await (await self.integrations()).page(query)
        return Page(found.count, [self.public(r) for r in found.rows])

    async def get(self, integration_id: int) -> Row:
        return self.public(await self.integration(integration_id))

    async def _checked_url(self, url: str) -> str:
        return await check_target_url(url, field="config.site_url", policy=self.policy,
                                      resolver=self.resolver)

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site(values["site_id"])
        repo = await self.integrations()
        if await repo.of_site(values["site_id"]) is not None:
            raise ValidationFailed.field("site_id", "The site already has a WordPress integration.")
        config = dict(values["config"])
        config["site_url"] = await self._checked_url(config["site_url"])
        creds = values.get("credentials")
        row = await repo.insert({
            "site_id": values["site_id"], "platform": "wordpress", "config": config,
            "credentials": seal_credentials(self.box, creds["username"], creds["app_password"],
                                            config["site_url"]) if creds else None,
            "webhook_secret": self.webhook_box.encrypt(
                "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()),
            "is_active": values.get("is_active", True),
            "sync_enabled": values.get("sync_enabled", False),
            "sync_status": SyncStatus.IDLE})
        return self.public(row)

    async def update(self, integration_id: int, changes: dict[str, Any]) -> Row:
        current = await self.integration(integration_id)
        values: dict[str, Any] = {k: changes[k] for k in ("is_active", "sync_enabled")
                                  if changes.get(k) is not None}
        url = str(current["config"].get("site_url", ""))
        if changes.get("config") is not None:
            config = {**current["config"], **changes["config"]}
            config["site_url"] = await self._checked_url(config["site_url"])
            if config["site_url"] != url and changes.get("credentials") is None:
                raise ValidationFailed.field(
                    "credentials", "A new site URL needs the Application Password again.")
            if config["site_url"] != url:
                config.pop("rest_style", None)
                config.pop("seo_fields", None)
            values["config"] = config
            url = config["site_url"]
        creds = changes.get("credentials")
        if creds is not None:
            values["credentials"] = seal_credentials(self.box, creds["username"],
                                                     creds["app_password"], url)
        if not values:
            return self.public(current)
        row = await (await self.integrations()).update(integration_id, values)
        assert row is not None
        return self.public(row)

    async def delete(self, ids: list[int], *, single: bool = False) -> int:
        deleted = await (await self.integrations()).delete(ids)
        if single and not deleted:
            raise NotFound("Integration not found.")
        return len(deleted)

    # -- connection ------------------------------------------------------------------------

    async def test_unsaved(self, site_url: str, username: str, app_password: str
                           ) -> dict[str, Any]:
        """The collection-level `test-connection/`: the checks, nothing saved."""
        url = await check_target_url(site_url, field="site_url", policy=self.policy,
                                     resolver=self.resolver)
        site = WordPressSite(key="unsaved", url=url, username=username,
                             app_password=BoundSecret.bind(app_password, url))
        report = await connection.check_connection(site, policy=self.policy,
                                                   resolver=self.resolver)
        return report.as_dict()

    async def test_connection(self, integration_id: int) -> dict[str, Any]:
        """The checks against the saved site; what they learn (REST style, Yoast's
        fields) is kept in `config`."""
        integration = await self.integration(integration_id)
        started = time.perf_counter()
        site = site_of(integration, self.box)
        report = await connection.check_connection(site, policy=self.policy,
                                                   resolver=self.resolver)
        result = report.as_dict()
        changes: dict[str, Any] = {"last_error": None if report.ok else _first_failure(result)}
        if report.ok:
            changes["config"] = {**integration["config"], "rest_style": report.rest_style,
                                 "seo_fields": sorted(report.seo_fields)}
        await (await self.integrations()).update(integration_id, changes)
        await self.event(integration, SyncKind.TEST_CONNECTION, success=report.ok,
                         started=started, error=changes["last_error"],
                         details={"checks": result["checks"]})
        return result

    # -- sync ------------------------------------------------------------------------------

    async def sync(self, integration_id: int, *, import_posts: bool = True,
                   statuses: str = "publish", kind: SyncKind = SyncKind.SYNC) -> dict[str, Any]:
        """Categories and tags both ways (the site's become the platform's taxonomies with
        their ids; the platform's missing on the site are created there), then the site's
        posts imported as content with source `wordpress` (those the platform published
        itself are linked, not imported twice)."""
        integration = await self.integration(integration_id)
        self._active(integration)
        started = time.perf_counter()
        site_id = integration["site_id"]
        taxonomies = await self.repository(TaxonomyRepository)
        contents = await self.repository(ContentRepository)
        sector_id = await self._sector_of(site_id) if import_posts else None
        wanted_statuses = "publish,future,draft,pending,private" if statuses == "any" \
            else statuses

        async def work(client: WordPressClient) -> dict[str, Any]:
            counts = {"terms_pulled": 0, "terms_pushed": 0, "posts_imported": 0,
                      "posts_updated": 0, "posts_linked": 0}
            if kind != SyncKind.SYNC_CONTENT:
                terms = await wp_sync.pull_terms(client)
                counts.update(await self._sync_terms(client, taxonomies, site_id, terms))
            else:
                terms = await wp_sync.pull_terms(client)
            if import_posts and sector_id is not None:
                async for item in wp_sync.import_posts(client, terms, statuses=wanted_statuses):
                    outcome = await self._import(contents, site_id, sector_id, item)
                    counts[f"posts_{outcome}"] += 1
            return counts

        counts = await self.remote(integration, kind, started, work, sync_state=True)
        now = datetime.now(UTC)
        await (await self.integrations()).update(integration_id, {
            "sync_status": SyncStatus.SUCCESS, "last_sync_at": now, "last_error": None})
        await self.event(integration, kind, success=True, started=started, details=counts)
        await self.uow.publish(publishing_events.integration_synced(integration, kind, counts))
        return {"integration_id": integration_id, "sync_status": SyncStatus.SUCCESS,
                "last_sync_at": now, **counts}

    async def _sector_of(self, site_id: int) -> int:
        sectors = self.access.repo.t.sectors
        row = (await self.uow.session.execute(
            select(sectors.c.id).where(sectors.c.account_id == self.account_id,
                                       sectors.c.site_id == site_id,
                                       sectors.c.deleted.is_(False))
            .order_by(sectors.c.is_active.desc(), sectors.c.id).limit(1))).first()
        if row is None:
            raise ValidationFailed.field("site_id", "The site has no sector to import posts into.")
        return int(row[0])

    async def _sync_terms(self, client: WordPressClient, taxonomies: TaxonomyRepository,
                          site_id: int, terms: wp_sync.SiteTerms) -> dict[str, int]:
        t = taxonomies.table
        local = await taxonomies.find(t.c.site_id == site_id)
        pulled = pushed = 0
        for remote_tax, local_type in (("categories", TaxonomyType.CATEGORY),
                                       ("tags", TaxonomyType.TAG)):
            mine = [r for r in local if r["taxonomy_type"] == local_type]
            remote = terms.categories if remote_tax == "categories" else terms.tags
            remote_slugs = {x.slug for x in remote}
            missing = [r["name"] for r in mine if r["slug"] not in remote_slugs
                       and not r["external_id"]]
            ids = await wp_sync.push_terms(client, remote_tax, missing, terms) if missing else {}
            pushed += len(ids)
            by_slug = {r["slug"]: r for r in mine}
            by_name = {r["name"].casefold(): r for r in mine}
            for term in remote:
                row = by_slug.get(term.slug) or by_name.get(term.name.casefold())
                if row is None:
                    await taxonomies.insert({
                        "site_id": site_id, "name": term.name[:255],
                        "slug": (term.slug or slugify(term.name))[:255],
                        "taxonomy_type": local_type, "description": term.description,
                        "external_id": str(term.id), "external_taxonomy": remote_tax})
                    pulled += 1
                elif row["external_id"] != str(term.id):
                    await taxonomies.update(row["id"], {"external_id": str(term.id),
                                                        "external_taxonomy": remote_tax})
            for name, term_id in ids.items():
                row = by_name.get(name.casefold())
                if row is not None:
                    await taxonomies.update(row["id"], {"external_id": str(term_id),
                                                        "external_taxonomy": remote_tax})
        return {"terms_pulled": pulled, "terms_pushed": pushed}

    async def _import(self, contents: ContentRepository, site_id: int, sector_id: int,
                      item: wp_sync.ImportedPost) -> str:
        post, c = item.post, contents.table
        external = {"external_id": str(post.id), "external_url": post.link or None,
                    "external_status": post.status[:32]}
        if item.igny8_content_id is not None:
            mine = await contents.get(item.igny8_content_id)
            if mine is not None and mine["site_id"] == site_id:
                await contents.update(mine["id"], external)
                return "linked"
        found = await contents.find(c.c.site_id == site_id, c.c.external_id == str(post.id),
                                    c.c.source == ContentSource.WORDPRESS)
        values = {"title": (post.title or f"Post {post.id}")[:255], "html": item.html,
                  "slug": _slug(post.slug), "categories": list(item.categories),
                  "tags": list(item.tags), **external,
                  "status": ContentStatus.PUBLISHED if post.status == "publish"
                  else ContentStatus.DRAFT}
        if found:
            if found[0]["html"] != item.html or found[0]["title"] != values["title"]:
                await contents.revise(found[0]["id"], values)
            else:
                await contents.update(found[0]["id"], external)
            return "updated"
        await contents.insert({**values, "site_id": site_id, "sector_id": sector_id,
                               "source": ContentSource.WORDPRESS,
                               "word_count": len(item.html.split())})
        return "imported"

    async def sync_status(self, integration_id: int) -> dict[str, Any]:
        integration = await self.integration(integration_id)
        recent = await (await self.repository(SyncEventRepository)).recent(integration_id, 10)
        return {"integration_id": integration_id,
                **{k: integration[k] for k in ("sync_status", "sync_enabled", "last_sync_at",
                                               "last_error", "is_active")},
                "recent_events": [_event_out(e) for e in recent]}

    async def update_structure(self, integration_id: int) -> dict[str, Any]:
        """Reads the site's post types, categories and tags into `config.structure`."""
        integration = await self.integration(integration_id)
        self._active(integration)
        started = time.perf_counter()

        async def work(client: WordPressClient) -> dict[str, Any]:
            types = await client.content_types()
            terms = await wp_sync.pull_terms(client)
            return {
                "post_types": sorted(k for k, v in types.items()
                                     if isinstance(v, dict) and v.get("rest_base")),
                "categories": [{"id": t.id, "name": t.name, "slug": t.slug,
                                "parent": t.parent} for t in terms.categories],
                "tags": [{"id": t.id, "name": t.name, "slug": t.slug} for t in terms.tags],
                "updated_at": datetime.now(UTC).isoformat()}

        structure = await self.remote(integration, SyncKind.UPDATE_STRUCTURE, started, work)
        await (await self.integrations()).update(
            integration_id, {"config": {**integration["config"], "structure": structure}})
        await self.event(integration, SyncKind.UPDATE_STRUCTURE, success=True, started=started,
                         details={"categories": len(structure["categories"]),
                                  "tags": len(structure["tags"])})
        return structure

    async def content_types(self, integration_id: int) -> dict[str, Any]:
        integration = await self.integration(integration_id)
        self._active(integration)
        started = time.perf_counter()
        types = await self.remote(integration, SyncKind.UPDATE_STRUCTURE, started,
                                  lambda client: client.content_types())
        return {"content_types": [
            {"slug": slug, "name": v.get("name"), "rest_base": v.get("rest_base"),
             "hierarchical": bool(v.get("hierarchical")),
             "taxonomies": list(v.get("taxonomies") or ())}
            for slug, v in sorted(types.items()) if isinstance(v, dict)]}

    async def debug_status(self, integration_id: int) -> dict[str, Any]:
        integration = await self.integration(integration_id)
        recent = await (await self.repository(SyncEventRepository)).recent(integration_id, 20)
        publications = await (await self.repository(PublicationRepository)).find(
            PublicationRepository.table.c.integration_id == integration_id)
        counts: dict[str, int] = {}
        for p in publications:
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        public = self.public(integration)
        public.pop("webhook_secret")
        return {"integration": public, "publications": counts,
                "recent_events": [_event_out(e) for e in recent],
                "outbound_private_allowed": self.policy.allow_private}

    @staticmethod
    def _active(integration: Row) -> None:
        if not integration["is_active"]:
            raise ValidationFailed.field("is_active", "The integration is not active.")


def _first_failure(report: dict[str, Any]) -> str:
    for check in report["checks"]:
        if not check["ok"] and check["required"]:
            return " ".join(x for x in (check["message"], check["fix"]) if x)
    return "The connection test did not pass."


def _event_out(e: Row) -> dict[str, Any]:
    return {k: e[k] for k in ("id", "kind", "success", "error", "duration_ms", "details",
                              "created_at")}


def _slug(value: str) -> str:
    cleaned = slugify(value or "")
    return cleaned[:255]


class PublicationService(PublishingService):
    """Publish and unpublish requests (jobs) and `/api/v1/publisher/publications/`."""

    async def page(self, query: ListQuery[Any]) -> Page[Row]:
        return await (await self.repository(PublicationRepository)).page(query)

    async def get(self, publication_id: int) -> Row:
        found = await (await self.repository(PublicationRepository)).get(publication_id)
        if found is None:
            raise NotFound("Publication not found.")
        return found

    async def _target(self, content_id: int, integration_id: int | None) -> tuple[Row, Row]:
        content = await (await self.repository(ContentRepository)).get(content_id)
        if content is None:
            raise NotFound("Content not found.")
        repo = await self.integrations()
        if integration_id is not None:
            integration = await repo.get(integration_id)
            if integration is None or integration["site_id"] != content["site_id"]:
                raise ValidationFailed.field(
                    "integration_id", "No such integration for the content's site.")
        else:
            integration = await repo.of_site(content["site_id"])
            if integration is None:
                raise ValidationFailed.field(
                    "integration_id", "The content's site has no WordPress integration.")
        if not integration["is_active"]:
            raise ValidationFailed.field("integration_id", "The integration is not active.")
        site_of(integration, self.box)  # 400 naming `credentials` when there are none
        return content, integration

    async def request(self, function: str, content_id: int, data: dict[str, Any],
                      integration_id: int | None) -> str:
        content, integration = await self._target(content_id, integration_id)
        task_id = await enqueue(self.uow.session, service=events.SERVICE, function=function,
                                account_id=self.account_id, data={
                                    **data, "content_id": content_id,
                                    "integration_id": integration["id"]})
        await (await self.repository(PublicationRepository)).ensure(
            site_id=content["site_id"], integration_id=integration["id"],
            content_id=content_id, task_id=str(task_id))
        ai_jobs = self.platform.ai_jobs
        if ai_jobs is not None and ai_jobs.progress is not None:
            await ai_jobs.progress.pending(task_id, self.account_id)
        return str(task_id)

    async def publish(self, content_id: int, status: str, date_gmt: datetime | None,
                      integration_id: int | None) -> str:
        if status == "future" and date_gmt is None:
            raise ValidationFailed.field("date_gmt", "A scheduled publish needs date_gmt.")
        when = None
        if date_gmt is not None:
            moment = date_gmt if date_gmt.tzinfo else date_gmt.replace(tzinfo=UTC)
            when = moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()
        return await self.request(PUBLISH_FUNCTION, content_id,
                                  {"status": status, "date_gmt": when}, integration_id)

    async def unpublish(self, content_id: int, trash: bool, integration_id: int | None) -> str:
        return await self.request(UNPUBLISH_FUNCTION, content_id, {"trash": trash},
                                  integration_id)


class WebhookService(PublishingService):
    """The plugin's webhooks: the site's API key, then the Standard Webhooks signature
    with the integration's secret (timestamp within 5 minutes, each id once)."""

    async def _verified(self, headers: Mapping[str, str], body: bytes) -> Row:
        site_id = self.principal.site_id
        if site_id is None:
            raise PermissionDenied("Webhooks are sent with the site's API key.")
        integration = await (await self.integrations()).of_site(site_id)
        if integration is None:
            raise NotFound("The site has no WordPress integration.")
        secret = self.webhook_box.decrypt(integration["webhook_secret"])
        replays = WebhookReceipts(self.uow.session, self.account_id, integration["id"])
        await signatures.verify(secret, headers, body, replays)
        return integration

    async def _content(self, integration: Row, content_id: int | None,
                       post_id: int | None) -> Row:
        contents = await self.repository(ContentRepository)
        c = contents.table
        if content_id is not None:
            found = await contents.get(content_id)
            if found is not None and found["site_id"] == integration["site_id"]:
                return found
        elif post_id is not None:
            rows = await contents.find(c.c.site_id == integration["site_id"],
                                       c.c.external_id == str(post_id))
            if rows:
                return rows[0]
        raise NotFound("Content not found.")

    async def status(self, headers: Mapping[str, str], raw: bytes,
                     parse: Callable[[bytes], Any]) -> dict[str, Any]:
        started = time.perf_counter()
        integration = await self._verified(headers, raw)
        body = parse(raw)
        content = await self._content(integration, body.content_id, body.post_id)
        changes: dict[str, Any] = {"external_status": body.status[:32]}
        if body.post_id is not None:
            changes["external_id"] = str(body.post_id)
        if body.url:
            changes["external_url"] = body.url
        if body.status == "publish":
            changes["status"] = ContentStatus.PUBLISHED
        elif content["status"] == ContentStatus.PUBLISHED:
            changes["status"] = ContentStatus.REVIEW
        row = await (await self.repository(ContentRepository)).update(content["id"], changes)
        assert row is not None
        await self.event(integration, SyncKind.WEBHOOK_STATUS, success=True, started=started,
                         details={"content_id": content["id"], "status": body.status})
        await self.uow.publish(events.content_updated(row, "external_status"))
        return _content_state(row)

    async def metadata(self, headers: Mapping[str, str], raw: bytes,
                       parse: Callable[[bytes], Any]) -> dict[str, Any]:
        started = time.perf_counter()
        integration = await self._verified(headers, raw)
        body = parse(raw)
        content = await self._content(integration, body.content_id, body.post_id)
        fields = body.model_dump(exclude_unset=True, exclude_none=True,
                                 exclude={"content_id", "post_id", "url"})
        if "slug" in fields:
            fields["slug"] = _slug(fields["slug"])
        repo = await self.repository(ContentRepository)
        row = content
        if fields:
            revised = await repo.revise(content["id"], fields)
            assert revised is not None
            row = revised
        if body.url:
            updated = await repo.update(content["id"], {"external_url": body.url})
            assert updated is not None
            row = updated
        await self.event(integration, SyncKind.WEBHOOK_METADATA, success=True, started=started,
                         details={"content_id": content["id"], "fields": sorted(fields)})
        await self.uow.publish(events.content_updated(row, "external_metadata"))
        return _content_state(row)


def _content_state(row: Row) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "title", "slug", "status", "external_id", "external_url",
                                "external_status", "meta_title", "meta_description",
                                "categories", "tags", "revision")}

