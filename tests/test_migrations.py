"""Every service's migrations build exactly what its models declare, and go down and up
again: a model changed without a migration, or a status enum whose CHECK was not
migrated, fails here rather than in production."""

from __future__ import annotations

import importlib

import psycopg
import pytest
from alembic import command
from sqlalchemy import CheckConstraint, MetaData
from sqlalchemy.dialects import postgresql
from sqlmodel import SQLModel

from igny8.services import ServiceSpec, present_services
from libs.common.db import libpq_url
from libs.common.migrations import alembic_config
from libs.common.provision import ServiceDatabase
from libs.common.testing.plugin import DatabaseFactory

SERVICES = [spec for spec in present_services() if spec.has_migrations()]


def service_metadata(spec: ServiceSpec) -> MetaData:
    """The metadata of the service's own SQLModel registry (its `XModel` base)."""
    module = importlib.import_module(f"services.{spec.name}.models")
    for value in vars(module).values():
        if (isinstance(value, type) and issubclass(value, SQLModel)
                and value.metadata is not SQLModel.metadata):
            return value.metadata
    raise LookupError(f"services.{spec.name}.models declares no SQLModel base")


def database_checks(url: str) -> dict[tuple[str, str], str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE c.contype = 'c' AND n.nspname = 'public'").fetchall()
    return {(table, name): definition for table, name, definition in rows}


def declared_checks(url: str, metadata: MetaData) -> dict[tuple[str, str], str]:
    """Each CHECK the models declare, as PostgreSQL normalises it: added to a scratch copy
    of its table in a transaction that is rolled back."""
    found: dict[tuple[str, str], str] = {}
    with psycopg.connect(libpq_url(url)) as conn:
        for table in metadata.sorted_tables:
            for constraint in table.constraints:
                if not isinstance(constraint, CheckConstraint):
                    continue
                sql = str(constraint.sqltext.compile(dialect=postgresql.dialect()))
                conn.execute(f"CREATE TEMP TABLE probe (LIKE {table.name})")
                conn.execute(f"ALTER TABLE probe ADD CONSTRAINT {constraint.name} CHECK ({sql})")
                (definition,) = conn.execute(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conrelid = 'probe'::regclass AND conname = %s",
                    (constraint.name,)).fetchone() or ("",)
                found[(table.name, str(constraint.name))] = definition
                conn.rollback()
    return found


@pytest.fixture(scope="module", params=SERVICES, ids=[s.name for s in SERVICES])
def migrated(request: pytest.FixtureRequest,
             make_database: DatabaseFactory) -> tuple[ServiceSpec, ServiceDatabase]:
    spec: ServiceSpec = request.param
    return spec, make_database(spec.name, spec.migrations_dir())


def test_migrations_build_what_the_models_declare(
        migrated: tuple[ServiceSpec, ServiceDatabase]) -> None:
    spec, db = migrated
    command.check(alembic_config(spec.migrations_dir(), db.owner_url))  # raises on a diff


def test_check_constraints_are_the_ones_the_models_declare(
        migrated: tuple[ServiceSpec, ServiceDatabase]) -> None:
    spec, db = migrated
    declared = declared_checks(db.owner_url, service_metadata(spec))
    in_database = database_checks(db.owner_url)
    assert {key: in_database.get(key) for key in declared} == declared


def test_migrations_go_down_to_nothing_and_up_again(
        migrated: tuple[ServiceSpec, ServiceDatabase]) -> None:
    spec, db = migrated
    config = alembic_config(spec.migrations_dir(), db.owner_url)
    command.downgrade(config, "base")
    with psycopg.connect(libpq_url(db.owner_url)) as conn:
        left = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                            " AND tablename <> 'alembic_version'").fetchall()
    assert left == []
    command.upgrade(config, "head")
    test_migrations_build_what_the_models_declare(migrated)
