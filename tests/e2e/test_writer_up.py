"""Issue 10 through the gateway of `igny8 up`: a user's keywords become a cluster and an
idea, the idea is queued to the writer, the task it becomes is written, its content gets
image prompts and images, the image file downloads, and the credits used show in billing's
usage, all with the reference's paths and envelopes, on the processes `igny8 up` starts
(writer's API and worker among them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from igny8.tests.running import Platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

PASSWORD = "Writer-e2e-pw-2025"
Headers = dict[str, str]


def _wait(what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
    """`check()` until it answers something truthy (events cross services in the
    background; the machine may be loaded)."""
    deadline = time.monotonic() + timeout
    while True:
        if answer := check():
            return answer
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached in {timeout:.0f} s")
        time.sleep(0.25)


def _login(client: httpx.Client, email: str) -> Headers:
    registered = client.post("auth/register/", json={
        "email": email, "password": PASSWORD, "password_confirm": PASSWORD})
    assert registered.status_code in (200, 201), registered.text
    login = client.post("auth/login/", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['data']['access']}"}


def _ok(r: httpx.Response, status: int = 200) -> Any:
    """The reference's envelope: `success`, `data` (or a list's fields inline), a
    request id."""
    assert r.status_code == status, f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"
    body = r.json()
    assert body["success"] is True, body
    assert body["request_id"]
    return body.get("data", body)


def _finished(client: httpx.Client, who: Headers, task_id: str) -> dict[str, Any]:
    """A job's progress (`{state, meta}`, the reference's raw shape) once it ends."""
    def done() -> dict[str, Any] | None:
        r = client.get(f"system/settings/task_progress/{task_id}/", headers=who)
        if r.status_code == 200 and r.json()["state"] in ("SUCCESS", "FAILURE"):
            return r.json()  # type: ignore[no-any-return]
        return None

    doc: dict[str, Any] = _wait(f"job {task_id}", done, timeout=240)
    assert doc["state"] == "SUCCESS", doc
    return doc


def _site_and_sector(client: httpx.Client, who: Headers) -> tuple[int, int]:
    site = _ok(client.post("auth/sites/", headers=who, json={
        "name": "Writer e2e", "url": "https://writer-e2e.example"}), 201)
    sector = _ok(client.post("auth/sectors/", headers=who, json={
        "site_id": site["id"], "name": "Coffee"}), 201)
    return int(site["id"]), int(sector["id"])


def _funded(client: httpx.Client, who: Headers) -> int:
    """The account's balance once billing has heard of it (auth's events)."""
    def balance() -> int | None:
        r = client.get("billing/credits/balance/", headers=who)
        if r.status_code == 200 and r.json()["data"]["plan_credits_per_month"] > 0:
            return int(r.json()["data"]["credits"])
        return None

    return int(_wait("billing knows the account", balance))


def test_up_runs_writers_api_and_worker(platform: Platform) -> None:
    names = {p["name"] for p in platform.state()["processes"]}
    assert {"writer-api", "writer-worker"} <= names


def test_idea_to_article_to_image_file_and_credits(platform: Platform) -> None:
    with httpx.Client(base_url=platform.api_url or "", timeout=60) as client:
        who = _login(client, "writer-e2e@example.com")
        site_id, sector_id = _site_and_sector(client, who)
        where = {"site_id": site_id, "sector_id": sector_id}
        before = _funded(client, who)

        # Planner: a cluster, its keywords, an idea (planner learns of the site from auth's
        # events: the first write may come before them).
        def cluster() -> dict[str, Any] | None:
            r = client.post("planner/clusters/", headers=who, json={
                **where, "name": "Burr coffee grinders"})
            return _ok(r, 201) if r.status_code != 403 and r.status_code != 404 else None

        made = _wait("planner knows the site", cluster)
        keywords = ["best burr coffee grinder", "burr vs blade grinder",
                    "how to clean a burr grinder", "conical burr grinder price"]
        for n, keyword in enumerate(keywords):
            _ok(client.post("planner/keywords/", headers=who, json={
                **where, "keyword": keyword, "volume": 1000 - n * 100,
                "cluster_id": made["id"]}), 201)
        idea = _ok(client.post("planner/ideas/", headers=who, json={
            **where, "cluster_id": made["id"], "idea_title": "How to Choose a Burr Coffee Grinder",
            "keywords": ", ".join(keywords), "estimated_word_count": 1200}), 201)

        queued = _ok(client.post("planner/ideas/bulk_queue_to_writer/", headers=who,
                                 json={"ids": [idea["id"]]}))
        assert queued["queued_count"] == 1

        # Writer: the queued idea becomes exactly one task (planner → NATS → writer).
        def task() -> dict[str, Any] | None:
            page = _ok(client.get("writer/tasks/", headers=who, params={"site_id": site_id}))
            found = [t for t in page["results"] if t["idea_id"] == idea["id"]]
            return found[0] if found else None

        written = _wait("the idea becomes a task", task)
        assert written["status"] == "draft"
        assert written["cluster_id"] == made["id"]
        assert written["primary_keyword"] == keywords[0]

        job = _ok(client.post("writer/tasks/auto_generate_content/", headers=who,
                              json={"ids": [written["id"]]}))
        progress = _finished(client, who, job["task_id"])
        assert progress["meta"]["phase"] == "DONE"

        contents = _ok(client.get("writer/content/", headers=who,
                                  params={"site_id": site_id}))
        assert contents["count"] == 1
        content = contents["results"][0]
        assert content["task_id"] == written["id"]
        assert content["status"] == "draft"
        assert content["model"].startswith("local-")
        assert 1140 <= content["word_count"] <= 1260  # 1,200 words ± 5 %
        assert content["html"].count("<h1") == 1
        task_now = _ok(client.get(f"writer/tasks/{written['id']}/", headers=who))
        assert task_now["status"] == "review"
        assert task_now["content_id"] == content["id"]

        job = _ok(client.post("writer/content/generate_image_prompts/", headers=who,
                              json={"ids": [content["id"]]}))
        _finished(client, who, job["task_id"])
        images = _ok(client.get("writer/images/content_images/", headers=who,
                                params={"content_id": content["id"]}))
        assert next(i["image_type"] for i in images) == "featured"
        assert {i["image_type"] for i in images[1:]} == {"in_article"}
        assert all(i["status"] == "pending" and i["prompt"] for i in images)

        job = _ok(client.post("writer/images/generate_images/", headers=who,
                              json={"ids": [i["id"] for i in images]}))
        _finished(client, who, job["task_id"])
        featured = _ok(client.get(f"writer/images/{images[0]['id']}/", headers=who))
        assert featured["status"] == "generated"
        assert (featured["width"], featured["height"]) == (1200, 630)

        url = _ok(client.get(f"writer/images/{featured['id']}/file/", headers=who))["url"]
        assert url.startswith(platform.api_url.removesuffix("/api/v1/") + "/api/v1/writer/")
        file = client.get(url, headers=who)
        assert file.status_code == 200, file.text
        assert file.headers["content-type"] == "image/webp"
        assert file.content[:4] == b"RIFF"
        assert file.content[8:12] == b"WEBP"
        assert len(file.content) == featured["file_size"]
        assert client.get(url).status_code == 401

        # Another tenant sees none of it.
        other = _login(client, "writer-e2e-other@example.com")
        for path in (f"writer/tasks/{written['id']}/", f"writer/content/{content['id']}/",
                     f"writer/images/{featured['id']}/", f"writer/images/{featured['id']}/file/"):
            assert client.get(path, headers=other).status_code == 404, path
        assert client.get(url, headers=other).status_code == 404

        # Billing: what each function used, and the balance it came from.
        usage = _ok(client.get("billing/credits/usage/", headers=who))
        used = {u["operation_type"]: u["credits_used"] for u in usage["results"]}
        assert set(used) == {"content_generation", "image_prompt_extraction",
                             "image_generation"}, usage
        assert all(credits > 0 for credits in used.values())
        after = _ok(client.get("billing/credits/balance/", headers=who))["credits"]
        per_operation = sum(u["credits_used"] for u in usage["results"])
        assert before - after == per_operation

        # Planner hears that the idea's content is generated.
        def completed() -> bool:
            r = client.get(f"planner/ideas/{idea['id']}/", headers=who)
            return bool(_ok(r)["status"] == "completed")

        _wait("the idea is completed", completed)
