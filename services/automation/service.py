"""Automation's domain logic for the API: no HTTP, no commit (the unit of work commits).

Every call names a site (`site_id`) or a run (`run_id`) of the caller's account: another
tenant's site or run is a 404. Starting a run records it (the database's unique index
keeps one active run per site); the worker advances it (`orchestration.py`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.directory import CallerService
from libs.common.events import utcnow
from libs.common.pipeline import PipelineClient
from libs.common.problems import (
    Conflict,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    ValidationFailed,
)
from libs.common.repository import Row, Visibility
from libs.common.security import Principal
from libs.common.uow import UnitOfWork
from services.automation import events
from services.automation.estimating import Ratios, batch_size, estimate
from services.automation.models import DIRECTORY, ItemStatus, RunStatus, StepStatus, Trigger
from services.automation.orchestration import next_run_at
from services.automation.repository import (
    ChargeRepository,
    ConfigRepository,
    ItemRepository,
    LogRepository,
    RunRepository,
    StepRepository,
)
from services.automation.schemas import (
    DEFAULT_BATCH,
    STAGE_NAMES,
    ConfigOut,
    ConfigUpdate,
    CurrentProcessing,
    EstimateOut,
    LogLine,
    LogsOut,
    PipelineOverview,
    RunOut,
    RunStarted,
    StagePending,
    StageResult,
)
from services.automation.settings import AutomationSettings

HISTORY = 20
RUN_NOT_FOUND = "Run not found."


@dataclass
class Clients:
    """What the app gives the service: settings and the command clients."""

    settings: AutomationSettings
    auth: AuthClient
    billing: BillingClient
    pipeline: PipelineClient


CONFIG_COLUMNS = {
    "enabled": "enabled", "frequency": "frequency", "scheduled_time": "scheduled_time",
    "timezone": "timezone", "within_stage_delay": "within_stage_delay_seconds",
    "between_stage_delay": "between_stage_delay_seconds", "publish_mode": "publish_mode",
    "quality_threshold": "quality_threshold", "daily_publish_cap": "daily_publish_cap",
    "publish_window_start": "publish_window_start", "publish_window_end": "publish_window_end",
}
DEFAULTS: dict[str, Any] = {
    "enabled": False, "frequency": "daily", "scheduled_time": "02:00", "timezone": "UTC",
    "batch_sizes": {}, "within_stage_delay_seconds": 0, "between_stage_delay_seconds": 0,
    "publish_mode": "draft", "quality_threshold": 80, "daily_publish_cap": 10,
    "publish_window_start": "00:00", "publish_window_end": "23:59", "last_run_at": None,
    "next_run_at": None,
}


def config_out(site_id: int, row: Row | None) -> ConfigOut:
    values = {**DEFAULTS, **(row or {})}
    return ConfigOut(
        site_id=site_id,
        **{api: values[column] for api, column in CONFIG_COLUMNS.items()},
        **{f"stage_{s}_batch_size": batch_size(values, s) for s in DEFAULT_BATCH},
        last_run_at=values["last_run_at"], next_run_at=values["next_run_at"])


def run_out(run: Row, credits: dict[int, int]) -> RunOut:
    results = run["results"] or {}
    stages = []
    for s in range(1, 8):
        entry = results.get(str(s)) or {}
        stages.append(StageResult(
            stage=s, name=STAGE_NAMES[s], credits=credits.get(s, 0),
            **{k: int(entry.get(k) or 0) for k in ("processed", "created", "failed", "skipped")},
            reasons=entry.get("reasons") or {}))
    return RunOut(
        run_id=run["run_id"], site_id=run["site_id"], trigger=run["trigger"],
        status=run["status"], current_stage=run["current_stage"],
        stop_requested=run["stop_requested"], estimated_credits=run["estimated_credits"],
        total_credits=run["total_credits"], error=run["error"], started_at=run["started_at"],
        paused_at=run["paused_at"], finished_at=run["finished_at"], stage_results=stages)


class AutomationService(CallerService):
    directory = DIRECTORY

    def __init__(self, uow: UnitOfWork, principal: Principal, clients: Clients) -> None:
        super().__init__(uow, principal, clients.auth)
        self.clients = clients

    async def _site(self, site_id: int | None, *, writes: bool = False) -> int:
        """The caller's site (404 for another tenant's, 403 for one not granted to the
        caller; 400 naming `site_id` when absent). Reads ask auth on a directory miss
        without keeping the answer (their transaction is read-only); writes keep it."""
        if site_id is None:
            raise ValidationFailed.field("site_id", "This field is required.")
        if writes:
            await self.access.site(site_id)
            return site_id
        vis = await self.visibility()
        if await DIRECTORY.repository(self.uow.session).site(self.account_id, site_id) is None:
            found = await self.clients.auth.lookup_site(self.account_id, site_id)
            if found is None or found.site.account_id != self.account_id:
                raise NotFound("Site not found.")
        if not vis.may_see(site_id):
            raise PermissionDenied("You do not have access to this site.")
        return site_id

    async def _run(self, run_id: str | None, *, lock: bool = False) -> Row:
        if not run_id:
            raise ValidationFailed.field("run_id", "This field is required.")
        runs = await self.repository(RunRepository)
        run = await runs.by_run_id(run_id, lock=lock)
        if run is None:
            raise NotFound(RUN_NOT_FOUND)
        return run

    async def _config(self, site_id: int) -> Row | None:
        configs = await self.repository(ConfigRepository)
        return await configs.of_site(site_id)

    async def _credits(self, run: Row) -> dict[int, int]:
        charges = await self.repository(ChargeRepository)
        return await charges.by_stage(run["id"])

    # --- configuration ----------------------------------------------------------------

    async def config(self, site_id: int | None) -> ConfigOut:
        site = await self._site(site_id)
        return config_out(site, await self._config(site))

    async def update_config(self, site_id: int | None, body: ConfigUpdate) -> ConfigOut:
        site = await self._site(site_id, writes=True)
        given = body.model_dump(exclude_unset=True)
        current = {**DEFAULTS, **(await self._config(site) or {})}
        values: dict[str, Any] = {CONFIG_COLUMNS[k]: v for k, v in given.items()
                                  if k in CONFIG_COLUMNS}
        sizes = dict(current["batch_sizes"] or {})
        for s in DEFAULT_BATCH:
            if f"stage_{s}_batch_size" in given:
                sizes[str(s)] = given[f"stage_{s}_batch_size"]
        values["batch_sizes"] = sizes
        merged = {**current, **values}
        schedule_changed = any(k in given for k in ("enabled", "frequency", "scheduled_time",
                                                    "timezone"))
        if schedule_changed or current["next_run_at"] is None:
            values["next_run_at"] = next_run_at(merged, utcnow()) if merged["enabled"] else None
        configs = await self.repository(ConfigRepository)
        row = await configs.upsert(site, values)
        return config_out(site, row)

    # --- runs -------------------------------------------------------------------------

    async def estimate(self, site_id: int | None) -> EstimateOut:
        site = await self._site(site_id)
        c = self.clients
        runs = await self.repository(RunRepository)
        ratios = Ratios.measured(await runs.completed_results(site))
        return await estimate(c.pipeline, c.billing, self.account_id, site,
                              await self._config(site), c.settings.balance_margin, ratios)

    async def run_now(self, site_id: int | None) -> RunStarted:
        site = await self._site(site_id, writes=True)
        runs = await self.repository(RunRepository)
        if await runs.active_of_site(site) is not None:
            raise Conflict("A run is already active for this site.")
        found = await self.estimate(site)
        if not found.sufficient:
            raise PaymentRequired(
                f"Insufficient credits: this run is estimated at {found.estimated_credits} "
                f"credits and needs a balance of {found.required_credits} "
                f"({self.clients.settings.balance_margin} x the estimate); the balance is "
                f"{found.current_balance}.",
                errors={"estimated_credits": [str(found.estimated_credits)],
                        "required_credits": [str(found.required_credits)],
                        "current_balance": [str(found.current_balance)]})
        run = await start_run(self.uow, self.account_id, site, Trigger.MANUAL,
                              self.principal.user_id, found.estimated_credits)
        if run is None:
            raise Conflict("A run is already active for this site.")
        return RunStarted(run_id=run["run_id"], status=run["status"],
                          estimated_credits=run["estimated_credits"],
                          message="Automation run started.")

    async def current_run(self, site_id: int | None) -> RunOut | None:
        site = await self._site(site_id)
        runs = await self.repository(RunRepository)
        run = await runs.active_of_site(site)
        return None if run is None else run_out(run, await self._credits(run))

    async def history(self, site_id: int | None) -> list[RunOut]:
        site = await self._site(site_id)
        runs = await self.repository(RunRepository)
        latest = await runs.latest_of_site(site, HISTORY)
        return [run_out(r, await self._credits(r)) for r in latest]

    async def logs(self, run_id: str | None, lines: int) -> LogsOut:
        run = await self._run(run_id)
        logs = await self.repository(LogRepository)
        found = await logs.last(run["id"], lines)
        return LogsOut(run_id=run["run_id"], lines=[
            LogLine(at=r["created_at"], stage=r["stage"], level=r["level"],
                    message=r["message"]) for r in found])

    async def pipeline_overview(self, site_id: int | None) -> PipelineOverview:
        site = await self._site(site_id)
        pipeline = self.clients.pipeline
        stages = []
        for s in range(1, 8):
            found = await pipeline.pending(self.account_id, site, stage=s, limit=0)
            stages.append(StagePending(stage=s, name=STAGE_NAMES[s], pending=found.count))
        return PipelineOverview(site_id=site, stages=stages)

    async def current_processing(self, site_id: int | None) -> CurrentProcessing | None:
        site = await self._site(site_id)
        vis = await self.visibility()
        run = await RunRepository(self.uow.session, vis).active_of_site(site)
        if run is None:
            return None
        active = await StepRepository(self.uow.session, vis).active(run["id"])
        step = active[0] if active else None
        return CurrentProcessing(
            run_id=run["run_id"], status=run["status"], stage=run["current_stage"],
            stage_name=STAGE_NAMES[run["current_stage"]],
            step=None if step is None else {
                "batch": step["batch"], "status": step["status"],
                "task_id": str(step["task_id"]) if step["task_id"] else None},
            items=list(step["item_ids"]) if step else [])

    # --- controls ---------------------------------------------------------------------

    async def pause(self, run_id: str | None) -> RunOut:
        """Running: paused once the current step is over (at once when none is active)."""
        run = await self._run(run_id, lock=True)
        if run["status"] != RunStatus.RUNNING:
            raise Conflict(f"The run is {run['status']}; only a running run can be paused.")
        return await self._stop(run, "pause")

    async def cancel(self, run_id: str | None) -> RunOut:
        """Running or paused: cancelled once the current step is over."""
        run = await self._run(run_id, lock=True)
        if run["status"] not in (RunStatus.RUNNING, RunStatus.PAUSED):
            raise Conflict(f"The run is {run['status']}; it cannot be cancelled.")
        return await self._stop(run, "cancel")

    async def resume(self, run_id: str | None) -> RunOut:
        run = await self._run(run_id, lock=True)
        vis = await self.visibility()
        runs = RunRepository(self.uow.session, vis)
        if run["status"] == RunStatus.RUNNING and run["stop_requested"] == "pause":
            changed = await runs.change(run["id"], {"stop_requested": None})
        elif run["status"] == RunStatus.PAUSED:
            changed = await runs.change(run["id"], {
                "status": RunStatus.RUNNING, "paused_at": None, "error": None, "wake_at": None})
            assert changed is not None
            await self.uow.publish(events.run_event("resumed", changed))
            await LogRepository(self.uow.session, vis).add(
                self.account_id, run["id"], f"Resumed at stage {run['current_stage']}.")
        else:
            raise Conflict(f"The run is {run['status']}; only a paused run can be resumed.")
        assert changed is not None
        return run_out(changed, await self._credits(changed))

    async def _stop(self, run: Row, what: str) -> RunOut:
        vis = await self.visibility()
        runs = RunRepository(self.uow.session, vis)
        logs = LogRepository(self.uow.session, vis)
        active = [s for s in await StepRepository(self.uow.session, vis).active(run["id"])
                  if s["status"] in (StepStatus.QUEUED, StepStatus.RUNNING)]
        if active and run["status"] == RunStatus.RUNNING:
            changed = await runs.change(run["id"], {"stop_requested": what})
            await logs.add(self.account_id, run["id"],
                           f"{what.capitalize()} asked; applied after the current batch.")
        elif what == "pause":
            changed = await runs.change(run["id"], {
                "status": RunStatus.PAUSED, "paused_at": utcnow(), "stop_requested": None})
            assert changed is not None
            await self.uow.publish(events.run_event("paused", changed))
            await logs.add(self.account_id, run["id"],
                           f"Paused at stage {run['current_stage']}.")
        else:
            changed = await runs.change(run["id"], {
                "status": RunStatus.CANCELLED, "finished_at": utcnow(), "stop_requested": None})
            assert changed is not None
            await self._close_steps(active, vis)
            await self.uow.publish(events.run_event("cancelled", changed))
            await logs.add(self.account_id, run["id"], "Run cancelled.")
        assert changed is not None
        return run_out(changed, await self._credits(changed))

    async def _close_steps(self, steps: list[Row], vis: Visibility) -> None:
        """A paused run can hold an open step (stage 7 paused on refused credentials keeps
        its item for the resume): cancelled, the step fails and its items stay as they
        are, skipped with the reason, so nothing of a cancelled run reads as running."""
        step_rows = StepRepository(self.uow.session, vis)
        items = ItemRepository(self.uow.session, vis)
        for step in steps:
            await step_rows.change(step["id"], {
                "status": StepStatus.FAILED, "error": "run cancelled", "finished_at": utcnow()})
            await items.settle(step["id"], ItemStatus.SKIPPED, "run cancelled")


async def start_run(uow: UnitOfWork, account_id: int, site_id: int, trigger: Trigger,
                    user_id: int | None, estimated: int,
                    schedule_key: str | None = None) -> Row | None:
    """Record a new run at stage 1, or None when the site already has an active one (or
    the schedule key was taken): the unique indexes decide, whoever commits first."""
    vis = Visibility(account_id)
    run = await RunRepository(uow.session, vis).insert_new({
        "run_id": f"run_{uuid.uuid4().hex[:20]}", "site_id": site_id, "trigger": trigger,
        "triggered_by": user_id or None, "schedule_key": schedule_key,
        "status": RunStatus.RUNNING, "current_stage": 1, "results": {},
        "estimated_credits": estimated, "total_credits": 0})
    if run is None:
        return None
    await LogRepository(uow.session, vis).add(
        account_id, run["id"], f"Run started ({trigger}); estimated {estimated} credits.")
    await uow.publish(events.run_event("started", run))
    return run
