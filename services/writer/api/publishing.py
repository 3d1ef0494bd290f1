"""Publishing's routes on writer (the gateway routes these prefixes here):

- `/api/v1/integration/integrations/`: CRUD and the actions `{id}/test_connection/`,
  `test-connection/` (nothing saved), `{id}/sync/`, `{id}/sync_status/`,
  `{id}/update-structure/`, `{id}/get_content_types/`, `{id}/debug_status/`,
  `{id}/sync_wordpress_content/`. Editors and above, or the site's API key.
- `POST /api/v1/writer/content/{id}/publish/` and `.../unpublish/`: jobs (`{task_id}`).
- `GET /api/v1/publisher/publications/` (filters `site_id`, `content_id`, `status`).
- `POST /api/v1/integration/webhooks/wordpress/status/` and `.../metadata/`, also at
  `/api/v1/webhooks/wordpress/...`: the site's API key and a signed body.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from libs.common.ids import Id
from libs.common.pagination import page_response
from libs.common.problems import (
    Conflict,
    PermissionDenied,
    ValidationFailed,
    answers,
    validation_errors,
)
from libs.common.resources import resource_routes
from libs.common.security import Principal
from libs.common.tenancy import get_principal, service_dependency
from libs.common.uow import UnitOfWork
from services.writer.publishing import schemas as s
from services.writer.publishing.models import SyncKind, post_id_text
from services.writer.service.publishing import (
    IntegrationService,
    PublicationService,
    PublishingService,
    WebhookService,
    may_publish,
)

P = TypeVar("P", bound=PublishingService)


async def editor_or_site_key(principal: Principal = Depends(get_principal)) -> Principal:
    if not may_publish(principal):
        raise PermissionDenied("You do not have permission to perform this action.")
    return principal


def _service(kind: type[P], *, editor: bool = True) -> Any:
    def build(request: Request, uow: UnitOfWork, principal: Principal) -> P:
        state = request.app.state
        return kind(uow, principal, state.platform, db=state.db,
                    resolver=getattr(state, "outbound_resolver", None))

    return Depends(service_dependency(build, editor_or_site_key if editor else get_principal))


Integrations = Annotated[IntegrationService, _service(IntegrationService)]
Publications = Annotated[PublicationService, _service(PublicationService, editor=False)]
Publisher = Annotated[PublicationService, _service(PublicationService)]
Webhooks = Annotated[WebhookService, _service(WebhookService, editor=False)]

integration = APIRouter(prefix="/api/v1/integration", tags=["integration"])
publisher = APIRouter(prefix="/api/v1/publisher", tags=["publisher"])
content = APIRouter(prefix="/api/v1/writer", tags=["writer"])
webhooks = APIRouter(tags=["integration"])

BASE = "/integrations/"


@integration.post(BASE + "test-connection/")
async def test_connection_unsaved(body: s.ConnectionTest, svc: Integrations) -> dict[str, Any]:
    """The connection checks for a site not saved yet; nothing is saved."""
    return await svc.test_unsaved(body.config.site_url, body.credentials.username,
                                  body.credentials.app_password)


@integration.post(BASE + "{row_id}/test_connection/")
async def test_connection(row_id: Id, svc: Integrations) -> dict[str, Any]:
    """Reachable, REST API on, credentials valid, `upload_files`/`publish_posts`, Yoast's
    fields writable; each failure names its fix."""
    return await svc.test_connection(row_id)


@integration.post(BASE + "{row_id}/sync/")
async def sync_integration(row_id: Id, svc: Integrations,
                           body: s.SyncRequest | None = None) -> dict[str, Any]:
    """Categories and tags both ways; the site's posts imported as content."""
    body = body or s.SyncRequest()
    return await svc.sync(row_id, import_posts=body.import_posts, statuses=body.statuses)


@integration.post(BASE + "{row_id}/sync_wordpress_content/")
async def sync_wordpress_content(row_id: Id, svc: Integrations,
                                 body: s.SyncRequest | None = None) -> dict[str, Any]:
    """The site's posts imported as content with source `wordpress` (terms not pushed)."""
    body = body or s.SyncRequest()
    return await svc.sync(row_id, import_posts=True, statuses=body.statuses,
                          kind=SyncKind.SYNC_CONTENT)


