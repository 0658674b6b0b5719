"""Business rules of the verification service.

A verification is issued when risk (or a reviewer) clears an unbind request, with the methods the
decision requires; `Verified` is emitted once every method has passed.

SMS one-time code: 6 digits from `secrets`, valid `otp_ttl_seconds`, single use, at most
`otp_max_attempts` checks per verification in total (a resend does not reset them), stored only as
an HMAC-SHA256 under a server key and compared in constant time. It travels once, over HTTP to
notification, after the verification is committed; it is never in an event, a log line or a
response. A resend replaces the code; sends are limited per
verification (a pause between two) and per customer (a cap per window). A code notification did
not take is replaced and sent again automatically, with backoff, and the customer sees the state.

Biometric: see `biometric.py` for the signed bytes. Challenges are single use and short-lived; the
device counter must go up (a regression is refused and reported as `BiometricCounterRegressed`);
at most `biometric_max_failures` failed signatures.

Binding a repayment account takes an SMS code too (purpose `binding`, issued on BindingRequested
under the verification id binding named): passing it emits `BindingVerified`, a lock-out or expiry
`BindingVerificationFailed`, never `Verified` or `VerificationFailed`.

Device keys are a second factor only if a stolen customer token cannot add one: enrolling a key
takes its own SMS code (a verification of purpose `device_enrolment`, with the same code rules,
which never emits `Verified` or `VerificationFailed`); only then is the key active and the customer
told on every channel (`DeviceEnrolled`). A key activated after an unbind request was made cannot
pass that request's biometric, unless it is the device the request came from. The customer lists
and revokes keys (`DeviceRevoked`); every change of a key is in its audit trail.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.exc import IntegrityError

from services.verification import repository
from services.verification.biometric import (
    CHALLENGE_BYTES,
    load_p256_public_key,
    signature_valid,
    signed_message,
)
from services.verification.config import VerificationSettings
from services.verification.models import (
    AttemptResult,
    Challenge,
    DeliveryStatus,
    Device,
    DeviceAudit,
    DeviceStatus,
    OtpSend,
    Purpose,
    UnbindContext,
    Verification,
    VerificationAttempt,
    VerificationStatus,
)
from services.verification.schemas import (
    AttemptOut,
    BiometricIn,
    ChallengeOut,
    DeviceAuditOut,
    DeviceDetail,
    DeviceEnrolment,
    DeviceIn,
    DeviceList,
    DeviceOut,
    OpsDeviceList,
    OpsVerificationList,
    OpsVerificationOut,
    VerificationOut,
)
from shared.auth import Principal
from shared.cloudevents import EventRejected
from shared.consumer import current_envelope
from shared.db import utcnow
from shared.encoding import b64url, b64url_decode
from shared.events import (
    BindingEvent,
    BindingRequested,
    BindingVerificationFailed,
    BindingVerified,
    BiometricCounterRegressed,
    DeviceEnrolled,
    DeviceRevoked,
    ReviewDecided,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindCancelled,
    UnbindExpired,
    UnbindRequested,
    VerificationFailed,
    VerificationMethod,
    VerificationRequested,
    Verified,
)
from shared.http import RETRYABLE_STATUS, post_with_retries
from shared.logging import redact
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)
# The notification template of each purpose's code SMS.
CODE_TEMPLATES = {
    Purpose.UNBIND: "otp_code",
    Purpose.DEVICE_ENROLMENT: "device_enrolment_code",
    Purpose.BINDING: "binding_code",
}
# A code call notification answers with 409 is tried again soon: the request's risk prompt, which
# goes first, is not out yet (notification has not handled its UnbindRequested).
CODE_RETRY_STATUS = RETRYABLE_STATUS | {409}
# A code still "sending" this long after it was made was cut short (the process stopped mid-call):
# the sweep sends a new one. Past the client's timeouts and retries to notification.
SEND_DEADLINE = timedelta(seconds=60)
# The actor of what the service does by itself (an enrolment that expired), in a device's audit trail.
SYSTEM = "system"


class VerificationMetrics:
    """Collectors of one verification app, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.codes_sent = Counter(
            "unbind_otp_codes_sent",
            "One-time codes notification accepted for sending by SMS",
            registry=registry,
        )
        self.codes_failed = Counter(
            "unbind_otp_codes_failed",
            "One-time codes notification did not take, by reason (rejected: it answered an error; "
            "unreachable: no answer); the code is replaced and sent again",
            ["reason"],
            registry=registry,
        )
        self.checks = Counter(
            "unbind_otp_checks",
            "Codes checked and committed, by result (accepted, wrong_code)",
            ["result"],
            registry=registry,
        )


