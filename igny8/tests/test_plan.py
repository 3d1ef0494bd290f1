"""The process plan of `igny8 up`, computed without starting anything."""

from __future__ import annotations

import itertools

import pytest

from igny8.plan import (
    PlatformInputs,
    ServiceDatabaseUrls,
    allocate_ports,
    api_url,
    docs_url,
    plan_processes,
    port_names,
)
from igny8.services import SERVICES, service


def _inputs(names: tuple[str, ...] = ("auth", "planner"), **kw: object) -> PlatformInputs:
    services = [service(n) for n in names]
    ports = {name: port for name, port in port_names(services).items()}
    databases = {
        n: ServiceDatabaseUrls(
            app_url=f"postgresql://igny8_{n}_app:pw@127.0.0.1:54329/igny8_{n}",
            owner_url=f"postgresql://postgres@127.0.0.1:54329/igny8_{n}",
        )
        for n in names
    }
    return PlatformInputs(services=services, ports=ports, databases=databases,
                          nats_url="nats://127.0.0.1:4223", secret_key="s3cret",
                          python="/venv/bin/python", **kw)  # type: ignore[arg-type]


def test_every_service_gets_an_api_and_a_worker_then_the_gateway() -> None:
    processes = plan_processes(_inputs())
    assert [p.name for p in processes] == [
        "auth-api", "auth-worker", "planner-api", "planner-worker", "gateway"]
    assert [p.kind for p in processes] == ["api", "worker", "api", "worker", "gateway"]


def test_api_runs_the_service_factory_under_uvicorn_on_its_port() -> None:
    auth = plan_processes(_inputs())[0]
    assert auth.argv == (
        "/venv/bin/python", "-m", "uvicorn", "services.auth.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", "8101", "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--no-server-header", "--no-date-header",
    )
    assert auth.health == ("http://127.0.0.1:8101/healthz", "http://127.0.0.1:8101/readyz")


