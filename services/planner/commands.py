"""Planner's commands for other services (declared in `libs/common/planner.py`), answered
from its tables by its worker: `lookup_cluster`, what writer asks when a body names a
cluster its read model has not heard of yet."""

from __future__ import annotations

from typing import Any

from libs.common.commands import Command, Handler, serve
from libs.common.db import Database, TenantScope
from libs.common.planner import LOOKUP_CLUSTER, ClusterDoc, LookupCluster
from libs.common.problems import NotFound
from libs.common.repository import Visibility
from libs.common.runtime import WorkerContext
from services.planner.events import cluster_event
from services.planner.repository import ClusterRepository


def command_handlers(db: Database) -> dict[Command[Any, Any], Handler]:
    async def lookup_cluster(request: LookupCluster) -> ClusterDoc:
        """The account's live cluster as `planner.cluster.updated` would describe it; any
        other account's, or a deleted one, is not found (the session is the account's)."""
        async with db.session(TenantScope.account(request.account_id),
                              read_only=True) as session:
            found = await ClusterRepository(session, Visibility(request.account_id)).get(
                request.cluster_id)
        if found is None:
            raise NotFound("Cluster not found.")
        return ClusterDoc.model_validate({**cluster_event(found, "updated").data,
                                          "account_id": found["account_id"]})

    return {LOOKUP_CLUSTER: lookup_cluster}


async def serve_commands(ctx: WorkerContext) -> None:
    """Planner's command responders, one queue group for every planner worker replica."""
    await serve(ctx.nc, command_handlers(ctx.db), stop=ctx.stop)
