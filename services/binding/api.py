"""Routes of the binding service (customer and ops HTTP API)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.binding import agreements, service
from services.binding.config import BindingSettings
from services.binding.models import RequestStatus
from services.binding.schemas import (
    AgreementOut,
    AppealIn,
    AuditEntryOut,
    BindingIn,
    BindingList,
    BindingOut,
    DisputeIn,
    ImpactOut,
    InstalmentOut,
    LenderCallbackIn,
    LenderCallbackOut,
    LenderList,
    OpsCustomerOut,
    OpsUnbindRequestOut,
    PauseRequestIn,
    RepaymentIn,
    RequestPage,
    SwitchRequestIn,
    UnbindRequestIn,
    UnbindRequestOut,
)
from shared.app import RequestLocale, RequestUnitOfWork, Runtime, request_locale
from shared.auth import Customer, Ops, Principal, require_role
from shared.fields import Instant
from shared.i18n import resolve
from shared.lenders import LENDER_HEADER, SIGNATURE_HEADER
from shared.problems import Problem, problem_responses

# Every route answers in the caller's language (problems included): Accept-Language, else their saved locale.
router = APIRouter(
    prefix="/v1", responses=problem_responses(401, 403, 422), dependencies=[Depends(request_locale)]
)
# Routes without a token: the agreement's text (read before binding) and the lenders' callbacks
# (signed by each lender's own secret); no customer, so no saved language.
public_router = APIRouter(prefix="/v1", responses=problem_responses(422))

ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{8,128}$"
BindingId = Annotated[str, Path(pattern=ID_PATTERN)]
RequestId = Annotated[str, Path(pattern=ID_PATTERN)]
UserId = Annotated[str, Path(pattern=ID_PATTERN)]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN)]
CustomerOrOps = Annotated[Principal, Depends(require_role("customer", "ops"))]


def _settings(runtime: Runtime) -> BindingSettings:
    return runtime.settings  # type: ignore[return-value]


Settings = Annotated[BindingSettings, Depends(_settings)]


def _header_locale(
    accept_language: Annotated[str | None, Header(alias="Accept-Language", max_length=200)] = None,
) -> str:
    return resolve(accept_language, None)


HeaderLocale = Annotated[str, Depends(_header_locale)]


@router.get("/lenders", tags=["bindings"])
async def list_lenders(principal: Customer, locale: RequestLocale) -> LenderList:
    """The lenders whose mortgage repayment accounts can be bound, with their service hotlines."""
    return service.list_lenders(locale)


@public_router.get("/agreements/{version}", tags=["agreements"], responses=problem_responses(404))
async def get_agreement(
    version: Annotated[str, Path(pattern=agreements.VERSION_PATTERN)],
    locale: HeaderLocale,
    response: Response,
) -> AgreementOut:
    """The text of a version of the binding agreement, in zh-CN or en (Accept-Language). Public: it is
    read before binding, and holds nothing about anyone."""
    response.headers["Content-Language"] = locale
    return service.get_agreement(version, locale)


@router.get("/bindings", tags=["bindings"])
async def list_bindings(principal: Customer, uow: RequestUnitOfWork, locale: RequestLocale) -> BindingList:
    return await service.list_bindings(uow, principal, locale)


@router.post(
    "/bindings",
    status_code=202,
    tags=["bindings"],
    responses=problem_responses(
        400, (409, "This repayment account is already bound, or too many bindings wait for their code")
    ),
)
async def create_binding(
    body: BindingIn, principal: Customer, uow: RequestUnitOfWork, locale: RequestLocale
) -> BindingOut:
    """Ask to bind a mortgage repayment account to the customer's credit account. Accepted (202) as
    `pending`: it binds once the customer confirms the SMS code of `verification_id` (verification's
    `POST /v1/verifications/{id}/otp`); its auto-debit mandate then waits for the lender, and only the
    lender's confirmation raises the credit limit (by the rule, within the customer's cap). One binding
    per account number, across all customers."""
    return await service.create_binding(uow, principal, body, locale)


@public_router.post(
    "/lenders/callbacks",
    tags=["lenders"],
    responses=problem_responses(
        400,
        (401, "Not signed by a lender of the directory, or signed too long ago"),
        404,
        (409, "The mandate is no longer pending"),
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": LenderCallbackIn.model_json_schema()}},
        }
    },
)
async def lender_callback(
    request: Request,
    uow: RequestUnitOfWork,
    settings: Settings,
    response: Response,
    *,
    lender: Annotated[str | None, Header(alias=LENDER_HEADER, max_length=64)] = None,
    signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, max_length=200)] = None,
) -> LenderCallbackOut:
    """A lender confirms or refuses the auto-debit mandate of a binding. Authenticated by the lender's
    HMAC-SHA256 signature of a timestamp and the raw body (`X-Unbind-Signature: t=<unix>,v1=<hex>`,
    under that lender's own secret; see shared/lenders.py), not by a token. The same callback again
    (its `callback_id`) is answered as the first time was, with `Idempotent-Replayed: true`, and
    changes nothing."""
    body = await request.body()
    lender_id = service.authenticate_lender(settings, lender, signature, body)
    try:
        callback = LenderCallbackIn.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *error["loc"])}
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None
    fingerprint = hashlib.sha256(body).hexdigest()
    answer, applied = await service.apply_lender_callback(
        uow, settings, lender_id, callback, fingerprint=fingerprint
    )
    if not applied:
        response.headers["Idempotent-Replayed"] = "true"
    return answer


@router.get("/bindings/{binding_id}", tags=["bindings"], responses=problem_responses(404))
async def get_binding(
    binding_id: BindingId, principal: CustomerOrOps, uow: RequestUnitOfWork, locale: RequestLocale
) -> BindingOut:
    return await service.get_binding(uow, principal, binding_id, locale)


@router.post(
    "/bindings/{binding_id}/repayments",
    tags=["bindings"],
    responses={
        201: {"description": "Paid now"},
        200: {"description": "Replay"},
        **problem_responses(400, 404, (409, "Nothing is due")),
    },
)
async def repay(
    binding_id: BindingId,
    body: RepaymentIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    *,
    response: Response,
    idempotency_key: IdempotencyKey,
    locale: RequestLocale,
) -> InstalmentOut:
    """Repay the current (oldest unpaid) instalment by hand, e.g. before unbinding."""
    instalment, paid_now = await service.repay_current_instalment(
        uow, principal, binding_id, body, idempotency_key=idempotency_key, locale=locale
    )
    response.status_code = 201 if paid_now else 200
    return instalment


@router.get("/bindings/{binding_id}/impact", tags=["bindings"], responses=problem_responses(404))
async def get_impact(
    binding_id: BindingId, principal: CustomerOrOps, uow: RequestUnitOfWork, locale: RequestLocale
) -> ImpactOut:
    """What unbinding would change, and the blockers to clear or acknowledge first."""
    return await service.get_impact(uow, principal, binding_id, locale)


@router.get(
    "/bindings/{binding_id}/report",
    tags=["bindings"],
    responses={
        200: {
            "content": {"application/json": {}, "application/pdf": {}},
            "description": "JSON, or a PDF with Accept: application/pdf",
        },
        **problem_responses(404, (503, "No font to render the PDF on this host")),
    },
)
async def get_report(
    binding_id: BindingId,
    principal: CustomerOrOps,
    uow: RequestUnitOfWork,
    locale: RequestLocale,
    *,
    request: Request,
) -> Any:
    """The account information report, to keep before unbinding."""
    report = await service.account_report(uow, principal, binding_id, locale)
    if "application/pdf" not in request.headers.get("accept", ""):
        return report
    # Imported on the first PDF: fpdf and its font tools are some 40 MB that most processes never need.
    from services.binding.report import render_pdf

    try:
        pdf = render_pdf(report)
    except RuntimeError as exc:  # no CJK font installed on this host
        raise Problem(503, "report-unavailable", "PDF rendering unavailable", str(exc)) from exc
    filename = f"account-report-{binding_id}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


Channel = Annotated[str, Header(alias="X-Client-Channel", pattern=r"^[a-z_]{1,32}$")]


@dataclass(frozen=True)
class Opening:
    """What opening a request on a binding (an unbind, a pause, a switch) takes besides its body: who
    asks, from where, under which Idempotency-Key, in which language."""

    principal: Principal
    uow: RequestUnitOfWork
    settings: BindingSettings
    response: Response
    idempotency_key: str
    channel: str
    client_ip: str | None
    locale: str

    async def open(self, binding_id: str, body: service.AnyRequestIn) -> UnbindRequestOut:
        request, created = await service.open_request(
            self.uow,
            self.settings,
            self.principal,
            binding_id,
            body=body,
            idempotency_key=self.idempotency_key,
            channel=self.channel,
            client_ip=self.client_ip,
            locale=self.locale,
        )
        if not created:
            self.response.headers["Idempotent-Replayed"] = "true"
        return request


def opening(
    principal: Customer,
    uow: RequestUnitOfWork,
    settings: Settings,
    response: Response,
    *,
    http_request: Request,
    idempotency_key: IdempotencyKey,
    locale: RequestLocale,
    channel: Channel = "app",
) -> Opening:
    client_ip = http_request.client.host if http_request.client else None
    return Opening(principal, uow, settings, response, idempotency_key, channel, client_ip, locale)


RequestOpening = Annotated[Opening, Depends(opening)]


@router.post(
    "/bindings/{binding_id}/unbind-requests",
    status_code=202,
    tags=["unbind requests"],
    responses=problem_responses(
        400, 404, (409, "Unbound, overdue, impact changed, or a request is already open")
    ),
)
async def request_unbind(
    binding_id: BindingId, body: UnbindRequestIn, opening: RequestOpening
) -> UnbindRequestOut:
    """Ask to unbind. Accepted (202) once durably recorded; risk, verification and completion follow
    as events. Every acknowledgeable blocker of the impact must be named in `acknowledged`.
    Repeating the call with the same Idempotency-Key returns the same request."""
    return await opening.open(binding_id, body)


@router.post(
    "/bindings/{binding_id}/pause-requests",
    status_code=202,
    tags=["unbind requests"],
    responses=problem_responses(
        400,
        404,
        (
            409,
            "Unbound, overdue, impact changed, no auto-debit or already paused, or a request is already open",
        ),
    ),
)
async def request_pause(
    binding_id: BindingId, body: PauseRequestIn, opening: RequestOpening
) -> UnbindRequestOut:
    """Ask to pause the auto-debit for 1 to 3 months instead of unbinding: the binding and its
    benefits stay, and the auto-debit resumes by itself. Scored, verified and followed like an
    unbind request (`kind` pause), under the same rules (blockers, Idempotency-Key, one open request
    per binding); completed, it emits AutoDebitPaused, and AutoDebitResumed when the pause runs out."""
    return await opening.open(binding_id, body)


@router.post(
    "/bindings/{binding_id}/switch-requests",
    status_code=202,
    tags=["unbind requests"],
    responses=problem_responses(
        400,
        404,
        (
            409,
            "Unbound, overdue, impact changed, the new account already bound, or a request is already open",
        ),
    ),
)
async def request_switch(
    binding_id: BindingId, body: SwitchRequestIn, opening: RequestOpening
) -> UnbindRequestOut:
    """Ask to move the binding, with its benefits, to another repayment account instead of
    unbinding (not the current one: 422; not one bound already: 409). Scored, verified and followed
    like an unbind request (`kind` switch); completed, the old account's mandate is cancelled and the
    new one's waits for its lender (RepaymentAccountSwitched, MandateRequested), whose confirmation
    turns the auto-debit on again."""
    return await opening.open(binding_id, body)


@router.get("/unbind-requests/{request_id}", tags=["unbind requests"], responses=problem_responses(404))
async def get_unbind_request(
    request_id: RequestId, principal: CustomerOrOps, uow: RequestUnitOfWork, locale: RequestLocale
) -> UnbindRequestOut:
    return await service.get_request(uow, principal, request_id, locale)


@router.post(
    "/unbind-requests/{request_id}/cancel",
    tags=["unbind requests"],
    responses=problem_responses(404, (409, "The request is not open")),
)
async def cancel_unbind_request(
    request_id: RequestId, principal: Customer, uow: RequestUnitOfWork, locale: RequestLocale
) -> UnbindRequestOut:
    return await service.cancel(uow, principal, request_id, locale)


@router.post(
    "/unbind-requests/{request_id}/appeal",
    tags=["unbind requests"],
    responses=problem_responses(400, 404, (409, "Not rejected, already appealed, or the binding is busy")),
)
async def appeal_unbind_request(
    request_id: RequestId,
    body: AppealIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    *,
    settings: Settings,
    locale: RequestLocale,
) -> UnbindRequestOut:
    """Appeal a rejected request, once: it goes back under review by ops."""
    return await service.appeal(uow, settings, principal, request_id, message=body.message, locale=locale)


@router.post(
    "/unbind-requests/{request_id}/dispute",
    tags=["unbind requests"],
    responses=problem_responses(400, 404, (409, "Not completed, already disputed, or past the 7 days")),
)
async def dispute_unbind_request(
    request_id: RequestId,
    body: DisputeIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    *,
    locale: RequestLocale,
) -> UnbindRequestOut:
    """Dispute a completed unbind, once, within 7 days of its completion: an ops case opens."""
    return await service.dispute(uow, principal, request_id, body.reason, message=body.message, locale=locale)


@router.get("/unbind-requests/{request_id}/audit", tags=["unbind requests"], responses=problem_responses(404))
async def get_audit(
    request_id: RequestId, principal: CustomerOrOps, uow: RequestUnitOfWork, locale: RequestLocale
) -> list[AuditEntryOut]:
    return await service.audit_trail(uow, principal, request_id, locale)


@router.get("/ops/unbind-requests", tags=["ops"])
async def search_unbind_requests(
    principal: Ops,
    uow: RequestUnitOfWork,
    locale: RequestLocale,
    status: RequestStatus | None = None,
    *,
    user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    since: Instant | None = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> RequestPage:
    if since is not None and since.tzinfo is None:
        raise Problem(
            422,
            "naive-datetime",
            "Time zone required",
            "`since` needs a time zone, e.g. 2026-11-28T00:00:00+08:00.",
        )
    return await service.search_requests(
        uow, status=status, user_id=user_id, since=since, cursor=cursor, limit=limit, locale=locale
    )


@router.get("/ops/unbind-requests/{request_id}", tags=["ops"], responses=problem_responses(404))
async def get_ops_unbind_request(
    request_id: RequestId, principal: Ops, uow: RequestUnitOfWork, locale: RequestLocale
) -> OpsUnbindRequestOut:
    """A request as ops read it in a case: the customer's view, plus the impact they saw when asking
    (kept with the request; null for older ones), the blockers they accepted, risk's decision and
    score, the device and channel it came from, and their own words (numbers masked)."""
    return await service.ops_request(uow, request_id, locale)


@router.get("/ops/customers/{user_id}", tags=["ops"], responses=problem_responses(404))
async def get_ops_customer(
    user_id: UserId, principal: Ops, uow: RequestUnitOfWork, locale: RequestLocale
) -> OpsCustomerOut:
    """A customer's bindings and requests (newest first), for ops helping them; accounts masked."""
    return await service.ops_customer(uow, user_id, locale)