def test_service_env_follows_the_contract() -> None:
    auth_api, auth_worker = plan_processes(_inputs())[:2]
    env = auth_api.env
    assert env["IGNY8_DATABASE_URL"].startswith("postgresql://igny8_auth_app:")
    assert env["IGNY8_MIGRATION_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:54329/igny8_auth"
    assert env["IGNY8_NATS_URL"] == "nats://127.0.0.1:4223"
    assert env["IGNY8_SECRET_KEY"] == "s3cret"
    assert env["IGNY8_PUBLIC_URL"] == "http://localhost:8000"
    assert env["IGNY8_JWKS_URL"] == "http://127.0.0.1:8101/api/v1/auth/jwks/"
    assert env["IGNY8_HTTP_PORT"] == "8101"
    assert "IGNY8_METRICS_PORT" not in env
    assert auth_worker.argv == ("/venv/bin/python", "-m", "services.auth.worker")
    assert auth_worker.env["IGNY8_METRICS_PORT"] == "9101"
    assert auth_worker.env["IGNY8_DATABASE_URL"] == env["IGNY8_DATABASE_URL"]
    assert auth_worker.health == ("http://127.0.0.1:9101/healthz",)
    assert auth_worker.env["IGNY8_METRICS_HOST"] == "127.0.0.1"


def test_each_service_gets_its_own_database() -> None:
    processes = {p.name: p for p in plan_processes(_inputs())}
    assert processes["planner-api"].env["IGNY8_DATABASE_URL"].endswith("/igny8_planner")
    assert processes["auth-api"].env["IGNY8_DATABASE_URL"].endswith("/igny8_auth")


def test_gateway_knows_every_present_upstream_and_the_jwks() -> None:
    gateway = plan_processes(_inputs())[-1]
    assert gateway.argv[1:3] == ("-m", "gateway.server")
    assert gateway.env["IGNY8_AUTH_URL"] == "http://127.0.0.1:8101"
    assert gateway.env["IGNY8_PLANNER_URL"] == "http://127.0.0.1:8102"
    assert "IGNY8_WRITER_URL" not in gateway.env
    assert gateway.env["IGNY8_JWKS_URL"] == "http://127.0.0.1:8101/api/v1/auth/jwks/"
    assert gateway.env["IGNY8_HTTP_PORT"] == "8000"
    assert "IGNY8_DATABASE_URL" not in gateway.env
    assert gateway.health == ("http://127.0.0.1:8000/api/v1/system/ping/",)


def test_urls_follow_the_chosen_gateway_port() -> None:
    inputs = _inputs()
    ports = {**inputs.ports, "gateway": 8357}
    processes = plan_processes(PlatformInputs(**{**inputs.__dict__, "ports": ports}))
    assert all(p.env["IGNY8_PUBLIC_URL"] == "http://localhost:8357" for p in processes)
    assert api_url(ports) == "http://localhost:8357/api/v1/"
    assert docs_url(ports) == "http://localhost:8357/api/docs/"


def test_services_without_a_worker_module_get_no_worker() -> None:
    processes = plan_processes(_inputs(), with_workers={"auth": True, "planner": False})
    assert [p.name for p in processes] == ["auth-api", "auth-worker", "planner-api", "gateway"]


def test_without_a_gateway_only_services_run() -> None:
    processes = plan_processes(_inputs(gateway_present=False))
    assert "gateway" not in [p.name for p in processes]


def test_auth_is_required() -> None:
    with pytest.raises(ValueError, match="auth"):
        plan_processes(_inputs(("planner",)))


def test_ports_default_when_free() -> None:
    wanted = port_names(list(SERVICES))
    chosen = allocate_ports(wanted, is_free=lambda _: True, pick_free=lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    assert chosen == wanted
    assert chosen["gateway"] == 8000
    assert chosen["billing-api"] == 8104


def test_taken_ports_are_replaced_and_never_reused() -> None:
    wanted = {"gateway": 8000, "auth-api": 8101, "auth-worker": 9101}
    kernel = itertools.chain([40001, 40001, 40002])  # the kernel may hand out a port twice
    chosen = allocate_ports(wanted, is_free=lambda port: port != 8000 and port != 9101,
                            pick_free=lambda: next(kernel))
    assert chosen == {"gateway": 40001, "auth-api": 8101, "auth-worker": 40002}


def test_two_names_with_the_same_default_get_different_ports() -> None:
    ports = iter([50000])
    chosen = allocate_ports({"a": 7000, "b": 7000}, is_free=lambda _: True,
                            pick_free=lambda: next(ports))
    assert chosen == {"a": 7000, "b": 50000}


def test_ports_any_leaves_every_default_to_other_platforms() -> None:
    """`IGNY8_PORTS=any` (the e2e tests, the benches): no default port is taken, even a
    free one, so platforms started together on one machine cannot race for it."""
    from igny8.infra import _default
    from igny8.platform import choose_ports

    defaults = set(port_names(list(SERVICES)).values())
    chosen = choose_ports(list(SERVICES), {"IGNY8_PORTS": "any"})
    assert set(chosen) == set(port_names(list(SERVICES)))
    assert not defaults & set(chosen.values())
    assert len(set(chosen.values())) == len(chosen)
    assert _default(5432, {"IGNY8_PORTS": "any"}) is None
    assert _default(5432, {}) == 5432


def test_every_process_connects_to_nats_as_its_own_user() -> None:
    """Issue 13 H3: the embedded NATS admits only these users (libs/common/natsauth.py)."""
    passwords = {"auth": "a-pw", "planner": "p-pw", "gateway": "g-pw"}
    processes = {p.name: p.env for p in plan_processes(_inputs(nats_passwords=passwords))}
    for name, user in (("auth-api", "auth"), ("auth-worker", "auth"),
                       ("planner-api", "planner"), ("planner-worker", "planner"),
                       ("gateway", "gateway")):
        assert processes[name]["IGNY8_NATS_USER"] == user
        assert processes[name]["IGNY8_NATS_PASSWORD"] == passwords[user]
        assert "@" not in processes[name]["IGNY8_NATS_URL"]
    # The operator's NATS_URL: whatever credentials it carries, nothing added.
    plain = plan_processes(_inputs())
    assert all("IGNY8_NATS_PASSWORD" not in p.env for p in plain)
