"""Routes of the verification service (customer API)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from services.verification import service
from services.verification.config import VerificationSettings
from services.verification.schemas import OtpIn, VerificationOut
from shared.app import RequestUnitOfWork, Runtime
from shared.auth import Customer
from shared.problems import problem_response

router = APIRouter(prefix="/v1", tags=["verifications"])

VerificationId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$")]


@router.get("/verifications/{verification_id}")
async def get_verification(verification_id: VerificationId, principal: Customer, uow: RequestUnitOfWork, runtime: Runtime) -> VerificationOut:
    settings: VerificationSettings = runtime.settings  # type: ignore[assignment]
    return await service.get(uow, settings, principal, verification_id)


@router.post(
    "/verifications/{verification_id}/otp",
    responses={422: {"description": "Wrong or expired code (problem+json with `attempts_remaining`)"}, 409: {"description": "Not pending"}},
)
async def check_otp(verification_id: VerificationId, body: OtpIn, principal: Customer, uow: RequestUnitOfWork, runtime: Runtime, request: Request) -> Any:
    settings: VerificationSettings = runtime.settings  # type: ignore[assignment]
    outcome = await service.check_otp(uow, settings, principal, verification_id, body.code)
    if outcome.accepted:
        return outcome.verification
    # Returned, not raised: the failed attempt (and a lock-out) must be committed.
    locked = outcome.verification.status != "pending"
    return problem_response(
        request,
        422,
        "verification-locked" if locked else "wrong-code",
        "Too many wrong codes" if locked else "Wrong code",
        "The verification is locked; the unbind request will be rejected." if locked else "The code does not match.",
        attempts_remaining=outcome.verification.otp_attempts_remaining,
    )
