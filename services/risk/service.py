"""Business rules of the risk service: behaviour signals, an explainable score, rules, a decision,
the review queue and account anomaly flags.

Every event on the topic is kept as behaviour (`observe`); `UnbindRequested` is scored:
score = the sum of the weights of the signals present (table `SIGNALS`), capped at 100. Rules
(`rules.py`) decide first, over the signals, the score and the request's device id and client IP;
without a matching rule the thresholds decide: below step_up -> allow [otp]; below review -> step_up
[otp, biometric]; below deny -> review; else deny. The level follows the score: below step_up
normal, below review elevated, else highest. Rule sets are versions (a save or a rollback adds
one); a candidate set can be replayed over recent assessments first (a dry run).

No machine says a final no: a deny (score or rule) goes to review like a review does, and only a
person denies, choosing a reason from a fixed list; an approval asks for both methods. A request
that reaches review flags the account; an open flag is itself a signal, and it closes when ops
approve the review of the request that raised it. A customer's enrolled device keys
(`DeviceEnrolled`, `DeviceRevoked`) are known devices.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy.exc import IntegrityError

from services.risk import evaluation, repository
from services.risk.config import RiskSettings
from services.risk.features import DEFAULT_TIME_ZONE, FEATURES, Behaviour, features_of, signals_of
from services.risk.model import NAME as MODEL_NAME
from services.risk.model import AnomalyModel, CheckpointMismatch, ModelParameters
from services.risk.models import (
    AccountFlag,
    ApprovalReason,
    Assessment,
    CustomerProfile,
    DisputeFinding,
    KnownDevice,
    ModelState,
    ObservedEvent,
    Review,
    ReviewStatus,
    RuleSet,
)
from services.risk.rules import (
    DEFAULT_RULES,
    InvalidRule,
    Rule,
    model_thresholds,
    names_model_score,
    parse_rules,
)
from services.risk.schemas import (
    AssessmentOut,
    CustomerRiskOut,
    EvaluationIn,
    EvaluationOut,
    FeatureOut,
    FirstDecisionOut,
    FlagList,
    FlagOut,
    KnownDeviceOut,
    ModelOut,
    ProfileIn,
    ProfileOut,
    ReviewDecisionIn,
    ReviewList,
    ReviewOut,
    ReviewReasons,
    RuleSetOut,
    RuleVersionList,
    RuleVersionOut,
    SimulatedChange,
    SimulationIn,
    SimulationOut,
    Transition,
)
from services.risk.scoring import SIGNALS, decide, rule_facts, score
from shared.auth import Principal
from shared.db import utcnow
from shared.events import (
    BindingEvent,
    DenialReason,
    DeviceEnrolled,
    DeviceRevoked,
    ReviewDecided,
    ReviewOrigin,
    ReviewOutcome,
    RiskAssessed,
    RiskDecision,
    UnbindAppealed,
    UnbindCancelled,
    UnbindDisputed,
    UnbindExpired,
    UnbindRequested,
    VerificationMethod,
)
from shared.problems import Problem, conflict, not_found
from shared.uow import UnitOfWork

log = logging.getLogger(__name__)

REQUIRED_METHODS = {
    RiskDecision.ALLOW: [VerificationMethod.OTP],
    RiskDecision.STEP_UP: [VerificationMethod.OTP, VerificationMethod.BIOMETRIC],
    RiskDecision.REVIEW: [],
    RiskDecision.DENY: [],
}
# A request a human has looked at still proves both factors before anything is unbound.
APPROVED_AFTER_REVIEW = [VerificationMethod.OTP, VerificationMethod.BIOMETRIC]


class RiskMetrics:
    """Collectors of one risk app, on its registry."""

    def __init__(self, registry: CollectorRegistry):
        self.decisions = Counter(
            "unbind_risk_decisions",
            "Risk assessments committed, by decision (allow, step_up, review, deny)",
            ["decision"],
            registry=registry,
        )
        self.reviews = Counter(
            "unbind_risk_reviews",
            "Reviews decided by ops, committed, by outcome (approve, deny)",
            ["outcome"],
            registry=registry,
        )
        self.model_scores = Histogram(
            "unbind_risk_model_score",
            "Anomaly model scores of committed assessments (0: like most requests, 1: like none)",
            buckets=[round(0.1 * step, 1) for step in range(1, 11)],
            registry=registry,
        )
        self.model_cpu = Counter(
            "unbind_risk_model_cpu_seconds",
            "CPU time spent building features, scoring and explaining committed assessments",
            registry=registry,
        )
        self.model_version = Gauge(
            "unbind_risk_model_version",
            "The anomaly model version this instance scores with",
            registry=registry,
        )
        self.model_drift = Gauge(
            "unbind_risk_model_score_psi",
            "Population stability index of the last window's scores against the baseline window's",
            registry=registry,
        )


# The model's inputs want to know "many IPs in a day", not every one of them.
RECENT_IPS_KEPT = 20
# Learning takes at most this many queued requests per transaction.
LEARNING_BATCH = 1000


@dataclass(frozen=True)
class ShadowScore:
    """What the anomaly model said of one request (score, version and explanation None while it
    warms up)."""

    features: dict[str, float]
    score: float | None = None
    version: int | None = None
    explanation: list[dict[str, Any]] | None = None


class ModelKeeper:
    """The anomaly model this instance scores with, at the version stored in risk's database, and the
    learner that trains the next versions from the learning queue. Scoring never sees a learned
    request before the transaction that learned it committed."""

    def __init__(self, settings: RiskSettings, metrics: RiskMetrics):
        self.parameters = ModelParameters(
            trees=settings.model_trees,
            height=settings.model_height,
            window=settings.model_window,
            seed=settings.model_seed,
        )
        self.settings = settings
        self.metrics = metrics
        self.scorer = AnomalyModel(self.parameters)
        self.learner = AnomalyModel(self.parameters)
        # How many requests the learner had learned at its last commit or load.
        self.committed = 0
        self.synced_at = -math.inf
        # Set when this instance queued a request to learn: the learner wakes for it.
        self.queued = asyncio.Event()
        self.queued.set()

    async def assess(self, uow: UnitOfWork, behaviour: Behaviour) -> ShadowScore:
        """Score and explain a request with the current version; its assessment, once committed, is
        learned next (`to_learn`)."""
        await self._sync(uow)
        started = time.process_time()
        features = features_of(behaviour)
        model = self.scorer
        score = model.score(features)
        shadow = ShadowScore(features=features)
        if score is not None:
            explanation = [asdict(item) for item in model.explain(features, score)]
            shadow = ShadowScore(features, score, model.version, explanation)
        spent = time.process_time() - started

        def committed() -> None:
            self.queued.set()
            self.metrics.model_cpu.inc(spent)
            if score is not None:
                self.metrics.model_scores.observe(score)

        uow.after_commit(committed)
        return shadow

    async def _sync(self, uow: UnitOfWork) -> None:
        """Take up the stored version if another instance trained a newer one (checked at most every
        model_sync_seconds)."""
        if time.monotonic() - self.synced_at < self.settings.model_sync_seconds:
            return
        self.synced_at = time.monotonic()
        stored = await repository.model_version(uow.session, MODEL_NAME)
        if stored is None or stored.fingerprint != self.parameters.fingerprint():
            return
        if stored.version != self.scorer.version:
            row = await repository.model_state(uow.session, MODEL_NAME)
            if row is not None:
                self._load(self.scorer, row.state)

    def _load(self, model: AnomalyModel, state: dict) -> bool:
        try:
            model.load(state)
        except CheckpointMismatch as exc:
            log.error("the anomaly model's checkpoint was not loaded", extra={"error": str(exc)})
            return False
        if model is self.learner:
            self.committed = model.learned
        else:
            self._publish(model)
        return True

    def _publish(self, model: AnomalyModel) -> None:
        self.metrics.model_version.set(model.version)
        if model.drift is not None:
            self.metrics.model_drift.set(model.drift)

    async def learn(self, uow: UnitOfWork) -> int:
        """Learn the queued requests, oldest first, and checkpoint: one transaction, taken in turns by
        the instances (the checkpoint row is locked). Returns how many were learned."""
        session = uow.session
        row = await repository.model_state(session, MODEL_NAME, for_update=True)
        queued = await repository.to_learn(session, LEARNING_BATCH)
        if not queued:
            return 0
        # Only the learning itself, not the awaited queries (process time counts every task's CPU).
        started = time.process_time()
        learner = self.learner
        if row is None or row.fingerprint != self.parameters.fingerprint():
            if row is not None and row.fingerprint:
                log.warning("the anomaly model's shape changed: learning starts over")
            if learner.learned:
                learner = self.learner = AnomalyModel(self.parameters)
        # The learner goes on from the checkpoint only if it is that checkpoint: not if another instance
        # learned since, nor if a round of its own learned and then rolled back.
        elif not row.learned == learner.learned == self.committed and not self._load(learner, row.state):
            learner = self.learner = AnomalyModel(self.parameters)
        was = learner.version
        for request in queued:
            learner.learn(request.features, request.model_score)
        checkpoint = learner.checkpoint()
        uow.after_commit(partial(self.metrics.model_cpu.inc, time.process_time() - started))
        await repository.mark_learned(session, [request.request_id for request in queued])
        if row is None:
            row = ModelState(name=MODEL_NAME)
            session.add(row)
        row.fingerprint, row.version, row.learned = (
            checkpoint["fingerprint"],
            learner.version,
            learner.learned,
        )
        row.state, row.updated_at = checkpoint, utcnow()
        uow.after_commit(partial(setattr, self, "committed", learner.learned))
        if learner.version != was:
            uow.after_commit(lambda: self._took_new_version(checkpoint))
        return len(queued)

    def _took_new_version(self, checkpoint: dict) -> None:
        self._load(self.scorer, checkpoint)
        drift = self.scorer.drift
        log.info("anomaly model version", extra={"version": self.scorer.version, "drift": drift})
        if drift is not None and drift > self.settings.model_drift_threshold:
            log.warning(
                "the anomaly model's score distribution shifted",
                extra={"psi": drift, "threshold": self.settings.model_drift_threshold},
            )


@dataclass(frozen=True)
class RiskDeps:
    settings: RiskSettings
    clock: Callable[[], datetime]
    metrics: RiskMetrics
    # Notification's internal API, which takes the reviewers' messages to customers.
    notifier: httpx.AsyncClient
    model: ModelKeeper


def observe(uow: UnitOfWork, event: BindingEvent, at: datetime | None = None) -> None:
    """Keep an event about a customer as behaviour."""
    uow.session.add(
        ObservedEvent(
            user_id=event.user_id,
            event_type=type(event).__name__,
            request_id=event.request_id,
            occurred_at=at or utcnow(),
        )
    )


async def record_behaviour(uow: UnitOfWork, deps: RiskDeps, event: BindingEvent) -> None:
    """An event about a binding that asks nothing more of risk."""
    observe(uow, event, deps.clock())


async def collect_behaviour(uow: UnitOfWork, event: UnbindRequested, now: datetime) -> Behaviour:
    """What risk knows of the customer as the request arrives (before it is itself remembered)."""
    session = uow.session
    devices = await repository.known_devices_of(session, event.user_id)
    device = next(
        (d for d in devices if d.device_id == event.device_id and d.revoked_at is None and event.device_id),
        None,
    )
    profile = await session.get(CustomerProfile, event.user_id)
    day, month = now - timedelta(hours=24), now - timedelta(days=30)
    windows = {
        "UnbindRequested": day,
        "VerificationFailed": day,
        "BiometricCounterRegressed": day,
        "UnbindRejected": month,
        "UnbindAppealed": month,
    }
    counts = await repository.count_recent_events(
        session, event.user_id, windows, excluding=("UnbindRequested", event.request_id)
    )
    ips = set(_recent_ips(profile, since=day)) | ({event.client_ip} if event.client_ip else set())
    return Behaviour(
        at=now,
        time_zone=(profile and profile.time_zone) or DEFAULT_TIME_ZONE,
        device_given=bool(event.device_id),
        device_first_seen_at=device.first_seen_at if device else None,
        devices_30d=sum(1 for d in devices if d.device_id != event.device_id and d.first_seen_at >= month),
        account_opened_at=profile.account_opened_at if profile else None,
        phone_changed_at=profile.phone_changed_at if profile else None,
        ip_changed=bool(
            profile and profile.last_ip and event.client_ip and profile.last_ip != event.client_ip
        ),
        ips_24h=max(1, len(ips)),
        requests_24h=counts["UnbindRequested"],
        failed_verifications_24h=counts["VerificationFailed"],
        counter_regressions_24h=counts["BiometricCounterRegressed"],
        rejections_30d=counts["UnbindRejected"],
        appeals_30d=counts["UnbindAppealed"],
        instalment_due_soon="INSTALMENT_DUE_SOON" in event.acknowledged,
        account_flagged=await repository.active_flag(session, event.user_id) is not None,
        monthly_instalment=event.monthly_instalment,
    )


def _recent_ips(profile: CustomerProfile | None, since: datetime) -> dict[str, str]:
    """The client IPs of the customer's requests seen since `since` (ISO instants)."""
    seen = (profile.recent_ips if profile else None) or {}
    return {ip: at for ip, at in seen.items() if datetime.fromisoformat(at) >= since}


