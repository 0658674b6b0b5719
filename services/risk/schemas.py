"""Response models of the risk API."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.risk.evaluation import Pattern
from services.risk.models import ApprovalReason, DisputeFinding
from shared.events import DenialReason, ReviewOutcome, RiskReason
from shared.fields import FreeText, Instant


class AssessmentOut(BaseModel):
    request_id: str
    binding_id: str
    user_id: str
    signals: dict[str, Any]
    score: int
    level: str
    decision: str
    machine_decision: str = Field(
        description="What the rules or thresholds decided, before a deny was sent to review"
    )
    reasons: list[RiskReason]
    required_methods: list[str]
    rules_version: int
    matched_rule: str | None
    device_id: str | None
    client_ip: str | None
    created_at: datetime
    features: dict[str, float] | None = Field(
        None, description="The anomaly model's inputs (raw values; see GET /v1/model for each one's meaning)"
    )
    model_score: float | None = Field(
        None, description="The anomaly model's score, 0 to 1 (None: assessed while the model warmed up)"
    )
    model_version: int | None = Field(None, description="The model version that scored (windows learned)")
    model_explanation: list[ContributionOut] | None = Field(
        None, description="The features that pushed the model's score up the most, largest first (ops only)"
    )


class ContributionOut(BaseModel):
    """One feature's push on a score: the score minus the score with the feature at its baseline."""

    feature: str
    value: float
    contribution: float


class FirstDecisionOut(BaseModel):
    """The first reviewer's deny of a case that takes a second reviewer."""

    reviewer: str
    decision: ReviewOutcome
    reason: str
    note: str | None
    customer_message: str | None = Field(
        None, description="Sent only if the second reviewer confirms the deny without a message of their own"
    )
    decided_at: datetime


class ReviewOut(BaseModel):
    id: str
    request_id: str
    binding_id: str
    user_id: str
    origin: str = Field(
        description=(
            "risk (the score asked for a human), appeal (of a rejection) or dispute (of a completed unbind)"
        )
    )
    status: str
    reviewer: str | None
    note: str | None = Field(description="The reviewer's note: for ops only, never on the event stream")
    reason: str | None = Field(
        None, description="The decision's reason, from the list that fits it (GET /v1/reviews/reasons)"
    )
    customer_message: str | None = Field(
        None,
        description=(
            "What the reviewer wrote to the customer (delivered by notification, never on the event stream)"
        ),
    )
    created_at: datetime
    decided_at: datetime | None
    waiting_seconds: int = Field(0, description="How long it waited (until decided, or until now)")
    claimed_by: str | None = Field(
        None, description="Who holds the case; null when unclaimed or the claim lapsed"
    )
    claimed_at: datetime | None = None
    claim_expires_at: datetime | None = None
    sla_seconds: int = Field(0, description="How long a case may wait (UNBIND_REVIEW_SLA_MINUTES)")
    late: bool = Field(False, description="Still pending and waiting longer than the SLA")
    score: int | None = Field(None, description="The score of the request's assessment; null if none")
    first_decision: FirstDecisionOut | None = Field(
        None, description="A first deny awaiting a second, different reviewer"
    )
    awaiting_second_reviewer: bool = False


class ReviewList(BaseModel):
    items: list[ReviewOut]


class ReviewReasons(BaseModel):
    """The fixed lists a decision's reason comes from."""

    approve: list[ApprovalReason] = Field(description="To approve an unbind request (a risk or appeal case)")
    deny: list[DenialReason] = Field(description="To deny an unbind request; the customer is told this one")
    close_dispute: list[DisputeFinding] = Field(
        description="To close a dispute, upheld (approve) or not (deny)"
    )


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: ReviewOutcome
    reason: str | None = Field(
        None,
        max_length=64,
        description=(
            "Required: a code from the list that fits the decision (GET /v1/reviews/reasons); another is "
            "refused with 422 `invalid-reason`"
        ),
    )
    note: FreeText = Field("", max_length=1000, description="Internal: for ops only")
    customer_message: FreeText | None = Field(
        None,
        min_length=1,
        max_length=500,
        description=(
            "Optional, sent to the customer with the final outcome (required with the reason `other`)"
        ),
    )


class RuleSetOut(BaseModel):
    version: int = Field(description="0: the built-in defaults, before ops saved any version")
    rules: list[dict[str, Any]]
    created_by: str
    created_at: datetime | None
    comment: str | None = Field(None, description="Why it was saved, in its author's words")
    restored_from: int | None = Field(None, description="The version a rollback restored")


RuleList = Annotated[
    list[dict[str, Any]],
    Field(
        max_length=100,
        description=(
            'Each {"name"?, "action": step_up|allow|deny|review, "if": "<condition>"} (docs/api.md, "Risk": '
            "and, or, not, (), in lists)"
        ),
    ),
]


class RulesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: RuleList
    comment: FreeText | None = Field(None, max_length=200, description="Why: kept with the version")


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: FreeText | None = Field(None, max_length=200)


