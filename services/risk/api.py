"""Routes of the risk service (ops API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.risk import service
from services.risk.models import ReviewStatus
from services.risk.schemas import AssessmentOut, ReviewDecisionIn, ReviewList, ReviewOut
from shared.app import RequestUnitOfWork
from shared.auth import Ops

router = APIRouter(prefix="/v1")

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


@router.get("/assessments/{request_id}", tags=["assessments"])
async def get_assessment(request_id: Id, principal: Ops, uow: RequestUnitOfWork) -> AssessmentOut:
    return await service.get_assessment(uow, request_id)


@router.get("/reviews", tags=["reviews"])
async def list_reviews(principal: Ops, uow: RequestUnitOfWork, status: ReviewStatus | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> ReviewList:
    """The review queue, oldest first."""
    return await service.list_reviews(uow, status, limit)


@router.post("/reviews/{review_id}/decision", tags=["reviews"])
async def decide_review(review_id: Id, body: ReviewDecisionIn, principal: Ops, uow: RequestUnitOfWork) -> ReviewOut:
    return await service.decide_review(uow, principal, review_id, body.decision, body.note)
