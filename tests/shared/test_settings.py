"""Settings: per-service databases, development defaults refused outside development mode, and
no service without its Kafka credentials."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from services.binding.config import BindingSettings
from services.risk.config import RiskSettings
from services.verification.config import VerificationSettings
from shared.cli.services import APPS, settings_class
from shared.kafka_security import KafkaSecurity, SettingMissing

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


# --------------------------------------------------------------------------- Kafka credentials


def factories() -> dict[str, Callable[..., FastAPI]]:
    return {service: importlib.import_module(f"services.{service}.main").create_app for service in APPS}


def kafka_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Kafka credentials from a developer's shell."""
    for name in [name for name in os.environ if name.startswith("KAFKA_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("mode", ["development", "production"])
@pytest.mark.parametrize("service", APPS)
def test_an_app_without_its_kafka_password_refuses_to_start_in_every_mode(service: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_clean(monkeypatch)
    cls = settings_class(service)
    settings = cls(env=mode, **{name: STRONG for name in cls.development_secrets})
    # The secure defaults: SCRAM over TLS, as the service's own principal; no fallback to PLAINTEXT.
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_sasl_username) == ("SASL_SSL", "SCRAM-SHA-512", service)
    with pytest.raises(SettingMissing) as refused:
        factories()[service](settings)
    message = str(refused.value)
    assert message.startswith("KAFKA_SASL_PASSWORD is not set: ") and f"the {service} service" in message and "\n" not in message
    assert refused.value.code == message, "as a SystemExit, the process exits 1 with this line"


def test_a_password_gives_the_service_its_principal_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_clean(monkeypatch)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p" * 43)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/unbind/kafka-ca.pem")
    assert RiskSettings().kafka_security() == KafkaSecurity("risk", "p" * 43, "SASL_SSL", "SCRAM-SHA-512", "/etc/unbind/kafka-ca.pem")
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        RiskSettings(kafka_security_protocol="PLAINTEXT")


def test_a_service_process_without_its_password_exits_with_one_line(tmp_path: Path) -> None:
    """As `unbind up`, compose and Kubernetes start it: uvicorn's app factory, no traceback."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "UNBIND_"))}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "services.notification.main:create_app", "--port", "0"],
        env={**env, "UNBIND_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "KAFKA_SASL_PASSWORD is not set: the notification service (Kafka principal 'notification') cannot authenticate to Kafka "
        "without it (`unbind up` sets it; compose and Kubernetes read it from a secret)"
    ]
