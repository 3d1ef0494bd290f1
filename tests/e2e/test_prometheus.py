"""Issue 13, *Dashboards*: a real Prometheus (Debian's package) scrapes `igny8 up`, a
traffic script drives the platform (logins, planner CRUD, AI jobs in planner and writer
with the local engines, an automation run, a 429), and every query of every Grafana
dashboard, run through Prometheus's HTTP API the way Grafana runs it, returns data, except
the queries of panels whose description says `Fills when: <condition>.`
(deploy/grafana/build.py) for a condition the traffic does not meet. The same Prometheus
loads the alert rules (deploy/prometheus/rules): each evaluates over the real series without
error, and a job the traffic leaves abandoned in planner's task logs is closed by planner's
sweep and fires IGNY8AIJobsAbandoned.

Everything stays on loopback: the platform, Prometheus and the traffic.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from igny8.tests.running import Platform
from libs.common.embedded import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
RULES = sorted((REPO / "deploy" / "prometheus" / "rules").glob("*.yml"))
ZERO_FILL = re.compile(r"\s+or(\s+on\(\))?\s+vector\(0\)")
LOGIN_LINE = re.compile(r"Login\s+(\S+) / (\S+)")
FILLS_WHEN = re.compile(r"^Fills when: (\S.*)\.$", re.MULTILINE)

# Starting the platform takes minutes on a loaded machine; then traffic, jobs and scrapes.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

# The failed sign-ins below get 429s from the gateway's limiter at the reference's limit.
REAL_RATE_LIMITS = ("auth",)

# Conditions of `Fills when:` panels that the traffic below meets: their queries are
# checked like the others (the AI jobs hold credits and capture them).
MET_BY_TRAFFIC = frozenset({"credits were held in the last hour"})

SCRAPE_SECONDS = 3
# What Grafana substitutes, with the data source's scrape interval set to SCRAPE_SECONDS:
# $__rate_interval = max($__interval + scrape interval, 4 * scrape interval).
STEP_SECONDS = SCRAPE_SECONDS
VARIABLES = {
    "$__rate_interval": f"{4 * SCRAPE_SECONDS}s",
    "${__rate_interval}": f"{4 * SCRAPE_SECONDS}s",
    "$__interval": f"{STEP_SECONDS}s",
    "${__interval}": f"{STEP_SECONDS}s",
}


# ---- Prometheus ---------------------------------------------------------------------------


def scrape_config(state: dict[str, Any]) -> dict[str, Any]:
    """One job per process `igny8 up` runs, named as on Kubernetes (`igny8-auth-api`,
    `igny8-auth-worker`, `igny8-gateway`; deploy/prometheus/prometheus.yml): APIs on their
    HTTP port, workers on their metrics port, the gateway on its port (loopback may scrape
    it there)."""
    jobs = [{"job_name": f"igny8-{proc['name']}", "metrics_path": "/metrics",
             "static_configs": [{"targets": [f"127.0.0.1:{proc['port']}"]}]}
            for proc in state["processes"]]
    return {"global": {"scrape_interval": f"{SCRAPE_SECONDS}s",
                       "scrape_timeout": f"{SCRAPE_SECONDS}s",
                       "evaluation_interval": f"{SCRAPE_SECONDS}s"},
            "rule_files": [str(path) for path in RULES],
            "scrape_configs": jobs}


@pytest.fixture(scope="module")
def prometheus(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:  # tests/ensure-system-packages installs it; never a silent skip
        pytest.fail("prometheus is not installed (Debian package, tests/system-packages.txt)")
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(json.dumps(scrape_config(platform.state()), indent=2))  # JSON is YAML
    port = free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (work / "prometheus.log").read_text()
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not become ready"
            time.sleep(0.5)
        yield url
    finally:
        stop_process(proc, 30)
        log.close()


def instant(url: str, query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["data"]["result"])


def has_data(url: str, query: str, start: float, end: float) -> bool:
    """What Grafana draws over [start, end]: any point of any series that is a number
    (0 is data; NaN, from a quantile or a ratio over nothing, is not)."""
    r = httpx.get(f"{url}/api/v1/query_range", timeout=60, params={
        "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": STEP_SECONDS})
    assert r.status_code == 200, f"{query}: {r.text}"
    return any(not math.isnan(float(value))
               for series in r.json()["data"]["result"] for _, value in series["values"])


def substitute(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


def dashboard_queries() -> Iterator[tuple[str, str | None, str]]:
    """(where, the condition it fills under or None, expr) for every query."""
    def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        for panel in node.get("panels", []):
            yield panel
            yield from walk(panel)

    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in walk(board):
            condition = FILLS_WHEN.search(panel.get("description", ""))
            for target in panel.get("targets", []):
                where = f"{path.stem} / {panel['title']} [{target['refId']}]"
                yield where, condition.group(1) if condition else None, target["expr"]


# ---- traffic ------------------------------------------------------------------------------


def scraped_after(url: str, mark: float) -> None:
    """Wait until Prometheus has scraped every target successfully since `mark` (a Unix
    time): a scrape that timed out on a loaded machine does not count.

    A labelled series appears at its first increment, already counting it, and a rate sees
    only increases between two scrapes: traffic that fits between two scrapes shows up as
    a series whose rate is 0 (a latency quantile of NaN). Grafana shows the same on a
    fresh process; the traffic here repeats each kind of request across scrapes."""
    def targets() -> list[dict[str, Any]]:
        r = httpx.get(f"{url}/api/v1/targets", timeout=30)
        assert r.status_code == 200, r.text
        return list(r.json()["data"]["activeTargets"])

    def scraped(target: dict[str, Any]) -> bool:
        last = re.sub(r"(\.\d{6})\d*", r"\1", target["lastScrape"]).replace("Z", "+00:00")
        return target["health"] == "up" and datetime.fromisoformat(last).timestamp() > mark

    try:
        _eventually(lambda: all(scraped(t) for t in targets()),
                    f"a successful scrape of every target after {mark}", timeout=90)
    except AssertionError:
        raise AssertionError(f"targets not scraped since {mark}: " + "; ".join(
            f"{t['labels']['job']} {t['health']} last={t['lastScrape']} "
            f"took={t['lastScrapeDuration']:.2f}s {t['lastError']}" for t in targets())
            ) from None


def jobs_seen(url: str, service: str, function: str, count: int) -> None:
    """Wait until Prometheus has scraped `count` finished jobs of `function`: the worker
    observes a job's duration after its progress says SUCCESS, so a scrape after that
    is not enough to bracket the next run."""
    query = (f'sum(igny8_job_duration_seconds_count{{service="{service}",'
             f'function="{function}"}})')

    def seen() -> bool:
        found = instant(url, query)
        return bool(found) and float(found[0]["value"][1]) >= count

    _eventually(seen, f"{count} {function} jobs in Prometheus", timeout=90)


def _data(r: httpx.Response) -> Any:
    body = r.json()
    return body.get("data", body)


def _wait_for_job(client: httpx.Client, headers: dict[str, str], task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        r = client.get(f"system/settings/task_progress/{task_id}/", headers=headers)
        if r.status_code == 200 and r.json()["state"] in ("SUCCESS", "FAILURE"):
            return dict(r.json())
        time.sleep(0.5)
    raise AssertionError(f"job {task_id} did not finish")


def _eventually(get: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := get():
            return found
        time.sleep(0.3)
    raise AssertionError(f"never saw {what}")


ABANDONED_TASK = "00000000-0000-4000-8000-0000000a0043"


def leave_a_job_abandoned(platform: Platform) -> None:
    """An `auto_cluster` task log as a job lost before any attempt leaves it (ADR 0043):
    `pending`, asked for two hours ago (past its deadline, planner's `hold_ttl_seconds`),
    no heartbeat, no hold. Planner's sweep (every minute) closes it as the traffic goes on."""
    with platform.connect("planner") as conn:
        conn.execute(
            "INSERT INTO ai_task_logs (account_id, task_id, function, status, model, "
            "tokens_input, tokens_output, credits_held, credits_charged, attempts, "
            "created_at) SELECT account_id, %s, 'auto_cluster', 'pending', '', 0, 0, 0, 0, "
            "0, now() - interval '2 hours' FROM ai_task_logs LIMIT 1", (ABANDONED_TASK,))


def drive_traffic(platform: Platform, prometheus: str) -> None:
    """What a user does in a few minutes, through the gateway."""

    def settle() -> None:
        scraped_after(prometheus, time.time())

    login_line = LOGIN_LINE.search(platform.output())
    assert login_line, platform.output()
    email, password = login_line.groups()
    # The gateway listens on 127.0.0.1: "localhost" may resolve to ::1 first, where
    # another program may listen.
    assert platform.api_url is not None
    api_url = platform.api_url.replace("//localhost:", "//127.0.0.1:")
    with httpx.Client(base_url=api_url, timeout=60) as client:
        login = client.post("auth/login/", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
        h = {"Authorization": f"Bearer {_data(login)['access']}"}
        assert client.get("auth/me/", headers=h).status_code == 200
        assert client.get("auth/me/").status_code == 401

        site = client.get("auth/sites/", headers=h).json()["results"][0]
        sector = client.get(f"auth/sites/{site['id']}/sectors/",
                            headers=h).json()["results"][0]
        where = {"site_id": site["id"], "sector_id": sector["id"]}

        # Planner CRUD (planner learns of the demo site from auth's events).
        def create(keyword: str, volume: int) -> dict[str, Any] | None:
            r = client.post("planner/keywords/", headers=h,
                            json={"keyword": keyword, "volume": volume, **where})
            return dict(_data(r)) if r.status_code == 201 else None

        words = ["best running shoes", "best running shoes for men", "top running shoes",
                 "how to brew coffee", "coffee brewing guide", "how to brew coffee at home"]
        first = _eventually(lambda: create(words[0], 900), "planner accept the demo site")
        keywords = [first] + [create(w, 100 + i) for i, w in enumerate(words[1:])]
        assert all(keywords), keywords
        ids = [k["id"] for k in keywords]
        assert client.get("planner/keywords/", headers=h).status_code == 200
        assert client.get(f"planner/keywords/{ids[0]}/", headers=h).status_code == 200
        r = client.patch(f"planner/keywords/{ids[1]}/", headers=h, json={"volume": 450})
        assert r.status_code == 200, r.text
        scratch = create("delete me", 1)
        assert scratch is not None
        assert client.delete(f"planner/keywords/{scratch['id']}/", headers=h).status_code in (
            200, 204)
        assert client.get("planner/keywords/999999999/", headers=h).status_code == 404

        # AI jobs, each function twice with a scrape in between: the second run is an
        # increase Prometheus sees (scraped_after).
        for n, batch in enumerate((ids[:3], ids[3:]), start=1):
            r = client.post("planner/keywords/auto_cluster/", headers=h,
                            json={"ids": batch, "sector_id": sector["id"]})
            assert r.status_code == 200, r.text
            done = _wait_for_job(client, h, _data(r)["task_id"])
            assert done["state"] == "SUCCESS", done
            jobs_seen(prometheus, "planner", "auto_cluster", n)
        leave_a_job_abandoned(platform)

        def new_task(title: str) -> int | None:
            r = client.post("writer/tasks/", headers=h, json={
                "title": title, "keywords": title.lower(), "word_count": 300, **where})
            return int(_data(r)["id"]) if r.status_code == 201 else None

        tasks = [_eventually(lambda t=title: new_task(t), "writer accept the demo site")
                 for title in ("How to descale a kettle", "Choosing running shoes")]
        contents = []
        for n, task_id in enumerate(tasks, start=1):
            r = client.post("writer/tasks/auto_generate_content/", headers=h,
                            json={"ids": [task_id]})
            assert r.status_code == 200, r.text
            done = _wait_for_job(client, h, _data(r)["task_id"])
            assert done["state"] == "SUCCESS", done
            jobs_seen(prometheus, "writer", "auto_generate_content", n)
            contents += done["meta"]["result"]["content_ids"]
        r = client.post("writer/content/generate_image_prompts/", headers=h,
                        json={"ids": contents[:1]})
        assert r.status_code == 200, r.text
        assert _wait_for_job(client, h, _data(r)["task_id"])["state"] == "SUCCESS"

        # An automation run on a few fresh keywords (local engines, everything stays a
        # draft): automation's API, its consumers and the pipeline commands it sends.
        site_query = f"?site_id={site['id']}"
        for word in ("descaling a kettle", "kettle descaler vinegar", "how to descale kettle"):
            assert create(word, 300) is not None
        r = client.patch(f"automation/update_config/{site_query}", headers=h, json={
            "within_stage_delay": 0, "between_stage_delay": 0, "publish_mode": "draft"})
        assert r.status_code == 200, r.text
        r = client.post(f"automation/run_now/{site_query}", headers=h)
        assert r.status_code == 200, r.text
        run_id = _data(r)["run_id"]

        # Reads of every service, in rounds a scrape apart (scraped_after).
        reads = ("auth/me/", "auth/sites/", "planner/keywords/", "planner/clusters/",
                 "writer/tasks/", "writer/content/", "billing/credits/balance/",
                 "billing/credits/usage/", "billing/credits/transactions/",
                 f"automation/config/{site_query}", f"automation/history/{site_query}",
                 f"automation/pipeline_overview/{site_query}")
        for _ in range(3):
            for path in reads:
                r = client.get(path, headers=h)
                assert r.status_code == 200, f"{path}: {r.text}"
            settle()

        def run_ended() -> dict[str, Any] | None:
            r = client.get(f"automation/history/{site_query}", headers=h)
            assert r.status_code == 200, r.text
            run = next(run for run in _data(r) if run["run_id"] == run_id)
            return dict(run) if run["status"] in ("completed", "failed", "cancelled",
                                                   "paused") else None

        run = _eventually(run_ended, f"automation run {run_id} end", timeout=400)
        assert run["status"] == "completed", run
        settle()

        # 429s: failed sign-ins from this address, in rounds a scrape apart, each more
        # than the limit lets through meanwhile (auth: 20 a minute).
        def sign_in_failures(attempts: int) -> list[int]:
            return [client.post("auth/login/", json={"email": "nobody@example.com",
                                                     "password": "wrong-password-1"}
                                ).status_code for _ in range(attempts)]

        for _ in range(3):
            statuses = sign_in_failures(25)
            assert 429 in statuses, statuses
            settle()


# ---- the test -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def traffic(platform: Platform, prometheus: str) -> tuple[float, float]:
    """The traffic, once for the module's tests: when it began and ended (Unix times)."""
    start = time.time()
    drive_traffic(platform, prometheus)
    return start, time.time()


def test_every_dashboard_query_returns_data(prometheus: str,
                                            traffic: tuple[float, float]) -> None:
    start, end = traffic
    down = instant(prometheus, 'up{job=~"igny8-.*"} == 0')
    assert down == [], f"targets Prometheus could not scrape: {down}"

    empty: list[str] = []
    conditional: list[str] = []
    zero_filled: list[str] = []  # data only from `or vector(0)`: shown as 0, as meant
    checked = 0
    for where, condition, expr in dashboard_queries():
        if condition is not None and condition not in MET_BY_TRAFFIC:
            conditional.append(f"{where} (fills when: {condition})")
            continue
        checked += 1
        if not has_data(prometheus, substitute(expr), start, end):
            empty.append(f"{where}: {expr}")
        elif ZERO_FILL.search(expr) and not has_data(
                prometheus, substitute(ZERO_FILL.sub("", expr)), start, end):
            zero_filled.append(where)
    print(f"{checked} queries checked, {len(empty)} without data; {len(zero_filled)} show 0"
          f" only through `or vector(0)`:", *zero_filled, sep="\n  ")
    print(f"{len(conditional)} conditional, not asserted:", *conditional, sep="\n  ")
    assert checked > 100
    # Automation runs under `igny8 up` and in the traffic: no panel may wait for it.
    assert not [c for c in conditional if "automation" in c.lower()], conditional
    if empty:  # what Prometheus saw of the targets, for the failure message
        failures = instant(prometheus, f'sum by (job) (count_over_time((up{{job=~"igny8-.*"}} == 0)'
                                       f'[{math.ceil(end - start)}s:{SCRAPE_SECONDS}s]))')
        scrape_failures = {r["metric"]["job"]: r["value"][1] for r in failures}
        pytest.fail(f"{len(empty)} of {checked} queries without data (failed scrapes: "
                    f"{scrape_failures}):\n" + "\n".join(empty))
    # What the traffic script does on purpose shows as itself, not as a fallback 0.
    meant = [where for where in zero_filled
             if re.search(r"Rate-limit|429|AI |Jobs by|Drafts", where)]
    assert meant == [], f"the traffic's 429s and AI jobs do not show: {meant}"


@pytest.mark.usefixtures("traffic")
def test_the_rules_evaluate_and_the_abandoned_job_alert_fires(platform: Platform,
                                                              prometheus: str) -> None:
    """The alert rules (deploy/prometheus/rules), loaded by the same Prometheus over the
    platform's real series, evaluate without error; the job the traffic left abandoned is
    closed by planner's sweep, and IGNY8AIJobsAbandoned fires for it: its series was at 0
    before (the sweep starts its functions there), so the first one is an increase."""
    def evaluated() -> list[dict[str, Any]] | None:
        r = httpx.get(f"{prometheus}/api/v1/rules", timeout=30)
        assert r.status_code == 200, r.text
        found = [rule for group in r.json()["data"]["groups"] for rule in group["rules"]]
        return found if found and all(rule["health"] != "unknown" for rule in found) else None

    found = _eventually(evaluated, "every rule evaluated", timeout=60)
    assert len(found) >= 20
    broken = [(rule["name"], rule["health"], rule.get("lastError")) for rule in found
              if rule["health"] != "ok"]
    assert broken == [], broken

    def closed() -> tuple[str, str] | None:
        with platform.connect("planner") as conn:
            row = conn.execute("SELECT status, error FROM ai_task_logs WHERE task_id = %s",
                               (ABANDONED_TASK,)).fetchone()
        assert row is not None
        return (row[0], row[1]) if row[0] != "pending" else None

    # The sweep passes every minute (`sweep_seconds`); the traffic may take less.
    status, error = _eventually(closed, "planner's sweep close the abandoned job", timeout=150)
    assert status == "failed"
    assert error.startswith("abandoned:"), error
    firing = _eventually(lambda: instant(
        prometheus, 'ALERTS{alertname="IGNY8AIJobsAbandoned",alertstate="firing"}'),
        "IGNY8AIJobsAbandoned firing", timeout=60)
    assert [(a["metric"]["service"], a["metric"]["function"]) for a in firing] == [
        ("planner", "auto_cluster")]
    # The writer's functions, none abandoned: their series exist, at 0.
    writer = instant(prometheus, 'igny8_ai_jobs_abandoned_total{service="writer"}')
    assert writer
    assert {float(series["value"][1]) for series in writer} == {0.0}
