"""Request-time checks against the directory: is the account usable, which sites may the
caller see, is this site and sector theirs (asking auth once when the directory has not
heard of them yet, so a site created a moment ago is not a false 404)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.auth import BLOCKED_ACCOUNT_STATUSES, AuthClient
from libs.common.directory.repository import DirectoryRepository
from libs.common.directory.tables import DirectoryTables
from libs.common.problems import NotFound, PermissionDenied, ValidationFailed
from libs.common.repository import Visibility
from libs.common.security import Principal


def account_blocked(status: str | None, deleted: bool = False) -> bool:
    return deleted or status in BLOCKED_ACCOUNT_STATUSES


class DirectoryAccess:
    """One caller's view of the directory, for one unit of work."""

    def __init__(self, session: AsyncSession, tables: DirectoryTables, principal: Principal,
                 auth: AuthClient | None = None) -> None:
        self.repo = DirectoryRepository(session, tables)
        self.principal = principal
        self.auth = auth
        self._visibility: Visibility | None = None

    @property
    def account_id(self) -> int:
        return self.principal.account_id

    async def account(self) -> dict[str, Any] | None:
        """Status, deletion and plan limits (`max_keywords`, `max_author_profiles`) as auth
        last said; None
        while the directory has not heard of the account."""
        return await self.repo.account(self.account_id)

    async def visibility(self) -> Visibility:
        """Owners and admins see every site of their account; editors, viewers and bots
        the sites granted to them (a site key's token: its own site). A suspended,
        cancelled or deleted account sees nothing: 403."""
        if self._visibility is not None:
            return self._visibility
        state = await self.account()
        if state and account_blocked(state["status"], state["deleted"]):
            raise PermissionDenied("This account is not active.")
        p = self.principal
        site_ids: tuple[int, ...] | None
        if p.site_id is not None:
            site_ids = (p.site_id,)
        elif p.has_role("admin"):
            site_ids = None
        else:
            site_ids = tuple(await self.repo.granted_site_ids(self.account_id, p.user_id))
        self._visibility = Visibility(self.account_id, site_ids)
        return self._visibility

    async def site(self, site_id: int) -> dict[str, Any]:
        """The caller's site, active: 404 for a site that is not the account's, 403 for
        one not granted to the caller, 400 naming `site_id` for an inactive one."""
        site, _ = await self._site_and_sector(site_id, None)
        if not site["is_active"]:
            raise ValidationFailed.field("site_id", "The site is not active.")
        return site

    async def site_and_sector(self, site_id: int,
                              sector_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """The caller's site and its sector, both active: 404 for a site that is not the
        account's, 403 for one not granted to the caller, 400 naming `sector_id` for a
        sector of another site or an inactive one."""
        site, sector = await self._site_and_sector(site_id, sector_id)
        if sector is None or sector["site_id"] != site_id:
            raise ValidationFailed.field("sector_id", "This sector does not belong to the site.")
        if not site["is_active"] or not sector["is_active"]:
            raise ValidationFailed.field("sector_id", "The site or sector is not active.")
        return site, sector

    async def _site_and_sector(self, site_id: int, sector_id: int | None
                               ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The site (404, 403 as above) and the sector when asked, asking auth once when
        the directory has not heard of either yet."""
        vis = await self.visibility()
        site = await self.repo.site(self.account_id, site_id)
        sector = None if sector_id is None else await self.repo.sector(self.account_id,
                                                                         sector_id)
        if (site is None or (sector_id is not None and sector is None)) \
                and self.auth is not None:
            found = await self.auth.lookup_site(self.account_id, site_id)
            if found is not None and found.site.account_id == self.account_id:
                await self.repo.upsert_site(found.site.model_dump())
                for s in found.sectors:
                    await self.repo.upsert_sector(s.model_dump())
                site = await self.repo.site(self.account_id, site_id)
                if sector_id is not None:
                    sector = await self.repo.sector(self.account_id, sector_id)
        if site is None:
            raise NotFound("Site not found.")
        if not vis.may_see(site_id):
            raise PermissionDenied("You do not have access to this site.")
        return site, sector
