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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from nats.aio.client import Client as NATS

from libs.common import nats as nats_kernel
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.natsauth import ACCESS, PLATFORM_SERVICES, derive_password, server_config
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


# The test harness's own NATS user: no restrictions (it plays every part in tests).
TEST_SUPERUSER = "tests"
# Users of the embedded test server besides the platform's: the kernel's own tests.
TEST_NATS_USERS = ("kernel", "service")


@dataclass
class NatsServer:
    """`url` names no user; `passwords` are the users of the embedded server (None for a
    server given by URL, whose URL then carries whatever credentials it needs)."""

    url: str
    embedded: EmbeddedNats | None = None
    passwords: dict[str, str] | None = None

    def url_for(self, user: str) -> str:
        """The URL with `user`'s credentials (the test superuser's by default)."""
        if not self.passwords or user not in self.passwords:
            return self.url
        return self.url.replace("nats://", f"nats://{user}:{self.passwords[user]}@", 1)

    def restart(self) -> None:
        if self.embedded is None:
            pytest.skip("NATS restart needs the embedded server")
        self.embedded.restart()

    def stop(self) -> None:
        if self.embedded is None:
            pytest.skip("NATS stop needs the embedded server")
        self.embedded.stop()

    def kill(self) -> None:
        """SIGKILL the server; `start` brings it back on the same port and store."""
        if self.embedded is None:
            pytest.skip("NATS kill needs the embedded server")
        self.embedded.kill()

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


# The Docker path runs the version the wheel (and deploy/) runs, with the same users.
NATS_IMAGE = "nats:2.15.1-alpine"
CONTAINER_NATS_CONFIG = "/etc/igny8/nats.conf"


def harness_nats_users() -> tuple[dict[str, str], str]:
    """The test server's users (the platform's, the kernel's, the unrestricted harness
    user) with fresh passwords, and the nats-server configuration admitting only them."""
    master = secrets.token_urlsafe(24)
    users = (*PLATFORM_SERVICES, *ACCESS, *TEST_NATS_USERS, TEST_SUPERUSER)
    passwords = {user: derive_password(master, user) for user in dict.fromkeys(users)}
    return passwords, server_config(passwords, superusers=[TEST_SUPERUSER])


def container_nats_command(config_path: str = CONTAINER_NATS_CONFIG) -> list[str]:
    """The container's nats-server arguments: JetStream and the users' configuration
    (copied into the container at `config_path`): no anonymous clients there either."""
    return ["-js", "-c", config_path]


@pytest.fixture(scope="session")
def nats_server(servers_dir: Path) -> Iterator[NatsServer]:
    if url := os.environ.get("IGNY8_TEST_NATS_URL"):
        yield NatsServer(url)
        return
    passwords, config = harness_nats_users()
    if _docker_available():
        from testcontainers.community.nats import NatsContainer

        container = (NatsContainer(NATS_IMAGE)
                     .with_copy_into_container(config.encode(), CONTAINER_NATS_CONFIG)
                     .with_command(container_nats_command()))
        with container:
            yield NatsServer(container.nats_uri(), None, passwords)
        return
    server = EmbeddedNats(servers_dir / "nats", config=config)
    server.start()
    try:
        yield NatsServer(server.url, server, passwords)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: NatsServer) -> str:
    """The test harness's URL (its superuser's credentials in it). Services built by
    `make_settings` connect as their own users instead."""
    return nats_server.url_for(TEST_SUPERUSER)


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


NatsIdentity = Callable[[str], dict[str, Any]]


@pytest.fixture(scope="session")
def nats_identity(nats_server: NatsServer, nats_url: str) -> NatsIdentity:
    """`nats_identity("planner")`: the settings that make a process connect as that NATS
    user (its permissions apply, as deployed); `nats_url`'s credentials when the test
    server has no such user (a server given by URL, a name natsauth does not list)."""

    def identity(user: str) -> dict[str, Any]:
        if nats_server.passwords and user in nats_server.passwords:
            return {"nats_url": nats_server.url, "nats_user": user,
                    "nats_password": nats_server.passwords[user]}
        return {"nats_url": nats_url}

    return identity


class MakeSettings(Protocol):
    def __call__(self, settings_class: type[S], migrations_dir: Path, **overrides: Any) -> S: ...


@pytest.fixture(scope="session")
def make_settings(make_database: DatabaseFactory, nats_identity: NatsIdentity) -> MakeSettings:
    """A service's settings for tests: a fresh database migrated from `migrations_dir`
    (runtime role and owner), the test NATS as the service's own NATS user (its
    permissions apply, as deployed), `environment="test"`. A service the test server
    has no user for connects with `nats_url`'s (`nats_identity`)."""

    def make(settings_class: type[S], migrations_dir: Path, **overrides: Any) -> S:
        service = str(settings_class.model_fields["service_name"].default)
        db = make_database(service, migrations_dir)
        values: dict[str, Any] = {
            "environment": "test", "database_url": db.app_url,
            "migration_database_url": db.owner_url, **nats_identity(service), **overrides}
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

