"""Auth's worker: the outbox relay, the command responders other services call on a
read-model miss, and housekeeping. `python -m services.auth.worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from nats.aio.msg import Msg

from libs.common import runtime
from libs.common.aio import sleep_or_stop
from libs.common.db import TenantScope
from libs.common.events import command_subject, utcnow
from libs.common.runtime import WorkerContext
from libs.common.tenancy import UnitOfWork
from services.auth import repository as repo
from services.auth.service import ai_config, catalogue, sites
from services.auth.settings import AuthSettings

log = logging.getLogger(__name__)

QUEUE_GROUP = "auth"
Command = Callable[[WorkerContext, dict[str, Any]], Awaitable[dict[str, Any]]]


def _positive_int(payload: dict[str, Any], key: str) -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key} must be a positive integer")
    return value


async def lookup_site(ctx: WorkerContext, payload: dict[str, Any]) -> dict[str, Any]:
    account_id = _positive_int(payload, "account_id")
    site_id = _positive_int(payload, "site_id")
    async with ctx.db.session(TenantScope.account(account_id)) as session:
        found = await sites.lookup_site(UnitOfWork(session), account_id, site_id)
    if found is None:
        return {"ok": False, "error": "Site not found.", "code": "not_found"}
    return {"ok": True, **found}


async def seed_keywords(ctx: WorkerContext, payload: dict[str, Any]) -> dict[str, Any]:
    ids = payload.get("ids")
    if (
        not isinstance(ids, list)
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        or len(ids) > 1000
    ):
        raise ValueError("ids must be a list of at most 1000 integers")
    async with ctx.db.session(TenantScope.system()) as session:
        found = await catalogue.seed_keywords_data(UnitOfWork(session), ids)
    return {"ok": True, "seed_keywords": found}


async def ai_settings(ctx: WorkerContext, payload: dict[str, Any]) -> dict[str, Any]:
    """The account's AI provider (with its API key decrypted: this answer stays on the
    internal bus) and its saved prompts, for other services' AI jobs."""
    account_id = _positive_int(payload, "account_id")
    prompt_types = payload.get("prompt_types")
    if prompt_types is not None and (
        not isinstance(prompt_types, list)
        or not all(isinstance(t, str) and t in ai_config.DEFAULT_PROMPTS for t in prompt_types)
    ):
        raise ValueError(
            "prompt_types must be a list of: " + ", ".join(sorted(ai_config.DEFAULT_PROMPTS))
        )
    keys = ai_config.integration_keys(ctx.settings.secret_key)
    async with ctx.db.session(TenantScope.account(account_id)) as session:
        uow = UnitOfWork(session)
        try:
            found = await ai_config.ai_settings(uow, keys, account_id, prompt_types)
        except ai_config.UnreadableIntegrationKey as exc:
            return {"ok": False, "error": str(exc), "code": "unreadable_secret"}
    return {"ok": True, **found}


COMMANDS: dict[str, Command] = {
    "lookup_site": lookup_site,
    "seed_keywords": seed_keywords,
    "ai_settings": ai_settings,
}


async def _answer(ctx: WorkerContext, handler: Command, msg: Msg) -> None:
    try:
        payload = orjson.loads(msg.data)
        if not isinstance(payload, dict):
            raise ValueError("request must be a JSON object")
        reply = await handler(ctx, payload)
    except (ValueError, orjson.JSONDecodeError) as exc:
        reply = {"ok": False, "error": str(exc), "code": "invalid"}
    except Exception as exc:
        log.exception("command %s failed", msg.subject)
        reply = {"ok": False, "error": exc.__class__.__name__, "code": "error"}
    if msg.reply:
        await msg.respond(orjson.dumps(reply))


async def serve_commands(ctx: WorkerContext) -> None:
    """Core request-reply responders, one queue group for every auth worker replica."""
    subs = []
    for name, handler in COMMANDS.items():

        async def on_message(msg: Msg, handler: Command = handler) -> None:
            await _answer(ctx, handler, msg)

        subs.append(
            await ctx.nc.subscribe(command_subject("auth", name), queue=QUEUE_GROUP, cb=on_message)
        )
    try:
        await ctx.stop.wait()
    finally:
        for sub in subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def housekeeping(ctx: WorkerContext, interval: float = 3600.0) -> None:
    """Forget expired sessions, old throttle windows and keys no longer published."""
    settings = ctx.settings
    window = getattr(settings, "login_window_seconds", 900)
    while not ctx.stop.is_set():
        try:
            async with ctx.db.session(TenantScope.system()) as session:
                now = utcnow()
                removed = await repo.purge_stale(session, now, now - timedelta(seconds=window))
                await session.commit()
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