async def current_rules(uow: UnitOfWork) -> tuple[int, list[Rule]]:
    latest = await repository.latest_rule_set(uow.session)
    raw = latest.rules if latest else DEFAULT_RULES
    return (latest.version if latest else 0), parse_rules(raw, SIGNALS)


async def assess(uow: UnitOfWork, deps: RiskDeps, event: UnbindRequested) -> None:
    session = uow.session
    if await repository.get_assessment(session, event.request_id) is not None:
        return
    now = deps.clock()
    behaviour = await collect_behaviour(uow, event, now)
    signals = signals_of(behaviour)
    shadow = await deps.model.assess(uow, behaviour)
    observe(uow, event, now)
    await _remember_context(uow, event, now, new_device=bool(signals["device_unknown"]))
    total, reasons = score(signals)
    version, rules = await current_rules(uow)
    decision, level, rule = decide(
        deps.settings, total, rule_facts(signals, event.device_id, event.client_ip, shadow.score), rules
    )
    machine_decision = decision
    why = f"rule '{rule.name}'" if rule else f"score {total}"
    if decision == RiskDecision.DENY:
        # No machine says a final no: a person decides, and an approval asks for both methods.
        decision, why = RiskDecision.REVIEW, f"deny by {why}"
    if decision == RiskDecision.REVIEW:
        session.add(
            AccountFlag(
                user_id=event.user_id, reason=f"review by {why}", request_id=event.request_id, flagged_at=now
            )
        )
        open_review(uow, event, ReviewOrigin.RISK, at=now)
    methods = REQUIRED_METHODS[decision]
    # Counted once the assessment is durable: a rolled-back (then retried) one would count twice.
    uow.after_commit(deps.metrics.decisions.labels(decision.value).inc)
    session.add(
        Assessment(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            signals=signals,
            score=total,
            level=level,
            decision=decision,
            machine_decision=machine_decision,
            reasons=[reason.model_dump() for reason in reasons],
            required_methods=list(methods),
            rules_version=version,
            matched_rule=rule.name if rule else None,
            device_id=event.device_id,
            client_ip=event.client_ip,
            created_at=now,
            features=shadow.features,
            model_score=shadow.score,
            model_version=shadow.version,
            model_explanation=shadow.explanation,
            to_learn=True,
        )
    )
    uow.emit(
        RiskAssessed(
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            score=total,
            level=level,
            decision=decision,
            reasons=reasons,
            required_methods=methods,
        )
    )


