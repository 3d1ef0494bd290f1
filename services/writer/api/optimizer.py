"""`/api/v1/optimizer/`: `analyze` (the score and its checks, now, free) and `optimize` (a
billed job that fixes what can be fixed without inventing facts)."""

from __future__ import annotations

from fastapi import APIRouter

from libs.common.problems import PaymentRequired, answers
from services.writer import schemas as s
from services.writer.api.deps import OptimizerEditor, queued

router = APIRouter(prefix="/api/v1/optimizer", tags=["optimizer"])


@router.post("/analyze/", response_model=s.AnalysisOut)
async def analyze(body: s.AnalyzeRequest, optimizer: OptimizerEditor) -> s.AnalysisOut:
    """`{score (0-100), checks: [{name, status, message, fix}]}`; the score is kept on
    the content."""
    return s.analysis_out(body.content_id, await optimizer.analyze(body.content_id))


@router.post("/optimize/", response_model=s.TaskQueued, responses=answers(PaymentRequired))
async def optimize(body: s.ContentIds, optimizer: OptimizerEditor) -> dict[str, str]:
    """Fix each content: locally, or through the account's model when it has one."""
    return queued(await optimizer.request_optimize(body.ids, body.run_id))