@dataclass(frozen=True)
class VerificationDeps:
    """What the verification handlers and workers need beyond their unit of work."""

    settings: VerificationSettings
    notifier: httpx.AsyncClient
    unit_of_work: Callable[[], UnitOfWork]
    metrics: VerificationMetrics
    # Set once a failed code send is recorded: the sweep wakes to learn when to send it again.
    sweep_due: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class AttemptOutcome:
    """A checked code or signature: accepted, or refused (the refusal is recorded, not raised)."""

    verification: VerificationOut
    accepted: bool
    reason: str = ""


def _code_digest(settings: VerificationSettings, verification_id: str, code: str) -> str:
    # Binding the digest to the verification id stops a code hash from being replayed elsewhere.
    key = settings.otp_hmac_key.get_secret_value().encode()
    return hmac.new(key, f"{verification_id}:{code}".encode(), hashlib.sha256).hexdigest()


def verification_out(settings: VerificationSettings, verification: Verification) -> VerificationOut:
    return VerificationOut(
        id=verification.id,
        purpose=verification.purpose,
        request_id=verification.request_id,
        device_id=verification.device_id,
        status=verification.status,
        methods=verification.methods,
        passed_methods=verification.passed_methods,
        expires_at=verification.expires_at,
        otp_expires_at=verification.otp_expires_at,
        otp_delivery=verification.otp_delivery,
        otp_attempts_remaining=max(0, settings.otp_max_attempts - verification.otp_attempts),
        biometric_attempts_remaining=max(
            0, settings.biometric_max_failures - verification.biometric_failures
        ),
        failure_reason=verification.failure_reason,
    )


# --- issuing -------------------------------------------------------------------------------


async def remember_request(uow: UnitOfWork, deps: VerificationDeps, event: UnbindRequested) -> None:
    if await uow.session.get(UnbindContext, event.request_id) is None:
        # The CloudEvent time is when binding accepted the request: keys activated later cannot sign for it.
        requested_at = current_envelope.get().time
        context = UnbindContext(
            request_id=event.request_id,
            user_id=event.user_id,
            impact_hash=event.impact_hash,
            device_id=event.device_id,
            requested_at=requested_at,
        )
        uow.session.add(context)


async def issue_after_assessment(uow: UnitOfWork, deps: VerificationDeps, event: RiskAssessed) -> None:
    if event.decision in (RiskDecision.ALLOW, RiskDecision.STEP_UP):
        await _issue(uow, deps, event, event.required_methods)


async def issue_after_review(uow: UnitOfWork, deps: VerificationDeps, event: ReviewDecided) -> None:
    # An approval that clears a request names its methods; the closing of a dispute names none.
    if event.decision == ReviewOutcome.APPROVE and event.required_methods:
        await _issue(uow, deps, event, event.required_methods)


async def _issue(
    uow: UnitOfWork, deps: VerificationDeps, event: BindingEvent, methods: list[VerificationMethod]
) -> None:
    """Create the verification of a cleared request and send its first code, unless one is
    already pending or passed (an approval after an appeal gets a fresh one)."""
    if await repository.live_for_request(uow.session, event.request_id) is not None:
        return
    context = await uow.session.get(UnbindContext, event.request_id)
    if context is None or context.user_id != event.user_id:
        # A code goes to the customer of a request binding opened, never to one an event names
        # alone (and the device must sign the impact that customer saw).
        raise EventRejected(
            "state", f"{type(event).__name__} clears a request no UnbindRequested opened for this customer"
        )
    if context.closed_at is not None:
        log.info(
            "no verification for a closed request",
            extra={"request_id": event.request_id, "after": type(event).__name__},
        )
        return
    now = utcnow()
    verification = Verification(
        id=str(uuid.uuid4()),
        purpose=Purpose.UNBIND,
        request_id=event.request_id,
        binding_id=event.binding_id,
        user_id=event.user_id,
        methods=list(methods),
        passed_methods=[],
        status=VerificationStatus.PENDING,
        impact_hash=context.impact_hash,
        expires_at=now + timedelta(seconds=deps.settings.verification_ttl_seconds),
        created_at=now,
        updated_at=now,
    )
    uow.session.add(verification)
    if VerificationMethod.OTP in methods:
        await _new_code(uow, deps, verification)
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