async def _remember_context(
    uow: UnitOfWork, event: UnbindRequested, now: datetime, *, new_device: bool
) -> None:
    # A revoked key is not learned back from a request: only enrolling it again makes it known.
    if (
        new_device
        and event.device_id
        and await uow.session.get(KnownDevice, (event.user_id, event.device_id)) is None
    ):
        uow.session.add(KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now))
    if event.client_ip:
        profile = await uow.session.get(CustomerProfile, event.user_id)
        if profile is None:
            profile = CustomerProfile(user_id=event.user_id)
            uow.session.add(profile)
        profile.last_ip = event.client_ip
        # A new dict, so the JSON column sees the change.
        seen = {**_recent_ips(profile, since=now - timedelta(hours=24)), event.client_ip: now.isoformat()}
        profile.recent_ips = dict(sorted(seen.items(), key=lambda item: item[1])[-RECENT_IPS_KEPT:])


async def learn_device(uow: UnitOfWork, deps: RiskDeps, event: DeviceEnrolled) -> None:
    """An enrolled (active) device key is the customer's own: a request from it is not from a new device."""
    now = deps.clock()
    device = await uow.session.get(KnownDevice, (event.user_id, event.device_id))
    if device is None:
        uow.session.add(
            KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now, enrolled_at=now)
        )
    else:
        device.enrolled_at, device.revoked_at = now, None


