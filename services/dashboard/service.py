"""What each event means for the dashboard's view (main.SUBSCRIPTIONS), moving the request through
its states and stages (its feed line is `shared.describe.describe_event`); and what the dashboard
does beyond showing the view: sign-in and the review decisions, which it forwards to the risk
service as the signed-in ops user (so risk records the real reviewer)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from services.dashboard.config import DashboardSettings
from services.dashboard.projection import Projection
from services.dashboard.schemas import ReviewDecisionIn, SessionOut
from services.dashboard.session import OpsSession
from services.dashboard.stream import LiveHub, StreamReader
from shared.auth import Principal
from shared.cloudevents import Envelope
from shared.events import (
    AutoDebitPaused,
    RepaymentAccountSwitched,
    ReviewDecided,
    ReviewOrigin,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindRequested,
)
from shared.logging import correlation_id
from shared.login_links import claim_login_link
from shared.problems import Problem

log = logging.getLogger(__name__)
# A problem's own members (and Problem's parameters); any other field of a service's problem is passed on.
_PROBLEM_FIELDS = frozenset({"type", "title", "status", "detail", "instance", "code", "headers", "words"})


@dataclass
class DashboardDeps:
    settings: DashboardSettings
    hub: LiveHub
    reader: StreamReader
    # Every service the dashboard calls as the signed-in staff user, by name (risk included).
    clients: dict[str, httpx.AsyncClient]


# --- the view: what each event means for it -------------------------------------------------


def on_binding_flow(view: Projection, envelope: Envelope) -> None:
    """About binding an account or its mandate, not an unbind request: the feed shows it, no request moves."""


def on_device_changed(view: Projection, envelope: Envelope) -> None:
    """About a customer's device key, not an unbind request: the feed shows it, no request moves."""


def on_unbind_requested(view: Projection, envelope: Envelope) -> None:
    event: UnbindRequested = envelope.data
    view.set_kind(view.transition(envelope, stage="requested", state="pending_risk"), str(event.kind))


def on_risk_assessed(view: Projection, envelope: Envelope) -> None:
    event: RiskAssessed = envelope.data
    # A deny goes to a person, as a review does (binding holds the request for review).
    state = (
        "under_review"
        if event.decision in (RiskDecision.REVIEW, RiskDecision.DENY)
        else "pending_verification"
    )
    request = view.transition(envelope, stage="assessed", state=state)
    request.decision, request.score = str(event.decision), event.score


def on_review_decided(view: Projection, envelope: Envelope) -> None:
    event: ReviewDecided = envelope.data
    if event.origin == ReviewOrigin.DISPUTE:  # the request stays completed, whatever ops found
        view.transition(envelope)
        return
    request = view.transition(
        envelope, state="pending_verification" if event.decision == ReviewOutcome.APPROVE else None
    )
    request.reviewed = True
    request.reached.setdefault("review_decided", envelope.time)


def on_verification_requested(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="verification_issued", state="pending_verification")


def on_verified(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="verified")


def on_verification_failed(view: Projection, envelope: Envelope) -> None:
    # Binding rejects the request next (UnbindRejected); until then it only counts as activity.
    view.transition(envelope)


def on_biometric_counter_regressed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope)


def on_unbind_completed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, stage="completed", state="completed")


def on_alternative_completed(view: Projection, envelope: Envelope) -> None:
    """A pause or a switch completes its request as an unbind does; the hour counts it by kind too."""
    view.transition(envelope, stage="completed", state="completed")
    view.count_stage(
        envelope, {AutoDebitPaused: "paused", RepaymentAccountSwitched: "switched"}[type(envelope.data)]
    )


def on_auto_debit_resumed(view: Projection, envelope: Envelope) -> None:
    # Months after its pause request completed: counted, moving no request.
    view.count_stage(envelope, "resumed")


def on_unbind_rejected(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="rejected")


def on_unbind_cancelled(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="cancelled")


def on_unbind_expired(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="expired")


def on_unbind_appealed(view: Projection, envelope: Envelope) -> None:
    view.transition(envelope, state="under_review")


def on_unbind_disputed(view: Projection, envelope: Envelope) -> None:
    """A completed unbind disputed: an ops case opens, the request stays completed."""
    view.transition(envelope)


# --- sign-in and the calls ops make through the dashboard -----------------------------------


def session_out(settings: DashboardSettings, principal: Principal | None) -> SessionOut:
    return SessionOut(
        signed_in=principal is not None,
        subject=principal.subject if principal else None,
        expires_at=datetime.fromtimestamp(principal.expires_at, UTC)
        if principal and principal.expires_at
        else None,
    )


