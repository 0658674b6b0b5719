"""Routes of the verification service (customer API)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from services.verification import service
from services.verification.config import VerificationSettings
from services.verification.schemas import (
    BiometricIn,
    ChallengeOut,
    DeviceDetail,
    DeviceEnrolment,
    DeviceIn,
    DeviceList,
    OpsDeviceList,
    OpsVerificationList,
    OtpIn,
    VerificationOut,
)
from services.verification.service import AttemptOutcome, VerificationDeps
from shared.app import RequestUnitOfWork, Runtime, request_locale
from shared.auth import Customer, Ops
from shared.problems import problem_response, problem_responses

# Problems are answered in the caller's language (Accept-Language, else their saved locale).
router = APIRouter(
    prefix="/v1", responses=problem_responses(401, 403, 422), dependencies=[Depends(request_locale)]
)

VerificationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]
DeviceId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
NOT_PENDING = (409, "Not pending, or not expecting this method")
REFUSED = problem_responses(400, 404, NOT_PENDING, (422, "Refused (with the attempts left), or not valid"))


def _settings(runtime: Runtime) -> VerificationSettings:
    return runtime.settings  # type: ignore[return-value]


def _deps(runtime: Runtime) -> VerificationDeps:
    return runtime.deps


Settings = Annotated[VerificationSettings, Depends(_settings)]
Deps = Annotated[VerificationDeps, Depends(_deps)]


def _refusal(request: Request, outcome: AttemptOutcome, attempts_left: int) -> Any:
    # Returned, not raised: the failed attempt (and a lock-out) must be committed.
    verification = outcome.verification
    if verification.status != "pending":
        detail = {
            "unbind": "The verification is locked; the unbind request will be rejected.",
            "device_enrolment": (
                "The verification is locked; the device will not be added (enrol it again under a new device "
                "id)."
            ),
            "binding": "The verification is locked; the account will not be bound (ask to bind it again).",
        }[verification.purpose]
        return problem_response(
            request,
            422,
            "verification-locked",
            "Too many failed attempts",
            detail=detail,
            attempts_remaining=0,
        )
    titles = {
        "wrong-code": "The code does not match.",
        "challenge-invalid": "The challenge is unknown, used or expired; ask for a new one.",
        "device-unknown": "This device is not enrolled for you.",
        "device-not-active": (
            "This device is not active: its enrolment code was not confirmed, or it was revoked."
        ),
        "device-newer-than-request": (
            "This device was added after the unbind request was made; use a device you had before, or the "
            "one you asked from."
        ),
        "signature-invalid": "The signature does not match this challenge, verification, request and impact.",
        "counter-not-increased": "The device counter did not go up: the signature is refused.",
    }
    return problem_response(
        request,
        422,
        outcome.reason,
        "Verification refused",
        detail=titles.get(outcome.reason),
        attempts_remaining=attempts_left,
    )


@router.get("/verifications/{verification_id}", tags=["verifications"], responses=problem_responses(404))
async def get_verification(
    verification_id: VerificationId, principal: Customer, uow: RequestUnitOfWork, settings: Settings
) -> VerificationOut:
    return await service.get(uow, settings, principal, verification_id)


@router.post("/verifications/{verification_id}/otp", tags=["verifications"], responses=REFUSED)
async def check_otp(
    verification_id: VerificationId,
    body: OtpIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    *,
    deps: Deps,
    request: Request,
) -> Any:
    outcome = await service.check_otp(uow, deps, principal, verification_id, code=body.code)
    return (
        outcome.verification
        if outcome.accepted
        else _refusal(request, outcome, outcome.verification.otp_attempts_remaining)
    )


@router.post(
    "/verifications/{verification_id}/otp/resend",
    tags=["verifications"],
    responses=problem_responses(404, NOT_PENDING, (429, "Too soon or too many: see Retry-After")),
)
async def resend_otp(
    verification_id: VerificationId, principal: Customer, uow: RequestUnitOfWork, deps: Deps
) -> VerificationOut:
    """A new code replaces the old one (which stops working)."""
    return await service.resend(uow, deps, principal, verification_id)


@router.post(
    "/devices",
    status_code=202,
    tags=["devices"],
    responses=problem_responses(
        400, (409, "This device id is already enrolled"), (429, "Too many codes: see Retry-After")
    ),
)
async def enrol_device(
    body: DeviceIn, principal: Customer, uow: RequestUnitOfWork, deps: Deps
) -> DeviceEnrolment:
    """Enrol a device key (EC P-256 public key, PEM) for the calling customer: it stays pending, and
    cannot pass a biometric, until the code sent by SMS is confirmed on the verification returned
    (`POST /v1/verifications/{id}/otp`). The same request again, before that, returns the same."""
    return await service.enrol_device(uow, deps, principal, body)


@router.get("/devices", tags=["devices"])
async def list_devices(principal: Customer, uow: RequestUnitOfWork) -> DeviceList:
    """The caller's device keys, in every status, oldest first."""
    return await service.list_devices(uow, principal)


@router.get("/devices/{device_id}", tags=["devices"], responses=problem_responses(404))
async def get_device(device_id: DeviceId, principal: Customer, uow: RequestUnitOfWork) -> DeviceDetail:
    """One of the caller's device keys, with its history: enrolled, activated, revoked, by whom and when."""
    return await service.get_device(uow, principal, device_id)


@router.delete("/devices/{device_id}", status_code=204, tags=["devices"], responses=problem_responses(404))
async def revoke_device(device_id: DeviceId, principal: Customer, uow: RequestUnitOfWork) -> Response:
    """Revoke one of the caller's device keys: it never passes a biometric again."""
    await service.revoke_device(uow, principal, device_id)
    return Response(status_code=204)


@router.post(
    "/verifications/{verification_id}/biometric/challenge",
    status_code=201,
    tags=["verifications"],
    responses=problem_responses(404, NOT_PENDING),
)
async def biometric_challenge(
    verification_id: VerificationId, principal: Customer, uow: RequestUnitOfWork, settings: Settings
) -> ChallengeOut:
    return await service.issue_challenge(uow, settings, principal, verification_id)


@router.post("/verifications/{verification_id}/biometric", tags=["verifications"], responses=REFUSED)
async def check_biometric(
    verification_id: VerificationId,
    body: BiometricIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    *,
    settings: Settings,
    request: Request,
) -> Any:
    outcome = await service.check_biometric(uow, settings, principal, verification_id, body=body)
    return (
        outcome.verification
        if outcome.accepted
        else _refusal(request, outcome, outcome.verification.biometric_attempts_remaining)
    )


@router.get("/ops/verifications", tags=["ops"])
async def ops_verifications(
    principal: Ops,
    uow: RequestUnitOfWork,
    request_id: Annotated[
        str, Query(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="The unbind or bind request")
    ],
) -> OpsVerificationList:
    """Every verification of a request, oldest first, each with every attempt made on it (method,
    result, time, device), for the ops case view; never a code. None for an unknown request."""
    return await service.ops_verifications(uow, request_id)


@router.get("/ops/customers/{user_id}/devices", tags=["ops"])
async def ops_devices(user_id: UserId, principal: Ops, uow: RequestUnitOfWork) -> OpsDeviceList:
    """A customer's device keys in every status, with their history, for ops helping them."""
    return await service.ops_devices(uow, user_id)