async def forget_device(uow: UnitOfWork, deps: RiskDeps, event: DeviceRevoked) -> None:
    now = deps.clock()
    device = await uow.session.get(KnownDevice, (event.user_id, event.device_id))
    if device is None:
        uow.session.add(
            KnownDevice(user_id=event.user_id, device_id=event.device_id, first_seen_at=now, revoked_at=now)
        )
    else:
        device.revoked_at = now


async def get_assessment(uow: UnitOfWork, request_id: str) -> AssessmentOut:
    assessment = await repository.get_assessment(uow.session, request_id)
    if assessment is None:
        raise not_found("The assessment")
    return AssessmentOut.model_validate(assessment, from_attributes=True)


# --- rules ---------------------------------------------------------------------------------


DEFAULTS_BY = "default"
# How many versions the history lists (newest first); older ones stay readable one by one.
VERSIONS_LISTED = 500
SIMULATION_EXAMPLES = 20


def rules_etag(version: int) -> str:
    return f'"rules-v{version}"'


def _defaults() -> RuleSetOut:
    return RuleSetOut(version=0, rules=DEFAULT_RULES, created_by=DEFAULTS_BY, created_at=None)


async def get_rules(uow: UnitOfWork) -> RuleSetOut:
    """The set in force: the newest version, or the built-in defaults before any was saved."""
    latest = await repository.latest_rule_set(uow.session)
    return RuleSetOut.model_validate(latest, from_attributes=True) if latest else _defaults()


async def get_rule_version(uow: UnitOfWork, version: int) -> RuleSetOut:
    if version == 0:
        return _defaults()
    rule_set = await repository.get_rule_set(uow.session, version)
    if rule_set is None:
        raise not_found(f"Rules version {version}")
    return RuleSetOut.model_validate(rule_set, from_attributes=True)


async def list_rule_versions(uow: UnitOfWork) -> RuleVersionList:
    versions = [*await repository.list_rule_sets(uow.session, VERSIONS_LISTED), _defaults()]
    return RuleVersionList(
        items=[
            RuleVersionOut(
                version=item.version,
                created_by=item.created_by,
                created_at=item.created_at,
                comment=item.comment,
                restored_from=item.restored_from,
                rule_count=len(item.rules),
            )
            for item in versions
        ]
    )


def _valid(raw: list[dict[str, Any]]) -> list[Rule]:
    try:
        return parse_rules(raw, SIGNALS)
    except InvalidRule as exc:
        raise Problem(
            422, "invalid-rules", "Invalid rule set", f"{exc}. The rules in force are unchanged."
        ) from exc


async def _in_force_for_change(uow: UnitOfWork, if_match: str | None) -> RuleSetOut:
    """The set in force, which a change must name (`If-Match`), so that no one overwrites a change
    they never saw."""
    current = await get_rules(uow)
    if if_match is None:
        detail = (
            "Send `If-Match` with the ETag of the rules you changed (GET /v1/rules), so a change made "
            "meanwhile is not overwritten."
        )
        raise Problem(428, "precondition-required", "Precondition required", detail)
    if rules_etag(current.version) not in (tag.strip() for tag in if_match.split(",")):
        detail = (
            f"The rules changed since you read them: version {current.version} is in force. Read them again "
            f"and redo your change on top."
        )
        raise Problem(
            412,
            "rules-changed",
            "Rules changed",
            detail,
            headers={"ETag": rules_etag(current.version)},
            current_version=current.version,
        )
    return current


