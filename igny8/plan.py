"""What `igny8 up` will run, computed without running anything.

Pure functions from the registry, the chosen ports and the database URLs to the list of
processes with their command lines, environments and health checks, so all of it is
unit-tested without starting a server.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from igny8.services import GATEWAY, GATEWAY_PING_PATH, JWKS_PATH, GatewaySpec, ServiceSpec
from libs.common.natsauth import GATEWAY_USER

LOCALHOST = "127.0.0.1"
DEFAULT_POSTGRES_PORT = 54329
DEFAULT_NATS_PORT = 4223


@dataclass(frozen=True)
class ProcessSpec:
    """One child process of `igny8 up`."""

    name: str  # auth-api, auth-worker, gateway
    kind: str  # api | worker | gateway
    argv: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    # Checked in order; each must answer 200 before the next is tried.
    health: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ServiceDatabaseUrls:
    app_url: str  # the runtime role (cannot bypass row-level security)
    owner_url: str  # the owner role, for migrations only


@dataclass(frozen=True)
class PlatformInputs:
    services: Sequence[ServiceSpec]
    ports: Mapping[str, int]
    databases: Mapping[str, ServiceDatabaseUrls]
    nats_url: str
    secret_key: str
    gateway: GatewaySpec = GATEWAY
    gateway_present: bool = True
    python: str = sys.executable
    environment: str = "development"
    # Each process's NATS password by user (service name, `gateway`); empty when the
    # operator's NATS_URL says how to connect.
    nats_passwords: Mapping[str, str] = field(default_factory=dict)
    # The CA the NATS server's certificate is verified against (TLS), if any.
    nats_tls_ca: str | None = None


def port_names(services: Sequence[ServiceSpec], gateway: GatewaySpec = GATEWAY
               ) -> dict[str, int]:
    """Every port the platform listens on, named by process, with its default. The
    gateway's port is chosen first (it is the one users type) and always: the public URL
    every service links to names it."""
    wanted: dict[str, int] = {gateway.name: gateway.port}
    for spec in services:
        wanted[f"{spec.name}-api"] = spec.port
        wanted[f"{spec.name}-worker"] = spec.metrics_port
    return wanted


def allocate_ports(
    wanted: Mapping[str, int],
    is_free: Callable[[int], bool],
    pick_free: Callable[[], int],
) -> dict[str, int]:
    """The default port where it is free, else another free one; never the same port twice."""
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name, default in wanted.items():
        port = default if default not in taken and is_free(default) else 0
        attempts = 0
        while port == 0 or port in taken:
            attempts += 1
            if attempts > 100:
                raise RuntimeError(f"no free port found for {name}")
            port = pick_free()
        chosen[name] = port
        taken.add(port)
    return chosen


def local_url(port: int) -> str:
    return f"http://{LOCALHOST}:{port}"


def public_url(ports: Mapping[str, int], gateway: GatewaySpec = GATEWAY) -> str:
    """What users type: the gateway on localhost."""
    return f"http://localhost:{ports[gateway.name]}"


def api_url(ports: Mapping[str, int]) -> str:
    return public_url(ports) + "/api/v1/"


def docs_url(ports: Mapping[str, int]) -> str:
    return public_url(ports) + "/api/docs/"


def jwks_url(ports: Mapping[str, int]) -> str:
    return local_url(ports["auth-api"]) + JWKS_PATH


def uvicorn_argv(python: str, factory: str, port: int) -> tuple[str, ...]:
    return (
        python, "-m", "uvicorn", factory, "--factory",
        "--host", LOCALHOST, "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        # The gateway sets its own Server and Date: each service skips writing them.
        "--no-server-header", "--no-date-header",
    )


def common_env(inputs: PlatformInputs) -> dict[str, str]:
    """What every process gets (docs/contracts.md)."""
    return {
        "IGNY8_ENVIRONMENT": inputs.environment,
        "IGNY8_NATS_URL": inputs.nats_url,
        "IGNY8_SECRET_KEY": inputs.secret_key,
        "IGNY8_PUBLIC_URL": public_url(inputs.ports, inputs.gateway),
        "IGNY8_JWKS_URL": jwks_url(inputs.ports),
        # A WordPress or model server on this machine is the usual development target.
        "IGNY8_OUTBOUND_ALLOW_PRIVATE": "1" if inputs.environment == "development" else "0",
        "PYTHONUNBUFFERED": "1",
        **({"IGNY8_NATS_TLS_CA": inputs.nats_tls_ca} if inputs.nats_tls_ca else {}),
    }


def nats_identity_env(inputs: PlatformInputs, user: str) -> dict[str, str]:
    """The process's own NATS user and password (libs/common/natsauth.py)."""
    if user not in inputs.nats_passwords:
        return {}
    return {"IGNY8_NATS_USER": user, "IGNY8_NATS_PASSWORD": inputs.nats_passwords[user]}


