"""Databases of the platform: provisioning and migrations per service, demo data, keys."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg

from igny8.home import Secrets
from igny8.plan import ServiceDatabaseUrls
from igny8.services import ServiceSpec
from libs.common.db import Database, libpq_url
from libs.common.provision import ServiceDatabase, provision_service_database
from services.auth.seed import DEMO_EMAIL

Say = Callable[[str], None]



def password_env_name(service: str) -> str:
    """Where a deployment hands a service's runtime-role password to `igny8 migrate`."""
    return f"IGNY8_{service.upper()}_DB_PASSWORD"


def runtime_password(spec: ServiceSpec, secrets: Secrets | None,
                     env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if value := env.get(password_env_name(spec.name)):
        return value
    if secrets is None:
        raise RuntimeError(f"no password for {spec.name}'s database role: set "
                           f"{password_env_name(spec.name)}")
    return secrets.db_password(spec.name)


def migrate_service(admin_url: str, spec: ServiceSpec, password: str) -> ServiceDatabase:
    if not spec.has_migrations():
        raise RuntimeError(f"services/{spec.name} has no migrations/env.py: every service "
                           "keeps its own Alembic history")
    return provision_service_database(admin_url, spec.name, spec.migrations_dir(),
                                      app_password=password)


def migrate_all(admin_url: str, services: Sequence[ServiceSpec], secrets: Secrets | None,
                say: Say, env: Mapping[str, str] | None = None) -> dict[str, ServiceDatabase]:
    done: dict[str, ServiceDatabase] = {}
    for spec in services:
        say(f"migrating {spec.name} (database {spec.database})")
        done[spec.name] = migrate_service(admin_url, spec, runtime_password(spec, secrets, env))
    return done


def database_urls(databases: Mapping[str, ServiceDatabase]) -> dict[str, ServiceDatabaseUrls]:
    return {name: ServiceDatabaseUrls(app_url=db.app_url, owner_url=db.owner_url)
            for name, db in databases.items()}


def _run_with_database(url: str, call: Callable[[Database], Any]) -> Any:
    """Call an auth function that takes a `Database`, whether it is async or not."""

    async def main() -> Any:
        db = Database(url, pool_size=2, max_overflow=2)
        try:
            result = call(db)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            await db.dispose()

    return asyncio.run(main())


@contextlib.contextmanager
def platform_secret(secret_key: str | None) -> Iterator[None]:
    """Auth's settings read `IGNY8_SECRET_KEY` (it encrypts the signing keys): give the
    in-process call the same secret the platform's processes get."""
    if secret_key is None:
        yield
        return
    previous = os.environ.get("IGNY8_SECRET_KEY")
    os.environ["IGNY8_SECRET_KEY"] = secret_key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("IGNY8_SECRET_KEY", None)
        else:
            os.environ["IGNY8_SECRET_KEY"] = previous


def seed_demo(auth_app_url: str, demo_password: str, demo_email: str = DEMO_EMAIL,
              secret_key: str | None = None) -> dict[str, int]:
    """Plans, industries, sectors, the seed-keyword library and the demo account, through
    auth (its outbox relay then tells the other services)."""
    seed = importlib.import_module("services.auth.seed")
    with platform_secret(secret_key):
        counts = _run_with_database(
            auth_app_url,
            lambda db: seed.seed_platform(db, demo_email=demo_email,
                                          demo_password=demo_password),
        )
    return {str(k): int(v) for k, v in dict(counts or {}).items()}


def rotate_signing_key(auth_app_url: str, secret_key: str | None = None) -> str:
    service = importlib.import_module("services.auth.service.sessions")
    with platform_secret(secret_key):
        return str(_run_with_database(auth_app_url, service.rotate_signing_key))


def seed_marker(owner_url: str) -> str:
    """Names the database the demo data went into: server, database and its oid, so a
    recreated database (or another server) is seeded again."""
    parts = urlsplit(libpq_url(owner_url))
    with psycopg.connect(libpq_url(owner_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    oid = row[0] if row else 0
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path}#{oid}"