async def _save(
    uow: UnitOfWork,
    principal: Principal,
    current: RuleSetOut,
    raw: list[dict[str, Any]],
    *,
    comment: str | None,
    restored_from: int | None = None,
) -> RuleSetOut:
    """The next version after `current`, in force at once; `current` itself when `raw` is its set."""
    _valid(raw)
    if raw == current.rules:
        return current
    rule_set = RuleSet(
        version=current.version + 1,
        rules=raw,
        created_by=principal.subject,
        created_at=utcnow(),
        comment=comment,
        restored_from=restored_from,
    )
    uow.session.add(rule_set)
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # another change took this version number first
        detail = "The rules changed while you saved: read them again and redo your change on top."
        raise Problem(412, "rules-changed", "Rules changed", detail) from exc
    return RuleSetOut.model_validate(rule_set, from_attributes=True)


async def replace_rules(
    uow: UnitOfWork,
    principal: Principal,
    raw: list[dict[str, Any]],
    *,
    if_match: str | None,
    comment: str | None = None,
) -> RuleSetOut:
    """Validate the whole set; on success it becomes the next version, in force at once."""
    current = await _in_force_for_change(uow, if_match)
    return await _save(uow, principal, current, raw, comment=comment)


async def restore_rules(
    uow: UnitOfWork, principal: Principal, version: int, *, if_match: str | None, comment: str | None = None
) -> RuleSetOut:
    """Roll back: a new version holding the rules of `version` (history is never rewritten)."""
    current = await _in_force_for_change(uow, if_match)
    source = await get_rule_version(uow, version)
    return await _save(uow, principal, current, source.rules, comment=comment, restored_from=version)


async def simulate_rules(uow: UnitOfWork, deps: RiskDeps, body: SimulationIn) -> SimulationOut:
    """Replay a candidate set over the assessments of the last days (their stored facts and score,
    today's thresholds) and compare with what the machine decided then; nothing is written."""
    longest = deps.settings.rules_simulation_max_days
    if body.days > longest:
        raise Problem(
            422,
            "window-too-long",
            "Window too long",
            f"A dry run replays at most {longest} days.",
            max_days=longest,
        )
    candidate = _valid(body.rules)
    transitions: Tally[tuple[str, str]] = Tally()
    examples: list[SimulatedChange] = []
    replayed = 0
    async for row in repository.assessments_since(uow.session, deps.clock() - timedelta(days=body.days)):
        replayed += 1
        decision, _, rule = decide(
            deps.settings,
            row.score,
            rule_facts(row.signals, row.device_id, row.client_ip, row.model_score),
            candidate,
        )
        if decision == row.machine_decision:
            continue
        transitions[(row.machine_decision, decision.value)] += 1
        if len(examples) < SIMULATION_EXAMPLES:
            examples.append(
                SimulatedChange(
                    request_id=row.request_id,
                    user_id=row.user_id,
                    score=row.score,
                    from_=row.machine_decision,
                    to=decision.value,
                    rule=rule.name if rule else None,
                )
            )
    return SimulationOut(
        days=body.days,
        assessments=replayed,
        changed=transitions.total(),
        transitions=[
            Transition(from_=before, to=after, count=count)
            for (before, after), count in sorted(transitions.items(), key=lambda item: (-item[1], item[0]))
        ],
        examples=examples,
        rules_version=(await get_rules(uow)).version,
    )


# --- the anomaly model ---------------------------------------------------------------------

# The model's threshold an evaluation measures when no rule in force names one.
DEFAULT_MODEL_THRESHOLD = 0.8


async def model_status(uow: UnitOfWork, deps: RiskDeps) -> ModelOut:
    keeper, settings = deps.model, deps.settings
    row = await repository.model_state(uow.session, MODEL_NAME)
    # A checkpoint of another shape (or none yet) is nothing this code has learned.
    stored = row if row is not None and row.fingerprint == keeper.parameters.fingerprint() else None
    _, rules = await current_rules(uow)
    return ModelOut(
        name=MODEL_NAME,
        version=stored.version if stored else 0,
        learned=stored.learned if stored else 0,
        queued=await repository.count_to_learn(uow.session),
        window=settings.model_window,
        trees=settings.model_trees,
        height=settings.model_height,
        drift=stored.state.get("drift") if stored else None,
        drift_threshold=settings.model_drift_threshold,
        promoted_by=[rule.name for rule in rules if names_model_score(rule)],
        features=[
            FeatureOut(name=name, description=feature.description, baseline=feature.baseline)
            for name, feature in FEATURES.items()
        ],
        updated_at=stored.updated_at if stored else None,
    )


