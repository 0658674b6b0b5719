"""Tables of the risk service: what it has seen of each customer, and its assessments."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import UTCDateTime, utcnow
from shared.tables import messaging_tables


class Base(DeclarativeBase):
    pass


OutboxMessage, InboxEntry = messaging_tables(Base)


class ObservedEvent(Base):
    """One event about a customer, kept as a behaviour signal (request counts, failures...)."""

    __tablename__ = "observed_events"
    __table_args__ = (Index("ix_observed_events_user_type_at", "user_id", "event_type", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(36))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class KnownDevice(Base):
    """A device of a customer's: one of their enrolled device keys (`DeviceEnrolled`), or one they
    asked to unbind from before. A request from any other, or from a revoked key, is a new device."""

    __tablename__ = "known_devices"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    enrolled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A revoked key is no longer the customer's: it stays unknown until enrolled again.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    # The request was cancelled or expired before anyone decided: nothing left to decide.
    WITHDRAWN = "withdrawn"


class ApprovalReason(StrEnum):
    """Why a reviewer approves an unbind request (internal: the customer is told the outcome only)."""

    IDENTITY_CONFIRMED_BY_CALL = "identity_confirmed_by_call"
    DOCUMENTS_CHECKED = "documents_checked"
    BEHAVIOUR_EXPLAINED = "behaviour_explained"
    FALSE_POSITIVE = "false_positive"


class DisputeFinding(StrEnum):
    """What a reviewer found in a customer's dispute of a completed unbind, upheld or not (internal)."""

    UNAUTHORISED_UNBIND = "unauthorised_unbind"
    BANK_ERROR = "bank_error"
    REPAYMENT_PROBLEM_RESOLVED = "repayment_problem_resolved"
    REQUESTED_BY_CUSTOMER = "requested_by_customer"
    NO_ERROR_FOUND = "no_error_found"
    REFERRED_TO_LENDER = "referred_to_lender"


class Review(Base):
    """A case for ops: a request risk sent to review, a customer's appeal of a rejection, or their
    dispute of a completed unbind."""

    __tablename__ = "reviews"
    __table_args__ = (
        Index("ix_reviews_status_created", "status", "created_at"),
        Index("ix_reviews_user_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(36), index=True)
    binding_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(16))  # shared.events.ReviewOrigin
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.PENDING)
    reviewer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # For ops only; never on the event stream.
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The decision's reason, from the list that fits it: ApprovalReason, DenialReason or DisputeFinding.
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # What the reviewer wrote to the customer (also held by notification, which delivered it).
    customer_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Who works the case: a claim lapses at `claim_expires_at` unless its holder renews it.
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claim_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A deny of a high score waits for a second reviewer: the first reviewer's deny, kept here.
    first_reviewer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    first_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    first_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Not sent: it goes to the customer only if the second reviewer confirms without a message of their own.
    first_customer_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Assessment(Base):
    __tablename__ = "assessments"
    __table_args__ = (
        # The dry run of a rule set replays the assessments of the last days.
        Index("ix_assessments_created_at", "created_at"),
        # The anomaly model's learner reads the assessments it has yet to learn, oldest first.
        Index(
            "ix_assessments_to_learn",
            "created_at",
            "request_id",
            postgresql_where=text("to_learn"),
            sqlite_where=text("to_learn"),
        ),
    )

    request_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    binding_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    signals: Mapped[dict[str, Any]] = mapped_column(JSON)
    score: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    decision: Mapped[str] = mapped_column(String(16))
    # What the rules or thresholds decided, before a deny is sent to review: what a dry run compares with.
    machine_decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    required_methods: Mapped[list[str]] = mapped_column(JSON)
    rules_version: Mapped[int] = mapped_column(Integer, default=0)
    matched_rule: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # Facts of the request that rules may name besides the signals (NULL: none, or assessed before 0007).
    device_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    client_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The anomaly model in shadow: its inputs, its score and version, and the features that pushed the
    # score up (for ops only). NULL: assessed before 0010, or while the model was warming up.
    features: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    model_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_explanation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    # True until the model has learned the request (its features and score), then NULL: the
    # assessment is its own place in the learning queue, written in the same statement.
    to_learn: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class RuleSet(Base):
    """One version of the rules; the highest version is in force. Rows are never changed."""

    __tablename__ = "rule_sets"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Why it was saved (the author's words), and the version it restores, if a rollback.
    comment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    restored_from: Mapped[int | None] = mapped_column(Integer, nullable=True)


class CustomerProfile(Base):
    """What risk knows of a customer beyond events: from the customer system, and the last IP."""

    __tablename__ = "customer_profiles"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    account_opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    phone_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An IANA zone from the customer system; NULL reads as Asia/Shanghai.
    time_zone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The client IPs of the customer's requests in the last 24 hours, each with when it was last seen.
    recent_ips: Mapped[dict[str, str] | None] = mapped_column(JSON, nullable=True)


class AccountFlag(Base):
    """An account anomaly flag: set when a request reached review (or a deny score), cleared by ops,
    or closed when ops approve the review of the request that raised it."""

    __tablename__ = "account_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str] = mapped_column(String(36))
    flagged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cleared_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Why it was cleared: by hand, or the approval of which review.
    cleared_reason: Mapped[str | None] = mapped_column(String(100), nullable=True)


class ModelState(Base):
    """The anomaly model's checkpoint (services.risk.model): every instance scores with the version
    stored here, and learning continues from it after a restart."""

    __tablename__ = "model_state"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=0)
    learned: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
