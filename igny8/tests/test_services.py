"""The service registry: discovery by files, not imports."""

from __future__ import annotations

from pathlib import Path

import pytest

from igny8.services import GATEWAY, SERVICES, present_services, service


def _make(root: Path, *files: str) -> None:
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")


def test_only_services_with_a_main_module_are_present(tmp_path: Path) -> None:
    _make(tmp_path, "services/auth/main.py", "services/auth/worker.py",
          "services/billing/models.py", "services/planner/main.py")
    assert [s.name for s in present_services(tmp_path)] == ["auth", "planner"]


def test_a_broken_service_is_still_discovered(tmp_path: Path) -> None:
    # Discovery never imports: a service whose import fails must fail loudly at start.
    (tmp_path / "services/writer").mkdir(parents=True)
    (tmp_path / "services/writer/main.py").write_text("raise RuntimeError('broken')\n")
    assert [s.name for s in present_services(tmp_path)] == ["writer"]


def test_worker_and_migrations_are_detected(tmp_path: Path) -> None:
    _make(tmp_path, "services/auth/main.py", "services/auth/worker.py",
          "services/auth/migrations/env.py", "services/planner/main.py")
    auth, planner = service("auth"), service("planner")
    assert auth.has_worker(tmp_path)
    assert auth.has_migrations(tmp_path)
    assert not planner.has_worker(tmp_path)
    assert not planner.has_migrations(tmp_path)
    assert auth.migrations_dir(tmp_path) == tmp_path / "services/auth/migrations"


def test_registry_matches_the_contract_ports() -> None:
    ports = {s.name: s.port for s in SERVICES}
    assert ports.items() >= {  # services added later (igny8 new-service) come after these
        "auth": 8101, "planner": 8102, "writer": 8103, "billing": 8104,
        "automation": 8105}.items()
    every_port = [p for s in SERVICES for p in (s.port, s.metrics_port)] + [GATEWAY.port]
    assert len(every_port) == len(set(every_port))
    assert GATEWAY.port == 8000
    assert service("billing").app_factory == "services.billing.main:create_app"
    assert service("billing").worker_module == "services.billing.worker"
    assert service("billing").database == "igny8_billing"
    with pytest.raises(KeyError):
        service("nope")