def evaluation_window(settings: RiskSettings, body: EvaluationIn) -> int:
    """The model window the evaluation replays with, once the population is known to fit it."""
    largest = settings.evaluation_max_population
    if body.population > largest:
        raise Problem(
            422,
            "population-too-large",
            "Population too large",
            f"An evaluation replays at most {largest} requests.",
            max_population=largest,
        )
    window = body.window or settings.model_window
    if body.population < 4 * window:
        raise Problem(
            422,
            "population-too-small",
            "Population too small",
            f"The model learns in windows of {window} requests: replay at least {4 * window}, or choose a "
            f"smaller window.",
            min_population=4 * window,
        )
    return window


def run_evaluation(
    settings: RiskSettings, body: EvaluationIn, *, rules: list[Rule], rules_version: int
) -> EvaluationOut:
    """Measure `rules`, the model at its promoted threshold, and both, on a synthetic population
    (services/risk/evaluation.py): CPU only, nothing read or written."""
    window = evaluation_window(settings, body)
    threshold = body.threshold
    if threshold is None:
        promoted = [value for rule in rules for value in model_thresholds(rule.condition)]
        threshold = min(promoted, default=DEFAULT_MODEL_THRESHOLD)
    requests = evaluation.population(
        body.population, attack_share=body.attack_share, patterns=body.patterns, seed=body.seed
    )
    result = evaluation.evaluate(requests, settings=settings, rules=rules, threshold=threshold, window=window)
    return EvaluationOut(
        **asdict(result), seed=body.seed, threshold=threshold, window=window, rules_version=rules_version
    )


async def evaluate_model(uow: UnitOfWork, deps: RiskDeps, body: EvaluationIn) -> EvaluationOut:
    """The evaluation of the rules in force, off the event loop."""
    evaluation_window(deps.settings, body)
    version, rules = await current_rules(uow)
    return await asyncio.to_thread(
        partial(run_evaluation, deps.settings, body, rules=rules, rules_version=version)
    )


# --- reviews and flags ---------------------------------------------------------------------

# The fixed lists a decision's reason comes from: the customer is told only a denial's.
REVIEW_REASONS = ReviewReasons(
    approve=list(ApprovalReason), deny=list(DenialReason), close_dispute=list(DisputeFinding)
)


def open_review(uow: UnitOfWork, event: BindingEvent, origin: ReviewOrigin, at: datetime) -> None:
    uow.session.add(
        Review(
            id=str(uuid.uuid4()),
            request_id=event.request_id,
            binding_id=event.binding_id,
            user_id=event.user_id,
            origin=origin,
            status=ReviewStatus.PENDING,
            created_at=at,
        )
    )


async def open_appeal_review(uow: UnitOfWork, deps: RiskDeps, event: UnbindAppealed) -> None:
    now = deps.clock()
    observe(uow, event, now)
    # The appeal's text stays in binding (`appeal_message` of the request, for ops and its owner).
    open_review(uow, event, ReviewOrigin.APPEAL, at=now)


async def open_dispute_review(uow: UnitOfWork, deps: RiskDeps, event: UnbindDisputed) -> None:
    now = deps.clock()
    observe(uow, event, now)
    # Likewise the customer's message about the dispute (`dispute` of the request, at binding).
    open_review(uow, event, ReviewOrigin.DISPUTE, at=now)


def _holder(review: Review, now: datetime) -> str | None:
    """Who holds a pending case now: nobody once the claim lapsed."""
    live = (
        review.status == ReviewStatus.PENDING
        and review.claim_expires_at is not None
        and review.claim_expires_at > now
    )
    return review.claimed_by if live else None


def _release(review: Review) -> None:
    review.claimed_by = review.claimed_at = review.claim_expires_at = None


def review_out(review: Review, *, score: int | None, settings: RiskSettings, now: datetime) -> ReviewOut:
    waited = int(((review.decided_at or now) - review.created_at).total_seconds())
    sla = settings.review_sla_minutes * 60
    pending = review.status == ReviewStatus.PENDING
    held = _holder(review, now) is not None
    first = None
    if review.first_reviewer and review.first_reason and review.first_decided_at:
        first = FirstDecisionOut(
            reviewer=review.first_reviewer,
            decision=ReviewOutcome.DENY,
            reason=review.first_reason,
            note=review.first_note,
            customer_message=review.first_customer_message,
            decided_at=review.first_decided_at,
        )
    return ReviewOut.model_validate(review, from_attributes=True).model_copy(
        update={
            "waiting_seconds": waited,
            "claimed_by": review.claimed_by if held else None,
            "claimed_at": review.claimed_at if held else None,
            "claim_expires_at": review.claim_expires_at if held else None,
            "sla_seconds": sla,
            "late": pending and waited > sla,
            "score": score,
            "first_decision": first,
            "awaiting_second_reviewer": pending and first is not None,
        }
    )


def _now(deps: RiskDeps) -> datetime:
    return deps.clock().astimezone(UTC)


async def _review_out(uow: UnitOfWork, deps: RiskDeps, review: Review, now: datetime) -> ReviewOut:
    return review_out(
        review,
        score=await repository.score_of(uow.session, review.request_id),
        settings=deps.settings,
        now=now,
    )


