"""Creating a service's database and roles on a PostgreSQL server we administer.

Each service gets its own database `igny8_<service>` and a runtime role
`igny8_<service>_app` that owns nothing and cannot bypass row-level security; migrations
run as the server's admin role, which owns the tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from libs.common.db import libpq_url
from libs.common.migrations import upgrade


@dataclass(frozen=True)
class ServiceDatabase:
    service: str
    name: str
    owner_url: str
    app_url: str
    app_role: str


def with_database(url: str, database: str, user: str | None = None,
                  password: str | None = None) -> str:
    parts = urlsplit(libpq_url(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if user is not None:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        netloc = f"{auth}@{netloc}"
    elif "@" in parts.netloc:
        netloc = parts.netloc
    return urlunsplit((parts.scheme, netloc, "/" + database, parts.query, ""))


def ensure_role(admin_url: str, role: str, password: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE "
                    "PASSWORD {}").format(sql.Identifier(role), sql.Literal(password))
        )


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(libpq_url(with_database(admin_url, name)), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


def provision_service_database(
    admin_url: str,
    service: str,
    migrations_dir: Path,
    *,
    app_password: str,
    database: str | None = None,
) -> ServiceDatabase:
    name = database or f"igny8_{service}"
    role = f"igny8_{service}_app"
    ensure_role(admin_url, role, app_password)
    ensure_database(admin_url, name)
    owner_url = with_database(admin_url, name)
    upgrade(migrations_dir, owner_url, app_role=role)
    return ServiceDatabase(
        service=service,
        name=name,
        owner_url=owner_url,
        app_url=with_database(admin_url, name, user=role, password=app_password),
        app_role=role,
    )
