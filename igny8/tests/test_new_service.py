"""`igny8 new-service`: a service generated into a copy of this checkout passes its own
tests, lints clean, and takes its place in the registry, the gateway and the deploys."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from igny8.scaffold import ScaffoldError, plan
from igny8.services import REPO_ROOT, SERVICES

pytestmark = pytest.mark.timeout(600)  # copies the tree and runs a pytest of its own


def copy_checkout(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


def run(checkout: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, *argv], cwd=checkout, capture_output=True,
                          text=True, timeout=500,
                          env={**os.environ, "PYTHONPATH": str(checkout), **(env or {})})
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def test_names_and_ports() -> None:
    assert plan("writer").port == 8103  # in the registry already: its ports are kept
    fresh = plan("notes")
    assert fresh.port == max(s.port for s in SERVICES) + 1
    assert fresh.metrics_port == max(s.metrics_port for s in SERVICES) + 1
    for bad in ("Notes", "2fa", "my-service", "x"):
        with pytest.raises(ScaffoldError):
            plan(bad)


def test_a_generated_service_passes_its_own_tests(
        tmp_path: Path, postgres_admin_url: str, nats_url: str) -> None:
    checkout = tmp_path / "checkout"
    copy_checkout(checkout)
    out = run(checkout, "-m", "igny8", "new-service", "notes")
    assert "created  services/notes/main.py" in out
    assert "updated  gateway/routes.py" in out
    assert "updated  deploy/docker-compose.yml" in out
    again = run(checkout, "-m", "igny8", "new-service", "notes")
    assert "created" not in again  # a second run changes nothing
    assert "updated" not in again

    run(checkout, "-m", "ruff", "check", "services/notes", "igny8", "gateway/routes.py")
    run(checkout, "-m", "mypy", "services/notes")
    servers = {"IGNY8_TEST_DATABASE_URL": postgres_admin_url, "IGNY8_TEST_NATS_URL": nats_url}
    tested = run(checkout, "-m", "pytest", "-q", "services/notes", "tests/test_migrations.py",
                 "igny8/tests/test_deploy.py", "igny8/tests/test_services.py",
                 "-k", "notes or deploy or services", env=servers)
    assert " passed" in tested
    assert "failed" not in tested
    assert "services.notes.worker" in (checkout / "deploy/k8s/base/services/notes.yaml").read_text()