def login_link_token(settings: DashboardSettings, code: str) -> str:
    """The ops token behind a one-time sign-in link, which is used up; 401 for a link unknown, used or
    expired."""
    token = claim_login_link(settings.login_link_dir, code) if settings.login_link_dir else None
    if token is None:
        raise Problem(
            401,
            "login-link-invalid",
            "Sign-in link not valid",
            "This sign-in link is unknown, used or expired; ask for a new one (`unbind login-link`).",
        )
    return token


async def pending_reviews(deps: DashboardDeps, session: OpsSession) -> dict[str, Any]:
    """Risk's pending queue as risk gives it (holder, SLA, score...), each case with what its request
    asks (`kind`: an unbind, a pause of the auto-debit or a switch of the account), from the stream."""
    queue = await _call_risk(deps, session, "GET", "/v1/reviews", params={"status": "pending", "limit": 200})
    projection = deps.reader.projection
    for review in queue.get("items", []):
        view = projection.open.get(review.get("request_id", ""))
        review["kind"] = view.kind if view else None
    return queue


async def review_reasons(deps: DashboardDeps, session: OpsSession) -> dict[str, Any]:
    return await _call_risk(deps, session, "GET", "/v1/reviews/reasons")


async def claim_review(deps: DashboardDeps, session: OpsSession, review_id: str) -> dict[str, Any]:
    return await _call_risk(deps, session, "POST", f"/v1/reviews/{review_id}/claim")


async def release_review(deps: DashboardDeps, session: OpsSession, review_id: str) -> dict[str, Any]:
    return await _call_risk(deps, session, "DELETE", f"/v1/reviews/{review_id}/claim")


async def decide_review(
    deps: DashboardDeps, session: OpsSession, review_id: str, body: ReviewDecisionIn
) -> dict[str, Any]:
    return await _call_risk(
        deps,
        session,
        "POST",
        f"/v1/reviews/{review_id}/decision",
        json=body.model_dump(mode="json", exclude_none=True),
    )


async def forward_rules(
    deps: DashboardDeps,
    session: OpsSession,
    method: str,
    path: str,
    *,
    if_match: str | None = None,
    json: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str | None]:
    """A rules call of risk's, as the signed-in user: `If-Match` passed on, risk's answer and its `ETag`
    back."""
    response = await _risk_response(
        deps, session, method, path, headers={"If-Match": if_match} if if_match is not None else {}, json=json
    )
    return response.json(), response.headers.get("ETag")


async def _call_risk(
    deps: DashboardDeps, session: OpsSession, method: str, path: str, **kwargs: Any
) -> dict[str, Any]:
    return await call_service(deps, session, "risk", method, path=path, **kwargs)


async def call_service(
    deps: DashboardDeps, session: OpsSession, service: str, method: str, *, path: str, **kwargs: Any
) -> dict[str, Any]:
    """Call a service as the signed-in staff user (so it checks their roles and records who acted)."""
    return (await _service_response(deps, session, service, method, path=path, **kwargs)).json()


async def _risk_response(
    deps: DashboardDeps, session: OpsSession, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    return await _service_response(deps, session, "risk", method, path=path, **kwargs)


async def _service_response(
    deps: DashboardDeps,
    session: OpsSession,
    service: str,
    method: str,
    *,
    path: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A service that does not answer, or fails, is a 503 `<service>-unavailable`; its own problems
    (404, 409, 412...) are passed on as they are, with their fields and ETag."""
    headers = {**(headers or {}), "Authorization": f"Bearer {session.token}"}
    if cid := correlation_id.get():
        headers["X-Request-ID"] = cid
    unavailable = f"{service}-unavailable", f"{service.capitalize()} service unavailable"
    try:
        response = await deps.clients[service].request(method, path, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        log.warning(
            "service unreachable", extra={"service": service, "path": path, "error": type(exc).__name__}
        )
        raise Problem(
            503,
            *unavailable,
            f"The {service} service did not answer; try again shortly.",
            headers={"Retry-After": "2"},
        ) from None
    if response.status_code >= 500:
        raise Problem(
            503,
            *unavailable,
            f"The {service} service answered {response.status_code}; try again shortly.",
            headers={"Retry-After": "2"},
        )
    if response.status_code >= 400:
        # The service's own problem (404 unknown review, 409 held by another...), passed on as it is,
        # with its fields too (`claimed_by`, the version in force of a 412, the invalid fields of a 422...).
        body = _json_or_empty(response)
        extra = {key: value for key, value in body.items() if key not in _PROBLEM_FIELDS}
        slug = str(body.get("type", "")).rsplit("/", 1)[-1] or f"{service}-refused"
        headers = {"ETag": etag} if (etag := response.headers.get("ETag")) else None
        raise Problem(
            response.status_code,
            slug,
            body.get("title", f"Refused by the {service} service"),
            body.get("detail"),
            headers=headers,
            **extra,
        )
    return response


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
