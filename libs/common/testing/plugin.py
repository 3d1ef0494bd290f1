"""pytest plugin: real PostgreSQL and NATS for every test that touches data.

Where they come from, in order: `IGNY8_TEST_DATABASE_URL` / `IGNY8_TEST_NATS_URL` when
set (an operator's explicit choice wins); testcontainers when a Docker engine answers;
otherwise the embedded servers from the wheels, started once per test session in a
temporary directory. The machine's own PostgreSQL/NATS are never assumed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from nats.aio.client import Client as NATS

from libs.common import nats as nats_kernel
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.provision import ServiceDatabase, drop_database, provision_service_database
from libs.common.settings import ServiceSettings
from libs.common.testing.factories import Factories
from libs.common.testing.tokens import TestIssuer

S = TypeVar("S", bound=ServiceSettings)


def _docker_available() -> bool:
    if os.environ.get("IGNY8_TEST_NO_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine here
        return False


@dataclass
class NatsServer:
    url: str
    embedded: EmbeddedNats | None = None

    def restart(self) -> None:
        if self.embedded is None:
            pytest.skip("NATS restart needs the embedded server")
        self.embedded.restart()

    def stop(self) -> None:
        if self.embedded is None:
            pytest.skip("NATS stop needs the embedded server")
        self.embedded.stop()

    def start(self) -> None:
        assert self.embedded is not None
        self.embedded.start()


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="igny8-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url(servers_dir: Path) -> Iterator[str]:
    if url := os.environ.get("IGNY8_TEST_DATABASE_URL"):
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as pg:
            yield pg.get_connection_url()
        return
    server = EmbeddedPostgres(servers_dir / "pg")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path) -> Iterator[NatsServer]:
    if url := os.environ.get("IGNY8_TEST_NATS_URL"):
        yield NatsServer(url)
        return
    if _docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer("nats:2.11-alpine").with_command("-js") as container:
            yield NatsServer(container.nats_uri())
        return
    server = EmbeddedNats(servers_dir / "nats")
    server.start()
    try:
        yield NatsServer(server.url, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


class DatabaseFactory:
    """Makes a fresh, migrated database for a service, dropped at the end of the session."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []
        self.password = secrets.token_urlsafe(16)

    def __call__(self, service: str, migrations_dir: Path) -> ServiceDatabase:
        name = f"test_{service}_{uuid.uuid4().hex[:8]}"
        db = provision_service_database(
            self.admin_url, service, migrations_dir, app_password=self.password, database=name
        )
        self.created.append(name)
        return db

    def drop_all(self) -> None:
        for name in self.created:
            try:
                drop_database(self.admin_url, name)
            except Exception:  # noqa: BLE001, S112 - best effort at the end of the session
                continue


@pytest.fixture(scope="session")
def make_database(postgres_admin_url: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(postgres_admin_url)
    yield factory
    factory.drop_all()


class MakeSettings(Protocol):
    def __call__(self, settings_class: type[S], migrations_dir: Path, **overrides: Any) -> S: ...


@pytest.fixture(scope="session")
def make_settings(make_database: DatabaseFactory, nats_url: str) -> MakeSettings:
    """A service's settings for tests: a fresh database migrated from `migrations_dir`
    (runtime role and owner), the test NATS, `environment="test"`."""

    def make(settings_class: type[S], migrations_dir: Path, **overrides: Any) -> S:
        service = str(settings_class.model_fields["service_name"].default)
        db = make_database(service, migrations_dir)
        values: dict[str, Any] = {
            "environment": "test", "database_url": db.app_url,
            "migration_database_url": db.owner_url, "nats_url": nats_url, **overrides}
        return settings_class(**values)

    return make


@pytest.fixture(scope="session")
def issuer() -> TestIssuer:
    """Signs access tokens the way auth does, with a key of its own (pass
    `issuer.fetcher()` as the app's `keys_fetcher`)."""
    return TestIssuer()


@pytest.fixture(scope="session")
def factories(issuer: TestIssuer) -> Factories:
    return Factories(issuer)


@pytest.fixture(scope="session")
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    connection = await nats_kernel.connect(nats_url, "tests")
    yield connection
    await connection.drain()

