"""What tests of publishing, writer's and automation's, do to a real WordPress through
writer's API: save the site as an integration, store a content's generated image, and
read back what the site holds through WordPress's own REST API."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common.db import Database, TenantScope
from libs.common.repository import Visibility
from libs.common.storage import build_storage, new_key
from libs.common.testing.factories import Tenant
from libs.common.testing.wordpress import WordPressServer
from libs.common.uow import unit_of_work
from services.writer.repository import ImageRepository
from services.writer.settings import WriterSettings
from services.writer.tests.conftest import create
from services.writer.tests.publishing.conftest import png


def wp_body(t: Tenant, wordpress: WordPressServer, **extra: Any) -> dict[str, Any]:
    """An integration of the tenant's site with the WordPress, its admin's Application
    Password saved; `extra` replaces fields of the body."""
    site = wordpress.site
    return {"site_id": t.site_id, "platform": "wordpress", "config": {"site_url": site.url},
            "credentials": {"username": site.username, "app_password": site.app_password},
            **extra}


async def integrate(client: httpx.AsyncClient, t: Tenant, wordpress: WordPressServer,
                    **extra: Any) -> dict[str, Any]:
    """The integration `wp_body` describes, made through writer's API (`client`)."""
    (row,) = await create(client, t, "integration/integrations/",
                          wp_body(t, wordpress, **extra))
    return row


async def wp_get(wordpress: WordPressServer, path: str, **params: Any) -> Any:
    """WordPress's own REST API, as an editor on the site would read it."""
    site = wordpress.site
    async with httpx.AsyncClient(auth=(site.username, site.app_password)) as c:
        r = await c.get(f"{site.url}/wp-json{path}", params={"context": "edit", **params})
        assert r.status_code == 200, r.text
        return r.json()


async def store_image(settings: WriterSettings, t: Tenant, db: Database, content_id: int,
                      image_type: str, position: int, seed: int) -> dict[str, Any]:
    """A generated image of a content, its file in the platform's storage."""
    data = png(seed, (64, 48))
    storage = build_storage(settings)
    try:
        key = new_key(t.account_id, "images", "image/png")
        await storage.put(key, data, account_id=t.account_id, content_type="image/png")
    finally:
        await storage.aclose()
    async with unit_of_work(db, TenantScope.account(t.account_id)) as uow:
        return await ImageRepository(uow.session, Visibility(t.account_id)).insert({
            "site_id": t.site_id, "sector_id": t.sector_id, "content_id": content_id,
            "image_type": image_type, "position": position, "prompt": f"picture {seed}",
            "alt_text": f"Picture {seed}", "status": "generated", "storage_key": key,
            "mime_type": "image/png", "file_size": len(data), "provider": "local"})


def image_url(settings: WriterSettings, image_id: int) -> str:
    return f"{settings.public_url}/api/v1/writer/images/{image_id}/download/"
