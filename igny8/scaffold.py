"""`igny8 new-service NAME`: a working empty service, and its place in the platform.

The package comes from `igny8/templates/service/` (every module of the house shape, each a
few lines that call the kernel); a file that already exists is never overwritten, so a
package that holds domain code already gets the missing modules only. Then the service
gets its ports in the registry (`igny8/services.py`), its prefix in the gateway's table
(`gateway/routes.py`), and its compose and Kubernetes entries, cloned from the last
service of the registry with names and ports changed: its manifests (without the model's
consumer-lag triggers: the new service's consumers are its own), its migration Job, its
database and role, and its share of PostgreSQL's max_connections. Each edit is skipped
when the service is already there, so running the command twice changes nothing.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from igny8 import natsdeploy
from igny8.services import SERVICES, ServiceSpec

TEMPLATES = Path(__file__).parent / "templates" / "service"
NAME = re.compile(r"^[a-z][a-z0-9]{1,30}$")


class ScaffoldError(ValueError):
    pass


@dataclass(frozen=True)
class NewService:
    name: str
    port: int
    metrics_port: int
    # The service whose deploy entries are cloned (the registry's last, not this one).
    model: ServiceSpec

    @property
    def camel(self) -> str:
        return self.name.capitalize()

    def substitutions(self) -> dict[str, str]:
        return {"name": self.name, "Name": self.camel, "NAME": self.name.upper(),
                "port": str(self.port), "metrics_port": str(self.metrics_port)}


def plan(name: str, registry: tuple[ServiceSpec, ...] = SERVICES) -> NewService:
    """Ports from the registry when the name is there (writer, automation), else the
    next free pair after the highest ones."""
    if not NAME.match(name):
        raise ScaffoldError(f"{name!r}: use 2-31 lowercase letters and digits, starting "
                            "with a letter (it names a package, a database and a route)")
    known = {spec.name: spec for spec in registry}
    model = next(spec for spec in reversed(registry) if spec.name != name)
    if name in known:
        return NewService(name, known[name].port, known[name].metrics_port, model)
    return NewService(name, max(s.port for s in registry) + 1,
                      max(s.metrics_port for s in registry) + 1, model)


def render_package(new: NewService) -> dict[Path, str]:
    """Relative path under `services/<name>/` → file text."""
    files: dict[Path, str] = {}
    for template in sorted(TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(TEMPLATES).with_suffix("")
        text = string.Template(template.read_text()).substitute(new.substitutions())
        files[relative] = text
    return files


# --- edits of the shared files -----------------------------------------------------------


def _clone(text: str, model: ServiceSpec, new: NewService) -> str:
    """`text` (a block about `model`) rewritten for the new service."""
    for old, fresh in ((model.name.upper(), new.name.upper()),
                       (model.name.capitalize(), new.camel), (model.name, new.name),
                       (str(model.port), str(new.port)),
                       (str(model.metrics_port), str(new.metrics_port))):
        text = text.replace(old, fresh)
    return text


def _span(text: str, start: str, end: str | None = None) -> str:
    """`text` from `start` through the first `end` after it, or up to the first blank line
    (or the end of the text)."""
    begin = text.index(start)
    if end is not None:
        return text[begin:text.index(end, begin) + len(end)]
    stop = text.find("\n\n", begin)
    return text[begin:] if stop < 0 else text[begin:stop + 1]


def _after(text: str, block: str, addition: str) -> str:
    at = text.index(block) + len(block)
    return text[:at] + addition + text[at:]


def add_to_registry(text: str, new: NewService) -> str:
    if f'ServiceSpec("{new.name}",' in text:
        return text
    line = f'    ServiceSpec("{new.model.name}", {new.model.port}, {new.model.metrics_port}),\n'
    return _after(text, line,
                  f'    ServiceSpec("{new.name}", {new.port}, {new.metrics_port}),\n')


def add_gateway_route(text: str, new: NewService) -> str:
    if f'    "{new.name}": (' in text:
        return text
    table = _span(text, "SERVICE_PREFIXES", "\n}")
    return text.replace(table, table[:-1] + f'    "{new.name}": ("/api/v1/{new.name}/",),\n}}')


def add_to_compose(text: str, new: NewService) -> str:
    if f"\n  {new.name}-api:" in text:
        return text
    m = new.model
    worker = _span(text, f"  {m.name}-worker:\n")
    api_and_worker = _span(text, f"  {m.name}-api:\n", worker)
    text = _after(text, api_and_worker, "\n" + _clone(api_and_worker, m, new))
    for line in (f"  IGNY8_{m.name.upper()}_DB_PASSWORD: {m.name}-local\n",
                 f"  IGNY8_NATS_PASSWORD_{m.name.upper()}: {m.name}-nats-local\n",
                 f"      IGNY8_{m.name.upper()}_URL: http://{m.name}-api:{m.port}\n"):
        text = _after(text, line, _clone(line, m, new))
    return text


def add_to_prometheus(text: str, new: NewService) -> str:
    if f"igny8-{new.name}-api" in text:
        return text
    m = new.model
    jobs = _span(text, f"  - job_name: igny8-{m.name}-api\n", f'"{m.name}-worker:9100"]}}]\n')
    return _after(text, jobs, _clone(jobs, m, new))


def without_consumer_triggers(manifest: str) -> str:
    """A worker's ScaledObject without its `nats-jetstream` triggers (each a comment line
    and the trigger's block), keeping the CPU one."""
    return re.sub(r"  # Backlog: [^\n]*\n  - type: nats-jetstream\n(?:    [^\n]*\n)*", "",
                  manifest)


