"""Routes of the risk service: assessments, rules, the review queue, flags and a customer's risk (ops),
profiles (service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response

from services.risk import service
from services.risk.models import ReviewStatus
from services.risk.schemas import (
    AssessmentOut,
    CustomerRiskOut,
    EvaluationIn,
    EvaluationOut,
    FlagList,
    ModelOut,
    ProfileIn,
    RestoreIn,
    ReviewDecisionIn,
    ReviewList,
    ReviewOut,
    ReviewReasons,
    RuleSetOut,
    RulesIn,
    RuleVersionList,
    SimulationIn,
    SimulationOut,
)
from services.risk.service import RiskDeps
from shared.app import RequestUnitOfWork, Runtime
from shared.auth import Ops, Principal, Reviewer, RulesAdmin, require_service
from shared.problems import problem_responses

router = APIRouter(responses=problem_responses(401, 403, 422))

Id = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
IdFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def _deps(runtime: Runtime) -> RiskDeps:
    return runtime.deps


Deps = Annotated[RiskDeps, Depends(_deps)]
# The bank's customer system tells risk of profile changes; no other service may.
CustomerSystem = Annotated[Principal, Depends(require_service("customer-system"))]


@router.get("/v1/assessments/{request_id}", tags=["assessments"], responses=problem_responses(404))
async def get_assessment(request_id: Id, principal: Ops, uow: RequestUnitOfWork) -> AssessmentOut:
    """Signals, score, level, decision, reasons and the rules version used."""
    return await service.get_assessment(uow, request_id)


Version = Annotated[int, Path(ge=0, le=2**31 - 1, description="0: the built-in defaults")]
IfMatch = Annotated[
    str | None,
    Header(description='The ETag of the rules in force the change was made from (`"rules-v<version>"`)'),
]
PRECONDITIONS = problem_responses(
    (412, "The rules changed since they were read (`If-Match` is not the current ETag)"),
    (428, "No `If-Match`"),
)


@router.get("/v1/rules", tags=["rules"])
async def get_rules(principal: Ops, uow: RequestUnitOfWork, response: Response) -> RuleSetOut:
    """The rules in force, with their version as the `ETag` a change sends back as `If-Match`."""
    rules = await service.get_rules(uow)
    response.headers["ETag"] = service.rules_etag(rules.version)
    return rules


@router.put(
    "/v1/rules",
    tags=["rules"],
    responses={
        **PRECONDITIONS,
        **problem_responses(400, (422, "A bad rule: the whole set is refused, the old one stays")),
    },
)
async def put_rules(
    body: RulesIn,
    principal: RulesAdmin,
    uow: RequestUnitOfWork,
    response: Response,
    *,
    if_match: IfMatch = None,
) -> RuleSetOut:
    """Replace the rule set with a new version, in force at once, without a deploy. The same set as
    the one in force adds no version."""
    rules = await service.replace_rules(uow, principal, body.rules, if_match=if_match, comment=body.comment)
    response.headers["ETag"] = service.rules_etag(rules.version)
    return rules


@router.get("/v1/rules/versions", tags=["rules"])
async def list_rule_versions(principal: Ops, uow: RequestUnitOfWork) -> RuleVersionList:
    """Every saved version, newest first: who saved it, when, why, and what it restored."""
    return await service.list_rule_versions(uow)


@router.get("/v1/rules/versions/{version}", tags=["rules"], responses=problem_responses(404))
async def get_rule_version(version: Version, principal: Ops, uow: RequestUnitOfWork) -> RuleSetOut:
    return await service.get_rule_version(uow, version)


@router.post(
    "/v1/rules/versions/{version}/restore",
    tags=["rules"],
    responses={**PRECONDITIONS, **problem_responses(400, 404)},
)
async def restore_rule_version(
    version: Version,
    principal: RulesAdmin,
    uow: RequestUnitOfWork,
    response: Response,
    *,
    if_match: IfMatch = None,
    body: Annotated[RestoreIn | None, Body()] = None,
) -> RuleSetOut:
    """Roll back to a version: its rules become a new version (nothing is rewritten). Restoring the
    set in force adds no version."""
    rules = await service.restore_rules(
        uow, principal, version, if_match=if_match, comment=body.comment if body else None
    )
    response.headers["ETag"] = service.rules_etag(rules.version)
    return rules


@router.post(
    "/v1/rules/simulate",
    tags=["rules"],
    responses=problem_responses(400, (422, "A bad rule, or a window longer than the setting allows")),
)
async def simulate_rules(
    body: SimulationIn, principal: Ops, uow: RequestUnitOfWork, deps: Deps
) -> SimulationOut:
    """Dry run: what a candidate set would have decided over the last `days` days of assessments,
    against what was decided. Nothing is saved."""
    return await service.simulate_rules(uow, deps, body)


@router.get("/v1/reviews", tags=["reviews"])
async def list_reviews(
    principal: Ops,
    uow: RequestUnitOfWork,
    deps: Deps,
    status: ReviewStatus | None = None,
    *,
    request_id: IdFilter = None,
    user_id: IdFilter = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewList:
    """The review queue, oldest first: each case's wait against the SLA, who holds it, its score."""
    return await service.list_reviews(
        uow, deps, status=status, request_id=request_id, user_id=user_id, limit=limit
    )


