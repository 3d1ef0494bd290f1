"""A site's taxonomies (`/api/v1/writer/taxonomies/`) and the account's author profiles
(`/api/v1/system/author-profiles/`, as many as the plan allows: creating or activating
one past `max_author_profiles` is a 403 naming it): standard CRUD."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from libs.common.pagination import message_response
from libs.common.problems import DUPLICATE_ANSWER
from libs.common.resources import resource_routes
from services.writer import schemas as s
from services.writer.api.deps import (
    AuthorProfiles,
    AuthorProfilesEditor,
    Taxonomies,
    TaxonomiesEditor,
)

taxonomies = APIRouter(prefix="/api/v1/writer", tags=["writer"])
# A taxonomy's slug (per type) on the site, an author profile's name in the account.
profiles = APIRouter(prefix="/api/v1/system", tags=["system"])


@taxonomies.post("/taxonomies/bulk_delete/")
async def bulk_delete_taxonomies(body: s.Ids, svc: TaxonomiesEditor) -> Response:
    deleted = await svc.delete(body.ids)
    return message_response({"deleted_count": deleted}, f"{deleted} taxonomies deleted")


resource_routes(taxonomies, "/taxonomies/", name="taxonomy", reader=Taxonomies,
                editor=TaxonomiesEditor, out=s.TaxonomyOut, create=s.TaxonomyCreate,
                update=s.TaxonomyWrite, query=s.TaxonomyQuery,
                create_answers=DUPLICATE_ANSWER, update_answers=DUPLICATE_ANSWER)
resource_routes(profiles, "/author-profiles/", name="author_profile", reader=AuthorProfiles,
                editor=AuthorProfilesEditor, out=s.AuthorProfileOut,
                create=s.AuthorProfileCreate, update=s.AuthorProfileWrite,
                query=s.AuthorProfileQuery, create_answers=DUPLICATE_ANSWER,
                update_answers=DUPLICATE_ANSWER)
