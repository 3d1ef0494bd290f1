"""Planner's commands for other services, declared once for planner's worker and its
callers, and the typed client (NATS request-reply through `libs/common/commands.py`).

- `lookup_cluster`: a cluster as planner knows it now, as its `planner.cluster.*` events
  describe it; `NotFound` when it is not the account's (or deleted). Writer asks on a
  read-model miss when a body names a `cluster_id`, so a cluster created a moment ago is
  not refused while planner's event is still on its way (the directory's `lookup_site`
  pattern). It only reads: a caller sends it again after a timeout.

Automation's pipeline commands are in `libs/common/pipeline.py`.
"""

from __future__ import annotations

from pydantic import BaseModel

from libs.common.commands import Command, CommandClient
from libs.common.ids import Id
from libs.common.problems import NotFound

SERVICE = "planner"


class ClusterDoc(BaseModel):
    """A cluster as `planner.cluster.created` / `.updated` carries it, with its account."""

    id: int
    account_id: int
    site_id: int
    sector_id: int
    name: str = ""
    description: str = ""
    topic: str = ""
    status: str = "active"


class LookupCluster(BaseModel):
    account_id: Id
    cluster_id: Id


LOOKUP_CLUSTER = Command(SERVICE, "lookup_cluster", LookupCluster, ClusterDoc,
                         idempotent=True)


class PlannerClient(CommandClient):
    async def lookup_cluster(self, account_id: int, cluster_id: int) -> ClusterDoc | None:
        """The account's live cluster, or None when planner has no such cluster for it.
        Raises `ServiceUnavailable` when planner does not answer."""
        try:
            return await self.call(LOOKUP_CLUSTER, LookupCluster(account_id=account_id,
                                                                 cluster_id=cluster_id))
        except NotFound:
            return None
