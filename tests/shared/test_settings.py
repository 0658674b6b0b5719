"""Settings: per-service databases, secure defaults, and no key or secret has a default: a service
without one refuses to start, in every mode, with one line naming the setting."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from services.binding.config import BindingSettings
from services.binding.main import create_app as create_binding_app
from services.dashboard.config import DashboardSettings
from services.dashboard.main import create_app as create_dashboard_app
from services.notification.config import NotificationSettings
from services.notification.main import create_app as create_notification_app
from services.risk.config import RiskSettings
from services.risk.main import create_app as create_risk_app
from services.verification.config import VerificationSettings
from services.verification.main import create_app as create_verification_app
from shared.bus import InMemoryBus
from shared.kafka_security import KafkaSecurity
from shared.keys import SigningKey, new_kid
from shared.settings import RefusedToStart
from tests.keys import KEYS, key_settings
from tools.services import APPS as ALL_APPS
from tools.services import settings_class

ROOT = Path(__file__).resolve().parents[2]
APPS: dict[str, tuple[Any, Any]] = {
    "binding": (BindingSettings, create_binding_app),
    "verification": (VerificationSettings, create_verification_app),
    "notification": (NotificationSettings, create_notification_app),
    "dashboard": (DashboardSettings, create_dashboard_app),
}
# What each service needs, as the setting its refusal must name.
REQUIRED = [
    ("binding", "jwks_file", "UNBIND_JWKS_URL or UNBIND_JWKS_FILE"),
    ("binding", "signing_key_file", "UNBIND_SIGNING_KEY_FILE"),
    # Every lender's callback secret: without one, that lender's confirmations could not be checked.
    ("binding", "lender_secret_example_bank", "UNBIND_LENDER_SECRET_EXAMPLE_BANK"),
    ("binding", "lender_secret_harbour_bank", "UNBIND_LENDER_SECRET_HARBOUR_BANK"),
    ("verification", "otp_hmac_key", "UNBIND_OTP_HMAC_KEY"),
    ("verification", "signing_key_file", "UNBIND_SIGNING_KEY_FILE"),
    ("notification", "institution_webhook_secret", "UNBIND_INSTITUTION_WEBHOOK_SECRET"),
    ("dashboard", "jwks_file", "UNBIND_JWKS_URL or UNBIND_JWKS_FILE"),
]


def test_production_is_the_default_mode() -> None:
    assert BindingSettings().env == "production"


@pytest.mark.parametrize("env", ["development", "production"])
@pytest.mark.parametrize(
    ("service", "missing", "setting"), REQUIRED, ids=[f"{s}-{m}" for s, m, _ in REQUIRED]
)
def test_a_service_without_a_key_refuses_to_start_naming_the_setting(
    tmp_path: Path, env: str, service: str, missing: str, *, setting: str
) -> None:
    settings_class, create_app = APPS[service]
    values = {k: v for k, v in key_settings(service, settings_class).items() if k != missing}
    settings = settings_class(env=env, var_dir=tmp_path, **values)
    with pytest.raises(RefusedToStart) as refused:
        create_app(settings, bus=InMemoryBus())
    assert setting in str(refused.value) and str(refused.value).startswith(
        f"unbind {service}: refusing to start:"
    )
    assert "\n" not in str(refused.value)


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    settings = VerificationSettings(
        var_dir=tmp_path, **key_settings("verification", VerificationSettings) | {"otp_hmac_key": "short"}
    )
    with pytest.raises(
        RefusedToStart,
        match=r"UNBIND_OTP_HMAC_KEY \(or UNBIND_OTP_HMAC_KEY_FILE\) is not set or shorter than 32",
    ):
        create_verification_app(settings, bus=InMemoryBus())


def test_a_service_refuses_another_service_s_key(tmp_path: Path) -> None:
    settings = BindingSettings(
        var_dir=tmp_path,
        **key_settings("binding", BindingSettings)
        | {"signing_key_file": KEYS.service_key_file("verification")},
    )
    with pytest.raises(RefusedToStart, match=r"not one of this service \(svc\.binding\.\*\)"):
        create_binding_app(settings, bus=InMemoryBus())


def test_a_broken_jwks_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_text("{not json")
    settings = RiskSettings(
        var_dir=tmp_path, **key_settings("risk", RiskSettings) | {"jwks_file": tmp_path / "jwks.json"}
    )
    with pytest.raises(RefusedToStart, match="UNBIND_JWKS_FILE cannot be used"):
        create_risk_app(settings, bus=InMemoryBus())


def test_the_process_ends_with_that_one_line_and_exit_code_1(tmp_path: Path) -> None:
    key = SigningKey.generate(new_kid("binding"))
    (tmp_path / "binding.jwk").write_text(json.dumps(key.private_jwk()))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "UNBIND_VAR_DIR": str(tmp_path),
        "UNBIND_SIGNING_KEY_FILE": str(tmp_path / "binding.jwk"),
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "services.binding.main:create_app",
        "--port",
        "1",
    ]
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (
            "unbind binding: refusing to start: UNBIND_JWKS_URL or UNBIND_JWKS_FILE is not set (the public "
            "keys this service trusts)"
        )
    ]


def test_server_url_gives_each_service_its_own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNBIND_DATABASE_SERVER_URL", "postgresql+asyncpg://app:pw@db.internal:5432")
    assert BindingSettings().database_url == "postgresql+asyncpg://app:pw@db.internal:5432/unbind_binding"
    assert RiskSettings().database_url == "postgresql+asyncpg://app:pw@db.internal:5432/unbind_risk"
    monkeypatch.setenv("UNBIND_RISK_DATABASE_URL", "postgresql+asyncpg://risk@other:5432/risk")
    assert RiskSettings().database_url == "postgresql+asyncpg://risk@other:5432/risk", (
        "a service's own URL wins"
    )


def test_risk_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="step_up < review < deny"):
        RiskSettings(threshold_step_up=70, threshold_review=65)


def test_a_secret_is_read_from_its_file_as_mounted_secrets_are(tmp_path: Path) -> None:
    (tmp_path / "otp").write_text("k" * 48 + "\n")
    values = {
        k: v for k, v in key_settings("verification", VerificationSettings).items() if k != "otp_hmac_key"
    }
    settings = VerificationSettings(var_dir=tmp_path, otp_hmac_key_file=tmp_path / "otp", **values)
    create_verification_app(settings, bus=InMemoryBus())
    assert settings.otp_hmac_key is not None and settings.otp_hmac_key.get_secret_value() == "k" * 48
    missing = VerificationSettings(var_dir=tmp_path, otp_hmac_key_file=tmp_path / "gone", **values)
    with pytest.raises(RefusedToStart, match="UNBIND_OTP_HMAC_KEY_FILE cannot be read"):
        create_verification_app(missing, bus=InMemoryBus())


# --------------------------------------------------------------------------- Kafka credentials


def kafka_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Kafka credentials from a developer's shell."""
    for name in [name for name in os.environ if name.startswith("KAFKA_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize("mode", ["development", "production"])
@pytest.mark.parametrize("service", ALL_APPS)
def test_an_app_without_its_kafka_password_refuses_to_start_in_every_mode(
    service: str, mode: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kafka_clean(monkeypatch)
    cls = settings_class(service)
    settings = cls(env=mode, var_dir=tmp_path, **key_settings(service, cls))
    # The secure defaults: SCRAM over TLS, as the service's own principal; no fallback to PLAINTEXT.
    assert (
        settings.kafka_security_protocol,
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
    ) == ("SASL_SSL", "SCRAM-SHA-512", service)
    with pytest.raises(RefusedToStart) as refused:
        importlib.import_module(f"services.{service}.main").create_app(settings)
    message = str(refused.value)
    assert (
        message.startswith(f"unbind {service}: refusing to start: KAFKA_SASL_PASSWORD is not set")
        and "\n" not in message
    )
    assert refused.value.code == message, "as a SystemExit, the process exits 1 with this line"


def test_a_password_gives_the_service_its_principal_over_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka_clean(monkeypatch)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "p" * 43)
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/unbind/kafka-ca.pem")
    assert RiskSettings().kafka_security() == KafkaSecurity(
        "risk", "p" * 43, "SASL_SSL", "SCRAM-SHA-512", "/etc/unbind/kafka-ca.pem"
    )
    with pytest.raises(ValidationError, match="kafka_security_protocol"):
        RiskSettings(kafka_security_protocol="PLAINTEXT")


def test_a_service_process_without_its_kafka_password_exits_with_one_line(tmp_path: Path) -> None:
    """As `unbind up`, compose and Kubernetes start it: uvicorn's app factory, no traceback."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "UNBIND_"))}
    keys = {
        "UNBIND_JWKS_FILE": str(KEYS.jwks_file),
        "UNBIND_SIGNING_KEY_FILE": str(KEYS.service_key_file("notification")),
        "UNBIND_INSTITUTION_WEBHOOK_SECRET": KEYS.secret("institution_webhook_secret"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "services.notification.main:create_app",
            "--port",
            "0",
        ],
        cwd=ROOT,
        env={**env, **keys, "UNBIND_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        (
            "unbind notification: refusing to start: KAFKA_SASL_PASSWORD is not set: no authenticating to "
            "Kafka without it (`unbind up` sets it; compose and Kubernetes read it from a secret)"
        )
    ]
