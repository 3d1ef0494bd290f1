"""`igny8 automation run`: start a site's automation run through the public API and follow
it stage by stage in the terminal (the same endpoints the web app uses: `run_now`, then
`history` and `current_processing` until the run ends).

The API is the running platform's (`igny8 up` wrote its URL to the state file) or
`--url`; the login is the demo account's unless `--email`/`--password` (or `--token`)
say otherwise. Ctrl-C stops following; `--pause-on-exit` pauses the run as well.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

PREFIX = "/automation"
TERMINAL = ("completed", "cancelled", "failed", "paused")
RATE_LIMIT_RETRIES = 5


class AutomationCliError(RuntimeError):
    pass


@dataclass
class Api:
    """The public API (gateway envelope) with a bearer token."""

    base_url: str  # .../api/v1
    token: str
    client: httpx.Client

    @classmethod
    def login(cls, base_url: str, email: str, password: str,
              client: httpx.Client | None = None) -> Api:
        http = client or httpx.Client(timeout=30)
        r = http.post(f"{base_url}/auth/login/", json={"email": email, "password": password})
        body = _json(r)
        if r.status_code != 200 or not body.get("success"):
            raise AutomationCliError(f"login failed: {body.get('error') or r.status_code}")
        return cls(base_url, body["data"]["access"], http)

    def call(self, method: str, path: str, *, sleep: Callable[[float], None] = time.sleep,
             **params: Any) -> tuple[int, dict[str, Any]]:
        """One call; rate-limited (429: a web app open beside the CLI shares the user's
        budget), it waits as the gateway says and asks again, a few times."""
        for _ in range(RATE_LIMIT_RETRIES):
            r = self.client.request(method, f"{self.base_url}{PREFIX}/{path}/", params=params,
                                    headers={"Authorization": f"Bearer {self.token}"})
            if r.status_code != 429:
                break
            sleep(min(_seconds(r.headers.get("Retry-After")), 30.0))
        return r.status_code, _json(r)


def _seconds(value: str | None) -> float:
    try:
        return max(float(value or 1), 0.1)
    except ValueError:
        return 1.0


def _json(r: httpx.Response) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {"success": False, "error": r.text[:200]}
    return body if isinstance(body, dict) else {"data": body}


def start(api: Api, site_id: int) -> str:
    """`run_now`: the run id, or a readable refusal (402 with the estimate, 409)."""
    code, body = api.call("POST", "run_now", site_id=site_id)
    if code == 200:
        return str(body["data"]["run_id"])
    if code == 402:
        errors = body.get("errors") or {}
        raise AutomationCliError(
            f"not enough credits: estimate {errors.get('estimated_credits', ['?'])[0]}, "
            f"needed {errors.get('required_credits', ['?'])[0]}, "
            f"balance {errors.get('current_balance', ['?'])[0]}")
    raise AutomationCliError(f"run_now answered {code}: {body.get('error')}")


def pause(api: Api, site_id: int, run_id: str) -> None:
    """Ask the run to pause (after its current item); a run that ended meanwhile is left
    as it is."""
    code, body = api.call("POST", "pause", site_id=site_id, run_id=run_id)
    if code not in (200, 409):
        raise AutomationCliError(f"pause answered {code}: {body.get('error')}")


def run_of(api: Api, site_id: int, run_id: str) -> dict[str, Any]:
    code, body = api.call("GET", "history", site_id=site_id)
    if code != 200:
        raise AutomationCliError(f"history answered {code}: {body.get('error')}")
    for run in body.get("data") or []:
        if run["run_id"] == run_id:
            return dict(run)
    raise AutomationCliError(f"run {run_id} is not in the site's history")


def follow(api: Api, site_id: int, run_id: str, console: Console, *, every: float = 1.0,
           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Show each stage's progress until the run ends (or pauses); the last state. Besides
    the bars (redrawn on a terminal), a line when a stage starts and when it is done, so
    the output of a pipe or a log file shows the stages advancing too."""
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[detail]}"), console=console) as progress:
        bars: dict[int, TaskID] = {}
        started: set[int] = set()
        finished: set[int] = set()
        while True:
            run = run_of(api, site_id, run_id)
            for stage in run["stage_results"]:
                n = stage["stage"]
                if n not in bars:
                    bars[n] = progress.add_task(f"{n}. {stage['name']}", total=1, detail="")
                done = n < run["current_stage"] or run["status"] == "completed"
                active = n == run["current_stage"] and run["status"] == "running"
                detail = (f"{stage['processed']} processed, {stage['created']} made, "
                          f"{stage['failed']} failed, {stage['credits']} credits")
                progress.update(bars[n], completed=1 if done else 0,
                                detail=("running: " if active else "") + detail)
                if active and n not in started:
                    started.add(n)
                    progress.console.print(f"stage {n} ({stage['name']}) started")
                if done and n not in finished:
                    finished.add(n)
                    progress.console.print(f"stage {n} ({stage['name']}) done: {detail}")
            if run["status"] in TERMINAL:
                return run
            sleep(every)
