"""Auth's worker: the outbox relay, the command responders other services call on a
read-model miss, and housekeeping. `python -m services.auth.worker`."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from libs.common import runtime
from libs.common.aio import sleep_or_stop
from libs.common.auth import (
    AI_SETTINGS,
    LOOKUP_SITE,
    SEED_KEYWORDS,
    AISettings,
    AISettingsRequest,
    AISettingsUnusable,
    LookupSite,
    SeedKeywords,
    SeedKeywordsRequest,
    SiteAndSectors,
)
from libs.common.commands import Command, Handler, serve
from libs.common.db import TenantScope
from libs.common.events import utcnow
from libs.common.problems import NotFound, ValidationFailed
from libs.common.runtime import WorkerContext
from libs.common.uow import UnitOfWork, unit_of_work
from services.auth.repository import sessions as sessions_repo
from services.auth.service import ai_config, catalogue, sites
from services.auth.settings import AuthSettings

log = logging.getLogger(__name__)


def command_handlers(ctx: WorkerContext) -> dict[Command[Any, Any], Handler]:
    """Auth's commands (declared in `libs/common/auth.py`), answered from its tables."""

    async def lookup_site(request: LookupSite) -> SiteAndSectors:
        async with ctx.db.session(TenantScope.account(request.account_id),
                                  read_only=True) as session:
            found = await sites.lookup_site(UnitOfWork(session), request.account_id,
                                            request.site_id)
        if found is None:
            raise NotFound("Site not found.")
        return SiteAndSectors.model_validate(found)

    async def seed_keywords(request: SeedKeywordsRequest) -> SeedKeywords:
        async with ctx.db.session(TenantScope.system(), read_only=True) as session:
            found = await catalogue.seed_keywords_data(UnitOfWork(session), request.ids)
        return SeedKeywords.model_validate({"seed_keywords": found})

    async def ai_settings(request: AISettingsRequest) -> AISettings:
        unknown = sorted(set(request.prompt_types or ()) - set(ai_config.DEFAULT_PROMPTS))
        if unknown:
            raise ValidationFailed.field(
                "prompt_types", "Choose from: " + ", ".join(sorted(ai_config.DEFAULT_PROMPTS)))
        keys = ai_config.integration_keys(ctx.settings.secret_key)
        async with ctx.db.session(TenantScope.account(request.account_id),
                                  read_only=True) as session:
            try:
                found = await ai_config.ai_settings(UnitOfWork(session), keys,
                                                    request.account_id, request.prompt_types)
            except ai_config.UnreadableIntegrationKey as exc:
                raise AISettingsUnusable(str(exc)) from exc
        return AISettings.model_validate(found)

    return {LOOKUP_SITE: lookup_site, SEED_KEYWORDS: seed_keywords, AI_SETTINGS: ai_settings}


async def serve_commands(ctx: WorkerContext) -> None:
    """Auth's command responders, one queue group for every auth worker replica."""
    await serve(ctx.nc, command_handlers(ctx), stop=ctx.stop)


async def housekeeping(ctx: WorkerContext, interval: float = 3600.0) -> None:
    """Forget expired sessions, old throttle windows and keys no longer published."""
    settings = ctx.settings
    window = getattr(settings, "login_window_seconds", 900)
    while not ctx.stop.is_set():
        try:
            async with unit_of_work(ctx.db, TenantScope.system()) as uow:
                now = utcnow()
                window_start = now - timedelta(seconds=window)
                removed = await sessions_repo.purge_stale(uow.session, now, window_start)
            if removed:
                log.info("housekeeping removed %d stale rows", removed)
        except Exception as exc:
            log.warning("housekeeping failed: %s", exc)
        await sleep_or_stop(ctx.stop, interval)


async def run(stop: asyncio.Event, settings: AuthSettings | None = None) -> None:
    await runtime.run_worker(
        settings or AuthSettings(), tasks=[serve_commands, housekeeping], stop=stop
    )


if __name__ == "__main__":
    runtime.main(run)
