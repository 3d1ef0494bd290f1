"""Writer's worker process: `python -m services.writer.worker`.

Runs the outbox relay, the consumers of auth's directory and of planner's events (queued
ideas become tasks; clusters and keywords feed the briefs' read models), each supervised
(`libs.common.runtime.run_worker`).
"""

from __future__ import annotations

from libs.common.runtime import main, worker_runner
from services.writer.events import auth_consumer, planner_consumer
from services.writer.settings import WriterSettings

run = worker_runner(WriterSettings, consumers=lambda ctx: [auth_consumer(ctx.db, ctx.js),
                                                           planner_consumer(ctx.db, ctx.js)])

if __name__ == "__main__":
    main(run)
