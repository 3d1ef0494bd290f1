"""The AI task log's `heartbeat_at` and the index of open logs: what the job workers'
sweep of abandoned jobs reads (libs/common/ai_jobs/abandoned.py).

Revision ID: 0007
Revises: 0006
"""

from libs.common.migrations import ai_task_log_liveness_revision

revision, down_revision, branch_labels, depends_on = "0007", "0006", None, None
upgrade, downgrade = ai_task_log_liveness_revision()
