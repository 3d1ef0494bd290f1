"""deploy/ follows the service registry: every service has its API and worker Deployments
with a Service, HPA and PDB each, a migration Job, a database, a compose entry, and the
gateway knows where each one lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from igny8.services import GATEWAY, SERVICES, ServiceSpec

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "k8s" / "base"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    for spec in SERVICES:
        assert f"services/{spec.name}.yaml" in resources
    assert {"gateway.yaml", "postgres.yaml", "config.yaml", "../../prometheus",
            "../../grafana"} <= resources


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_service_manifests(spec: ServiceSpec) -> None:
    found = _by_kind_name(_docs(BASE / "services" / f"{spec.name}.yaml"))
    for part in ("api", "worker"):
        name = f"igny8-{spec.name}-{part}"
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert (kind, name) in found, f"{kind} {name} is missing"
    api = _container(found[("Deployment", f"igny8-{spec.name}-api")])
    assert spec.app_factory in api["command"]
    assert str(spec.port) in api["command"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert _env(api)["IGNY8_DATABASE_URL"].endswith(f"/{spec.database}")
    worker = _container(found[("Deployment", f"igny8-{spec.name}-worker")])
    assert worker["command"] == ["python", "-m", spec.worker_module]
    assert "IGNY8_METRICS_PORT" in _env(worker)
    assert _env(worker)["IGNY8_METRICS_HOST"] == "0.0.0.0"  # the pod's address is scraped
    for probe in ("livenessProbe", "startupProbe"):
        assert worker[probe]["httpGet"]["path"] == "/healthz"  # loops running, NATS there
    job = found[("Job", f"igny8-{spec.name}-migrate")]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["igny8", "migrate", "--service", spec.name]
    assert f"IGNY8_{spec.name.upper()}_DB_PASSWORD" in _env(migrate)


def test_one_database_and_runtime_role_per_service() -> None:
    found = _by_kind_name(_docs(BASE / "postgres.yaml"))
    cluster = found[("Cluster", "igny8-pg")]
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    for spec in SERVICES:
        database = found[("Database", f"igny8-{spec.name}")]
        assert database["spec"]["name"] == spec.database
        assert roles[f"igny8_{spec.name}_app"]["bypassrls"] is False


def test_gateway_behind_an_ingress_knows_every_upstream() -> None:
    found = _by_kind_name(_docs(BASE / "gateway.yaml"))
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "Ingress"):
        assert (kind, "igny8-gateway") in found
    assert GATEWAY.server_module in _container(found[("Deployment", "igny8-gateway")])["command"]
    (config,) = _docs(BASE / "config.yaml")
    for spec in SERVICES:
        assert config["data"][f"IGNY8_{spec.name.upper()}_URL"] == \
            f"http://igny8-{spec.name}-api:{spec.port}"
    assert config["data"]["IGNY8_JWKS_URL"].startswith("http://igny8-auth-api:8101/")


def test_grafana_configmap_ships_every_dashboard() -> None:
    kustomization = yaml.safe_load((DEPLOY / "grafana" / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    shipped = {Path(f).name for f in generator["files"]}
    assert shipped == {p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")}


def test_compose_runs_every_service_and_the_gateway() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for spec in SERVICES:
        api, worker = compose[f"{spec.name}-api"], compose[f"{spec.name}-worker"]
        assert spec.app_factory in api["command"]
        assert worker["command"] == ["python", "-m", spec.worker_module]
        assert worker["healthcheck"]["test"][-1].endswith(":9100/healthz', timeout=2)")
        assert api["environment"]["IGNY8_DATABASE_URL"].endswith(f"/{spec.database}")
        assert compose["gateway"]["environment"][f"IGNY8_{spec.name.upper()}_URL"] == \
            f"http://{spec.name}-api:{spec.port}"
    assert GATEWAY.server_module in compose["gateway"]["command"]
    assert "-js" in compose["nats"]["command"]
    assert compose["migrate"]["command"] == ["igny8", "migrate"]
