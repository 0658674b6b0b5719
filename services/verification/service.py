"""Business rules of the verification service.

A verification is issued when risk (or a reviewer) clears an unbind request, with the methods the
decision requires. The SMS one-time code: 6 digits from `secrets`, valid `otp_ttl_seconds`, single
use, at most `otp_max_attempts` checks, stored only as an HMAC-SHA256 under a server key and
compared in constant time. It travels once, over HTTP to notification, after the verification is
committed; it is never in an event, a log line or a response.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx

from services.verification import repository
from services.verification.config import VerificationSettings
from services.verification.models import DeliveryStatus, Verification, VerificationStatus
from services.verification.schemas import VerificationOut
from shared.auth import Principal
from shared.db import utcnow
from shared.events import Event, VerificationFailed, VerificationMethod, VerificationRequested, Verified
from shared.http import post_with_retries
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerificationDeps:
    """What the verification handlers need beyond their unit of work."""

    settings: VerificationSettings
    notifier: httpx.AsyncClient
    unit_of_work: Callable[[], UnitOfWork]


@dataclass(frozen=True)
class OtpOutcome:
    verification: VerificationOut
    accepted: bool


def _code_digest(settings: VerificationSettings, verification_id: str, code: str) -> str:
    # Binding the digest to the verification id stops a code hash from being replayed elsewhere.
    key = settings.otp_hmac_key.get_secret_value().encode()
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def verification_out(settings: VerificationSettings, verification: Verification) -> VerificationOut:
    return VerificationOut(
        id=verification.id,
        request_id=verification.request_id,
        status=verification.status,
        methods=verification.methods,
        passed_methods=verification.passed_methods,
        expires_at=verification.expires_at,
        otp_expires_at=verification.otp_expires_at,
        otp_delivery=verification.otp_delivery,
        otp_attempts_remaining=max(0, settings.otp_max_attempts - verification.otp_attempts),
        failure_reason=verification.failure_reason,
    )


async def issue(uow: UnitOfWork, deps: VerificationDeps, event: Event, methods: list[VerificationMethod]) -> None:
    """Create the verification of a cleared request and send its first code, unless one is
    already pending or passed (an approval after an appeal gets a fresh one)."""
    if await repository.live_for_request(uow.session, event.request_id) is not None:
        return
    now = utcnow()
    verification = Verification(
        id=str(uuid.uuid4()),
        request_id=event.request_id,
        binding_id=event.binding_id,
        user_id=event.user_id,
        methods=list(methods),
        passed_methods=[],
        status=VerificationStatus.PENDING,
        expires_at=now + timedelta(seconds=deps.settings.verification_ttl_seconds),
        created_at=now,
        updated_at=now,
    )
    uow.session.add(verification)
    if VerificationMethod.OTP in methods:
        _new_code(uow, deps, verification)
    uow.emit(
        VerificationRequested(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            verification_id=verification.id,
            methods=list(methods),
            expires_at=verification.expires_at,
        )
    )


def _new_code(uow: UnitOfWork, deps: VerificationDeps, verification: Verification) -> None:
    """Replace the current code with a fresh one, sent once the transaction has committed."""
    code = f"{secrets.randbelow(1_000_000):06d}"
    verification.otp_hash = _code_digest(deps.settings, verification.id, code)
    verification.otp_expires_at = utcnow() + timedelta(seconds=deps.settings.otp_ttl_seconds)
    verification.otp_attempts = 0
    verification.otp_sends = (verification.otp_sends or 0) + 1
    verification.otp_delivery = DeliveryStatus.SENDING
    send_number = verification.otp_sends
    verification_id, user_id = verification.id, verification.user_id

    async def send() -> None:
        await _send_code(deps, verification_id, user_id, send_number, code)

    uow.after_commit(send)


async def _send_code(deps: VerificationDeps, verification_id: str, user_id: str, send_number: int, code: str) -> None:
    message = {
        "message_id": f"{verification_id}:otp:{send_number}",
        "user_id": user_id,
        "template": "otp_code",
        "params": {"code": code, "ttl_minutes": str(deps.settings.otp_ttl_seconds // 60)},
    }
    try:
        response = await post_with_retries(deps.notifier, "/internal/v1/messages", json=message)
        delivery = DeliveryStatus.SENT if response.is_success else DeliveryStatus.FAILED
        if not response.is_success:
            log.warning("code not accepted by notification", extra={"verification_id": verification_id, "status": response.status_code})
    except httpx.HTTPError as exc:
        log.warning("notification unreachable; the customer can ask for a new code", extra={"verification_id": verification_id, "error": type(exc).__name__})
        delivery = DeliveryStatus.FAILED
    async with deps.unit_of_work() as uow:
        await repository.set_delivery(uow.session, verification_id, send_number, delivery)


async def get(uow: UnitOfWork, settings: VerificationSettings, principal: Principal, verification_id: str) -> VerificationOut:
    return verification_out(settings, await _owned(uow, principal, verification_id))


async def check_otp(uow: UnitOfWork, settings: VerificationSettings, principal: Principal, verification_id: str, code: str) -> OtpOutcome:
    """Check a code. A wrong code is recorded (the caller commits it) and reported, not raised."""
    verification = await _owned(uow, principal, verification_id, for_update=True)
    _require_pending(verification)
    if VerificationMethod.OTP not in verification.methods or VerificationMethod.OTP in verification.passed_methods:
        raise conflict("otp-not-expected", "This verification does not expect an SMS code now.")
    now = utcnow()
    if verification.expires_at <= now:
        raise conflict("verification-expired", "This verification has expired.")
    if verification.otp_hash is None or verification.otp_expires_at is None or verification.otp_expires_at <= now:
        raise Problem(422, "code-expired", "Code expired", "The code has expired; ask for a new one.")

    verification.otp_attempts += 1
    expected = verification.otp_hash
    if not hmac.compare_digest(expected, _code_digest(settings, verification.id, code)):
        if verification.otp_attempts >= settings.otp_max_attempts:
            _fail(uow, verification, "too_many_attempts")
        return OtpOutcome(verification_out(settings, verification), accepted=False)

    verification.otp_hash = None  # single use
    verification.passed_methods = [*verification.passed_methods, VerificationMethod.OTP]
    _complete_if_done(uow, verification)
    return OtpOutcome(verification_out(settings, verification), accepted=True)


def void(verification: Verification | None) -> None:
    """The request was cancelled or expired: later attempts are refused."""
    if verification is not None and verification.status == VerificationStatus.PENDING:
        verification.status = VerificationStatus.VOIDED
        verification.otp_hash = None


def _complete_if_done(uow: UnitOfWork, verification: Verification) -> None:
    if set(verification.methods) <= set(verification.passed_methods):
        verification.status = VerificationStatus.VERIFIED
        uow.emit(
            Verified(
                request_id=verification.request_id,
                binding_id=verification.binding_id,
                user_id=verification.user_id,
                verification_id=verification.id,
                methods=list(verification.methods),
            )
        )


def _fail(uow: UnitOfWork, verification: Verification, reason: str) -> None:
    verification.status = VerificationStatus.FAILED
    verification.failure_reason = reason
    verification.otp_hash = None
    uow.emit(
        VerificationFailed(
            request_id=verification.request_id,
            binding_id=verification.binding_id,
            user_id=verification.user_id,
            verification_id=verification.id,
            reason=reason,
        )
    )


def _require_pending(verification: Verification) -> None:
    if verification.status != VerificationStatus.PENDING:
        raise conflict(f"verification-{verification.status}", f"This verification is {verification.status}.", verification_status=verification.status)


async def _owned(uow: UnitOfWork, principal: Principal, verification_id: str, *, for_update: bool = False) -> Verification:
    verification = await repository.get(uow.session, verification_id, for_update=for_update)
    if verification is None or verification.user_id != principal.subject:
        raise not_found("The verification")
    return verification
