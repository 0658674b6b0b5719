"""Routes of the risk service: assessments, rules, the review queue and flags (ops), profiles (service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from services.risk import service
from services.risk.models import ReviewStatus
from services.risk.schemas import AssessmentOut, FlagList, ProfileIn, ReviewDecisionIn, ReviewList, ReviewOut, RuleSetOut, RulesIn
from services.risk.service import RiskDeps
from shared.app import RequestUnitOfWork, Runtime
from shared.auth import Ops, Principal, Reviewer, RulesAdmin, require_service
from shared.problems import problem_responses

router = APIRouter(responses=problem_responses(401, 403, 422))

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def _deps(runtime: Runtime) -> RiskDeps:
    return runtime.deps


Deps = Annotated[RiskDeps, Depends(_deps)]
# The bank's customer system tells risk of profile changes; no other service may.
CustomerSystem = Annotated[Principal, Depends(require_service("customer-system"))]


@router.get("/v1/assessments/{request_id}", tags=["assessments"], responses=problem_responses(404))
async def get_assessment(request_id: Id, principal: Ops, uow: RequestUnitOfWork) -> AssessmentOut:
    """Signals, score, level, decision, reasons and the rules version used."""
    return await service.get_assessment(uow, request_id)


@router.get("/v1/rules", tags=["rules"])
async def get_rules(principal: Ops, uow: RequestUnitOfWork) -> RuleSetOut:
    return await service.get_rules(uow)


@router.put("/v1/rules", tags=["rules"], responses=problem_responses(400, (422, "A bad rule: the whole set is refused, the old one stays")))
async def put_rules(body: RulesIn, principal: RulesAdmin, uow: RequestUnitOfWork) -> RuleSetOut:
    """Replace the rule set with a new version, in force at once, without a deploy."""
    return await service.replace_rules(uow, principal, body.rules)


@router.get("/v1/reviews", tags=["reviews"])
async def list_reviews(principal: Ops, uow: RequestUnitOfWork, status: ReviewStatus | None = None, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> ReviewList:
    """The review queue, oldest first, with how long each case has waited."""
    return await service.list_reviews(uow, status, limit)


@router.post(
    "/v1/reviews/{review_id}/decision",
    tags=["reviews"],
    responses=problem_responses(
        400, 404, (409, "Already decided, or withdrawn"), (422, "Invalid, or a denial without its reason"), (503, "Notification did not take the message to the customer")
    ),
)
async def decide_review(review_id: Id, body: ReviewDecisionIn, principal: Reviewer, uow: RequestUnitOfWork, deps: Deps) -> ReviewOut:
    """Approve or deny a case: an internal note (ops only) and, optionally, a message to the customer,
    sent with the outcome. Denying an unbind request takes a reason from the fixed list."""
    return await service.decide_review(uow, deps, principal, review_id, body)


@router.get("/v1/flags", tags=["flags"])
async def list_flags(principal: Ops, uow: RequestUnitOfWork, active: bool = True) -> FlagList:
    """Account anomaly flags (customers whose request reached review), and how each was cleared."""
    return await service.list_flags(uow, active)


@router.post("/v1/flags/{user_id}/clear", tags=["flags"], responses=problem_responses((404, "No active flag for this customer")))
async def clear_flags(user_id: Id, principal: Reviewer, uow: RequestUnitOfWork) -> FlagList:
    return await service.clear_flags(uow, principal, user_id)


@router.put("/internal/v1/profiles/{user_id}", status_code=204, tags=["internal"], responses=problem_responses(400))
async def update_profile(user_id: Id, body: ProfileIn, principal: CustomerSystem, uow: RequestUnitOfWork) -> Response:
    """Profile facts from the customer system: when the account was opened, when the phone changed."""
    await service.update_profile(uow, user_id, body)
    return Response(status_code=204)
