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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.provision import ServiceDatabase, drop_database, provision_service_database


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
