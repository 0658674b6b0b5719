"""Tables of the verification service."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, utcnow
from shared.i18n import CustomerLocaleMixin
from shared.tables import messaging_tables


class Base(DeclarativeBase):
    pass


OutboxMessage, InboxEntry = messaging_tables(Base)


class CustomerLocale(CustomerLocaleMixin, Base):
    pass


class VerificationStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"
    VOIDED = "voided"


class Purpose(StrEnum):
    """What passing a verification does: clear an unbind request, activate a device key, or bind a
    repayment account."""

    UNBIND = "unbind"
    DEVICE_ENROLMENT = "device_enrolment"
    BINDING = "binding"


class DeliveryStatus(StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Verification(Base):
    """The identity challenge of one unbind request, of one device key's enrolment or of one bind
    request (an SMS code only, for the last two): every method in `methods` must pass."""

    __tablename__ = "verifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(32), default=Purpose.UNBIND)
    # Not unique: an appealed request that is approved again gets a fresh verification. Both are
    # set for an unbind or a binding verification, neither for an enrolment (which names its device).
    request_id: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    binding_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    methods: Mapped[list[str]] = mapped_column(JSON)
    passed_methods: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=VerificationStatus.PENDING)
    failure_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # HMAC-SHA256 of the current one-time code under the server key; the code itself is never stored.
    otp_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    otp_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    otp_attempts: Mapped[int] = mapped_column(Integer, default=0)
    otp_sends: Mapped[int] = mapped_column(Integer, default=0)
    otp_delivery: Mapped[str | None] = mapped_column(String(16), nullable=True)
    otp_last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Automatic re-sends after notification failed to take a code (the customer may resend too).
    delivery_retries: Mapped[int] = mapped_column(Integer, default=0)
    next_delivery_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    biometric_failures: Mapped[int] = mapped_column(Integer, default=0)
    # What the customer saw before asking (from UnbindRequested); the device signs it.
    impact_hash: Mapped[str] = mapped_column(String(64), default="")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UnbindContext(Base):
    """What verification keeps of each unbind request (from UnbindRequested): the impact the
    customer saw, which the device signature must cover."""

    __tablename__ = "unbind_contexts"

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    impact_hash: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # When the request was made (the CloudEvent time of UnbindRequested): a device key activated
    # later cannot pass its biometric, unless it is the device the request came from.
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set when the request was cancelled or expired: no verification is issued for it any more,
    # even if an approval crosses the cancellation on the topic.
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OtpSend(Base):
    """One code sent at a customer's request, for the per-customer send limit."""

    __tablename__ = "otp_sends"
    __table_args__ = (Index("ix_otp_sends_user_sent", "user_id", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    verification_id: Mapped[str] = mapped_column(String(36))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceStatus(StrEnum):
    PENDING = "pending"  # enrolled, waiting for its SMS code
    ACTIVE = "active"
    REVOKED = "revoked"  # by the customer, or its enrolment failed: never passes again


class Device(Base):
    """A device key: an EC P-256 public key whose private half never leaves the phone's secure
    hardware and is unlocked by the fingerprint. Only an active one can pass a biometric."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(128))
    public_key_pem: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.PENDING)
    # The highest signature counter seen; a signature must carry a higher one.
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class DeviceAudit(Base):
    """What happened to a device key, by whom (the customer's id, or `system`) and when."""

    __tablename__ = "device_audit"
    __table_args__ = (Index("ix_device_audit_device_at", "device_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Challenge(Base):
    """32 random bytes issued for one verification; single use, short-lived."""

    __tablename__ = "biometric_challenges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verification_id: Mapped[str] = mapped_column(String(36), index=True)
    challenge: Mapped[str] = mapped_column(String(64), unique=True)  # base64url, no padding
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AttemptResult(StrEnum):
    """What became of one code or signature a customer tried (kept for ops; never the code itself)."""

    PASSED = "passed"
    WRONG_CODE = "wrong_code"
    LOCKED = "locked"  # refused, and the last attempt allowed: the verification failed
    CHALLENGE_INVALID = "challenge_invalid"
    DEVICE_UNKNOWN = "device_unknown"
    DEVICE_NOT_ACTIVE = "device_not_active"
    DEVICE_NEWER_THAN_REQUEST = "device_newer_than_request"
    BAD_SIGNATURE = "bad_signature"
    COUNTER_REGRESSED = "counter_regressed"


class VerificationAttempt(Base):
    """One code or device signature checked against a verification, with its result: the ops case
    lists every attempt. Append-only."""

    __tablename__ = "verification_attempts"
    __table_args__ = (Index("ix_verification_attempts_verification_at", "verification_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    verification_id: Mapped[str] = mapped_column(String(36))
    user_id: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))  # otp | biometric
    result: Mapped[str] = mapped_column(String(32))
    # The device that signed (a biometric); None for an SMS code.
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
