"""`igny8 automation run`, as a person runs it in a terminal: its own process, against the
public API (the gateway in front of automation's app, on loopback ports), the package's
real services and automation's worker doing the run. Its output shows each stage start
and finish, in order, and the run's final status; it exits 0 for a completed run, 1 with
the estimate when the balance is short; Ctrl-C with --pause-on-exit pauses the run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.main import create_app as create_gateway
from gateway.settings import GatewaySettings
from libs.common.testing.apps import serving_app
from libs.common.testing.checks import eventually
from libs.common.testing.factories import Tenant
from libs.common.testing.plugin import NatsIdentity
from libs.common.testing.tokens import TestIssuer
from services.automation.main import create_app
from services.automation.settings import AutomationSettings
from services.automation.tests.conftest import API, add_keywords, automation_worker
from services.billing.testing import MakeTenant

WORDS = ["french press", "best french press", "french press coffee ratio",
         "pour over coffee", "pour over kettle", "pour over vs french press"]


@pytest.fixture
async def api_url(settings: AutomationSettings, issuer: TestIssuer,
                  nats_identity: NatsIdentity, client: httpx.AsyncClient
                  ) -> AsyncIterator[str]:
    """The public API (…/api/v1): the gateway in front of automation's app, each on a
    loopback port, as `igny8 up` runs them."""
    async with serving_app(create_app(settings, keys_fetcher=issuer.fetcher())) as upstream:
        gateway = create_gateway(GatewaySettings(
            environment="test", public_url="http://testserver", **nats_identity("gateway"),
            automation_url=upstream), keys_fetcher=issuer.fetcher())
        async with serving_app(gateway) as gateway_url:
            yield f"{gateway_url}/api/v1"


async def igny8(*args: str, token: str, home: str, within: float) -> tuple[int, str]:
    """`python -m igny8 <args>` with the token in its environment: exit code and output."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IGNY8_")},
           "IGNY8_HOME": home, "IGNY8_TOKEN": token, "COLUMNS": "160"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "igny8", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), within)
    finally:
        if proc.returncode is None:
            proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def token_of(t: Tenant) -> str:
    return t.headers()["Authorization"].removeprefix("Bearer ")


@pytest.mark.timeout(600)
async def test_automation_run_command_follows_the_stages_to_the_end(
        settings: AutomationSettings, api_url: str, planner: httpx.AsyncClient,
        tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> None:
    await add_keywords(planner, tenant, WORDS)
    async with automation_worker(settings):
        code, text = await igny8(
            "automation", "run", "--site", str(tenant.site_id), "--url", api_url,
            token=token_of(tenant), home=str(tmp_path_factory.mktemp("igny8-home")),
            within=480)
    assert code == 0, text
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


@pytest.mark.timeout(120)
async def test_automation_run_command_shows_the_estimate_when_credits_are_short(
        api_url: str, planner: httpx.AsyncClient, make_tenant: MakeTenant,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    poor = await make_tenant(credits=1)
    await add_keywords(planner, poor, WORDS)
    code, text = await igny8(
        "automation", "run", "--site", str(poor.site_id), "--url", api_url,
        token=token_of(poor), home=str(tmp_path_factory.mktemp("igny8-home")), within=60)
    assert code == 1, text
    short = re.search(r"not enough credits: estimate (\d+), needed (\d+), balance (\d+)", text)
    assert short, text
    estimate, needed, balance = (int(n) for n in short.groups())
    assert estimate > 0
    assert needed >= estimate
    assert balance == 1
    assert "started" not in text


@pytest.mark.timeout(300)
async def test_ctrl_c_with_pause_on_exit_pauses_the_run(
        settings: AutomationSettings, api_url: str, client: httpx.AsyncClient,
        planner: httpx.AsyncClient, tenant: Tenant,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    await add_keywords(planner, tenant, WORDS)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("IGNY8_")},
           "IGNY8_HOME": str(tmp_path_factory.mktemp("igny8-home")),
           "IGNY8_TOKEN": token_of(tenant), "COLUMNS": "160"}
    async with automation_worker(settings):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "igny8", "automation", "run", "--site", str(tenant.site_id),
            "--url", api_url, "--pause-on-exit", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen = []
        try:
            while not any(re.match(r"^stage \d \(.*\) (started|done)", line) for line in seen):
                line = await asyncio.wait_for(proc.stdout.readline(), 120)
                assert line, "".join(seen)
                seen.append(line.decode())
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        text = "".join(seen) + rest.decode()
        assert proc.returncode == 130, text
        assert "pause asked" in text, text
        run_id = re.search(r"run (\S+) started for site", text)
        assert run_id, text

        async def paused() -> bool:
            r = await client.get(f"{API}/history/?site_id={tenant.site_id}",
                                 headers=tenant.headers())
            run = next(r for r in r.json() if r["run_id"] == run_id.group(1))
            return bool(run["status"] == "paused")

        await eventually(paused, timeout=120)