async def list_reviews(
    uow: UnitOfWork,
    deps: RiskDeps,
    *,
    status: str | None,
    request_id: str | None,
    user_id: str | None,
    limit: int,
) -> ReviewList:
    now = _now(deps)
    rows = await repository.list_reviews(
        uow.session, status=status, request_id=request_id, user_id=user_id, limit=limit
    )
    return ReviewList(
        items=[review_out(review, score=score, settings=deps.settings, now=now) for review, score in rows]
    )


async def get_review(uow: UnitOfWork, deps: RiskDeps, review_id: str) -> ReviewOut:
    review = await repository.get_review(uow.session, review_id)
    if review is None:
        raise not_found("The review")
    return await _review_out(uow, deps, review, _now(deps))


async def _pending_review(uow: UnitOfWork, review_id: str) -> Review:
    review = await repository.get_review(uow.session, review_id, for_update=True)
    if review is None:
        raise not_found("The review")
    if review.status != ReviewStatus.PENDING:
        raise conflict(
            "review-closed", f"This review is already {review.status}.", review_status=review.status
        )
    return review


async def _check_four_eyes(uow: UnitOfWork, review: Review, principal: Principal) -> None:
    """Whoever denied a request (first of two, or alone) decides neither its second review nor its appeal."""
    if review.origin != ReviewOrigin.DISPUTE and principal.subject in await repository.deniers_of(
        uow.session, review.request_id
    ):
        raise conflict("four-eyes", "You denied this request: another reviewer decides this case.")


def _claimed_by_other(review: Review) -> Problem:
    return conflict(
        "review-claimed",
        f"{review.claimed_by} holds this review.",
        claimed_by=review.claimed_by,
        claim_expires_at=review.claim_expires_at,
    )


async def claim_review(uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str) -> ReviewOut:
    """Take a case (or renew one's own claim) for UNBIND_REVIEW_CLAIM_MINUTES."""
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    await _check_four_eyes(uow, review, principal)
    holder = _holder(review, now)
    if holder not in (None, principal.subject):
        raise _claimed_by_other(review)
    if holder is None:
        review.claimed_by, review.claimed_at = principal.subject, now
    review.claim_expires_at = now + timedelta(minutes=deps.settings.review_claim_minutes)
    return await _review_out(uow, deps, review, now)


async def release_review(uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str) -> ReviewOut:
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    holder = _holder(review, now)
    if holder is None:
        raise conflict("not-claimed", "Nobody holds this review.")
    if holder != principal.subject:
        raise _claimed_by_other(review)
    _release(review)
    return await _review_out(uow, deps, review, now)


def _check_decision(origin: ReviewOrigin, body: ReviewDecisionIn, message: str | None) -> None:
    """Every decision takes a reason from the list that fits it; `other` says why in the message to the
    customer."""
    allowed = (
        REVIEW_REASONS.close_dispute
        if origin == ReviewOrigin.DISPUTE
        else getattr(REVIEW_REASONS, body.decision.value)
    )
    if body.reason not in allowed:
        what = (
            "closing a dispute" if origin == ReviewOrigin.DISPUTE else f"the decision {body.decision.value}"
        )
        raise Problem(
            422,
            "invalid-reason",
            "Reason required",
            f"Choose the reason for {what} from the list (`reason`).",
            allowed=[str(code) for code in allowed],
        )
    if body.reason == DenialReason.OTHER and not message:
        raise Problem(
            422,
            "customer-message-required",
            "Message required",
            "With the reason `other`, tell the customer why in `customer_message`.",
        )


async def _hand_message_to_notification(deps: RiskDeps, review: Review, message: str) -> None:
    """Give notification the reviewer's message before the decision commits: it goes out with the
    outcome once `ReviewDecided` arrives, and never travels on the topic. If notification does not
    take it, nothing is decided (503): ops try again."""
    body = {"user_id": review.user_id, "request_id": review.request_id, "message": message}
    try:
        response = await deps.notifier.put(f"/internal/v1/review-messages/{review.id}", json=body)
    except httpx.HTTPError as exc:
        log.warning(
            "notification unreachable; the decision is not recorded",
            extra={"review_id": review.id, "error": type(exc).__name__},
        )
        response = None
    if response is None or not response.is_success:
        if response is not None:
            log.warning(
                "notification refused the customer message",
                extra={"review_id": review.id, "status": response.status_code},
            )
        detail = "The message to the customer could not be handed over; nothing was decided. Try again."
        raise Problem(
            503, "notification-unavailable", "Message not delivered", detail, headers={"Retry-After": "2"}
        )


