"""Tables of the binding service: accounts, bindings, unbind requests and their timeline."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, utcnow
from shared.events import RequestKind
from shared.i18n import CustomerLocaleMixin
from shared.tables import messaging_tables


class Base(DeclarativeBase):
    pass


OutboxMessage, InboxEntry = messaging_tables(Base)


class CustomerLocale(CustomerLocaleMixin, Base):
    pass


class BindingStatus(StrEnum):
    PENDING = "pending"  # asked for; waiting for the customer's SMS code
    FAILED = "failed"  # its code was never confirmed (locked out or expired): nothing was bound
    ACTIVE = "active"
    UNBINDING = "unbinding"
    CHANGING = "changing"  # a request to pause its auto-debit or switch its account is open
    UNBOUND = "unbound"


class RequestStatus(StrEnum):
    PENDING_RISK = "pending_risk"
    UNDER_REVIEW = "under_review"
    PENDING_VERIFICATION = "pending_verification"
    COMPLETED = "completed"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


OPEN_REQUEST_STATUSES = (
    RequestStatus.PENDING_RISK,
    RequestStatus.UNDER_REVIEW,
    RequestStatus.PENDING_VERIFICATION,
)


class CreditAccount(Base):
    """The Huabei-style consumer credit line."""

    __tablename__ = "credit_accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    credit_limit: Mapped[int] = mapped_column(Integer)  # in yuan (CNY)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


_HELD = text("released_at IS NULL")


class RepaymentAccount(Base):
    """A mortgage repayment account held at a lender, in the customer's name."""

    __tablename__ = "repayment_accounts"
    # One account, one binding, across all customers: the database refuses a second binding of a
    # number still held, so two concurrent requests cannot both bind it.
    __table_args__ = (
        Index(
            "uq_repayment_accounts_held_number",
            "account_number",
            unique=True,
            sqlite_where=_HELD,
            postgresql_where=_HELD,
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    # A code of the lender directory (shared.lenders); a name typed before there was one stays as typed.
    lender: Mapped[str] = mapped_column(String(128))
    # The lender of the directory (shared.lenders) the name stands for: it confirms the mandate.
    lender_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Normalised (shared.account_numbers) before it is stored or compared. Kept in this service's
    # database only; every API and event shows it masked.
    account_number: Mapped[str] = mapped_column(String(32))
    # Set when its binding is unbound: the number is free to be bound again (by anyone).
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    monthly_instalment: Mapped[int] = mapped_column(Integer)  # in yuan
    due_day: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Binding(Base):
    """Links a repayment account to a credit account; its auto-debit lives in `mandates`."""

    __tablename__ = "bindings"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    credit_account_id: Mapped[str] = mapped_column(ForeignKey("credit_accounts.id"))
    repayment_account_id: Mapped[str] = mapped_column(ForeignKey("repayment_accounts.id"))
    status: Mapped[str] = mapped_column(String(16), default=BindingStatus.ACTIVE)
    # The part of the credit limit granted because of this binding (once its lender confirmed the
    # mandate); withdrawn on unbind.
    credit_limit_contribution: Mapped[int] = mapped_column(Integer, default=0)
    # The bind request (the `request_id` of the events of its creation and mandate), and the
    # verification of its SMS code; neither for bindings that predate them.
    bind_request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    verification_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # The version of the agreement the customer accepted (services/binding/agreements).
    agreement_version: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class UnbindRequest(Base):
    __tablename__ = "unbind_requests"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_unbind_requests_idempotency"),
        Index("ix_unbind_requests_binding_status", "binding_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    binding_id: Mapped[str] = mapped_column(ForeignKey("bindings.id"))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32), default=RequestStatus.PENDING_RISK, index=True)
    # unbind, or an alternative (shared.events.RequestKind): pause (for `pause_months`) or switch (to
    # `new_repayment_account_id`, whose number the request holds while it is open).
    kind: Mapped[str] = mapped_column(
        String(16), default=RequestKind.UNBIND, server_default=RequestKind.UNBIND.value
    )
    pause_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    new_repayment_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    channel: Mapped[str] = mapped_column(String(32), default="app")
    impact_hash: Mapped[str] = mapped_column(String(64))
    # The impact the customer saw when asking (ImpactOut, in their language), and the blockers they
    # accepted: what ops read in the case. None for the requests made before they were kept.
    impact_snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    acknowledged: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    idempotency_key: Mapped[str] = mapped_column(String(128))
    # Fingerprint of the request body, so a reused key with a different body is refused.
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    risk_decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    risk_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    risk_reasons: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    verification_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    verification_methods: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    verification_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    appeal_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    appealed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    follow_up: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A dispute of the completed unbind (once): its reason code, and the customer's words, which
    # stay here (the event says only that they disputed, and why by code).
    disputed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    dispute_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    dispute_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Open requests are expired by a background sweep once this passes (durable: it is a column).
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ActorType(StrEnum):
    CUSTOMER = "customer"
    SERVICE = "service"
    OPS = "ops"
    SYSTEM = "system"


class AuditEntry(Base):
    """One transition of an unbind request. Append-only: rows are inserted, never updated."""

    __tablename__ = "unbind_request_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("unbind_requests.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_status: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MandateStatus(StrEnum):
    PENDING = "pending"  # waiting for the lender's confirmation
    ACTIVE = "active"
    SUSPENDED = "suspended"  # paused by the customer until `resumes_at`
    REFUSED = "refused"  # by the lender
    CANCELLED = "cancelled"


# Mandates an unbind, a switch (or a binding that never came to be) cancels.
OPEN_MANDATE_STATUSES = (MandateStatus.PENDING, MandateStatus.ACTIVE, MandateStatus.SUSPENDED)


class Mandate(Base):
    """An auto-debit mandate: the platform collects each instalment of the bound account."""

    __tablename__ = "mandates"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    binding_id: Mapped[str] = mapped_column(ForeignKey("bindings.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32), default="auto_debit")
    status: Mapped[str] = mapped_column(String(16), default=MandateStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the lender confirmed or refused it, and the lender's code for a refusal (kept for ops).
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    refusal_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The request whose id its events carry when it is not the binding's bind request: a switch's.
    request_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    # While suspended: when the resume sweep makes it active again (a column, so a restart loses no
    # pause), and the pause request that suspended it.
    resumes_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    paused_by: Mapped[str | None] = mapped_column(String(36), nullable=True)


class LenderCallback(Base):
    """A lender's signed callback, kept by its id: the same callback again changes nothing."""

    __tablename__ = "lender_callbacks"
    __table_args__ = (UniqueConstraint("lender_id", "callback_id", name="uq_lender_callbacks_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    lender_id: Mapped[str] = mapped_column(String(64))
    callback_id: Mapped[str] = mapped_column(String(64))
    mandate_id: Mapped[str] = mapped_column(String(36))
    # SHA-256 of the body: the same id with another body is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Benefit(Base):
    """A benefit the binding grants (extra interest-free days...), lost when it is unbound."""

    __tablename__ = "benefits"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    binding_id: Mapped[str] = mapped_column(ForeignKey("bindings.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(Integer)


class Instalment(Base):
    """One monthly mortgage instalment of a repayment account."""

    __tablename__ = "instalments"
    __table_args__ = (UniqueConstraint("repayment_account_id", "period", name="uq_instalments_period"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    repayment_account_id: Mapped[str] = mapped_column(ForeignKey("repayment_accounts.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    amount: Mapped[int] = mapped_column(Integer)
    due_date: Mapped[date] = mapped_column(Date)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paid_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # auto_debit | manual
    # Idempotency-Key of the manual repayment that paid it, so a retried payment is not a new one,
    # and the fingerprint of that request, so the key reused for another payment is refused.
    payment_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    payment_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
