"""Every event on `unbind.events`, defined once, named in the past tense.

The models are the `data` of a CloudEvent (see `shared.cloudevents`); the CloudEvent `type` is the
class name. Consumers read tolerantly (unknown fields are ignored) so producers can add fields
without a lock-step deploy. No model has a field for a one-time code, a full phone number or a
full account number: what is not in the schema cannot leak onto the topic. Nor has any a field
for free text (an appeal, an ops note, a name typed by a customer): events carry ids, codes and
amounts, and the text stays in the database of the service that took it, behind its API.

An event is about a customer (`user_id`); most are about a binding too (`BindingEvent`: the request
and the binding, keyed by the binding), the others about one of the customer's device keys
(`DeviceEvent`, keyed by the customer).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.i18n import Locale

# A machine code from a fixed vocabulary (`too_many_attempts`, `INSTALMENT_DUE_SOON`): no spaces and
# no punctuation, so neither a sentence nor a number written the way people write one fits in it.
Code = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_:]{0,63}$")]
# The last four digits of an account number: all of it an event may carry.
Last4 = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]


class UnbindReason(StrEnum):
    RISK_CONTROL = "risk_control"
    FUND_PLANNING = "fund_planning"
    LENDER_CHANGE = "lender_change"
    OTHER = "other"


class RequestKind(StrEnum):
    """What a request asks of a binding: end it, or one of the gentler alternatives the impact offers."""

    UNBIND = "unbind"
    PAUSE = "pause"  # stop the auto-debit for 1 to 3 months; the binding and its benefits stay
    SWITCH = "switch"  # keep the binding and its benefits on another repayment account


class RiskDecision(StrEnum):
    ALLOW = "allow"
    STEP_UP = "step_up"
    REVIEW = "review"
    DENY = "deny"


class RiskLevel(StrEnum):
    NORMAL = "normal"
    ELEVATED = "elevated"
    HIGHEST = "highest"


class ReviewOutcome(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class ReviewOrigin(StrEnum):
    """Why a case is in ops' queue: risk asked for a human, the customer appealed a rejection, or the
    customer disputes a completed unbind."""

    RISK = "risk"
    APPEAL = "appeal"
    DISPUTE = "dispute"


class DenialReason(StrEnum):
    """The fixed list a reviewer chooses from to deny an unbind request (no machine denies one)."""

    IDENTITY_NOT_CONFIRMED = "identity_not_confirmed"
    CUSTOMER_UNREACHABLE = "customer_unreachable"
    ACCOUNT_SECURITY_RISK = "account_security_risk"
    OUTSTANDING_REPAYMENT = "outstanding_repayment"
    LENDER_REQUIREMENT = "lender_requirement"
    # Said in the reviewer's message to the customer, which is then required.
    OTHER = "other"


class DisputeReason(StrEnum):
    """Why a customer disputes a completed unbind."""

    NOT_REQUESTED_BY_ME = "not_requested_by_me"
    UNBOUND_BY_MISTAKE = "unbound_by_mistake"
    REPAYMENT_PROBLEM = "repayment_problem"
    OTHER = "other"


class VerificationMethod(StrEnum):
    OTP = "otp"
    BIOMETRIC = "biometric"


class RiskReason(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: Code
    weight: int
    # Not free text: risk renders it from the code's fixed template and a count (services/risk/service.py
    # SIGNALS); nothing a customer or ops typed reaches it.
    detail: str


class Event(BaseModel):
    """Common data of every event: the customer it is about."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    # The CloudEvent `source` path segment of the one service allowed to emit this type.
    emitted_by: ClassVar[str]
    # The field that is the CloudEvent `subject` and the record key (the events of one subject keep
    # their order on one partition), and the field that correlates the events of one flow in logs.
    subject_field: ClassVar[str] = "user_id"
    correlation_field: ClassVar[str] = "user_id"

    user_id: str

    @property
    def subject(self) -> str:
        return getattr(self, self.subject_field)

    @property
    def correlation_id(self) -> str:
        return getattr(self, self.correlation_field)


class BindingEvent(Event):
    """Common data of an event about a binding: which request (an unbind request, or the bind
    request `BindingRequested` opened), on which binding; keyed by the binding."""

    subject_field = "binding_id"
    correlation_field = "request_id"

    request_id: str
    binding_id: str


