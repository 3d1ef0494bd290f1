"""Automation end to end on the real platform: N keywords → drafts with images.

    python -m bench.automation [--keywords 100 1000] [--topics 10] [--batch 4=20 ...]

Starts the whole platform with `igny8 up` in a temporary IGNY8_HOME (offline engines),
registers a user through the gateway, creates a site and a sector through auth's API,
adds the keywords through planner's API (the account's plan keyword limit raised in
planner's read model, as bench.planner does), gives the account credits in billing's
database (as an operator's adjustment would), and starts one run through the gateway
(`run_now`). Measures the run's wall time (its `started_at` → `finished_at`) and the sum
of the stage jobs' own times (`duration_ms` of every AI task log row the run's jobs left
in planner's and writer's databases). Orchestration overhead = (wall - jobs) / jobs:
what running the seven stages as persisted, event-driven state adds over the jobs
themselves (jobs run one batch at a time, so the two are comparable). Goals (issue #12):
wall ≤ 60 s for 100 keywords, overhead ≤ 30 %; the 1,000-keyword run (the second by
default, a few minutes) is reported. Results are printed and written to
bench/results/automation.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from bench.platform import call, login, platform
from gateway.routes import scope_for

TOPICS = ["standing desk", "espresso machine", "running shoes", "office chair",
          "air fryer", "robot vacuum", "mechanical keyboard", "electric bike",
          "yoga mat", "water filter", "hiking boots", "baby stroller"]
MODIFIERS = ["best", "cheap", "review", "for beginners", "vs", "how to clean", "buying guide",
             "under 200", "for small spaces", "benefits", "problems", "alternatives"]


EXTRA = ["2026", "for home", "for office", "online", "near me", "deals", "reddit",
         "comparison", "for seniors", "for kids", "with warranty", "repair", "accessories",
         "lightweight", "quiet", "eco friendly", "premium", "compact", "portable", "uk"]


def keywords(n: int, topics: int, seed: int = 12) -> list[str]:
    """`n` distinct keywords spread over `topics`. A topic has 13 plain forms (modifier +
    topic, or the topic alone); once a topic's draws keep colliding (bigger runs), a third
    word is added. The first 100 of 10 topics are those of the earlier measurements."""
    rng = random.Random(seed)
    out: list[str] = []
    seen: set[str] = set()
    collisions = 0
    while len(out) < n:
        topic = TOPICS[len(out) % topics]
        word = f"{rng.choice(MODIFIERS)} {topic}" if rng.random() < 0.8 else topic
        if collisions > 50:
            word = f"{rng.choice(MODIFIERS)} {topic} {rng.choice(EXTRA)}"
        if word in seen:
            collisions += 1
            continue
        collisions = 0
        seen.add(word)
        out.append(word)
    return out


def _data(body: Any) -> Any:
    return body["data"] if isinstance(body, dict) and "data" in body else body


def wait_for_directory(dbname_url: str, account_id: int, site_id: int) -> None:
    deadline = time.monotonic() + 60
    with psycopg.connect(dbname_url, autocommit=True) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        while True:
            row = conn.execute("SELECT count(*) FROM sites WHERE id = %s AND account_id = %s",
                               (site_id, account_id)).fetchone()
            if row and row[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the site never reached {dbname_url.split('dbname=')[-1]}")
            time.sleep(0.2)


def raise_keyword_limit(planner_url: str, account_id: int, limit: int) -> None:
    with psycopg.connect(planner_url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        conn.execute("UPDATE plans SET max_keywords = %s"
                     " WHERE id = (SELECT plan_id FROM accounts WHERE account_id = %s)",
                     (limit, account_id))
        conn.commit()


def fund(billing_url: str, account_id: int, credits: int) -> None:
    """Purchased credits, through billing's own service code (as an operator's adjustment)."""
    from libs.common.db import Database, TenantScope
    from libs.common.uow import unit_of_work
    from services.billing.models import TransactionType
    from services.billing.service import BillingService
    from services.billing.settings import BillingSettings
    from services.billing.worker import policy_from

    async def add() -> None:
        db = Database(billing_url)
        try:
            async with unit_of_work(db, TenantScope.system()) as uow:
                await BillingService(uow.session, policy_from(BillingSettings())).add_credits(
                    account_id, credits, transaction_type=TransactionType.PURCHASE,
                    description="bench credits")
        finally:
            await db.dispose()

    asyncio.run(add())


def job_seconds(url: str, account_id: int) -> tuple[int, float]:
    with psycopg.connect(url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        row = conn.execute("SELECT count(*), coalesce(sum(duration_ms), 0) FROM ai_task_logs"
                           " WHERE account_id = %s AND status = 'success'",
                           (account_id,)).fetchone()
    assert row is not None
    return int(row[0]), float(row[1]) / 1000


def last_captures(billing_url: str, account_id: int) -> dict[str, datetime]:
    """Each AI task's last capture in billing's ledger (the start of its transaction)."""
    with psycopg.connect(billing_url) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        return {str(task): moment for task, moment in conn.execute(
            "SELECT related_object_id, max(created_at) FROM credit_usage_logs"
            " WHERE account_id = %s AND related_object_type = 'ai_task'"
            " GROUP BY related_object_id", (account_id,))}


def breakdown(urls: dict[str, str], account_id: int) -> dict[str, dict[str, Any]]:
    """Per stage: jobs, their own time, how long the owner took to take a recorded step
    (step recorded → log created), their wait in the queue (log created → started),
    and what follows them until automation records the step done (log finished → step
    finished): settling the credits (→ the job's last capture) and automation noticing
    (the last capture → step finished); and, under
    "between", the time from one step's end to the next one's record (the engine's moves:
    closing a stage, asking the owner what waits)."""
    logs: dict[str, dict[str, Any]] = {}
    for name in ("planner", "writer"):
        with psycopg.connect(urls[name]) as conn:
            conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
            for task_id, created, started, finished, ms in conn.execute(
                    "SELECT task_id, created_at, started_at, finished_at, duration_ms"
                    " FROM ai_task_logs WHERE account_id = %s", (account_id,)):
                logs[str(task_id)] = {"created": created, "started": started,
                                      "finished": finished, "ms": ms or 0}
    captured = last_captures(urls["billing"], account_id)
    out: dict[str, dict[str, float]] = {}
    with psycopg.connect(urls["automation"]) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        steps = conn.execute("SELECT stage, task_id, created_at, finished_at FROM"
                             " automation_steps WHERE account_id = %s ORDER BY id",
                             (account_id,)).fetchall()
        run_started, run_finished = conn.execute(
            "SELECT started_at, finished_at FROM automation_runs WHERE account_id = %s",
            (account_id,)).fetchone() or (None, None)
    last: tuple[int, Any] | None = None
    between = 0.0
    gaps: list[tuple[float, str]] = []
    for stage, task_id, created, finished in steps:
        if last is not None:
            gap = max(0.0, (created - last[1]).total_seconds())
            between += gap
            gaps.append((gap, f"{last[0]}->{stage}"))
        last = (stage, finished)
        entry = out.setdefault(str(stage), {"steps": 0, "step_s": 0.0, "jobs_s": 0.0,
                                            "asked_s": 0.0, "queued_s": 0.0, "after_s": 0.0,
                                            "settled_s": 0.0, "noticed_s": 0.0})
        entry["steps"] += 1
        entry["step_s"] += (finished - created).total_seconds()
        log = logs.get(str(task_id)) if task_id else None
        if log and log["started"] and log["finished"]:
            entry["jobs_s"] += log["ms"] / 1000
            entry["asked_s"] += (log["created"] - created).total_seconds()
            entry["queued_s"] += (log["started"] - log["created"]).total_seconds()
            entry["after_s"] += (finished - log["finished"]).total_seconds()
            if str(task_id) in captured:
                capture = captured[str(task_id)]
                entry["settled_s"] += (capture - log["finished"]).total_seconds()
                entry["noticed_s"] += (finished - capture).total_seconds()
    found = {k: {n: round(v, 2) for n, v in e.items()} for k, e in out.items()}
    found["between"] = {"steps_s": round(between, 2), **({
        "start_s": round((steps[0][2] - run_started).total_seconds(), 2),
        "end_s": round((run_finished - steps[-1][3]).total_seconds(), 2)}
        if steps and run_started and run_finished else {}), **{
        f"longest {i + 1} ({where})": round(gap, 2)
        for i, (gap, where) in enumerate(sorted(gaps, reverse=True)[:4])}}
    return found


def debit_trace(urls: dict[str, str], account_id: int) -> dict[str, dict[str, Any]]:
    """Per job stage, where its close waits for its debits: from the stage's last job
    ending (its results saved) to its last capture in billing's ledger (`captured`), that
    capture's `credits.debited` events leaving billing's outbox (`published`), automation's
    billing consumer applying the last of them (`applied`, the start of its transaction),
    and the next stage's first step (`closed`); each the seconds since the one before.
    `debits` is how many events the stage's jobs produced, `applying_s` the time between
    automation's first and last of them (its consumer's pace)."""
    with psycopg.connect(urls["planner"]) as p, psycopg.connect(urls["writer"]) as w:
        ends: dict[str, Any] = {}
        for conn in (p, w):
            conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
            ends.update({str(t): f for t, f in conn.execute(
                "SELECT task_id, finished_at FROM ai_task_logs WHERE account_id = %s",
                (account_id,))})
    captures = last_captures(urls["billing"], account_id)
    with psycopg.connect(urls["billing"]) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        sent: dict[str, list[tuple[str, Any]]] = {}
        for task, event_id, published in conn.execute(
                "SELECT payload->'data'->>'related_object_id', id, published_at FROM outbox"
                " WHERE subject LIKE '%%credits.debited'"
                " AND (payload->>'account_id')::bigint = %s", (account_id,)):
            sent.setdefault(str(task), []).append((str(event_id), published))
    with psycopg.connect(urls["automation"]) as conn:
        conn.execute("SELECT set_config('igny8.all_accounts', 'on', false)")
        applied = {str(e): m for e, m in conn.execute(
            "SELECT event_id, processed_at FROM processed_events"
            " WHERE consumer = 'automation-billing-events'")}
        steps = conn.execute("SELECT stage, task_id, created_at FROM automation_steps"
                             " WHERE account_id = %s ORDER BY id", (account_id,)).fetchall()
    by_stage: dict[int, list[str]] = {}
    firsts: dict[int, Any] = {}
    for stage, task_id, created in steps:
        firsts.setdefault(stage, created)
        if task_id is not None:
            by_stage.setdefault(stage, []).append(str(task_id))
    out: dict[str, dict[str, Any]] = {}
    for stage, tasks in by_stage.items():
        following = [firsts[s] for s in sorted(firsts) if s > stage]
        events = [e for t in tasks for e in sent.get(t, [])]
        moments = [applied[e] for e, _ in events if e in applied]
        chain: list[Any] = [max((ends[t] for t in tasks if ends.get(t)), default=None),
                 max((captures[t] for t in tasks if t in captures), default=None),
                 max((m for _, m in events if m), default=None),
                 max(moments, default=None), following[0] if following else None]
        if any(c is None for c in chain):
            continue
        names = ("captured_s", "published_s", "applied_s", "closed_s")
        out[str(stage)] = {
            "debits": len(events),
            **{n: round((b - a).total_seconds(), 3)
               for n, a, b in zip(names, chain[:-1], chain[1:], strict=True)},
            "applying_s": round((max(moments) - min(moments)).total_seconds(), 3)}
    return out


def run_once(gateway: str, postgres_url: str, n: int, topics: int,
             batches: dict[int, int]) -> dict[str, Any]:
    api = gateway + "/api/v1/"
    token = login(api, f"bench-automation-{n}-{int(time.time())}@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    me = _data(call(f"{api}auth/me/", token=token))["user"]
    account_id = int(me["account_id"])
    site = _data(call(f"{api}auth/sites/", {"name": f"Bench automation {n}"}, token=token))
    sector = _data(call(f"{api}auth/sectors/", {"site_id": site["id"], "name": "Bench"},
                        token=token))
    urls = {name: make_conninfo(postgres_url, dbname=f"igny8_{name}")
            for name in ("planner", "writer", "billing", "automation")}
    for name in ("planner", "writer", "automation"):
        wait_for_directory(urls[name], account_id, int(site["id"]))
    raise_keyword_limit(urls["planner"], account_id, n + 100)
    fund(make_url(postgres_url).set(drivername="postgresql+psycopg", database="igny8_billing")
         .render_as_string(hide_password=False), account_id, 200 * n)
    words = keywords(n, topics)
    with httpx.Client(base_url=gateway, headers=auth, timeout=60) as client:
        for word in words:
            r = client.post("/api/v1/planner/keywords/", json={
                "site_id": site["id"], "sector_id": sector["id"], "keyword": word,
                "volume": 100})
            assert r.status_code == 201, r.text
        if batches:
            r = client.patch(f"/api/v1/automation/update_config/?site_id={site['id']}",
                             json={f"stage_{s}_batch_size": size for s, size in batches.items()})
            assert r.status_code == 200, r.text
        estimate = _data(client.get(
            f"/api/v1/automation/estimate/?site_id={site['id']}").json())
        started = time.monotonic()
        r = client.post(f"/api/v1/automation/run_now/?site_id={site['id']}")
        assert r.status_code == 200, r.text
        run_id = _data(r.json())["run_id"]
        while True:
            runs = _data(client.get(f"/api/v1/automation/history/?site_id={site['id']}").json())
            run = next(x for x in runs if x["run_id"] == run_id)
            if run["status"] != "running":
                break
            time.sleep(0.5)
        seen = time.monotonic() - started
    wall = (datetime.fromisoformat(run["finished_at"])
            - datetime.fromisoformat(run["started_at"])).total_seconds()
    planner_jobs, planner_s = job_seconds(urls["planner"], account_id)
    writer_jobs, writer_s = job_seconds(urls["writer"], account_id)
    jobs_s = planner_s + writer_s
    stages = {s["stage"]: {k: s[k] for k in ("processed", "created", "failed", "credits")}
              for s in run["stage_results"]}
    return {
        "keywords": n, "topics": topics, "batch_sizes": batches or "defaults",
        "status": run["status"], "run_id": run_id,
        "wall_s": round(wall, 2), "seen_by_client_s": round(seen, 2),
        "jobs": planner_jobs + writer_jobs, "jobs_s": round(jobs_s, 2),
        "overhead": round((wall - jobs_s) / jobs_s, 3) if jobs_s else None,
        "drafts": stages[4]["created"], "images": stages[6]["created"],
        "estimated_credits": estimate["estimated_credits"],
        "total_credits": run["total_credits"], "stages": stages,
        "breakdown": breakdown(urls, account_id),
        "debits": debit_trace(urls, account_id),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keywords", type=int, nargs="+", default=[100, 1000],
                        help="one run per size, one after the other (issue #12: 100, and "
                             "1,000 reported too)")
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--home", type=Path, default=None,
                        help="IGNY8_HOME for the platform, kept afterwards with its logs "
                             "(default: a temporary one, removed)")
    parser.add_argument("--batch", action="append", default=[], metavar="STAGE=SIZE",
                        help="a stage's batch size (default: the site's defaults)")
    args = parser.parse_args()
    batches = {int(k): int(v) for k, v in (b.split("=", 1) for b in args.batch)}
    scopes = {scope_for(m, p) for m, p in (("POST", "/api/v1/automation/run_now/"),
                                            ("POST", "/api/v1/planner/keywords/"),
                                            ("GET", "/api/v1/automation/history/"))}
    overrides = {str(scope): 1_000_000_000 for scope in scopes if scope is not None}
    results = []
    with contextlib.ExitStack() as stack:
        if args.home is None:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(
                prefix="igny8-bench-automation-")))
        else:
            home = args.home
            home.mkdir(parents=True, exist_ok=True)
        run = stack.enter_context(platform(home, overrides))
        gateway = f"http://127.0.0.1:{run['ports']['gateway']}"
        for n in args.keywords:
            found = run_once(gateway, run["postgres"]["url"], n, args.topics, batches)
            results.append(found)
            print(f"{n} keywords ({args.topics} topics): {found['status']}, "
                  f"{found['drafts']} drafts, {found['images']} images, "
                  f"wall {found['wall_s']} s, jobs {found['jobs_s']} s in {found['jobs']} "
                  f"jobs, overhead {found['overhead']}, credits {found['total_credits']} "
                  f"(estimated {found['estimated_credits']})", flush=True)
            for stage, b in found["breakdown"].items():
                print(f"  stage {stage}: {b}", flush=True)
            for stage, d in found["debits"].items():
                print(f"  stage {stage}'s debits: {d}", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "automation.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
