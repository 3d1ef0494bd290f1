"""`make deploy-check` in CI: the overlays render, every object validates strictly against
its schema, checkov passes with its justified skips, promtool accepts the configurations,
the rules and their unit tests (issue 13's evidence). And the checker catches what it
claims to: unknown fields, wrong types, unknown kinds, a KEDA trigger's misspelt key."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(600)  # checkov over two overlays: tens of seconds


def load_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_check", REPO / "deploy" / "check.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = load_check()


@pytest.fixture(scope="module")
def prod() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = check.render("overlays/prod")
    return docs


def test_make_deploy_check_passes() -> None:
    done = subprocess.run(["make", "-s", "deploy-check"], cwd=REPO, capture_output=True,
                          text=True, timeout=580)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "deploy-check: ok" in done.stdout
    for target in ("base", "overlays/dev", "overlays/prod"):
        assert f"rendered {target}:" in done.stdout


def _first(docs: list[dict[str, Any]], kind: str, name_part: str = "") -> dict[str, Any]:
    return copy.deepcopy(next(d for d in docs
                              if d["kind"] == kind and name_part in d["metadata"]["name"]))


def test_strict_validation_refuses_unknown_fields_and_wrong_types(
        prod: list[dict[str, Any]]) -> None:
    assert check.validate("prod", prod) == []
    deployment = _first(prod, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    (problem,) = check.problems_of(deployment)
    assert "imagePullPolicyy" in problem
    cluster = _first(prod, "Cluster")
    cluster["spec"]["postgresql"]["paramters"] = {}
    assert any("paramters" in p for p in check.problems_of(cluster))
    cluster = _first(prod, "Cluster")
    cluster["spec"]["instances"] = "three"
    assert any("instances" in p for p in check.problems_of(cluster))
    scaled = _first(prod, "ScaledObject", "planner")
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshhold"] = "5"
    assert any("lagThreshhold" in p for p in check.problems_of(scaled))
    unknown = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "x"}}
    assert any("no schema" in p for p in check.problems_of(unknown))


def test_the_release_names_the_jobs_and_tags_every_image(prod: list[dict[str, Any]]) -> None:
    images = {c["image"] for d in prod if d["kind"] in ("Deployment", "Job")
              for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {"ghcr.io/igny8/igny8:0.1.0"}
    jobs = sorted(d["metadata"]["name"] for d in prod if d["kind"] == "Job")
    assert jobs
    assert all(name.endswith("-migrate-0-1-0") for name in jobs)


def test_checkov_would_fail_a_privileged_container(prod: list[dict[str, Any]],
                                                   tmp_path: Path) -> None:
    deployment = _first(prod, "Deployment", "gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True}
    failed = check.checkov("probe", [deployment], tmp_path)
    assert any("CKV_K8S_16" in f for f in failed), failed  # privileged containers


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))


def test_nats_tls_is_checked_end_to_end(prod: list[dict[str, Any]]) -> None:
    """ADR 0026: deploy-check refuses NATS without TLS: a chart that does not require it,
    a plaintext URL, a NATS client without the CA mounted."""
    assert check.nats_tls("prod", prod) == []
    values = yaml.safe_load((REPO / "deploy/k8s/nats/values.yaml").read_text())
    values["config"]["nats"]["tls"]["enabled"] = False
    assert any("config.nats.tls" in p for p in check.nats_tls("prod", prod, values))

    plaintext = copy.deepcopy(prod)
    config = next(d for d in plaintext if d["kind"] == "ConfigMap"
                  and d["metadata"]["name"] == "igny8-config")
    config["data"]["IGNY8_NATS_URL"] = "nats://nats:4222"
    assert any("not tls://" in p for p in check.nats_tls("prod", plaintext))

    unmounted = copy.deepcopy(prod)
    worker = next(d for d in unmounted if d["kind"] == "Deployment"
                  and d["metadata"]["name"] == "igny8-billing-worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "nats-ca"]
    (problem,) = check.nats_tls("prod", unmounted)
    assert "igny8-billing-worker" in problem
