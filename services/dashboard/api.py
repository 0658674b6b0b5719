"""Routes of the dashboard: the page, sign-in, the overview, the live feed and the review actions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, RedirectResponse, StreamingResponse

from services.dashboard import cases, service
from services.dashboard.schemas import ResendIn, ReviewDecisionIn, SessionOut, SignIn
from services.dashboard.service import DashboardDeps
from services.dashboard.session import (
    COOKIE,
    Ops,
    clear_session_cookie,
    keys_of,
    read_token,
    set_session_cookie,
    settings_of,
)
from shared import labels
from shared.auth import Principal
from shared.events import EVENT_TYPES
from shared.masking import MASKED_PHONE_PATTERN
from shared.problems import Problem, problem_responses

STATIC = FilePath(__file__).resolve().parent / "static"
KEEP_ALIVE_SECONDS = 15.0

router = APIRouter()
# Everything but the page and the session needs an ops token (header or session cookie).
OPS_ONLY = problem_responses(401, 403)
RISK_DOWN = (503, "The risk service did not answer")


def deps_of(request: Request) -> DashboardDeps:
    return request.app.state.deps


Deps = Annotated[DashboardDeps, Depends(deps_of)]
ReviewId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
RequestIdFilter = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="Only this unbind request's events")
]
TypeFilter = Annotated[
    list[str] | None, Query(alias="type", description="Only these event types (repeat the parameter)")
]


def _types(types: list[str] | None) -> set[str] | None:
    if not types:
        return None
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise Problem(
            422,
            "unknown-event-type",
            "Unknown event type",
            f"Unknown event type(s): {', '.join(unknown)}.",
            known=sorted(EVENT_TYPES),
        )
    return set(types)


@router.get("/", include_in_schema=False)
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


# The words for the event stream's codes (shared.labels), for the page's catalogues: built once, as
# a script (the CSP admits no inline data), under /static like every asset of the page.
LABELS_SCRIPT = b"window.UNBIND_LABELS = " + orjson.dumps(labels.by_locale()) + b";\n"


@router.get("/static/labels.js", include_in_schema=False)
async def code_labels() -> Response:
    return Response(LABELS_SCRIPT, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/v1/session", tags=["session"])
async def get_session(request: Request, deps: Deps) -> SessionOut:
    """Whether the browser is signed in."""
    principal: Principal | None = None
    token = request.cookies.get(COOKIE)
    if token:
        try:
            principal = await read_token(deps.settings, keys_of(request), token)
        except Problem:
            principal = None
    return service.session_out(deps.settings, principal)


@router.post(
    "/v1/session",
    tags=["session"],
    responses=problem_responses(400, (401, "Not a valid token"), (403, "Not an ops token"), 422),
)
async def sign_in(body: SignIn, request: Request, response: Response) -> SessionOut:
    settings = settings_of(request)
    principal = await read_token(settings, keys_of(request), body.token)
    set_session_cookie(response, settings, body.token, principal)
    return service.session_out(settings, principal)


LoginCode = Annotated[
    str, Query(min_length=1, max_length=128, description="The code of a one-time sign-in link")
]


@router.get(
    "/login",
    tags=["session"],
    status_code=303,
    response_class=RedirectResponse,
    responses=problem_responses((401, "Link unknown, used or expired"), 422),
)
async def sign_in_with_link(code: LoginCode, request: Request) -> RedirectResponse:
    """Exchange a one-time sign-in link (printed by `unbind up`) for an ops session, then show the page."""
    settings = settings_of(request)
    token = service.login_link_token(settings, code)
    principal = await read_token(settings, keys_of(request), token)
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, settings, token, principal)
    return response


@router.delete("/v1/session", tags=["session"], status_code=204)
async def sign_out(request: Request) -> Response:
    response = Response(status_code=204)
    clear_session_cookie(response, settings_of(request))
    return response


@router.get("/v1/overview", tags=["dashboard"], responses=OPS_ONLY)
async def overview(session: Ops, deps: Deps) -> dict[str, Any]:
    """Funnel, per-stage latency, throughput and outcomes over time, stuck requests, dead letters."""
    return deps.hub.overview()


@router.get(
    "/v1/events",
    tags=["dashboard"],
    responses={**OPS_ONLY, **problem_responses((422, "Not valid, or an unknown event type"))},
)
async def recent_events(
    session: Ops,
    deps: Deps,
    types: TypeFilter = None,
    request_id: RequestIdFilter = None,
    *,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    """The newest events of the feed (masked one-line summaries), newest first."""
    return {
        "items": deps.reader.projection.recent_feed(types=_types(types), request_id=request_id, limit=limit)
    }


@router.get(
    "/v1/stream",
    tags=["dashboard"],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        **OPS_ONLY,
        **problem_responses((422, "Not valid, or an unknown event type")),
    },
)
async def stream(
    session: Ops, deps: Deps, types: TypeFilter = None, request_id: RequestIdFilter = None
) -> StreamingResponse:
    """Server-sent events: `overview` (at once, then whenever it changes) and `feed` (each new event
    matching the filters, as it arrives). The stream ends when the session's token expires."""
    subscriber = deps.hub.subscribe(_types(types), request_id)
    expires_at = session.principal.expires_at or 0

    async def messages() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 2000\n\n"
            while time.time() < expires_at:
                try:
                    async with asyncio.timeout(min(KEEP_ALIVE_SECONDS, max(expires_at - time.time(), 0.1))):
                        message = await subscriber.queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if message is None:
                    return
                kind, data = message
                yield b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        finally:
            deps.hub.unsubscribe(subscriber)

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/v1/reviews", tags=["reviews"], responses={**OPS_ONLY, **problem_responses(RISK_DOWN)})
async def reviews(session: Ops, deps: Deps) -> dict[str, Any]:
    """The pending review queue, from the risk service."""
    return await service.pending_reviews(deps, session)


