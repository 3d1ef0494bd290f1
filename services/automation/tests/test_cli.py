"""`igny8 automation run`, as a person runs it in a terminal: its own process, against the
public API (the gateway in front of automation's app, on loopback ports), the package's
real services and automation's worker doing the run. Its output shows each stage start
and finish, in order, and the run's final status; it exits 0 for a completed run."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import httpx
import pytest

from gateway.main import create_app as create_gateway
from gateway.settings import GatewaySettings
from libs.common.testing.apps import serving_app
from libs.common.testing.factories import Tenant
from libs.common.testing.plugin import NatsIdentity
from libs.common.testing.tokens import TestIssuer
from services.automation.main import create_app
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import add_keywords, automation_worker
from services.billing.testing import Ledger

WORDS = ["french press", "best french press", "french press coffee ratio",
         "pour over coffee", "pour over kettle", "pour over vs french press"]


@pytest.mark.timeout(600)
async def test_automation_run_command_follows_the_stages_to_the_end(
        settings: AutomationSettings, issuer: TestIssuer, nats_identity: NatsIdentity,
        client: httpx.AsyncClient, planner: httpx.AsyncClient, billing: Ledger,
        tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> None:
    await add_keywords(planner, tenant, WORDS)
    token = tenant.headers()["Authorization"].removeprefix("Bearer ")
    home = tmp_path_factory.mktemp("igny8-home")
    async with serving_app(create_app(settings, keys_fetcher=issuer.fetcher())) as upstream:
        gateway = create_gateway(GatewaySettings(
            environment="test", public_url="http://testserver", **nats_identity("gateway"),
            automation_url=upstream), keys_fetcher=issuer.fetcher())
        async with serving_app(gateway) as gateway_url, automation_worker(settings):
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("IGNY8_")},
                   "IGNY8_HOME": str(home), "IGNY8_TOKEN": token, "COLUMNS": "160"}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "igny8", "automation", "run",
                "--site", str(tenant.site_id), "--url", f"{gateway_url}/api/v1",
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), 480)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    run_id = re.search(r"run (\S+) started for site", text)
    assert run_id, text
    # Each stage is seen done, in order (each is announced when the command sees it; a
    # stage that went by between two looks is announced done without having been seen
    # running).
    done = [int(n) for n in re.findall(r"^stage (\d) \(.*\) done:", text, re.MULTILINE)]
    assert done == list(range(1, 8)), text
    started = [int(n) for n in re.findall(r"^stage (\d) \(.*\) started$", text, re.MULTILINE)]
    assert started == sorted(started), text
    first = re.search(r"^stage 1 \(.*\) done: (\d+) processed", text, re.MULTILINE)
    assert first, text
    assert int(first.group(1)) == len(WORDS), text
    final = re.search(rf"run {run_id.group(1)}: (\w+), \d+ credits", text)
    assert final, text
    assert final.group(1) == "completed"
