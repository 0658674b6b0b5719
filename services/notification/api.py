"""Routes of the notification service: the customer's inbox and preferences, and the internal send
endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from services.notification import service
from services.notification.schemas import (
    MessageAccepted,
    MessageIn,
    NotificationList,
    NotificationOut,
    OpsContactList,
    OpsMessageList,
    OpsMessageOut,
    PreferencesIn,
    PreferencesOut,
    ResendIn,
    ReviewMessageIn,
)
from services.notification.service import NotificationDeps
from shared.app import RequestUnitOfWork, Runtime, request_locale
from shared.auth import Customer, Ops, Principal, require_service
from shared.masking import MASKED_PHONE_PATTERN
from shared.problems import problem_responses

# Problems are answered in the caller's language (Accept-Language, else their saved locale).
router = APIRouter(responses=problem_responses(401, 403, 422), dependencies=[Depends(request_locale)])


def _deps(runtime: Runtime) -> NotificationDeps:
    return runtime.deps


Deps = Annotated[NotificationDeps, Depends(_deps)]
# The one caller of the internal send endpoint: verification, with the one-time codes.
Verification = Annotated[Principal, Depends(require_service("verification"))]
# ...and of the review messages: risk, with what a reviewer wrote to a customer.
Risk = Annotated[Principal, Depends(require_service("risk"))]


@router.get("/v1/notifications", tags=["inbox"])
async def list_notifications(
    principal: Customer,
    uow: RequestUnitOfWork,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> NotificationList:
    """The customer's inbox, newest first."""
    return await service.list_notifications(uow, principal, limit, cursor)


@router.post("/v1/notifications/{notification_id}/read", tags=["inbox"], responses=problem_responses(404))
async def mark_read(
    notification_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")],
    principal: Customer,
    uow: RequestUnitOfWork,
) -> NotificationOut:
    return await service.mark_read(uow, principal, notification_id)


@router.get(
    "/v1/preferences", tags=["preferences"], responses=problem_responses((404, "No contact details on file"))
)
async def get_preferences(principal: Customer, uow: RequestUnitOfWork) -> PreferencesOut:
    return await service.get_preferences(uow, principal)


@router.put(
    "/v1/preferences",
    tags=["preferences"],
    responses=problem_responses(
        400, (404, "No contact details on file"), (422, "Invalid, or turns off a security message")
    ),
)
async def put_preferences(body: PreferencesIn, principal: Customer, uow: RequestUnitOfWork) -> PreferencesOut:
    return await service.update_preferences(uow, principal, body)


@router.post(
    "/internal/v1/messages",
    status_code=202,
    tags=["internal"],
    responses=problem_responses(
        400,
        (409, "The request's risk prompt has not gone out yet; retry"),
        (503, "The SMS gateway did not take it; retry"),
    ),
)
async def send_message(
    message: MessageIn, principal: Verification, uow: RequestUnitOfWork, deps: Deps
) -> MessageAccepted:
    """Send a code SMS on another service's behalf (service role only). Idempotent per message_id.
    The code of an unbind request goes after that request's risk prompt, never before it."""
    return await service.send_message(uow, deps, message)


@router.put(
    "/internal/v1/review-messages/{review_id}",
    status_code=204,
    tags=["internal"],
    responses=problem_responses(400),
)
async def keep_review_message(
    review_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,36}$")],
    body: ReviewMessageIn,
    principal: Risk,
    uow: RequestUnitOfWork,
) -> Response:
    """A reviewer's message to a customer (risk only), kept until the review's `ReviewDecided`
    arrives and then sent with its outcome: free text never travels on the topic."""
    await service.keep_review_message(uow, review_id, body)
    return Response(status_code=204)


IdFilter = Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


@router.get("/v1/ops/notifications", tags=["ops"])
async def ops_notifications(
    principal: Ops, uow: RequestUnitOfWork, user_id: IdFilter = None, request_id: IdFilter = None
) -> OpsMessageList:
    """A customer's or a request's messages on every channel (one filter at least), newest first:
    kind, channel, status and masked destination, never the text (no code ever shows here)."""
    return await service.ops_messages(uow, user_id=user_id, request_id=request_id)


@router.get("/v1/ops/customers", tags=["ops"])
async def ops_customers(
    principal: Ops,
    uow: RequestUnitOfWork,
    phone: Annotated[
        str | None, Query(pattern=MASKED_PHONE_PATTERN, description="The masked phone, e.g. 138****5678")
    ] = None,
    user_id: IdFilter = None,
) -> OpsContactList:
    """Find a customer on the phone by the masked number they can read out (first 3 and last 4
    digits: an index, not a scan; several may share it) or by user id. Contacts masked."""
    return await service.ops_customers(uow, phone=phone, user_id=user_id)


@router.post(
    "/v1/ops/notifications/{delivery_id}/resend",
    status_code=202,
    tags=["ops"],
    responses=problem_responses(
        400,
        404,
        (
            409,
            (
                "A one-time code (the customer asks for a new one), a message still queued, or no contact on "
                "that channel"
            ),
        ),
    ),
)
async def resend_notification(
    delivery_id: Annotated[int, Path(ge=1, lt=2**31)],
    body: ResendIn,
    *,
    principal: Ops,
    uow: RequestUnitOfWork,
    deps: Deps,
) -> OpsMessageOut:
    """Send a message the customer lost again, on its channel, to their contact as it is now: a new
    message, queued at once, that names who resent it, when and why (audited, logged without its text)."""
    return await service.resend(uow, deps, principal, delivery_id, reason=body.reason)