def service_env(inputs: PlatformInputs, spec: ServiceSpec) -> dict[str, str]:
    db = inputs.databases[spec.name]
    return {
        **common_env(inputs),
        **nats_identity_env(inputs, spec.name),
        "IGNY8_DATABASE_URL": db.app_url,
        "IGNY8_MIGRATION_DATABASE_URL": db.owner_url,
        "IGNY8_HTTP_PORT": str(inputs.ports[f"{spec.name}-api"]),
    }


def upstream_env_name(service: str) -> str:
    return f"IGNY8_{service.upper()}_URL"


def gateway_env(inputs: PlatformInputs) -> dict[str, str]:
    env = {
        **common_env(inputs),
        **nats_identity_env(inputs, GATEWAY_USER),
        "IGNY8_HTTP_PORT": str(inputs.ports[inputs.gateway.name]),
    }
    for spec in inputs.services:
        env[upstream_env_name(spec.name)] = local_url(inputs.ports[f"{spec.name}-api"])
    return env


def plan_processes(inputs: PlatformInputs, *, with_workers: Mapping[str, bool] | None = None
                   ) -> list[ProcessSpec]:
    """Every child process: each service's API and worker, then the gateway.

    `with_workers` says which services ship a worker module (default: all of them).
    """
    if "auth" not in {s.name for s in inputs.services}:
        raise ValueError("the platform needs the auth service (it signs every token)")
    processes: list[ProcessSpec] = []
    for spec in inputs.services:
        api_port = inputs.ports[f"{spec.name}-api"]
        env = service_env(inputs, spec)
        processes.append(ProcessSpec(
            name=f"{spec.name}-api",
            kind="api",
            argv=uvicorn_argv(inputs.python, spec.app_factory, api_port),
            env=env,
            port=api_port,
            health=(local_url(api_port) + "/healthz", local_url(api_port) + "/readyz"),
        ))
        if with_workers is None or with_workers.get(spec.name, False):
            metrics_port = inputs.ports[f"{spec.name}-worker"]
            processes.append(ProcessSpec(
                name=f"{spec.name}-worker",
                kind="worker",
                argv=(inputs.python, "-m", spec.worker_module),
                env={**env, "IGNY8_METRICS_HOST": LOCALHOST,
                     "IGNY8_METRICS_PORT": str(metrics_port)},
                port=metrics_port,
                health=(local_url(metrics_port) + "/healthz",),
            ))
    if inputs.gateway_present:
        port = inputs.ports[inputs.gateway.name]
        processes.append(ProcessSpec(
            name=inputs.gateway.name,
            kind="gateway",
            argv=(inputs.python, "-m", inputs.gateway.server_module,
                  "--host", LOCALHOST, "--port", str(port)),
            env=gateway_env(inputs),
            port=port,
            health=(local_url(port) + GATEWAY_PING_PATH,),
        ))
    return processes
