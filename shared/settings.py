"""Settings common to every service, read from the environment when an app is built.

Names: `UNBIND_ENV`, `UNBIND_VAR_DIR`, `UNBIND_JWT_SECRET`, `KAFKA_BOOTSTRAP_SERVERS`, the Kafka
client's `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
`KAFKA_SASL_PASSWORD` and `KAFKA_SSL_CAFILE`, `UNBIND_TOPIC`, `UNBIND_DLQ_TOPIC`,
`UNBIND_DATABASE_SERVER_URL` (a PostgreSQL server URL without a database: each service then uses
its own database `unbind_<service>` on it) and
`UNBIND_<SERVICE>_DATABASE_URL` (one service's full URL, which wins). Development defaults exist
so `unbind up` works out of the box; outside development mode they are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol, SettingMissing

DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-never-use-in-production"


class DevelopmentDefaultRefused(ValueError):
    """A development default was left in place outside development mode."""


class KafkaClientSettings(BaseSettings):
    """Where Kafka is and how a client authenticates to it: SASL/SCRAM as one principal, over TLS
    unless the broker is on loopback (`unbind up` sets SASL_PLAINTEXT for its local broker).
    There is no default password and no unauthenticated (PLAINTEXT) protocol to fall back to."""

    # hide_input_in_errors: a refused setting must not echo the secrets it was given.
    model_config = SettingsConfigDict(env_prefix="UNBIND_", extra="ignore", hide_input_in_errors=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    kafka_security_protocol: SecurityProtocol = Field("SASL_SSL", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol"))
    kafka_sasl_mechanism: SaslMechanism = Field("SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism"))
    kafka_sasl_username: str = Field("", validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username"))
    kafka_sasl_password: SecretStr = Field(SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password"))
    # The CA of the brokers' certificates (SASL_SSL); empty: the system's trust store.
    kafka_ssl_cafile: str = Field("", validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"))

    def kafka_client(self) -> str:
        """Who connects, for the message that refuses to start without credentials."""
        return "the unbind tools"

    def kafka_security(self) -> KafkaSecurity:
        """The client's Kafka credentials; without them it refuses to start, in every mode."""
        password = self.kafka_sasl_password.get_secret_value()
        for name, value in (("KAFKA_SASL_USERNAME", self.kafka_sasl_username), ("KAFKA_SASL_PASSWORD", password)):
            if not value:
                raise SettingMissing(
                    f"{name} is not set: {self.kafka_client()} cannot authenticate to Kafka without it "
                    "(`unbind up` sets it; compose and Kubernetes read it from a secret)"
                )
        return KafkaSecurity(self.kafka_sasl_username, password, self.kafka_security_protocol, self.kafka_sasl_mechanism, self.kafka_ssl_cafile or None)


class ServiceSettings(KafkaClientSettings):
    service_name: ClassVar[str]
    default_port: ClassVar[int]
    # Secrets whose development defaults must be replaced outside development mode.
    development_secrets: ClassVar[dict[str, str]] = {"jwt_secret": DEVELOPMENT_JWT_SECRET}

    env: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    log_level: str = "INFO"

    topic: str = "unbind.events"
    dlq_topic: str = "unbind.events.dlq"
    consumer_max_attempts: int = Field(3, ge=1, le=20)
    relay_batch_size: int = Field(500, ge=1, le=10_000)
    run_workers: bool = True
    # Consumer group on the topic; every instance of a service shares it. Default: unbind-<service>.
    consumer_group: str = ""

    database_server_url: str | None = None
    database_url: str = ""
    # Connections each instance keeps open; size instances x pool within the server's max_connections.
    database_pool_size: int = Field(20, ge=1, le=200)

    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    jwt_issuer: str = "unbind"
    jwt_ttl_seconds: int = 900

    @model_validator(mode="after")
    def _resolve_and_guard(self) -> ServiceSettings:
        self.consumer_group = self.consumer_group or f"unbind-{self.service_name}"
        # The principal the broker's ACLs know the service by.
        self.kafka_sasl_username = self.kafka_sasl_username or self.service_name
        if not self.database_url:
            if self.database_server_url:
                self.database_url = str(make_url(self.database_server_url).set(database=f"unbind_{self.service_name}").render_as_string(hide_password=False))
            else:
                self.database_url = f"sqlite+aiosqlite:///{self.var_dir / f'{self.service_name}.db'}"
        if self.env != "development":
            for name, default in self.development_secrets.items():
                value = getattr(self, name)
                secret = value.get_secret_value() if isinstance(value, SecretStr) else value
                if secret == default or len(secret) < 32:
                    raise DevelopmentDefaultRefused(
                        f"{name} is the development default (or shorter than 32 characters); set UNBIND_{name.upper()} "
                        f"to a strong secret outside development mode (UNBIND_ENV={self.env})"
                    )
        return self

    def kafka_client(self) -> str:
        return f"the {self.service_name} service (Kafka principal {self.kafka_sasl_username!r})"