@router.get("/v1/reviews/reasons", tags=["reviews"], responses={**OPS_ONLY, **problem_responses(RISK_DOWN)})
async def review_reasons(session: Ops, deps: Deps) -> dict[str, Any]:
    """The fixed lists a decision's reason comes from, from the risk service."""
    return await service.review_reasons(deps, session)


# Risk's own refusals are passed on as they are (a reviewer's role is risk's to check).
CLAIM_REFUSALS = {
    **OPS_ONLY,
    **problem_responses(400, 404, (409, "Closed, held by another reviewer, or four eyes"), 422, RISK_DOWN),
}


@router.post("/v1/reviews/{review_id}/claim", tags=["reviews"], responses=CLAIM_REFUSALS)
async def claim(review_id: ReviewId, session: Ops, deps: Deps) -> dict[str, Any]:
    """Claim a review (or renew your claim), as the signed-in reviewer, through the risk service."""
    return await service.claim_review(deps, session, review_id)


@router.delete("/v1/reviews/{review_id}/claim", tags=["reviews"], responses=CLAIM_REFUSALS)
async def release(review_id: ReviewId, session: Ops, deps: Deps) -> dict[str, Any]:
    """Give a review you hold back to the queue, through the risk service."""
    return await service.release_review(deps, session, review_id)


@router.post(
    "/v1/reviews/{review_id}/decision",
    tags=["reviews"],
    responses={
        202: {"description": "A first deny recorded: the case waits for a second reviewer"},
        **OPS_ONLY,
        **problem_responses(
            400,
            404,
            (409, "Already decided or withdrawn, not under your claim, or four eyes"),
            422,
            RISK_DOWN,
        ),
    },
)
async def decide(
    review_id: ReviewId, body: ReviewDecisionIn, session: Ops, deps: Deps, *, response: Response
) -> dict[str, Any]:
    """Approve or deny a review you hold, as the signed-in reviewer, through the risk service."""
    decided = await service.decide_review(deps, session, review_id, body)
    if decided.get("awaiting_second_reviewer"):
        response.status_code = 202
    return decided


# --- rules: forwarded to risk as the signed-in user, who needs rules_admin there to change them ---

RuleVersion = Annotated[int, Path(ge=0, le=2**31 - 1, description="0: the built-in defaults")]
IfMatch = Annotated[str | None, Header(description="The ETag of the rules in force the change was made from")]
JsonObject = Annotated[dict[str, Any], Body()]
RULES_CHANGE = {
    **OPS_ONLY,
    **problem_responses(
        400, (412, "The rules changed since they were read"), 422, (428, "No `If-Match`"), RISK_DOWN
    ),
}


def _with_etag(response: Response, forwarded: tuple[dict[str, Any], str | None]) -> dict[str, Any]:
    body, etag = forwarded
    if etag:
        response.headers["ETag"] = etag
    return body


@router.get("/v1/rules", tags=["rules"], responses={**OPS_ONLY, **problem_responses(RISK_DOWN)})
async def rules(session: Ops, deps: Deps, response: Response) -> dict[str, Any]:
    """The rules in force (risk's answer and ETag)."""
    return _with_etag(response, await service.forward_rules(deps, session, "GET", "/v1/rules"))


@router.put("/v1/rules", tags=["rules"], responses=RULES_CHANGE)
async def save_rules(
    body: JsonObject, session: Ops, deps: Deps, response: Response, *, if_match: IfMatch = None
) -> dict[str, Any]:
    """Save a rule set through risk (`If-Match` required there)."""
    return _with_etag(
        response, await service.forward_rules(deps, session, "PUT", "/v1/rules", if_match=if_match, json=body)
    )