def connections_at_maximum(manifest: str) -> int:
    """PostgreSQL connections a service's manifest can open: per Deployment its
    `igny8.io/db-connections` times its autoscaler's maximum plus one surge pod."""
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    maxima: dict[str, int] = {}
    for doc in docs:
        if doc["kind"] == "HorizontalPodAutoscaler":
            maxima[doc["spec"]["scaleTargetRef"]["name"]] = doc["spec"]["maxReplicas"]
        elif doc["kind"] == "ScaledObject":
            maxima[doc["spec"]["scaleTargetRef"]["name"]] = doc["spec"]["maxReplicaCount"]
    total = 0
    for doc in docs:
        per_pod = _annotations(doc).get("igny8.io/db-connections")
        if per_pod is not None:
            total += int(per_pod) * (maxima.get(doc["metadata"]["name"], 0) + 1)
    return total


def _annotations(doc: dict[str, Any]) -> dict[str, str]:
    return doc.get("metadata", {}).get("annotations") or {}


def add_to_kustomization(text: str, new: NewService) -> str:
    line = f"  - services/{new.model.name}.yaml\n"
    if f"services/{new.name}.yaml" in text:
        return text
    return _after(text, line, _clone(line, new.model, new))


def add_to_config(text: str, new: NewService) -> str:
    m = new.model
    line = f"  IGNY8_{m.name.upper()}_URL: http://igny8-{m.name}-api:{m.port}\n"
    if f"IGNY8_{new.name.upper()}_URL" in text:
        return text
    return _after(text, line, _clone(line, m, new))


def add_to_migrations(text: str, new: NewService) -> str:
    line = f"  - {new.model.name}.yaml\n"
    if f"  - {new.name}.yaml\n" in text:
        return text
    return _after(text, line, _clone(line, new.model, new))


def add_to_postgres(text: str, new: NewService, added_connections: int = 0) -> str:
    """The service's runtime role and database, and `added_connections` more on
    max_connections (igny8/tests/test_deploy.py checks the sum)."""
    if f"igny8_{new.name}_app" in text:
        return text
    m = new.model
    current = re.search(r"max_connections: '(\d+)'", text)
    if current and added_connections:
        text = text.replace(current.group(0),
                            f"max_connections: '{int(current.group(1)) + added_connections}'")
    role = _span(text, f"    - name: igny8_{m.name}_app\n", f"name: igny8-{m.name}-db\n")
    text = _after(text, role, _clone(role, m, new))
    head = f"apiVersion: postgresql.cnpg.io/v1\nkind: Database\nmetadata:\n  name: igny8-{m.name}\n"
    begin = text.index(head)
    stop = text.find("\n---", begin)
    database = text[begin:] if stop < 0 else text[begin:stop + 1]
    return text.rstrip("\n") + "\n---\n" + _clone(database, m, new)


SHARED_EDITS = (
    ("igny8/services.py", add_to_registry),
    ("gateway/routes.py", add_gateway_route),
    ("deploy/docker-compose.yml", add_to_compose),
    ("deploy/prometheus/prometheus-compose.yml", add_to_prometheus),
    ("deploy/k8s/base/kustomization.yaml", add_to_kustomization),
    ("deploy/k8s/base/config.yaml", add_to_config),
    ("deploy/k8s/migrations/kustomization.yaml", add_to_migrations),
)


def create(root: Path, new: NewService) -> list[str]:
    """Write the service into the checkout at `root`; what was done, line by line."""
    done: list[str] = []
    package = root / "services" / new.name
    for relative, text in render_package(new).items():
        path = package / relative
        if path.exists():
            done.append(f"kept     services/{new.name}/{relative} (exists)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        done.append(f"created  services/{new.name}/{relative}")
    k8s = root / "deploy" / "k8s"
    manifest = k8s / "base" / "services" / f"{new.name}.yaml"
    if not manifest.exists():
        model = manifest.with_name(f"{new.model.name}.yaml")
        manifest.write_text(without_consumer_triggers(_clone(model.read_text(), new.model, new)))
        done.append(f"created  {manifest.relative_to(root)}")
    job = k8s / "migrations" / f"{new.name}.yaml"
    if not job.exists():
        job.write_text(_clone(job.with_name(f"{new.model.name}.yaml").read_text(),
                              new.model, new))
        done.append(f"created  {job.relative_to(root)}")
    postgres = k8s / "base" / "postgres.yaml"
    before = postgres.read_text()
    after = add_to_postgres(before, new, connections_at_maximum(manifest.read_text())
                            + connections_at_maximum(job.read_text()))
    if after != before:
        postgres.write_text(after)
        done.append(f"updated  {postgres.relative_to(root)}")
    for relative_path, edit in SHARED_EDITS:
        path = root / relative_path
        before = path.read_text()
        after = edit(before, new)
        if after != before:
            path.write_text(after)
            done.append(f"updated  {relative_path}")
    # Its NATS user, in the Helm values and compose's server configuration.
    names = list(dict.fromkeys([*(s.name for s in SERVICES), new.name]))
    for relative_path, render in ((natsdeploy.HELM_VALUES, natsdeploy.helm_values),
                                  (natsdeploy.COMPOSE_CONFIG, natsdeploy.compose_config)):
        path = root / relative_path
        text = render(names)
        if path.read_text() != text:
            path.write_text(text)
            done.append(f"updated  {relative_path}")
    return done
