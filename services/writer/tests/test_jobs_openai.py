"""Writer's AI functions on an account's own providers, through the real worker and
billing's real ledger, against fake servers speaking the providers' protocols on
127.0.0.1: OpenAI's chat completions (a 429 retried, a malformed answer repaired once,
a persistent failure refunded in full, tokens accounted exactly, in billing and in the
AI metrics), OpenAI's images (`b64_json`, token usage) and Runware's task arrays (one
refused task fails its image only, which is charged nothing)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from libs.common.ai.base import Usage
from libs.common.ai.pricing import cost_usd
from libs.common.db import Database
from libs.common.testing.checks import ai_task_log, finished_task, rows, task_progress
from libs.common.testing.fake_openai import GPT_IMAGE_USAGE, FakeOpenAI
from libs.common.testing.fake_runware import COST_PER_IMAGE, FakeRunware
from libs.common.testing.workers import running_worker
from services.writer.settings import WriterSettings
from services.writer.worker import run

from .conftest import API, FakeAuth, Ledger, Tenant, create, in_sector

MODEL = "gpt-4o-mini"
BODY = " ".join(["To descale a kettle, boil water and vinegar, wait, then rinse twice."] * 12)
ARTICLE = {
    "title": "How to Descale a Kettle",
    "meta_title": "Descale a Kettle: The Vinegar Method",
    "meta_description": "Descale a kettle with white vinegar in an hour: what you need, the "
                        "steps to follow, how often to do it and the mistakes to avoid.",
    "slug": "descale-a-kettle",
    "html": f"<h1>How to Descale a Kettle</h1><p>{BODY}</p><script>alert(1)</script>"
            f"<h2>Why kettles scale</h2><p>{BODY}</p>",
}
TASK = {"title": "How to Descale a Kettle", "primary_keyword": "descale a kettle",
        "keywords": "descale a kettle, kettle limescale", "word_count": 900}


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _draft(client: httpx.AsyncClient, t: Tenant) -> str:
    (task,) = await create(client, t, "writer/tasks/", in_sector(t, **TASK))
    r = await client.post(f"{API}/tasks/auto_generate_content/", headers=t.headers(),
                          json={"ids": [task["id"]]})
    assert r.status_code == 200, r.text
    return str(r.json()["task_id"])


async def test_a_429_is_retried_a_malformed_answer_repaired_and_tokens_counted(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger, fake_auth: FakeAuth,
        fake_openai: FakeOpenAI) -> None:
    fake_auth.set_openai(tenant.account_id, fake_openai.url, fake_openai.api_key, MODEL,
                         content_generation="ACCOUNT PROMPT for [IGNY8_TITLE]")
    fake_openai.fail_next(429, body={"error": {"message": "Rate limit reached"}})
    fake_openai.chat_replies += ["this is not JSON", json.dumps(ARTICLE)]
    tokens = {d: metric("igny8_ai_tokens_total", function="auto_generate_content",
                        model=MODEL, direction=d) for d in ("input", "output")}
    cost = metric("igny8_ai_cost_usd_total", function="auto_generate_content", model=MODEL)
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        job = await _draft(client, tenant)
        doc = await finished_task(progress, job)
    assert doc["state"] == "SUCCESS", doc
    # The 429 failed the first attempt (retried after a delay); the second got a
    # malformed answer, then one repair turn: three calls, no more.
    assert [r.path for r in fake_openai.requests] == ["/v1/chat/completions"] * 3
    assert fake_openai.requests[1].body["messages"][1]["content"] == (
        "ACCOUNT PROMPT for How to Descale a Kettle")
    assert "could not be used" in fake_openai.requests[2].body["messages"][-1]["content"]
    (content,) = (await client.get(f"{API}/content/", headers=tenant.headers())).json()[
        "results"]
    assert content["model"] == MODEL
    assert "<script" not in content["html"]
    # Tokens: two answers of 120 in / 80 out each (the 429 used none), to the token.
    log = await ai_task_log(writer_db, tenant.account_id, job)
    expected_cost = cost_usd(MODEL, Usage(240, 160))
    credits = math.ceil(content["word_count"] / 100)
    assert (log["status"], log["attempts"], log["model"], log["tokens_input"],
            log["tokens_output"], log["cost_usd"], log["credits_charged"]) == (
        "success", 2, MODEL, 240, 160, expected_cost, credits)
    (usage,) = await billing.usage_logs(tenant.account_id)
    assert (usage.operation_type, usage.model_used, usage.tokens_input, usage.tokens_output,
            usage.cost_usd, usage.credits_used) == (
        "content_generation", MODEL, 240, 160, expected_cost, credits)
    assert await billing.spendable(tenant.account_id) == 1000 - credits
    # The AI metrics the dashboards read, per function and model.
    assert metric("igny8_ai_tokens_total", function="auto_generate_content", model=MODEL,
                  direction="input") - tokens["input"] == 240
    assert metric("igny8_ai_tokens_total", function="auto_generate_content", model=MODEL,
                  direction="output") - tokens["output"] == 160
    assert math.isclose(metric("igny8_ai_cost_usd_total", function="auto_generate_content",
                               model=MODEL) - cost, float(expected_cost), rel_tol=1e-9)


async def test_a_provider_failing_every_attempt_refunds_in_full(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger, fake_auth: FakeAuth,
        fake_openai: FakeOpenAI) -> None:
    fake_auth.set_openai(tenant.account_id, fake_openai.url, fake_openai.api_key, MODEL)
    fake_openai.fail_next(500, times=settings.job_max_deliver + 5,
                          body={"error": {"message": "The server had an error"}})
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        job = await _draft(client, tenant)
        doc = await finished_task(progress, job)
    assert doc["state"] == "FAILURE", doc
    assert len(fake_openai.requests) == settings.job_max_deliver   # bounded: one per attempt
    log = await ai_task_log(writer_db, tenant.account_id, job)
    assert (log["status"], log["attempts"], log["credits_charged"]) == (
        "failed", settings.job_max_deliver, 0)
    assert [h.status for h in await billing.holds(tenant.account_id)] == ["released"]
    assert await billing.debits(tenant.account_id) == []
    assert await billing.spendable(tenant.account_id) == 1000
    assert await rows(writer_db, tenant.account_id,
                      "SELECT id FROM content WHERE account_id = :a") == []


async def test_a_malformed_answer_twice_writes_nothing_and_refunds(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger, fake_auth: FakeAuth,
        fake_openai: FakeOpenAI) -> None:
    fake_auth.set_openai(tenant.account_id, fake_openai.url, fake_openai.api_key, MODEL)
    fake_openai.chat_replies += ["not JSON", {"title": "x", "html": "<p>too short</p>"}]
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        job = await _draft(client, tenant)
        doc = await finished_task(progress, job)
    assert doc["state"] == "FAILURE", doc
    assert "could not be used" in doc["meta"]["error"]
    assert len(fake_openai.requests) == 2                  # the answer and one repair
    assert [h.status for h in await billing.holds(tenant.account_id)] == ["released"]
    assert await billing.spendable(tenant.account_id) == 1000
    log = await ai_task_log(writer_db, tenant.account_id, job)
    assert log["status"] == "failed"


async def _images(client: httpx.AsyncClient, t: Tenant, *prompts: str) -> list[dict[str, Any]]:
    (task,) = await create(client, t, "writer/tasks/", in_sector(t, **TASK))
    (content,) = await create(client, t, "writer/content/", in_sector(
        t, title=TASK["title"], task_id=task["id"], html="<h1>Kettles</h1><p>Text.</p>"))
    return await create(client, t, "writer/images/", *(
        {"content_id": content["id"], "image_type": "featured" if n == 0 else "in_article",
         "position": n, "prompt": prompt, "alt_text": f"descale a kettle {n}"}
        for n, prompt in enumerate(prompts)))


async def _generate(client: httpx.AsyncClient, t: Tenant, images: list[dict[str, Any]],
                    nc: NATS, settings: WriterSettings) -> dict[str, Any]:
    progress = await task_progress(nc, "writer")
    async with running_worker(run, settings):
        r = await client.post(f"{API}/images/generate_images/", headers=t.headers(),
                              json={"ids": [i["id"] for i in images]})
        assert r.status_code == 200, r.text
        return await finished_task(progress, r.json()["task_id"])


async def test_openai_images_come_as_b64_and_count_their_tokens(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        billing: Ledger, fake_auth: FakeAuth, fake_openai: FakeOpenAI) -> None:
    fake_auth.set_openai(tenant.account_id, fake_openai.url, fake_openai.api_key, MODEL,
                         image_model="gpt-image-1")
    fake_auth.set_images(tenant.account_id, "openai")
    images = await _images(client, tenant, "A steel kettle on a hob", "Limescale close up")
    before = metric("igny8_ai_tokens_total", function="generate_images", model="gpt-image-1",
                    direction="output")
    doc = await _generate(client, tenant, images, nc, settings)
    assert doc["state"] == "SUCCESS", doc
    sent = [r.body for r in fake_openai.requests]
    assert [(b["model"], b["size"]) for b in sent] == [("gpt-image-1", "1536x1024")] * 2
    assert all("response_format" not in b for b in sent)     # GPT image models refuse it
    h = tenant.headers()
    made = [(await client.get(f"{API}/images/{i['id']}/", headers=h)).json() for i in images]
    assert [(i["status"], i["provider"], i["model"], i["mime_type"]) for i in made] == [
        ("generated", "openai", "gpt-image-1", "image/webp")] * 2
    assert (made[0]["width"], made[0]["height"]) == (1200, 630)
    file = await client.get(made[0]["image_url"].removeprefix("http://gateway.test"), headers=h)
    assert file.content[:4] == b"RIFF"
    usage = await billing.usage_logs(tenant.account_id)
    assert [(u.operation_type, u.credits_used, u.tokens_input, u.tokens_output)
            for u in usage] == [("image_generation", 4, GPT_IMAGE_USAGE["input_tokens"],
                                 GPT_IMAGE_USAGE["output_tokens"])] * 2
    assert metric("igny8_ai_tokens_total", function="generate_images", model="gpt-image-1",
                  direction="output") - before == 2 * GPT_IMAGE_USAGE["output_tokens"]


async def test_runware_batch_with_one_refused_task_charges_the_others_only(
        client: httpx.AsyncClient, tenant: Tenant, settings: WriterSettings, nc: NATS,
        writer_db: Database, billing: Ledger, fake_auth: FakeAuth,
        fake_runware: FakeRunware) -> None:
    fake_auth.set_images(tenant.account_id, "runware", runware={
        "base_url": fake_runware.url, "api_key": fake_runware.api_key,
        "model": "runware:100@1"})
    images = await _images(client, tenant, "A steel kettle on a hob",
                           "[refuse] an image the provider will not draw", "Limescale close up")
    doc = await _generate(client, tenant, images, nc, settings)
    assert doc["state"] == "SUCCESS", doc
    assert len(fake_runware.requests) == 1                   # one array of tasks
    assert len(fake_runware.tasks) == 3
    h = tenant.headers()
    made = [(await client.get(f"{API}/images/{i['id']}/", headers=h)).json() for i in images]
    assert [i["status"] for i in made] == ["generated", "failed", "generated"]
    assert made[1]["error"]
    assert made[1]["image_url"] is None
    assert (await client.get(f"{API}/images/{made[1]['id']}/file/", headers=h)
            ).status_code == 404
    assert [i["provider"] for i in (made[0], made[2])] == ["runware", "runware"]
    holds = sorted((x.status, x.captured_credits) for x in await billing.holds(
        tenant.account_id))
    assert holds == [("captured", 4), ("captured", 4), ("released", 0)]
    usage = await billing.usage_logs(tenant.account_id)
    assert [(u.model_used, float(u.cost_usd)) for u in usage] == [
        ("runware:100@1", COST_PER_IMAGE)] * 2
    assert await billing.spendable(tenant.account_id) == 1000 - 8
    (event,) = [r["payload"]["data"] for r in await rows(
        writer_db, tenant.account_id, "SELECT payload FROM outbox WHERE subject ="
        " 'igny8.writer.images.generated' AND (payload->>'account_id')::bigint = :a")]
    assert (event["generated"], event["failed"]) == (
        sorted([made[0]["id"], made[2]["id"]]), [made[1]["id"]])
