"""The one registry of what the platform runs: every service, the gateway, their ports.

`igny8 up`, `igny8 migrate`, the Kubernetes manifests' test and the docs all read this
table. A service is started only when its package exists in the checkout
(`services/<name>/main.py`), so services being built later simply appear when they land.
Discovery looks at files, never at imports: an import error in a service must surface
when that service starts, not silently drop it from the platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ServiceSpec:
    """A service: an HTTP API, a worker process, and its own database and migrations."""

    name: str
    port: int
    metrics_port: int

    @property
    def app_factory(self) -> str:
        return f"services.{self.name}.main:create_app"

    @property
    def worker_module(self) -> str:
        return f"services.{self.name}.worker"

    @property
    def database(self) -> str:
        return f"igny8_{self.name}"

    def package_dir(self, root: Path = REPO_ROOT) -> Path:
        return root / "services" / self.name

    def migrations_dir(self, root: Path = REPO_ROOT) -> Path:
        return self.package_dir(root) / "migrations"

    def present(self, root: Path = REPO_ROOT) -> bool:
        return (self.package_dir(root) / "main.py").is_file()

    def has_worker(self, root: Path = REPO_ROOT) -> bool:
        return (self.package_dir(root) / "worker.py").is_file()

    def has_migrations(self, root: Path = REPO_ROOT) -> bool:
        return (self.migrations_dir(root) / "env.py").is_file()


@dataclass(frozen=True)
class GatewaySpec:
    name: str = "gateway"
    port: int = 8000
    # Its own HTTP/1.1 server (gateway/server.py, ADR 0016), not uvicorn.
    server_module: str = "gateway.server"

    def present(self, root: Path = REPO_ROOT) -> bool:
        return (root / "gateway" / "main.py").is_file()


# Order matters: auth first (it signs tokens and owns tenancy), the gateway last.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("auth", 8101, 9101),
    ServiceSpec("planner", 8102, 9102),
    ServiceSpec("writer", 8103, 9103),
    ServiceSpec("billing", 8104, 9104),
    ServiceSpec("automation", 8105, 9105),
)
GATEWAY = GatewaySpec()

# Where the JWKS lives on auth (docs/contracts.md).
JWKS_PATH = "/api/v1/auth/jwks/"
GATEWAY_PING_PATH = "/api/v1/system/ping/"


def service(name: str) -> ServiceSpec:
    for spec in SERVICES:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown service {name!r}; known: {', '.join(s.name for s in SERVICES)}")


def present_services(root: Path = REPO_ROOT) -> list[ServiceSpec]:
    """The services whose package exists in this checkout, in registry order."""
    return [spec for spec in SERVICES if spec.present(root)]
