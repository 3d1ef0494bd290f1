"""A site's taxonomies and an account's author profiles."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from libs.common.problems import Conflict, NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import Row
from services.writer.models import TaxonomyType
from services.writer.repository import AuthorProfileRepository, TaxonomyRepository
from services.writer.service.common import Aggregate

DUPLICATE_SLUG = "A taxonomy of this type with this slug exists on the site."
DUPLICATE_PROFILE = "An author profile with this name exists."


def slugify(text: str) -> str:
    """`Coffee & Tea` → `coffee-tea` (ASCII letters and digits, hyphens between)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:255]


class TaxonomyService(Aggregate[TaxonomyRepository]):
    repository_class = TaxonomyRepository
    noun = "Taxonomy"

    async def create(self, values: dict[str, Any]) -> Row:
        await self.access.site(values["site_id"])
        values = {"taxonomy_type": TaxonomyType.CATEGORY, **values,
                  "slug": values.get("slug") or slugify(values["name"])}
        if not values["slug"]:
            raise ValidationFailed.field("slug", "A slug needs letters or digits.")
        await self._slug_free(values["site_id"], values["taxonomy_type"], values["slug"])
        return await (await self.rows()).insert(values)

    async def update(self, taxonomy_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(taxonomy_id)
        if not changes:
            return current
        merged = {**current, **changes}
        if changes.get("slug") == "" or ("name" in changes and "slug" not in changes
                                         and not current["slug"]):
            merged["slug"] = changes["slug"] = slugify(merged["name"])
        if merged["slug"] != current["slug"] or merged["taxonomy_type"] != current[
                "taxonomy_type"]:
            await self._slug_free(current["site_id"], merged["taxonomy_type"], merged["slug"],
                                  except_id=taxonomy_id)
        row = await (await self.rows()).update(taxonomy_id, changes)
        if row is None:
            raise NotFound("Taxonomy not found.")
        return row

    async def _slug_free(self, site_id: int, taxonomy_type: str, slug: str, *,
                         except_id: int | None = None) -> None:
        if await (await self.rows()).slug_taken(site_id, taxonomy_type, slug,
                                                 except_id=except_id):
            raise Conflict(DUPLICATE_SLUG, errors={"slug": [DUPLICATE_SLUG]})


class AuthorProfileService(Aggregate[AuthorProfileRepository]):
    """At most the plan's `max_author_profiles` active profiles per account (checked
    under a per-account lock, so concurrent creates cannot pass it together)."""

    repository_class = AuthorProfileRepository
    noun = "Author profile"

    async def create(self, values: dict[str, Any]) -> Row:
        profiles = await self.rows()
        if values.get("is_active", True):
            await self._check_limit(profiles)
        if await profiles.name_taken(values["name"]):
            raise Conflict(DUPLICATE_PROFILE, errors={"name": [DUPLICATE_PROFILE]})
        return await profiles.insert(values)

    async def update(self, profile_id: int, changes: dict[str, Any]) -> Row:
        current = await self.get(profile_id)
        if not changes:
            return current
        profiles = await self.rows()
        if changes.get("is_active") and not current["is_active"]:
            await self._check_limit(profiles)
        if "name" in changes and await profiles.name_taken(changes["name"],
                                                           except_id=profile_id):
            raise Conflict(DUPLICATE_PROFILE, errors={"name": [DUPLICATE_PROFILE]})
        row = await profiles.update(profile_id, changes)
        if row is None:
            raise NotFound("Author profile not found.")
        return row

    async def _check_limit(self, profiles: AuthorProfileRepository) -> None:
        """403 naming `max_author_profiles` when the plan's limit is reached (no limit
        while the directory has not heard of the account's plan)."""
        state = await self.access.account()
        limit = state.get("max_author_profiles") if state else None
        if limit is None:
            return
        await profiles.lock_account()
        if await profiles.active_count() >= limit:
            raise PermissionDenied(
                f"Plan limit reached: your plan allows {limit} author profiles "
                "(max_author_profiles).")