async def issue_for_binding(uow: UnitOfWork, deps: VerificationDeps, event: BindingRequested) -> None:
    """The SMS code of a bind request, under the verification id binding named (so the customer had
    it at once). Not counted against the customer's cap, like an unbind's first code: binding limits
    the bind requests waiting for a code instead."""
    if await repository.get(uow.session, event.verification_id) is not None:
        return
    now = utcnow()
    verification = Verification(
        id=event.verification_id,
        purpose=Purpose.BINDING,
        request_id=event.request_id,
        binding_id=event.binding_id,
        user_id=event.user_id,
        methods=[VerificationMethod.OTP],
        passed_methods=[],
        status=VerificationStatus.PENDING,
        expires_at=now + timedelta(seconds=deps.settings.verification_ttl_seconds),
        created_at=now,
        updated_at=now,
    )
    uow.session.add(verification)
    await _new_code(uow, deps, verification)


async def _new_code(
    uow: UnitOfWork,
    deps: VerificationDeps,
    verification: Verification,
    device: Device | None = None,
) -> None:
    """Replace the current code with a fresh one, sent once the transaction has committed. The SMS
    names what the code is for: the request's account (notification knows it by the request id) or
    the device being enrolled, by the name the customer gave it (which no event carries). The caller
    waits for the send, a consumer too: while notification lags behind (it holds a code until it has
    seen the request), that holds verification back instead of piling codes up in front of it. A send
    cut short (the process stopped) is due again after `SEND_DEADLINE`, like a failed one."""
    if verification.purpose == Purpose.DEVICE_ENROLMENT and device is None:
        device = await repository.get_device(uow.session, verification.device_id or "")
    code = f"{secrets.randbelow(1_000_000):06d}"
    now = utcnow()
    verification.otp_hash = _code_digest(deps.settings, verification.id, code)
    verification.otp_expires_at = now + timedelta(seconds=deps.settings.otp_ttl_seconds)
    verification.otp_sends = (verification.otp_sends or 0) + 1
    verification.otp_last_sent_at = now
    verification.otp_delivery = DeliveryStatus.SENDING
    verification.next_delivery_at = now + SEND_DEADLINE
    message = {
        "message_id": f"{verification.id}:otp:{verification.otp_sends}",
        "user_id": verification.user_id,
        "template": CODE_TEMPLATES[Purpose(verification.purpose)],
        "params": {"code": code, "ttl_minutes": str(max(1, deps.settings.otp_ttl_seconds // 60))},
        **({"request_id": verification.request_id} if verification.request_id else {}),
        **({"device": {"id": device.id, "name": device.name}} if device is not None else {}),
    }
    send_number, verification_id = verification.otp_sends, verification.id

    async def send() -> None:
        await _send_code(deps, verification_id=verification_id, send_number=send_number, message=message)

    uow.after_commit(send)


async def _send_code(
    deps: VerificationDeps, *, verification_id: str, send_number: int, message: dict[str, Any]
) -> None:
    # Counted here, outside any transaction: the call happened whatever becomes of the row below.
    try:
        response = await post_with_retries(
            deps.notifier, "/internal/v1/messages", json=message, retry_status=CODE_RETRY_STATUS
        )
        delivered = response.is_success
        if delivered:
            deps.metrics.codes_sent.inc()
        else:
            deps.metrics.codes_failed.labels("rejected").inc()
            log.warning(
                "code not accepted by notification",
                extra={"verification_id": verification_id, "status": response.status_code},
            )
    except httpx.HTTPError as exc:
        deps.metrics.codes_failed.labels("unreachable").inc()
        log.warning(
            "notification unreachable; the code will be sent again",
            extra={"verification_id": verification_id, "error": type(exc).__name__},
        )
        delivered = False
    async with deps.unit_of_work() as uow:
        verification = await repository.get(uow.session, verification_id, for_update=True)
        # Only the latest send's outcome counts: a slow answer for an older code must not overwrite it.
        if verification is None or verification.otp_sends != send_number:
            return
        if delivered:
            verification.otp_delivery, verification.next_delivery_at = DeliveryStatus.SENT, None
        else:
            verification.otp_delivery = DeliveryStatus.FAILED
            backoff = deps.settings.otp_delivery_backoff_seconds * 2**verification.delivery_retries
            verification.next_delivery_at = utcnow() + timedelta(seconds=backoff)
            uow.after_commit(deps.sweep_due.set)


async def retry_deliveries(uow: UnitOfWork, deps: VerificationDeps) -> int:
    """Send a new code for each pending verification whose last code notification did not take."""
    due = await repository.codes_to_send_again(uow.session, utcnow(), deps.settings.otp_delivery_retries)
    for verification in due:
        verification.delivery_retries += 1
        await _new_code(uow, deps, verification)
    return len(due)


async def next_sweep_due(uow: UnitOfWork, settings: VerificationSettings) -> datetime | None:
    """When the sweep next has something to do: a pending verification's deadline, or a code to
    send again (None: nothing pending)."""
    return await repository.next_sweep_due(uow.session, settings.otp_delivery_retries)


async def expire_overdue(uow: UnitOfWork) -> int:
    """Fail pending verifications past their deadline (`VerificationFailed`, reason expired)."""
    expired = await repository.pending_past_deadline(uow.session, utcnow())
    for verification in expired:
        await _fail(uow, verification, "expired")
    return len(expired)


# --- customer actions ----------------------------------------------------------------------


async def get(
    uow: UnitOfWork, settings: VerificationSettings, principal: Principal, verification_id: str
) -> VerificationOut:
    return verification_out(settings, await _owned(uow, principal, verification_id))


# What a verification that does not wait for a method answers (409).
NOT_EXPECTED = {
    VerificationMethod.OTP: ("otp-not-expected", "This verification does not expect an SMS code now."),
    VerificationMethod.BIOMETRIC: (
        "biometric-not-expected",
        "This verification does not expect a biometric now.",
    ),
}


async def _expecting(
    uow: UnitOfWork, principal: Principal, verification_id: str, method: VerificationMethod
) -> Verification:
    """The customer's open verification, locked, if it still waits for `method` (else 409)."""
    verification = await _owned(uow, principal, verification_id, for_update=True)
    _require_open(verification)
    if method not in verification.methods or method in verification.passed_methods:
        raise conflict(*NOT_EXPECTED[method])
    return verification


async def resend(
    uow: UnitOfWork, deps: VerificationDeps, principal: Principal, verification_id: str
) -> VerificationOut:
    settings = deps.settings
    verification = await _expecting(uow, principal, verification_id, VerificationMethod.OTP)
    now = utcnow()
    if (
        verification.otp_last_sent_at
        and (
            wait := settings.otp_resend_interval_seconds
            - (now - verification.otp_last_sent_at).total_seconds()
        )
        > 0
    ):
        raise _too_many("Wait before asking for another code.", wait)
    await _count_send(uow, settings, verification, now)
    # The attempt count stays: `otp_max_attempts` checks per verification however many codes are sent.
    await _new_code(uow, deps, verification)
    return verification_out(settings, verification)


async def _count_send(
    uow: UnitOfWork, settings: VerificationSettings, verification: Verification, now: datetime
) -> None:
    """Count a code the customer asked for against their cap per window: 429 beyond it."""
    window_start = now - timedelta(seconds=settings.otp_send_window_seconds)
    recent = await repository.sends_since(uow.session, verification.user_id, window_start)
    if len(recent) >= settings.otp_sends_per_window:
        raise _too_many(
            "Too many codes asked for; try again later.", (recent[0] - window_start).total_seconds()
        )
    uow.session.add(OtpSend(user_id=verification.user_id, verification_id=verification.id, sent_at=now))


def _too_many(detail: str, retry_after: float) -> Problem:
    seconds = max(1, int(retry_after + 0.999))
    return Problem(
        429,
        "too-many-codes",
        "Too many codes",
        detail,
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


async def check_otp(
    uow: UnitOfWork, deps: VerificationDeps, principal: Principal, verification_id: str, *, code: str
) -> AttemptOutcome:
    """Check a code. A wrong code is recorded (the caller commits it) and reported, not raised."""
    settings = deps.settings
    verification = await _expecting(uow, principal, verification_id, VerificationMethod.OTP)
    if (
        verification.otp_hash is None
        or verification.otp_expires_at is None
        or verification.otp_expires_at <= utcnow()
    ):
        raise Problem(422, "code-expired", "Code expired", "The code has expired; ask for a new one.")

    verification.otp_attempts += 1
    if not hmac.compare_digest(verification.otp_hash, _code_digest(settings, verification.id, code)):
        uow.after_commit(deps.metrics.checks.labels("wrong_code").inc)
        if verification.otp_attempts >= settings.otp_max_attempts:
            await _fail(uow, verification, "too_many_attempts")
        _attempt(uow, verification, VerificationMethod.OTP, AttemptResult.WRONG_CODE)
        return AttemptOutcome(verification_out(settings, verification), accepted=False, reason="wrong-code")

    uow.after_commit(deps.metrics.checks.labels("accepted").inc)
    verification.otp_hash = None  # single use
    verification.passed_methods = [*verification.passed_methods, VerificationMethod.OTP]
    _attempt(uow, verification, VerificationMethod.OTP, AttemptResult.PASSED)
    await _complete_if_done(uow, verification)
    return AttemptOutcome(verification_out(settings, verification), accepted=True)


# --- devices -------------------------------------------------------------------------------


async def enrol_device(
    uow: UnitOfWork, deps: VerificationDeps, principal: Principal, body: DeviceIn
) -> DeviceEnrolment:
    """A new device key, pending until the customer confirms the SMS code sent to them now."""
    settings = deps.settings
    try:
        load_p256_public_key(body.public_key)
    except ValueError as exc:
        raise Problem(
            422, "invalid-public-key", "Invalid public key", "public_key must be a PEM EC P-256 public key."
        ) from exc
    existing = await repository.get_device(uow.session, body.device_id, for_update=True)
    if existing is not None:
        return await _enrolment_again(uow, settings, principal, existing, body=body)
    now = utcnow()
    device = Device(
        id=body.device_id,
        user_id=principal.subject,
        name=body.name,
        public_key_pem=body.public_key,
        status=DeviceStatus.PENDING,
        counter=0,
        created_at=now,
    )
    verification = Verification(
        id=str(uuid.uuid4()),
        purpose=Purpose.DEVICE_ENROLMENT,
        device_id=device.id,
        user_id=principal.subject,
        methods=[VerificationMethod.OTP],
        passed_methods=[],
        status=VerificationStatus.PENDING,
        expires_at=now + timedelta(seconds=settings.verification_ttl_seconds),
        created_at=now,
        updated_at=now,
    )
    # Each enrolment sends an SMS: it counts against the customer's cap, like a resend.
    await _count_send(uow, settings, verification, now)
    uow.session.add_all([device, verification])
    _audit(uow, device.id, "enrolment_requested", principal.subject, at=now)
    try:
        await uow.session.flush()
    except IntegrityError as exc:
        raise conflict("device-enrolled", "This device id is already enrolled.") from exc
    await _new_code(uow, deps, verification, device)
    return DeviceEnrolment(device=device_out(device), verification=verification_out(settings, verification))


async def _enrolment_again(
    uow: UnitOfWork, settings: VerificationSettings, principal: Principal, device: Device, *, body: DeviceIn
) -> DeviceEnrolment:
    """A retried enrolment (the same customer and key, its code not confirmed yet) gets the same
    answer and no new SMS; any other use of a known device id is refused."""
    same = (
        device.user_id == principal.subject
        and device.public_key_pem == body.public_key
        and device.status == DeviceStatus.PENDING
    )
    verification = await repository.pending_enrolment(uow.session, device.id) if same else None
    if verification is None:
        raise conflict("device-enrolled", "This device id is already enrolled.")
    return DeviceEnrolment(device=device_out(device), verification=verification_out(settings, verification))


def device_out(device: Device) -> DeviceOut:
    return DeviceOut.model_validate(device, from_attributes=True)


async def list_devices(uow: UnitOfWork, principal: Principal) -> DeviceList:
    return DeviceList(
        items=[device_out(device) for device in await repository.devices_of(uow.session, principal.subject)]
    )


async def get_device(uow: UnitOfWork, principal: Principal, device_id: str) -> DeviceDetail:
    device = await _own_device(uow, principal, device_id)
    history = [
        DeviceAuditOut.model_validate(row, from_attributes=True)
        for row in await repository.device_history(uow.session, device.id)
    ]
    return DeviceDetail(**device_out(device).model_dump(), history=history)


async def revoke_device(uow: UnitOfWork, principal: Principal, device_id: str) -> None:
    """Revoke a key for good (a pending one's enrolment ends too); revoking it again changes nothing."""
    device = await _own_device(uow, principal, device_id, for_update=True)
    if device.status == DeviceStatus.REVOKED:
        return
    if (
        device.status == DeviceStatus.PENDING
        and (enrolment := await repository.pending_enrolment(uow.session, device.id)) is not None
    ):
        _close(enrolment, VerificationStatus.VOIDED)
    now = utcnow()
    device.status, device.revoked_at = DeviceStatus.REVOKED, now
    _audit(uow, device.id, "revoked", principal.subject, at=now)
    uow.emit(DeviceRevoked(user_id=device.user_id, device_id=device.id))


async def _own_device(
    uow: UnitOfWork, principal: Principal, device_id: str, *, for_update: bool = False
) -> Device:
    device = await repository.get_device(uow.session, device_id, for_update=for_update)
    if device is None or device.user_id != principal.subject:
        raise not_found("The device")
    return device


def _audit(uow: UnitOfWork, device_id: str, action: str, actor: str, *, at: datetime) -> None:
    uow.session.add(DeviceAudit(device_id=device_id, action=action, actor=actor, at=at))


async def _end_enrolment(uow: UnitOfWork, verification: Verification) -> None:
    """An enrolment verification has ended: its device is active if it passed, revoked if not."""
    device = await repository.get_device(uow.session, verification.device_id or "", for_update=True)
    if device is None or device.status != DeviceStatus.PENDING:
        return
    now = utcnow()
    if verification.status == VerificationStatus.VERIFIED:
        device.status, device.activated_at = DeviceStatus.ACTIVE, now
        _audit(uow, device.id, "activated", verification.user_id, at=now)
        uow.emit(DeviceEnrolled(user_id=device.user_id, device_id=device.id))
    else:
        device.status, device.revoked_at = DeviceStatus.REVOKED, now
        _audit(
            uow,
            device.id,
            "enrolment_failed",
            SYSTEM if verification.failure_reason == "expired" else verification.user_id,
            at=now,
        )


async def issue_challenge(
    uow: UnitOfWork, settings: VerificationSettings, principal: Principal, verification_id: str
) -> ChallengeOut:
    verification = await _expecting(uow, principal, verification_id, VerificationMethod.BIOMETRIC)
    challenge = Challenge(
        verification_id=verification.id,
        challenge=b64url(secrets.token_bytes(CHALLENGE_BYTES)),
        expires_at=utcnow() + timedelta(seconds=settings.challenge_ttl_seconds),
    )
    uow.session.add(challenge)
    return ChallengeOut(
        challenge=challenge.challenge,
        expires_at=challenge.expires_at,
        verification_id=verification.id,
        request_id=verification.request_id,
        impact_hash=verification.impact_hash,
    )


async def check_biometric(
    uow: UnitOfWork,
    settings: VerificationSettings,
    principal: Principal,
    verification_id: str,
    *,
    body: BiometricIn,
) -> AttemptOutcome:
    """Check a device signature; a refusal is recorded (and counts) and reported, not raised."""
    verification = await _expecting(uow, principal, verification_id, VerificationMethod.BIOMETRIC)
    reason = await _biometric_refusal(uow, verification, principal, body)
    if reason:
        verification.biometric_failures += 1
        if verification.biometric_failures >= settings.biometric_max_failures:
            await _fail(uow, verification, "too_many_attempts")
        log.warning("biometric refused", extra={"verification_id": verification.id, "reason": reason})
        _attempt(
            uow,
            verification,
            VerificationMethod.BIOMETRIC,
            BIOMETRIC_RESULTS[reason],
            device_id=body.device_id,
        )
        return AttemptOutcome(verification_out(settings, verification), accepted=False, reason=reason)
    verification.passed_methods = [*verification.passed_methods, VerificationMethod.BIOMETRIC]
    _attempt(uow, verification, VerificationMethod.BIOMETRIC, AttemptResult.PASSED, device_id=body.device_id)
    await _complete_if_done(uow, verification)
    return AttemptOutcome(verification_out(settings, verification), accepted=True)


# The result an attempt records for each refusal of a device signature.
BIOMETRIC_RESULTS = {
    "challenge-invalid": AttemptResult.CHALLENGE_INVALID,
    "device-unknown": AttemptResult.DEVICE_UNKNOWN,
    "device-not-active": AttemptResult.DEVICE_NOT_ACTIVE,
    "device-newer-than-request": AttemptResult.DEVICE_NEWER_THAN_REQUEST,
    "signature-invalid": AttemptResult.BAD_SIGNATURE,
    "counter-not-increased": AttemptResult.COUNTER_REGRESSED,
}


def _attempt(
    uow: UnitOfWork,
    verification: Verification,
    method: VerificationMethod,
    result: AttemptResult,
    *,
    device_id: str | None = None,
) -> None:
    """Keep an attempt for the ops case: a refusal that ended the verification is `locked`."""
    if result != AttemptResult.PASSED and verification.status == VerificationStatus.FAILED:
        result = AttemptResult.LOCKED
    uow.session.add(
        VerificationAttempt(
            verification_id=verification.id,
            user_id=verification.user_id,
            method=method,
            result=result,
            device_id=device_id,
            at=utcnow(),
        )
    )


async def _biometric_refusal(
    uow: UnitOfWork, verification: Verification, principal: Principal, body: BiometricIn
) -> str | None:
    """Why the signature is refused, or None. Consumes the challenge either way."""
    now = utcnow()
    challenge = await repository.challenge_for(uow.session, verification.id, body.challenge)
    if challenge is None or challenge.used_at is not None or challenge.expires_at <= now:
        return "challenge-invalid"
    challenge.used_at = now
    device = await repository.get_device(uow.session, body.device_id, for_update=True)
    if device is None or device.user_id != principal.subject:
        return "device-unknown"
    if device.status != DeviceStatus.ACTIVE:
        return "device-not-active"
    if not await _may_sign_for(uow, verification, device):
        return "device-newer-than-request"
    message = signed_message(
        b64url_decode(body.challenge),
        verification.id,
        verification.request_id,
        verification.impact_hash,
        counter=body.counter,
    )
    try:
        signature = b64url_decode(body.signature)
    except ValueError:
        return "signature-invalid"
    if not signature_valid(device.public_key_pem, message, signature):
        return "signature-invalid"
    if body.counter <= device.counter:
        uow.emit(
            BiometricCounterRegressed(
                **_about(verification),
                device_id=device.id,
                counter=body.counter,
                last_counter=device.counter,
            )
        )
        return "counter-not-increased"
    device.counter = body.counter
    return None


async def _may_sign_for(uow: UnitOfWork, verification: Verification, device: Device) -> bool:
    """A key activated after the request was made cannot pass its biometric (a stolen token plus
    a key enrolled mid-step-up is one factor), unless it is the device the request came from."""
    context = await uow.session.get(UnbindContext, verification.request_id)
    if context is not None and context.device_id == device.id:
        return True
    # A context recorded before requests carried their time: the verification came after the request.
    requested_at = (
        context.requested_at
        if context is not None and context.requested_at is not None
        else verification.created_at
    )
    return device.activated_at is not None and device.activated_at <= requested_at


async def close_request(
    uow: UnitOfWork, deps: VerificationDeps, event: UnbindCancelled | UnbindExpired
) -> None:
    """The request was cancelled or expired: its verification is voided (later attempts are
    refused) and none is issued for it again."""
    verification = await repository.live_for_request(uow.session, event.request_id, for_update=True)
    if verification is not None and verification.status == VerificationStatus.PENDING:
        _close(verification, VerificationStatus.VOIDED)
    context = await uow.session.get(UnbindContext, event.request_id)
    if context is None:
        # UnbindRequested was never seen here (retention): remember the request as closed all the same.
        context = UnbindContext(request_id=event.request_id, user_id=event.user_id, impact_hash="")
        uow.session.add(context)
    context.closed_at = context.closed_at or utcnow()


async def _complete_if_done(uow: UnitOfWork, verification: Verification) -> None:
    if not set(verification.methods) <= set(verification.passed_methods):
        return
    verification.status = VerificationStatus.VERIFIED
    if verification.purpose == Purpose.DEVICE_ENROLMENT:
        await _end_enrolment(uow, verification)
    elif verification.purpose == Purpose.BINDING:
        uow.emit(BindingVerified(**_about(verification)))
    else:
        uow.emit(
            Verified(
                **_about(verification),
                methods=list(verification.methods),
            )
        )


def _close(verification: Verification, status: VerificationStatus) -> None:
    verification.status = status
    verification.otp_hash = None
    verification.next_delivery_at = None


async def _fail(uow: UnitOfWork, verification: Verification, reason: str) -> None:
    _close(verification, VerificationStatus.FAILED)
    verification.failure_reason = reason
    if verification.purpose == Purpose.DEVICE_ENROLMENT:
        await _end_enrolment(uow, verification)
    elif verification.purpose == Purpose.BINDING:
        uow.emit(BindingVerificationFailed(**_about(verification), reason=reason))
    else:
        uow.emit(
            VerificationFailed(
                **_about(verification),
                reason=reason,
            )
        )


def _about(verification: Verification) -> dict[str, str]:
    """The fields every verification event carries."""
    return {
        "request_id": verification.request_id,
        "binding_id": verification.binding_id,
        "user_id": verification.user_id,
        "verification_id": verification.id,
    }


def _require_open(verification: Verification) -> None:
    if verification.status != VerificationStatus.PENDING:
        raise conflict(
            f"verification-{verification.status}",
            f"This verification is {verification.status}.",
            verification_status=verification.status,
        )
    if verification.expires_at <= utcnow():
        raise conflict("verification-expired", "This verification has expired.")


async def _owned(
    uow: UnitOfWork, principal: Principal, verification_id: str, *, for_update: bool = False
) -> Verification:
    verification = await repository.get(uow.session, verification_id, for_update=for_update)
    if verification is None or verification.user_id != principal.subject:
        raise not_found("The verification")
    return verification


# --- ops -------------------------------------------------------------------------------------


async def ops_verifications(uow: UnitOfWork, request_id: str) -> OpsVerificationList:
    """Every verification of a request with every attempt made on it, for the ops case view."""
    verifications = await repository.of_request(uow.session, request_id)
    attempts: dict[str, list[AttemptOut]] = {verification.id: [] for verification in verifications}
    for attempt in await repository.attempts_of(uow.session, list(attempts)):
        attempts[attempt.verification_id].append(AttemptOut.model_validate(attempt, from_attributes=True))
    return OpsVerificationList(
        items=[
            OpsVerificationOut(
                verification_id=verification.id,
                purpose=verification.purpose,
                status=verification.status,
                methods=verification.methods,
                passed_methods=verification.passed_methods,
                failure_reason=verification.failure_reason,
                otp_sends=verification.otp_sends,
                otp_delivery=verification.otp_delivery,
                created_at=verification.created_at,
                expires_at=verification.expires_at,
                attempts=attempts[verification.id],
            )
            for verification in verifications
        ]
    )


async def ops_devices(uow: UnitOfWork, user_id: str) -> OpsDeviceList:
    """A customer's device keys in every status, each with its history, oldest first; their names
    (the customer's words) with numbers masked."""
    devices = await repository.devices_of(uow.session, user_id)
    history: dict[str, list[DeviceAuditOut]] = {device.id: [] for device in devices}
    for row in await repository.device_histories(uow.session, list(history)):
        history[row.device_id].append(DeviceAuditOut.model_validate(row, from_attributes=True))
    return OpsDeviceList(
        items=[
            DeviceDetail(**device_out(device).model_dump(), history=history[device.id]).model_copy(
                update={"name": redact(device.name)}
            )
            for device in devices
        ]
    )
