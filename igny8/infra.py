"""PostgreSQL and NATS for the platform: real servers when `DATABASE_URL` / `NATS_URL`
name them, otherwise the embedded ones from the wheels, with their data in the state
directory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from igny8.home import Home, StateFile, lock_held
from igny8.plan import DEFAULT_NATS_PORT, DEFAULT_POSTGRES_PORT
from libs.common import natstls
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.natsauth import server_config

Say = Callable[[str], None]


@dataclass
class Infrastructure:
    admin_url: str  # a role that may create databases and roles
    nats_url: str | None
    postgres: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    nats_tls_ca: str | None = None

    def describe(self) -> dict[str, Any]:
        """For state.json. An operator's own DATABASE_URL may hold a password: not stored."""
        pg: dict[str, Any] = {"embedded": self.postgres is not None}
        if self.postgres is not None:
            pg.update(url=self.admin_url, port=self.postgres.port,
                      pid=self.postgres.proc.pid if self.postgres.proc else None)
        nats: dict[str, Any] = {"embedded": self.nats is not None, "url": self.nats_url}
        if self.nats_tls_ca:  # TLS (ADR 0026): what a client verifies the server with
            nats["tls_ca"] = self.nats_tls_ca
        if self.nats is not None:
            nats.update(port=self.nats.port, pid=self.nats.proc.pid if self.nats.proc else None)
        return {"postgres": pg, "nats": nats}

    def stop(self, say: Say = lambda _: None) -> None:
        if self.nats is not None and self.nats.proc is not None:
            say("stopping NATS")
            self.nats.stop()
        if self.postgres is not None and self.postgres.proc is not None:
            say("stopping PostgreSQL")
            self.postgres.stop()


def _default(port: int, env: Mapping[str, str]) -> int | None:
    """The default port, or none (the kernel picks one) with `IGNY8_PORTS=any`."""
    return None if env.get("IGNY8_PORTS") == "any" else port


def start_postgres(home: Home, env: Mapping[str, str], say: Say
                   ) -> tuple[str, EmbeddedPostgres | None]:
    if url := env.get("DATABASE_URL"):
        say("PostgreSQL: using DATABASE_URL")
        return url, None
    server = EmbeddedPostgres(home.pgdata, _default(DEFAULT_POSTGRES_PORT, env),
                              home.log("postgres"), process_group=0)
    first = not (home.pgdata / "PG_VERSION").exists()
    say(f"PostgreSQL: {'initialising' if first else 'starting'} the embedded server "
        f"on port {server.port} ({home.pgdata})")
    server.start()
    return server.url, server


def nats_tls_wanted(env: Mapping[str, str]) -> bool:
    return env.get("IGNY8_NATS_TLS", "").lower() in ("1", "true", "yes")


def start_nats(home: Home, env: Mapping[str, str], say: Say,
               passwords: Mapping[str, str] | None = None
               ) -> tuple[str, EmbeddedNats | None, str | None]:
    """The operator's NATS_URL (its credentials, if any, in it; `IGNY8_NATS_TLS_CA` from
    the environment), or the embedded server admitting only the platform's users
    (`passwords`, libs/common/natsauth.py). With `IGNY8_NATS_TLS=1` the embedded server
    requires TLS, with a CA made for this start (libs/common/natstls.py, ADR 0026).
    Returns the URL, the embedded server, and the CA file clients verify against."""
    if url := env.get("NATS_URL"):
        say("NATS: using NATS_URL")
        return url, None, env.get("IGNY8_NATS_TLS_CA")
    config = server_config(passwords or {})
    tls = None
    if nats_tls_wanted(env):
        if not natstls.available():
            raise RuntimeError("IGNY8_NATS_TLS=1 needs the `cryptography` package")
        tls = natstls.make_local_tls(home.root / "nats-tls")
        config += tls.server_block()
    server = EmbeddedNats(home.nats_store, _default(DEFAULT_NATS_PORT, env), home.log("nats"),
                          process_group=0, config=config)
    say(f"NATS: starting the embedded JetStream server on port {server.port} "
        f"({len(passwords or {})} users, no anonymous access"
        f"{', TLS required' if tls else ''})")
    server.start()
    if tls is None:
        return server.url, server, None
    return server.url.replace("nats://", "tls://", 1), server, str(tls.ca_file)


def running_database_url(home: Home, env: Mapping[str, str]) -> str | None:
    """The admin URL of the PostgreSQL that a running `igny8 up` already serves, if any."""
    if url := env.get("DATABASE_URL"):
        return url
    if not lock_held(home):
        return None
    pg = StateFile(home).read().get("run", {}).get("postgres", {})
    url = pg.get("url")
    return url if isinstance(url, str) else None


@contextlib.contextmanager
def database_only(home: Home, env: Mapping[str, str], say: Say) -> Iterator[Infrastructure]:
    """For `migrate`, `seed`, `keys rotate`: the running platform's database, the operator's
    DATABASE_URL, or the embedded server started just for this command."""
    if url := running_database_url(home, env):
        yield Infrastructure(admin_url=url, nats_url=None)
        return
    home.ensure()
    url, server = start_postgres(home, env, say)
    infra = Infrastructure(admin_url=url, nats_url=None, postgres=server)
    try:
        yield infra
    finally:
        infra.stop(say)