@router.get("/v1/reviews/reasons", tags=["reviews"])
async def review_reasons(principal: Ops) -> ReviewReasons:
    """The fixed lists a decision's reason comes from: approving or denying a request, closing a dispute."""
    return service.REVIEW_REASONS


@router.get("/v1/reviews/{review_id}", tags=["reviews"], responses=problem_responses(404))
async def get_review(review_id: Id, principal: Ops, uow: RequestUnitOfWork, deps: Deps) -> ReviewOut:
    return await service.get_review(uow, deps, review_id)


CLAIM_CONFLICTS = (
    409,
    "Closed, held by another reviewer (`claimed_by`), or you denied this request (`four-eyes`)",
)


@router.post(
    "/v1/reviews/{review_id}/claim", tags=["reviews"], responses=problem_responses(404, CLAIM_CONFLICTS)
)
async def claim_review(review_id: Id, principal: Reviewer, uow: RequestUnitOfWork, deps: Deps) -> ReviewOut:
    """Take a case or renew your claim: others see who holds it, until it lapses after
    UNBIND_REVIEW_CLAIM_MINUTES."""
    return await service.claim_review(uow, deps, principal, review_id)


@router.delete(
    "/v1/reviews/{review_id}/claim",
    tags=["reviews"],
    responses=problem_responses(404, (409, "Closed, not claimed, or held by another reviewer")),
)
async def release_review(review_id: Id, principal: Reviewer, uow: RequestUnitOfWork, deps: Deps) -> ReviewOut:
    """Give a case back to the queue (its holder only)."""
    return await service.release_review(uow, deps, principal, review_id)


@router.post(
    "/v1/reviews/{review_id}/decision",
    tags=["reviews"],
    responses={
        202: {
            "description": (
                "A deny of a high score, recorded: the case waits for a second, different reviewer"
            ),
            "model": ReviewOut,
        },
        **problem_responses(
            400,
            404,
            (
                409,
                (
                    "Already decided or withdrawn, not under your claim (`claim-required`), or you denied "
                    "this request (`four-eyes`)"
                ),
            ),
            (422, "Invalid, or a reason not from the list that fits the decision (`invalid-reason`)"),
            (503, "Notification did not take the message to the customer"),
        ),
    },
)
async def decide_review(
    review_id: Id,
    body: ReviewDecisionIn,
    principal: Reviewer,
    uow: RequestUnitOfWork,
    *,
    deps: Deps,
    response: Response,
) -> ReviewOut:
    """Approve or deny a case you hold, with a reason from the list, an internal note (ops only) and,
    optionally, a message to the customer, sent with the final outcome."""
    decided = await service.decide_review(uow, deps, principal, review_id, body=body)
    if decided.awaiting_second_reviewer:
        response.status_code = 202
    return decided


@router.get("/v1/model", tags=["model"])
async def get_model(principal: Ops, uow: RequestUnitOfWork, deps: Deps) -> ModelOut:
    """The anomaly model: its version, what it has learned, its features, drift, and the rules that
    promote it (none: it is in shadow, scoring and explaining without deciding)."""
    return await service.model_status(uow, deps)


@router.post("/v1/model/evaluations", tags=["model"])
async def evaluate_model(
    body: EvaluationIn, principal: RulesAdmin, uow: RequestUnitOfWork, deps: Deps
) -> EvaluationOut:
    """Precision and recall of the rules in force, of the model at its promoted threshold, and of
    both, on a synthetic population with injected account-takeover patterns. Nothing is written."""
    return await service.evaluate_model(uow, deps, body)


@router.get("/v1/flags", tags=["flags"])
async def list_flags(principal: Ops, uow: RequestUnitOfWork, active: bool = True) -> FlagList:
    """Account anomaly flags (customers whose request reached review), and how each was cleared."""
    return await service.list_flags(uow, active)


@router.post(
    "/v1/flags/{user_id}/clear",
    tags=["flags"],
    responses=problem_responses((404, "No active flag for this customer")),
)
async def clear_flags(user_id: Id, principal: Reviewer, uow: RequestUnitOfWork) -> FlagList:
    return await service.clear_flags(uow, principal, user_id)


@router.get("/v1/customers/{user_id}/risk", tags=["flags"])
async def customer_risk(user_id: Id, principal: Ops, uow: RequestUnitOfWork, deps: Deps) -> CustomerRiskOut:
    """What risk knows of a customer, for the case view: profile facts, flags, devices and reviews."""
    return await service.customer_risk(uow, deps, user_id)


@router.put(
    "/internal/v1/profiles/{user_id}", status_code=204, tags=["internal"], responses=problem_responses(400)
)
async def update_profile(
    user_id: Id, body: ProfileIn, principal: CustomerSystem, uow: RequestUnitOfWork
) -> Response:
    """Profile facts from the customer system: when the account was opened, when the phone changed."""
    await service.update_profile(uow, user_id, body)
    return Response(status_code=204)