class RuleVersionOut(BaseModel):
    version: int
    created_by: str
    created_at: datetime | None
    comment: str | None
    restored_from: int | None
    rule_count: int


class RuleVersionList(BaseModel):
    items: list[RuleVersionOut] = Field(description="Newest first; version 0 (the built-in defaults) last")


class SimulationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: RuleList
    days: int = Field(
        ge=1,
        description=(
            "Replay the assessments of the last `days` days (at most UNBIND_RULES_SIMULATION_MAX_DAYS)"
        ),
    )


class Transition(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    count: int


class SimulatedChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    request_id: str
    user_id: str
    score: int
    from_: str = Field(
        alias="from", description="The decision the machine made (a deny sent to review counts as deny)"
    )
    to: str = Field(description="The decision the candidate set makes")
    rule: str | None = Field(description="The candidate rule that decided; null: the thresholds")


class SimulationOut(BaseModel):
    days: int
    assessments: int = Field(description="Assessments replayed")
    changed: int = Field(description="How many the candidate set decides otherwise")
    transitions: list[Transition] = Field(description="Changed decisions by (from, to), most frequent first")
    examples: list[SimulatedChange] = Field(description="Up to 20 changed assessments, newest first")
    rules_version: int = Field(description="The version in force, the candidate is compared with")


class FlagOut(BaseModel):
    id: int
    user_id: str
    reason: str
    request_id: str
    flagged_at: datetime
    cleared_at: datetime | None
    cleared_by: str | None
    cleared_reason: str | None = Field(
        None,
        description=(
            "`cleared by hand`, or `review <id> approved`: closed by that approval; null while active"
        ),
    )


class FlagList(BaseModel):
    items: list[FlagOut]


class ProfileOut(BaseModel):
    account_opened_at: datetime | None
    phone_changed_at: datetime | None
    time_zone: str | None = None


class KnownDeviceOut(BaseModel):
    device_id: str
    first_seen_at: datetime
    enrolled_at: datetime | None
    revoked_at: datetime | None


class CustomerRiskOut(BaseModel):
    """What risk knows of a customer, for the case view: profile, flags, devices, reviews (newest first)."""

    user_id: str
    profile: ProfileOut | None
    flags: list[FlagOut]
    known_devices: list[KnownDeviceOut]
    reviews: list[ReviewOut]


@cache
def _time_zones() -> frozenset[str]:
    # Read from the tz database once: listing it takes about 20 ms.
    return frozenset(available_timezones())


class ProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account_opened_at: Instant | None = None
    phone_changed_at: Instant | None = None
    time_zone: str | None = Field(None, max_length=64, description="An IANA time zone, e.g. Asia/Shanghai")

    @field_validator("account_opened_at", "phone_changed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("needs a time zone")
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None and value not in _time_zones():
            raise ValueError("not an IANA time zone (e.g. Asia/Shanghai)")
        return value


class FeatureOut(BaseModel):
    name: str
    description: str
    baseline: float = Field(
        description="The value of an unremarkable request, which explanations compare with"
    )


class ModelOut(BaseModel):
    """The anomaly model: in shadow until a rule names `model_score`."""

    name: str
    version: int = Field(description="Windows learned; 0: warming up, nothing is scored yet")
    learned: int = Field(description="Requests learned in all")
    queued: int = Field(description="Requests assessed and not yet learned")
    window: int
    trees: int
    height: int
    drift: float | None = Field(
        description="Population stability index of the last window's scores against the baseline window's"
    )
    drift_threshold: float
    promoted_by: list[str] = Field(description="The rules in force that name model_score")
    features: list[FeatureOut]
    updated_at: datetime | None


class EvaluationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    population: int = Field(2000, ge=100, description="Requests (at most UNBIND_EVALUATION_MAX_POPULATION)")
    attack_share: float = Field(0.05, ge=0.01, le=0.5, description="The share of requests that are attacks")
    patterns: list[Pattern] = Field(default_factory=lambda: list(Pattern), min_length=1)
    seed: int = Field(1, ge=0, le=2**31 - 1)
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description=(
            "The model's promoted threshold (default: the lowest `model_score >=` of the rules in force, "
            "else 0.8)"
        ),
    )
    window: int | None = Field(
        None,
        ge=8,
        description="The model's window (default: the service's; the population holds at least four)",
    )


class MeasureOut(BaseModel):
    name: str
    flagged: int = Field(description="Requests sent to a person (review or deny)")
    true_positives: int
    false_positives: int
    precision: float
    recall: float
    false_positive_rate: float = Field(description="The share of normal requests sent to a person")
    recall_by_pattern: dict[str, float]


class EvaluationOut(BaseModel):
    population: int
    attacks: int = Field(description="Attacks among the measured requests")
    warmup: int = Field(description="Requests of the model's first window: not scored, not measured")
    attacks_by_pattern: dict[str, int]
    seed: int
    threshold: float
    window: int
    rules_version: int
    measures: list[MeasureOut] = Field(description="The rules alone, the model alone at the threshold, both")
    curve: list[MeasureOut] = Field(description="The model alone at other thresholds")
