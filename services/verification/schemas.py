"""Request and response models of the verification API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.events import VerificationMethod
from shared.fields import FreeText


class VerificationOut(BaseModel):
    id: str
    purpose: str = Field(
        description=(
            "unbind (of `request_id`), device_enrolment (of `device_id`) or binding (the bind request "
            "`request_id` of the binding)"
        )
    )
    request_id: str | None
    device_id: str | None
    status: str
    methods: list[VerificationMethod]
    passed_methods: list[VerificationMethod]
    expires_at: datetime
    otp_expires_at: datetime | None = Field(description="When the current code stops working")
    otp_delivery: str | None = Field(
        description="sending, sent or failed: whether the SMS reached the gateway"
    )
    otp_attempts_remaining: int
    biometric_attempts_remaining: int
    failure_reason: str | None


class OtpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$", description="The 6-digit code from the SMS")


class DeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    public_key: str = Field(
        min_length=50, max_length=4000, description="PEM SubjectPublicKeyInfo of an EC P-256 key"
    )
    name: FreeText = Field(min_length=1, max_length=128)


class DeviceOut(BaseModel):
    id: str
    name: str
    status: str = Field(description="pending (until its SMS code is confirmed), active, or revoked")
    counter: int
    created_at: datetime
    activated_at: datetime | None
    revoked_at: datetime | None


class DeviceList(BaseModel):
    items: list[DeviceOut]


class DeviceAuditOut(BaseModel):
    action: str = Field(description="enrolment_requested, activated, enrolment_failed or revoked")
    actor: str = Field(description="The customer's id, or `system`")
    at: datetime


class DeviceDetail(DeviceOut):
    history: list[DeviceAuditOut]


class DeviceEnrolment(BaseModel):
    device: DeviceOut
    verification: VerificationOut = Field(
        description="Confirm the SMS code with POST /v1/verifications/{id}/otp to activate the device"
    )


class ChallengeOut(BaseModel):
    challenge: str = Field(description="32 random bytes, base64url without padding; single use")
    expires_at: datetime
    verification_id: str
    request_id: str
    impact_hash: str = Field(
        description="Signed together with the challenge (see the signed bytes in docs/api.md)"
    )


class BiometricIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    challenge: str = Field(pattern=r"^[A-Za-z0-9_-]{43}=?$")
    signature: str = Field(
        pattern=r"^[A-Za-z0-9_-]{8,200}={0,2}$", description="DER ECDSA-SHA256 signature, base64url"
    )
    counter: int = Field(ge=0, lt=2**63)


class AttemptOut(BaseModel):
    at: datetime
    method: VerificationMethod
    result: str = Field(
        description=(
            "passed, wrong_code, locked (refused, and the verification failed with it), challenge_invalid, "
            "device_unknown, device_not_active, device_newer_than_request, bad_signature or counter_regressed"
        )
    )
    device_id: str | None = Field(description="The device that signed (a biometric); null for an SMS code")


class OpsVerificationOut(BaseModel):
    """A verification as ops read it in a case: never a code, nor its hash."""

    verification_id: str
    purpose: str
    status: str
    methods: list[VerificationMethod]
    passed_methods: list[VerificationMethod]
    failure_reason: str | None
    otp_sends: int = Field(description="How many codes were sent for it")
    otp_delivery: str | None
    created_at: datetime
    expires_at: datetime
    attempts: list[AttemptOut] = Field(
        description=(
            "Every code and signature tried, oldest first (those made before attempts were kept are not "
            "listed)"
        )
    )


class OpsVerificationList(BaseModel):
    items: list[OpsVerificationOut]


class OpsDeviceList(BaseModel):
    items: list[DeviceDetail]