class DeviceEvent(Event):
    """Common data of an event about one of a customer's device keys; keyed by the customer. Ids
    only: the device's name is the customer's free text and stays in verification."""

    correlation_field = "device_id"

    device_id: str


class BindingRequested(BindingEvent):
    """Emitted by binding when a customer asks to bind a repayment account: it stays pending until
    they confirm the SMS code of `verification_id` (`request_id` is the id of this bind request,
    which every later event of the binding's creation and mandate carries)."""

    emitted_by = "binding"
    # Binding names the verification, so the customer sees its id at once; verification creates it.
    verification_id: str
    lender: Code
    account_last4: str
    monthly_instalment: int
    auto_debit: bool


class BindingVerified(BindingEvent):
    """Emitted by verification when the customer has confirmed the SMS code of a bind request."""

    emitted_by = "verification"
    verification_id: str


class BindingVerificationFailed(BindingEvent):
    """Emitted by verification when the verification of a bind request is locked out or has expired."""

    emitted_by = "verification"
    verification_id: str
    reason: Code


class BindingCreated(BindingEvent):
    """Emitted by binding when a customer has bound a repayment account to their credit account (its
    SMS code confirmed); the credit limit rises only once the lender confirms the mandate."""

    emitted_by = "binding"
    # The account as the customer knows it: its lender (a code of binding's lender directory) and
    # the last four digits of its number.
    lender: Code | None = None
    account_last4: str
    monthly_instalment: int
    auto_debit: bool


class MandateEvent(BindingEvent):
    """Common data of an event about the auto-debit mandate of a binding, at its lender."""

    mandate_id: str
    lender: Code
    account_last4: str


class MandateRequested(MandateEvent):
    """Emitted by binding when the auto-debit mandate of a new binding, or of a switched one's new
    account, awaits its lender's confirmation (notification sends the lender the request)."""

    emitted_by = "binding"
    monthly_instalment: int
    due_day: int


class MandateConfirmed(MandateEvent):
    """Emitted by binding when the lender has confirmed a mandate: auto-debit is on, and the credit
    limit rose by the binding's rule within the customer's cap."""

    emitted_by = "binding"
    credit_limit_before: int
    credit_limit_after: int


class MandateRefused(MandateEvent):
    """Emitted by binding when the lender has refused a mandate: the binding stays, without
    auto-debit and without a higher credit limit (a switched binding's uplift is withdrawn)."""

    emitted_by = "binding"
    reason: Code
    # None in events from before the limit was carried.
    credit_limit_before: int | None = None
    credit_limit_after: int | None = None


class UnbindRequested(BindingEvent):
    """Emitted by binding when a customer asks to unbind a binding, or (`kind`) to pause its auto-debit or
    switch its repayment account."""

    emitted_by = "binding"
    # Every kind goes through the same risk scoring and verification; only completion differs.
    kind: RequestKind = RequestKind.UNBIND
    # A pause: for how many months. A switch: the account it moves to (its lender's code, its last four
    # digits).
    pause_months: int | None = Field(None, ge=1, le=3)
    new_lender: Code | None = None
    new_account_last4: Last4 | None = None
    reason: UnbindReason
    impact_hash: str
    # Which account, for every notice about the request: the lender's code and the last four digits.
    lender: Code | None = None
    account_last4: str | None = Field(None, pattern=r"^[0-9]{4}$")
    device_id: str | None = None
    channel: Code = "app"
    # Request context for risk: the impact blockers the customer accepted, and where they called from.
    acknowledged: list[Code] = Field(default_factory=list)
    client_ip: str | None = None
    # The bound repayment account's monthly instalment, in yuan: an input of risk's anomaly model.
    monthly_instalment: int | None = Field(None, ge=0)


class RiskAssessed(BindingEvent):
    """Emitted by risk when it has scored an unbind request."""

    emitted_by = "risk"
    score: int = Field(ge=0, le=100)
    level: RiskLevel
    decision: RiskDecision
    reasons: list[RiskReason] = Field(default_factory=list)
    required_methods: list[VerificationMethod] = Field(default_factory=list)


