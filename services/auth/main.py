"""The auth API process: `uvicorn services.auth.main:create_app --factory`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from libs.common.app import create_service_app
from libs.common.db import NO_TENANT
from libs.common.outbound import OutboundPolicy
from libs.common.security import KeysFetcher
from libs.common.uow import UnitOfWork
from services.auth import passwords
from services.auth.api import ROUTERS
from services.auth.service import ai_config, sessions
from services.auth.settings import AuthSettings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuthSettings()
    issuer = sessions.Issuer.from_settings(settings)
    app: FastAPI

    def own_keys() -> KeysFetcher:
        """Auth verifies tokens with its own published keys, read from its database."""

        async def fetch() -> dict[str, Any]:
            async with app.state.db.session(NO_TENANT) as session:
                return await sessions.jwks(UnitOfWork(session))

        return fetch

    async def start(app_: FastAPI) -> None:
        app_.state.issuer = issuer
        app_.state.integration_keys = ai_config.integration_keys(settings.secret_key)
        app_.state.outbound = OutboundPolicy.from_settings(settings)
        await sessions.ensure_signing_key(app_.state.db, issuer.keyring)
        await passwords.warm_up()
        # Auth reads its own keys from its database: a cheap query, so an unknown kid
        # (a key rotated by another replica) may be looked up again sooner.
        app_.state.verifier.unknown_kid_cooldown = 0.5

    app = create_service_app(
        settings,
        title="IGNY8 auth",
        routers=ROUTERS,
        migrations_dir=MIGRATIONS_DIR,
        keys_fetcher=own_keys(),
        on_startup=[start],
    )
    return app
