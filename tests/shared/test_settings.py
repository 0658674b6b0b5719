"""Settings: per-service databases, and development defaults refused outside development mode."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.binding.config import BindingSettings
from services.risk.config import RiskSettings
from services.verification.config import VerificationSettings

STRONG = "x" * 40


def test_development_defaults_work_in_development_mode() -> None:
    settings = VerificationSettings(env="development")
    assert settings.database_url.endswith("var/verification.db")
    assert settings.consumer_group == "unbind-verification"


def test_production_refuses_the_development_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="jwt_secret is the development default"):
        BindingSettings(env="production")


def test_production_refuses_the_development_otp_key() -> None:
    with pytest.raises(ValidationError, match="otp_hmac_key is the development default"):
        VerificationSettings(env="production", jwt_secret=STRONG)


def test_production_refuses_short_secrets() -> None:
    with pytest.raises(ValidationError, match="shorter than 32"):
        BindingSettings(env="production", jwt_secret="short-secret")


def test_production_accepts_real_secrets() -> None:
    assert VerificationSettings(env="production", jwt_secret=STRONG, otp_hmac_key="k" * 48).env == "production"


def test_server_url_gives_each_service_its_own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNBIND_DATABASE_SERVER_URL", "postgresql+asyncpg://app:pw@db.internal:5432")
    assert BindingSettings().database_url == "postgresql+asyncpg://app:pw@db.internal:5432/unbind_binding"
    assert RiskSettings().database_url == "postgresql+asyncpg://app:pw@db.internal:5432/unbind_risk"
    monkeypatch.setenv("UNBIND_RISK_DATABASE_URL", "postgresql+asyncpg://risk@other:5432/risk")
    assert RiskSettings().database_url == "postgresql+asyncpg://risk@other:5432/risk", "a service's own URL wins"


def test_risk_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="step_up < review < deny"):
        RiskSettings(threshold_step_up=70, threshold_review=65)
