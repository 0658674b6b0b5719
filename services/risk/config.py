"""Settings of the risk service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import ServiceSettings


class RiskSettings(ServiceSettings):
    service_name = "risk"
    default_port = 8003

    database_url: str = Field("", validation_alias="UNBIND_RISK_DATABASE_URL")
    # Where notification's internal API is: a reviewer's message to a customer goes there.
    notification_url: str = "http://127.0.0.1:8004"
    # Score thresholds: below step_up -> allow; then step_up, review, deny (which goes to review too).
    threshold_step_up: int = Field(40, ge=1, le=100)
    threshold_review: int = Field(65, ge=1, le=100)
    threshold_deny: int = Field(85, ge=1, le=100)
    # The longest window a dry run of a rule set replays (`POST /v1/rules/simulate`).
    rules_simulation_max_days: int = Field(30, ge=1, le=366)
    # A reviewer's claim on a case lapses after this, unless renewed; a case waiting longer than the SLA is
    # late.
    review_claim_minutes: int = Field(15, ge=1, le=24 * 60)
    review_sla_minutes: int = Field(120, ge=1)
    # Four eyes: denying a request whose assessment scored at least this takes a second, different reviewer.
    review_second_reviewer_score: int = Field(80, ge=0, le=100)
    # The anomaly model (services/risk/model.py), in shadow until a rule names `model_score`. Its shape:
    # a change of any of these four starts learning over (the checkpoint no longer fits).
    model_trees: int = Field(25, ge=1, le=100)
    model_height: int = Field(8, ge=2, le=12)
    # Requests per window: the model scores from its first completed window, and a new window is a new
    # version.
    model_window: int = Field(250, ge=8, le=1_000_000)
    model_seed: int = Field(2026, ge=0)
    # Learning runs in batches at most this often; an instance takes up a version another one
    # trained within model_sync_seconds.
    model_train_seconds: float = Field(5.0, gt=0, le=3600)
    model_sync_seconds: float = Field(5.0, gt=0, le=3600)
    # The population stability index of a window's scores against the baseline's above which the
    # score distribution has shifted (logged; the alert rule reads the same gauge).
    model_drift_threshold: float = Field(0.25, gt=0)
    # The largest synthetic population one evaluation replays (`POST /v1/model/evaluations`).
    evaluation_max_population: int = Field(20_000, ge=100)

    @model_validator(mode="after")
    def _ordered_thresholds(self) -> RiskSettings:
        if not self.threshold_step_up < self.threshold_review < self.threshold_deny:
            raise ValueError("risk thresholds must satisfy step_up < review < deny")
        return self
