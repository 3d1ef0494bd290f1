"""Writer's AI jobs: only what is writer's. The billed job around them (credits held per
item and captured for what each item cost, the AI task log, idempotency by task id, the
account's engines, progress, failure) is the kernel's (`libs/common/ai_jobs`).

- `auto_generate_content` (`content.py`): tasks → drafts → content, tasks → `review`.
- `generate_image_prompts`, `generate_images` (`images.py`).
- `optimize` (`optimize.py`).

Accounts with an active OpenAI integration run on their model with their prompts (task
override → account prompt → built-in); the others on the offline engines. `offline`
replaces the offline drafting engine (tests, the bench).
"""

from __future__ import annotations

import functools

from libs.common.ai_jobs import AIFunction, AIJobContext, AIJobRunner, JobBody, Saver
from libs.common.auth import AuthClient
from libs.common.billing import BillingClient
from libs.common.db import Database
from libs.common.jobs import JobHandler
from libs.common.outbound import OutboundPolicy
from services.writer.events import (
    AUTO_GENERATE_CONTENT,
    GENERATE_IMAGE_PROMPTS,
    GENERATE_IMAGES,
    OPTIMIZE,
)
from services.writer.jobs.content import DraftFn, draft_offline, generate_content
from services.writer.jobs.images import generate_image_prompts, generate_images
from services.writer.jobs.optimize import optimize
from services.writer.models import AI_TASK_LOGS
from services.writer.service import Platform

__all__ = ["DraftFn", "WriterJobs", "draft_offline"]

# How long a job waits for auth's AI settings before it counts as a transient failure.
AI_SETTINGS_TIMEOUT_SECONDS = 3.0


class WriterJobs:
    """Writer's job bodies for the kernel's job workers (`runner.workers(...)`)."""

    def __init__(self, db: Database, billing: BillingClient, platform: Platform, *,
                 offline: DraftFn = draft_offline, auth: AuthClient | None = None) -> None:
        settings = platform.settings
        self.policy = OutboundPolicy.from_settings(settings)
        auth = auth or AuthClient(
            billing.nc, timeout=min(settings.command_timeout_seconds, AI_SETTINGS_TIMEOUT_SECONDS))
        self.runner = AIJobRunner(db, AI_TASK_LOGS, billing, auth,
                                  max_deliver=settings.job_max_deliver, policy=self.policy,
                                  deadline_seconds=settings.hold_ttl_seconds)

        async def images(ctx: AIJobContext) -> Saver:
            return await generate_images(ctx, platform, self.policy, settings.job_max_deliver)

        self.bodies: dict[AIFunction, JobBody] = {
            AUTO_GENERATE_CONTENT: functools.partial(generate_content, offline=offline),
            GENERATE_IMAGE_PROMPTS: generate_image_prompts,
            GENERATE_IMAGES: images,
            OPTIMIZE: optimize,
        }

    def handler(self, function: AIFunction) -> JobHandler:
        return self.runner.handler(function, self.bodies[function])
