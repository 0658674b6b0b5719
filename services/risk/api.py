"""Routes of the risk service (ops API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from services.risk import service
from services.risk.schemas import AssessmentOut
from shared.app import RequestUnitOfWork
from shared.auth import Ops

router = APIRouter(prefix="/v1", tags=["assessments"])


@router.get("/assessments/{request_id}")
async def get_assessment(request_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")], principal: Ops, uow: RequestUnitOfWork) -> AssessmentOut:
    return await service.get_assessment(uow, request_id)