class ReviewDecided(BindingEvent):
    """Emitted by risk when ops have closed a case: a manual review or an appeal of an unbind
    request (an approval names the methods to verify), or a dispute of a completed one."""

    emitted_by = "risk"
    decision: ReviewOutcome
    reviewer: str
    required_methods: list[VerificationMethod] = Field(default_factory=list)
    review_id: str | None = None
    origin: ReviewOrigin = ReviewOrigin.RISK
    # The reviewer's reason for a denial of an unbind request.
    reason: DenialReason | None = None
    # Whether the reviewer wrote the customer a message: risk gave its text to notification's
    # internal API before committing the decision; only this flag travels.
    customer_message: bool = False


class VerificationRequested(BindingEvent):
    """Emitted by verification when it has issued the identity challenge (never the code itself)."""

    emitted_by = "verification"
    verification_id: str
    methods: list[VerificationMethod]
    expires_at: datetime


class Verified(BindingEvent):
    """Emitted by verification when every required method of a verification has passed."""

    emitted_by = "verification"
    verification_id: str
    methods: list[VerificationMethod]


class VerificationFailed(BindingEvent):
    """Emitted by verification when a verification is locked out or has expired."""

    emitted_by = "verification"
    verification_id: str
    reason: Code


class BiometricCounterRegressed(BindingEvent):
    """Emitted by verification when a device signed with a counter that did not go up (a cloned
    key, or a replay): the attempt is refused and risk takes it as a signal."""

    emitted_by = "verification"
    verification_id: str
    device_id: str
    counter: int
    last_counter: int


class UnbindCompleted(BindingEvent):
    """Emitted by binding when the binding is unbound and its mandates are cancelled."""

    emitted_by = "binding"
    mandates_cancelled: int
    credit_limit_before: int
    credit_limit_after: int
    follow_up: list[Code] = Field(default_factory=list)


class AutoDebitPaused(BindingEvent):
    """Emitted by binding when a verified pause request has suspended a binding's auto-debit mandate until
    `resumes_on`."""

    emitted_by = "binding"
    mandate_id: str
    months: int = Field(ge=1, le=3)
    resumes_on: date


class AutoDebitResumed(BindingEvent):
    """Emitted by binding when a paused auto-debit mandate is active again (`request_id` is the pause
    request's)."""

    emitted_by = "binding"
    mandate_id: str


class RepaymentAccountSwitched(BindingEvent):
    """Emitted by binding when a verified switch request has moved a binding and its benefits to another
    account (its mandate: MandateRequested)."""

    emitted_by = "binding"
    previous_account_last4: Last4
    account_last4: Last4
    lender: Code
    mandates_cancelled: int


class UnbindRejected(BindingEvent):
    """Emitted by binding when risk, a reviewer or a failed verification has stopped the request."""

    emitted_by = "binding"
    reason: Code


class UnbindCancelled(BindingEvent):
    """Emitted by binding when the customer has cancelled an open unbind request."""

    emitted_by = "binding"


class UnbindAppealed(BindingEvent):
    """Emitted by binding when a customer appeals a rejected unbind request (it is under review again)."""

    emitted_by = "binding"


class UnbindDisputed(BindingEvent):
    """Emitted by binding when a customer disputes a completed unbind (within its window, once); the
    customer's message stays in binding."""

    emitted_by = "binding"
    reason: DisputeReason


class UnbindExpired(BindingEvent):
    """Emitted by binding when an open unbind request was not verified in time."""

    emitted_by = "binding"


class DeviceEnrolled(DeviceEvent):
    """Emitted by verification when a customer's new device key is active: its SMS code was confirmed."""

    emitted_by = "verification"


class DeviceRevoked(DeviceEvent):
    """Emitted by verification when a customer has revoked one of their device keys."""

    emitted_by = "verification"


class PreferencesChanged(Event):
    """Emitted by notification when a customer has changed the language of their messages."""

    emitted_by = "notification"
    locale: Locale


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        BindingRequested,
        BindingVerified,
        BindingVerificationFailed,
        BindingCreated,
        MandateRequested,
        MandateConfirmed,
        MandateRefused,
        UnbindRequested,
        RiskAssessed,
        ReviewDecided,
        VerificationRequested,
        Verified,
        VerificationFailed,
        BiometricCounterRegressed,
        UnbindCompleted,
        AutoDebitPaused,
        AutoDebitResumed,
        RepaymentAccountSwitched,
        UnbindRejected,
        UnbindCancelled,
        UnbindAppealed,
        UnbindExpired,
        UnbindDisputed,
        DeviceEnrolled,
        DeviceRevoked,
        PreferencesChanged,
    )
}