@router.get("/v1/rules/versions", tags=["rules"], responses={**OPS_ONLY, **problem_responses(RISK_DOWN)})
async def rule_versions(session: Ops, deps: Deps) -> dict[str, Any]:
    return (await service.forward_rules(deps, session, "GET", "/v1/rules/versions"))[0]


@router.get(
    "/v1/rules/versions/{version}",
    tags=["rules"],
    responses={**OPS_ONLY, **problem_responses(404, 422, RISK_DOWN)},
)
async def rule_version(version: RuleVersion, session: Ops, deps: Deps) -> dict[str, Any]:
    return (await service.forward_rules(deps, session, "GET", f"/v1/rules/versions/{version}"))[0]


@router.post(
    "/v1/rules/versions/{version}/restore",
    tags=["rules"],
    responses={**RULES_CHANGE, **problem_responses(404)},
)
async def restore_rules(
    version: RuleVersion,
    session: Ops,
    deps: Deps,
    response: Response,
    *,
    if_match: IfMatch = None,
    body: Annotated[dict[str, Any] | None, Body()] = None,
) -> dict[str, Any]:
    """Roll back to a version through risk (a new version holding its rules)."""
    path = f"/v1/rules/versions/{version}/restore"
    return _with_etag(
        response, await service.forward_rules(deps, session, "POST", path, if_match=if_match, json=body)
    )


@router.post(
    "/v1/rules/simulate", tags=["rules"], responses={**OPS_ONLY, **problem_responses(400, 422, RISK_DOWN)}
)
async def simulate_rules(body: JsonObject, session: Ops, deps: Deps) -> dict[str, Any]:
    """Dry run of a candidate rule set over recent assessments, by risk."""
    return (await service.forward_rules(deps, session, "POST", "/v1/rules/simulate", json=body))[0]


CaseId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
SERVICE_DOWN = (503, "A service the answer needs did not answer")


@router.get(
    "/v1/cases/{request_id}",
    tags=["cases"],
    responses={**OPS_ONLY, **problem_responses(404, 422, SERVICE_DOWN)},
)
async def get_case(request_id: CaseId, session: Ops, deps: Deps) -> dict[str, Any]:
    """One request's case, read from every service at once as the signed-in staff user: `request`
    (with the impact the customer saw), `assessment`, `verifications` (every attempt), `messages`
    (masked, never a code), `audit`, `reviews`, and the `customer`'s bindings, requests, devices and
    risk. A service down leaves its parts null and is named in `unavailable`."""
    return await cases.case(deps, session, request_id)


@router.get(
    "/v1/customers", tags=["customers"], responses={**OPS_ONLY, **problem_responses(422, SERVICE_DOWN)}
)
async def find_customers(
    session: Ops,
    deps: Deps,
    phone: Annotated[
        str | None,
        Query(
            pattern=MASKED_PHONE_PATTERN,
            description="The masked phone the customer reads out, e.g. 138****5678",
        ),
    ] = None,
    user_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")] = None,
) -> dict[str, Any]:
    """Find a customer on the phone: `{"items": [{user_id, phone, email, locale}]}` (masked), by
    masked phone (several may share one) or by user id; one of the two."""
    if (phone is None) == (user_id is None):
        raise Problem(
            422,
            "one-filter",
            "One filter",
            "Look a customer up by `phone` (masked, e.g. 138****5678) or by `user_id`, not both.",
        )
    return await cases.find_customers(deps, session, phone=phone, user_id=user_id)


@router.get(
    "/v1/customers/{user_id}",
    tags=["customers"],
    responses={**OPS_ONLY, **problem_responses(404, 422, SERVICE_DOWN)},
)
async def get_customer(user_id: UserId, session: Ops, deps: Deps) -> dict[str, Any]:
    """A customer for the ops on the phone with them: `contact`, `bindings`, `requests`, `devices`,
    `messages` and `risk`, masked; a service down leaves its parts null and is named in `unavailable`."""
    return await cases.customer(deps, session, user_id)


@router.post(
    "/v1/notifications/{message_id}/resend",
    status_code=202,
    tags=["customers"],
    responses={
        **OPS_ONLY,
        **problem_responses(400, 404, (409, "A one-time code, or a message still queued"), 422, SERVICE_DOWN),
    },
)
async def resend_notification(
    message_id: Annotated[int, Path(ge=1, lt=2**31)], body: ResendIn, session: Ops, deps: Deps
) -> dict[str, Any]:
    """Resend a message the customer lost, through notification, as the signed-in staff user (who,
    when and why are kept on the new message). A one-time code is never resent (409)."""
    return await cases.resend(deps, session, message_id, body.reason)