async def decide_review(
    uow: UnitOfWork, deps: RiskDeps, principal: Principal, review_id: str, *, body: ReviewDecisionIn
) -> ReviewOut:
    """Close a pending case, once, under the caller's claim. A deny of a request that scored at
    least UNBIND_REVIEW_SECOND_REVIEWER_SCORE is first only recorded (the case stays pending, nothing
    is emitted) until a second, different reviewer confirms or overrides it. An approval of a risk
    or appeal case goes on to verification with both methods and closes the account flag its request
    raised."""
    now = _now(deps)
    review = await _pending_review(uow, review_id)
    await _check_four_eyes(uow, review, principal)
    if _holder(review, now) != principal.subject:
        raise conflict(
            "claim-required", "Claim the review before deciding it.", claimed_by=_holder(review, now)
        )
    origin = ReviewOrigin(review.origin)
    denies_request = body.decision == ReviewOutcome.DENY and origin != ReviewOrigin.DISPUTE
    # A confirming deny without a message of its own sends the first reviewer's.
    message = body.customer_message or (review.first_customer_message if denies_request else None)
    _check_decision(origin, body, message)
    score = await repository.score_of(uow.session, review.request_id)
    if (
        denies_request
        and review.first_reviewer is None
        and score is not None
        and score >= deps.settings.review_second_reviewer_score
    ):
        review.first_reviewer, review.first_reason, review.first_note = (
            principal.subject,
            body.reason,
            body.note or None,
        )
        review.first_customer_message, review.first_decided_at = body.customer_message, now
        _release(review)
        return review_out(review, score=score, settings=deps.settings, now=now)
    if message:
        await _hand_message_to_notification(deps, review, message)
    approved = body.decision == ReviewOutcome.APPROVE
    review.status = ReviewStatus.APPROVED if approved else ReviewStatus.DENIED
    review.reviewer = principal.subject
    review.note = body.note or None
    review.reason = body.reason
    review.customer_message = message
    review.decided_at = now
    _release(review)
    clears_request = approved and origin != ReviewOrigin.DISPUTE
    if clears_request:
        await close_flags_of_request(uow, review)
    uow.emit(
        ReviewDecided(
            request_id=review.request_id,
            binding_id=review.binding_id,
            user_id=review.user_id,
            decision=body.decision,
            reviewer=principal.subject,
            required_methods=APPROVED_AFTER_REVIEW if clears_request else [],
            review_id=review.id,
            origin=origin,
            # Only a denial's reason is the customer's to know; the others stay in risk.
            reason=DenialReason(body.reason) if denies_request else None,
            customer_message=bool(message),
        )
    )
    uow.after_commit(deps.metrics.reviews.labels(body.decision.value).inc)
    return review_out(review, score=score, settings=deps.settings, now=now)


async def close_flags_of_request(uow: UnitOfWork, review: Review) -> None:
    """Ops approved the request: the flag its assessment raised no longer counts against the
    customer. The flag keeps who closed it, when, and by which review."""
    for flag in await repository.active_flags(uow.session, review.user_id, request_id=review.request_id):
        flag.cleared_at, flag.cleared_by, flag.cleared_reason = (
            review.decided_at,
            review.reviewer,
            f"review {review.id} approved",
        )


async def withdraw_reviews(uow: UnitOfWork, deps: RiskDeps, event: UnbindCancelled | UnbindExpired) -> None:
    """A request that ended (cancelled, expired) leaves nothing to decide: its pending review is
    withdrawn, so the queue no longer shows it and an approval can no longer be given. The event
    is behaviour too."""
    now = deps.clock()
    observe(uow, event, now)
    for review in await repository.pending_reviews_of(uow.session, event.request_id):
        review.status = ReviewStatus.WITHDRAWN
        review.decided_at = now
        review.note = f"withdrawn: {type(event).__name__}"
        _release(review)


async def customer_risk(uow: UnitOfWork, deps: RiskDeps, user_id: str) -> CustomerRiskOut:
    """What risk knows of a customer, for the ops case view."""
    session = uow.session
    profile = await session.get(CustomerProfile, user_id)
    devices = await repository.known_devices_of(session, user_id)
    return CustomerRiskOut(
        user_id=user_id,
        profile=ProfileOut.model_validate(profile, from_attributes=True) if profile else None,
        flags=[
            FlagOut.model_validate(flag, from_attributes=True)
            for flag in await repository.flags_of(session, user_id)
        ],
        known_devices=[KnownDeviceOut.model_validate(device, from_attributes=True) for device in devices],
        reviews=(
            await list_reviews(uow, deps, status=None, request_id=None, user_id=user_id, limit=200)
        ).items,
    )


async def list_flags(uow: UnitOfWork, active_only: bool) -> FlagList:
    return FlagList(
        items=[
            FlagOut.model_validate(flag, from_attributes=True)
            for flag in await repository.list_flags(uow.session, active_only)
        ]
    )


async def clear_flags(uow: UnitOfWork, principal: Principal, user_id: str) -> FlagList:
    flags = await repository.active_flags(uow.session, user_id)
    if not flags:
        raise not_found("An active flag for this customer")
    for flag in flags:
        flag.cleared_at = utcnow()
        flag.cleared_by = principal.subject
        flag.cleared_reason = "cleared by hand"
    return FlagList(items=[FlagOut.model_validate(flag, from_attributes=True) for flag in flags])


async def update_profile(uow: UnitOfWork, user_id: str, body: ProfileIn) -> None:
    """Profile facts pushed by the customer system (account opening, phone changes)."""
    profile = await uow.session.get(CustomerProfile, user_id)
    if profile is None:
        profile = CustomerProfile(user_id=user_id)
        uow.session.add(profile)
    for field in body.model_fields_set:
        setattr(profile, field, getattr(body, field))