@integration.get(BASE + "{row_id}/sync_status/")
async def sync_status(row_id: Id, svc: Integrations) -> dict[str, Any]:
    return await svc.sync_status(row_id)


@integration.post(BASE + "{row_id}/update-structure/")
async def update_structure(row_id: Id, svc: Integrations) -> dict[str, Any]:
    """The site's post types, categories and tags, kept in `config.structure`."""
    return await svc.update_structure(row_id)


@integration.get(BASE + "{row_id}/get_content_types/")
async def get_content_types(row_id: Id, svc: Integrations) -> dict[str, Any]:
    return await svc.content_types(row_id)


@integration.get(BASE + "{row_id}/debug_status/")
async def debug_status(row_id: Id, svc: Integrations) -> dict[str, Any]:
    return await svc.debug_status(row_id)


resource_routes(integration, BASE, name="integration", reader=Integrations, editor=Integrations,
                out=s.IntegrationOut, create=s.IntegrationCreate, update=s.IntegrationWrite,
                query=s.IntegrationQuery)


@content.post("/content/{row_id}/publish/", response_model=s.TaskQueuedOut, status_code=200)
async def publish_content(row_id: Id, body: s.PublishRequest, svc: Publisher) -> dict[str, str]:
    """Publish (or save as a draft, or schedule) the content on its site: a job."""
    return {"task_id": await svc.publish(row_id, body.status, body.date_gmt,
                                         body.integration_id)}


@content.post("/content/{row_id}/unpublish/", response_model=s.TaskQueuedOut, status_code=200)
async def unpublish_content(row_id: Id, svc: Publisher,
                            body: s.UnpublishRequest | None = None) -> dict[str, str]:
    """Take the post off the site (back to draft there, or to the trash): a job."""
    body = body or s.UnpublishRequest()
    return {"task_id": await svc.unpublish(row_id, body.trash, body.integration_id)}


@publisher.get("/publications/", response_model=list[s.PublicationOut])
async def list_publications(request: Request, svc: Publications,
                            query: s.PublicationQuery) -> Response:
    page = await svc.page(query)
    # Rows are not validated on a page: the stored post id becomes text here, as
    # `PublicationOut` makes it for one (ADR 0038).
    rows = [{**row, "external_id": post_id_text(row["external_id"])} for row in page.rows]
    return page_response(request, query.page, page.count, rows, shape=s.PublicationOut)


@publisher.get("/publications/{row_id}/", response_model=s.PublicationOut)
async def get_publication(row_id: Id, svc: Publications) -> Any:
    return await svc.get(row_id)


M = TypeVar("M", bound=BaseModel)


def _parser(model: type[M]) -> Any:
    def parse(raw: bytes) -> M:
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as exc:
            raise ValidationFailed(errors=validation_errors(exc)) from None
    return parse


# A webhook id seen before (Standard Webhooks replay protection).
REPLAYED = answers(Conflict, description="Webhook already received")

for prefix in ("/api/v1/integration/webhooks/wordpress", "/api/v1/webhooks/wordpress"):

    @webhooks.post(prefix + "/status/", name=f"wordpress_status_webhook{len(prefix)}",
                   responses=REPLAYED)
    async def status_webhook(request: Request, svc: Webhooks) -> dict[str, Any]:
        """A post's status changed on the site (signed by the plugin)."""
        return await svc.status(request.headers, await request.body(),
                                _parser(s.StatusWebhook))

    @webhooks.post(prefix + "/metadata/", name=f"wordpress_metadata_webhook{len(prefix)}",
                   responses=REPLAYED)
    async def metadata_webhook(request: Request, svc: Webhooks) -> dict[str, Any]:
        """A post's title, slug, SEO fields or terms changed on the site (signed)."""
        return await svc.metadata(request.headers, await request.body(),
                                  _parser(s.MetadataWebhook))


ROUTERS = (integration, content, publisher, webhooks)
