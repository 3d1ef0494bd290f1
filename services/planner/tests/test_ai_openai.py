"""AI jobs on the account's OpenAI integration: the worker asks auth (FakeAuth answers
`igny8.cmd.auth.ai_settings`) and talks to a fake OpenAI-compatible server on 127.0.0.1.
An account with OpenAI settings gets its clusters and ideas from the server with its own
prompts; a malformed answer twice fails the job and releases the hold; an account without
settings stays local; auth not answering is retried, never run locally instead."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
from aiohttp import web
from nats.aio.client import Client as NATS

from libs.common.ai.base import Usage
from libs.common.ai.pricing import cost_usd
from libs.common.db import Database
from libs.common.testing.checks import ai_task_log, eventually, finished_task, task_progress
from services.planner.settings import PlannerSettings

from .conftest import API, FakeAuth, Ledger, Tenant, add_keywords, running_worker

KEY = "sk-fake-0123456789"
MODEL = "gpt-4o-mini"
SHOES = ["best running shoes", "running shoes for men", "trail running shoes"]
COFFEE = ["how to brew coffee", "coffee brewing guide", "pour over coffee"]
KEYWORDS = [{"keyword": k, "volume": v} for k, v in zip(SHOES + COFFEE,
                                                         (900, 400, 300, 800, 200, 100),
                                                         strict=True)]
CLUSTERS = {"clusters": [
    {"name": "Running Shoes", "description": "Shoes for runners.", "keywords": SHOES},
    {"name": "Coffee Brewing", "description": "Brewing at home.", "keywords": COFFEE},
]}


@dataclass
class FakeOpenAI:
    replies: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.auth.append(request.headers.get("Authorization", ""))
        content = self.replies.pop(0) if self.replies else "no reply queued"
        if not isinstance(content, str):
            content = json.dumps(content)
        return web.json_response({
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20},
        })

    def prompts(self) -> list[str]:
        return [r["messages"][0]["content"] for r in self.requests]


@pytest.fixture
async def fake_openai() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    state = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", state.chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield state, f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def _cluster(client: httpx.AsyncClient, t: Tenant, ids: list[int]) -> str:
    r = await client.post(f"{API}/keywords/auto_cluster/", headers=t.headers(),
                          json={"ids": ids, "sector_id": t.sector_id})
    assert r.status_code == 200, r.text
    task_id: str = r.json()["task_id"]
    return task_id


async def test_openai_account_clusters_and_ideas_from_its_endpoint_with_its_prompts(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, fake_auth: FakeAuth, nc: NATS,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, base_url = fake_openai
    fake_auth.set_openai(tenant.account_id, base_url, KEY, MODEL,
                         clustering="ACCOUNT CLUSTER PROMPT\n[IGNY8_KEYWORDS]",
                         ideas="ACCOUNT IDEAS PROMPT for [IGNY8_CLUSTER]:\n[IGNY8_KEYWORDS]")
    kws = await add_keywords(client, tenant, *KEYWORDS)
    progress = await task_progress(nc, "planner")
    fake.replies.append(CLUSTERS)
    async with running_worker(planner_settings):
        task_id = await _cluster(client, tenant, [k["id"] for k in kws])
        doc = await finished_task(progress, task_id)
        assert doc["state"] == "SUCCESS", doc
        assert doc["meta"]["result"]["model"] == MODEL
        assert doc["meta"]["result"]["clusters_created"] == 2

        # The account's prompt with its keywords went to its endpoint, with its key.
        assert fake.auth == [f"Bearer {KEY}"]
        assert fake.requests[0]["model"] == MODEL
        assert fake.requests[0]["response_format"] == {"type": "json_object"}
        sent = fake.prompts()[0]
        assert sent.startswith("ACCOUNT CLUSTER PROMPT\n")
        assert all(f"- {k}" in sent for k in SHOES + COFFEE)
        assert {"account_id": tenant.account_id, "prompt_types": ["clustering"]} in (
            fake_auth.ai_requests)

        clusters = (await client.get(f"{API}/clusters/?ordering=name",
                                     headers=tenant.headers())).json()["results"]
        assert [(c["name"], c["keywords_count"], c["volume"]) for c in clusters] == [
            ("Coffee Brewing", 3, 1100), ("Running Shoes", 3, 1600)]

        # Model, tokens and cost reach the task log and billing's usage log.
        log = await ai_task_log(planner_db, tenant.account_id, task_id)
        expected = cost_usd(MODEL, Usage(50, 20))
        assert expected > 0
        assert (log["status"], log["model"], log["tokens_input"], log["tokens_output"],
                log["cost_usd"], log["credits_charged"]) == ("success", MODEL, 50, 20,
                                                            expected, 10)
        usage = await billing.usage_logs(tenant.account_id)
        assert [(u.model_used, u.tokens_input, u.tokens_output, u.cost_usd, u.credits_used)
                for u in usage] == [(MODEL, 50, 20, expected, 10)]

        # Ideas for the shoes cluster, with the account's ideas prompt.
        shoes = next(c for c in clusters if c["name"] == "Running Shoes")
        fake.replies.append({"ideas": [
            {"title": "The Best Running Shoes of the Year", "description": "Tested picks.",
             "outline": ["How we tested", "Our picks"], "content_structure": "listicle",
             "estimated_word_count": 1800, "covered_keywords": ["best running shoes"]},
            {"title": "Trail or Road: Choosing Shoes", "content_structure": "comparison",
             "covered_keywords": ["trail running shoes", "Running Shoes For Men"]},
        ]})
        r = await client.post(f"{API}/clusters/auto_generate_ideas/", headers=tenant.headers(),
                              json={"ids": [shoes["id"]]})
        assert r.status_code == 200, r.text
        doc = await finished_task(progress, r.json()["task_id"])
        assert doc["state"] == "SUCCESS", doc
        assert doc["meta"]["result"]["ideas"] == 2
        sent = fake.prompts()[1]
        assert sent.startswith("ACCOUNT IDEAS PROMPT for Running Shoes:\n")
        assert "- best running shoes (volume 900)" in sent
        assert "[IGNY8_KEYWORDS]" not in sent
        ideas = (await client.get(f"{API}/ideas/?cluster_id={shoes['id']}&ordering=id",
                                  headers=tenant.headers())).json()["results"]
        by_title = {i["idea_title"]: i for i in ideas}
        assert set(by_title) == {"The Best Running Shoes of the Year",
                                 "Trail or Road: Choosing Shoes"}
        assert len(by_title["Trail or Road: Choosing Shoes"]["keyword_ids"]) == 2
        log = await ai_task_log(planner_db, tenant.account_id, r.json()["task_id"])
        assert (log["model"], log["tokens_input"], log["credits_charged"]) == (MODEL, 50, 4)
    assert await billing.spendable(tenant.account_id) == 1000 - 10 - 4


async def test_malformed_answer_twice_fails_the_job_and_releases_the_hold(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, fake_auth: FakeAuth, nc: NATS,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, base_url = fake_openai
    fake_auth.set_openai(tenant.account_id, base_url, KEY, MODEL)
    kws = await add_keywords(client, tenant, *KEYWORDS[:3])
    progress = await task_progress(nc, "planner")
    fake.replies += ["this is not JSON", {"clusters": [{"name": "x", "keywords": ["nope"]}]}]
    async with running_worker(planner_settings):
        task_id = await _cluster(client, tenant, [k["id"] for k in kws])
        doc = await finished_task(progress, task_id)
    assert doc["state"] == "FAILURE", doc
    assert "could not be used" in doc["meta"]["error"]
    assert len(fake.requests) == 2  # the answer, then one repair, then no more
    assert "could not be used" in fake.requests[1]["messages"][-1]["content"]
    assert fake.prompts()[0].startswith("Group these search keywords")  # the built-in
    log = await ai_task_log(planner_db, tenant.account_id, task_id)
    assert log["status"] == "failed"
    assert "malformed" in log["error"]
    assert [h.status for h in await billing.holds(tenant.account_id)] == ["released"]
    assert await billing.debits(tenant.account_id) == []
    assert await billing.spendable(tenant.account_id) == 1000
    still = (await client.get(f"{API}/keywords/?status=active", headers=tenant.headers())).json()
    assert still["count"] == 3
    assert (await client.get(f"{API}/clusters/", headers=tenant.headers())).json()["count"] == 0


async def test_account_without_openai_settings_runs_local(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, fake_auth: FakeAuth, nc: NATS,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, _ = fake_openai
    kws = await add_keywords(client, tenant, *KEYWORDS)
    progress = await task_progress(nc, "planner")
    async with running_worker(planner_settings):
        task_id = await _cluster(client, tenant, [k["id"] for k in kws])
        doc = await finished_task(progress, task_id)
    assert doc["state"] == "SUCCESS", doc
    log = await ai_task_log(planner_db, tenant.account_id, task_id)
    assert log["model"].startswith("local-")
    assert log["cost_usd"] == Decimal("0")
    assert fake.requests == []
    assert [r for r in fake_auth.ai_requests if r["account_id"] == tenant.account_id] == [
        {"account_id": tenant.account_id, "prompt_types": ["clustering"]}]


async def test_auth_not_answering_is_retried_not_run_locally(
    client: httpx.AsyncClient, tenant: Tenant, planner_db: Database,
    planner_settings: PlannerSettings, billing: Ledger, fake_auth: FakeAuth, nc: NATS,
    fake_openai: tuple[FakeOpenAI, str],
) -> None:
    fake, base_url = fake_openai
    fake_auth.set_openai(tenant.account_id, base_url, KEY, MODEL)
    fake_auth.silent.add(tenant.account_id)
    kws = await add_keywords(client, tenant, *KEYWORDS)
    progress = await task_progress(nc, "planner")
    fake.replies.append(CLUSTERS)

    def asked() -> int:
        return sum(1 for r in fake_auth.ai_requests if r["account_id"] == tenant.account_id)

    async def asked_once() -> bool:
        return asked() >= 1

    async with running_worker(planner_settings):
        task_id = await _cluster(client, tenant, [k["id"] for k in kws])
        await eventually(asked_once)
        fake_auth.silent.discard(tenant.account_id)  # auth is back
        doc = await finished_task(progress, task_id)
    assert doc["state"] == "SUCCESS", doc
    assert asked() == 2
    # The command bus asked again (ai_settings only reads): the first attempt ran on
    # OpenAI once auth was back, never locally meanwhile.
    log = await ai_task_log(planner_db, tenant.account_id, task_id)
    assert (log["attempts"], log["model"], log["credits_charged"]) == (1, MODEL, 10)
    assert len(fake.requests) == 1
    assert [h.status for h in await billing.holds(tenant.account_id)] == ["captured"]
