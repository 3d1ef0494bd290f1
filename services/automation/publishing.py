"""Stage 7's publisher: writer's `pipeline_publish` command (`libs/common/pipeline.py`,
answered by `services/writer/publishing/approval.py`), which approves one content and
publishes it to the site's active WordPress integration exactly once (ADR 0019; the
step's key makes a repeated request an answer from writer's record, ADR 0024).

Writer's answer becomes the gate's outcome: published, or the reason the content stays a
draft (`no_integration`, `inactive`: skipped; `failed`: the site's reason as writer gives
it, the item parked as failed). Refused
credentials (`credentials`: none saved, or the site answered 401/403) pause the run. No
answer at all is `ServiceUnavailable`, which the gate meets by asking again later.

The command is sent once per move, without the command client's retries: the move holds
the run's row while it waits, so at most `publish_timeout_seconds`; a request that timed
out is asked again by a later move under the same key (writer, still publishing it, holds
the site's lock; the new request waits behind it and is answered from the record).
"""

from __future__ import annotations

from libs.common.pipeline import PipelineClient
from services.automation.orchestration import PublishOutcome

# The gate's reasons for writer's codes; `failed` keeps writer's own words.
REASONS = {"no_integration": "no WordPress integration for the site",
           "inactive": "the site's WordPress integration is not active"}


class WriterPublisher:
    def __init__(self, pipeline: PipelineClient, *, timeout: float) -> None:
        self.pipeline = pipeline
        self.timeout = timeout

    @classmethod
    def over(cls, pipeline: PipelineClient, *, timeout: float) -> WriterPublisher:
        """On the same NATS connection as `pipeline`, sent once (no retry on timeout)."""
        return cls(PipelineClient(pipeline.nc, timeout=timeout, retries=0), timeout=timeout)

    async def publish(self, account_id: int, site_id: int, content_id: int, *, key: str,
                      user_id: int | None = None, run_id: str | None = None
                      ) -> PublishOutcome:
        answer = await self.pipeline.publish(account_id, site_id, content_id, key=key,
                                             user_id=user_id, run_id=run_id,
                                             timeout=self.timeout)
        if answer.published:
            return PublishOutcome(True, external_url=answer.url)
        reason = REASONS.get(answer.code) or f"not published: {answer.reason}"
        return PublishOutcome(False, reason, pause=answer.code == "credentials",
                              failed=answer.code == "failed")
