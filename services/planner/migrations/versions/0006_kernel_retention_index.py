"""The index the kernel's retention pass deletes processed events by (ADR 0036)."""

from libs.common.migrations import kernel_retention_revision

revision, down_revision, branch_labels, depends_on = "0006", "0005", None, None
upgrade, downgrade = kernel_retention_revision()
