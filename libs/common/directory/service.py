"""One caller's view of a service in one unit of work, written once: what planner's,
writer's and automation's services stand on.

    class PlannerService(CallerService):
        directory = DIRECTORY

        def __init__(self, uow, principal, settings, auth=None, ai_jobs=None):
            super().__init__(uow, principal, auth)
            ...

    keywords = await service.repository(KeywordRepository)   # what the caller may see
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from libs.common.auth import AuthClient
from libs.common.repository import Repository, Visibility
from libs.common.security import Principal
from libs.common.uow import UnitOfWork

if TYPE_CHECKING:
    from libs.common.directory import Directory

R = TypeVar("R", bound=Repository[Any])


class CallerService:
    """The unit of work, the caller, the directory's checks for them (`access`: 403 for a
    blocked account, 404/403 for another tenant's or an ungranted site) and repositories
    made for what they may see. Never commits: the unit of work does. Subclasses name
    their service's `directory`."""

    directory: ClassVar[Directory]

    def __init__(self, uow: UnitOfWork, principal: Principal,
                 auth: AuthClient | None = None) -> None:
        self.uow = uow
        self.principal = principal
        self.access = self.directory.access(uow.session, principal, auth)

    @property
    def account_id(self) -> int:
        return self.principal.account_id

    async def visibility(self) -> Visibility:
        """The caller's account and sites (403 when the account is blocked)."""
        return await self.access.visibility()

    async def repository(self, kind: type[R]) -> R:
        """A repository of `kind` for what the caller may see."""
        return kind(self.uow.session, await self.visibility())
