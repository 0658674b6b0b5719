"""Settings common to every service, read from the environment when an app is built.

Names: `UNBIND_ENV`, `UNBIND_VAR_DIR`, `KAFKA_BOOTSTRAP_SERVERS` and the Kafka client's
`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` and
`KAFKA_SSL_CAFILE`, `UNBIND_TOPIC`, `UNBIND_DLQ_TOPIC`, `UNBIND_DATABASE_SERVER_URL` (a PostgreSQL
server URL without a database: each service then uses its own database `unbind_<service>` on it),
`UNBIND_<SERVICE>_DATABASE_URL` (one service's full URL, which wins), and the keys:
`UNBIND_JWKS_URL` and/or `UNBIND_JWKS_FILE` (the public keys the service trusts),
`UNBIND_SIGNING_KEY_FILE` (its own private key) and each service's secrets.

There is no default key, secret or Kafka password, in any mode: a service started without one refuses
to start with one line naming the setting (`RefusedToStart`). Reading settings alone needs none, so
`unbind migrate` runs with database settings only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from shared.kafka_security import KafkaSecurity, SaslMechanism, SecurityProtocol
from shared.keys import KeySet, KeySetUnavailable, SigningKey, UnusableKey, service_of_kid

MIN_SECRET_LENGTH = 32


class RefusedToStart(SystemExit):
    """A service (or tool) cannot start as configured: a key, secret or password is missing or unusable.
    A SystemExit, so the process ends with exactly this one line on stderr and exit code 1, not a
    traceback; in-process callers (tests) catch it like any error."""

    def __init__(self, who: str, reason: str):
        super().__init__(f"unbind {who}: refusing to start: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class ServiceKeys:
    """What a running service verifies with (the JWKS) and signs with (its own key, if it signs)."""

    trusted: KeySet
    signing: SigningKey | None


class KafkaClientSettings(BaseSettings):
    """Where Kafka is and how a client authenticates to it: SASL/SCRAM as one principal, over TLS
    unless the broker is on loopback (`unbind up` sets SASL_PLAINTEXT for its local broker).
    There is no default password and no unauthenticated (PLAINTEXT) protocol to fall back to."""

    # hide_input_in_errors: a refused setting must not echo the secrets it was given.
    model_config = SettingsConfigDict(env_prefix="UNBIND_", extra="ignore", hide_input_in_errors=True)

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
    kafka_security_protocol: SecurityProtocol = Field(
        "SASL_SSL", validation_alias=AliasChoices("KAFKA_SECURITY_PROTOCOL", "kafka_security_protocol")
    )
    kafka_sasl_mechanism: SaslMechanism = Field(
        "SCRAM-SHA-512", validation_alias=AliasChoices("KAFKA_SASL_MECHANISM", "kafka_sasl_mechanism")
    )
    kafka_sasl_username: str = Field(
        "", validation_alias=AliasChoices("KAFKA_SASL_USERNAME", "kafka_sasl_username")
    )
    kafka_sasl_password: SecretStr = Field(
        SecretStr(""), validation_alias=AliasChoices("KAFKA_SASL_PASSWORD", "kafka_sasl_password")
    )
    # The CA of the brokers' certificates (SASL_SSL); empty: the system's trust store.
    kafka_ssl_cafile: str = Field("", validation_alias=AliasChoices("KAFKA_SSL_CAFILE", "kafka_ssl_cafile"))

    def kafka_client(self) -> str:
        """Who connects, as the message refusing to start names it."""
        return "tools"

    def kafka_security(self) -> KafkaSecurity:
        """The client's Kafka credentials; without them it refuses to start, in every mode."""
        password = self.kafka_sasl_password.get_secret_value()
        for name, value in (
            ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
            ("KAFKA_SASL_PASSWORD", password),
        ):
            if not value:
                raise RefusedToStart(
                    self.kafka_client(),
                    f"{name} is not set: no authenticating to Kafka without it (`unbind up` sets it; compose "
                    f"and Kubernetes read it from a secret)",
                )
        return KafkaSecurity(
            self.kafka_sasl_username,
            password,
            self.kafka_security_protocol,
            self.kafka_sasl_mechanism,
            self.kafka_ssl_cafile or None,
        )


class ServiceSettings(KafkaClientSettings):
    service_name: ClassVar[str]
    default_port: ClassVar[int]
    # Whether the service signs events or service tokens, so cannot start without its private key.
    needs_signing_key: ClassVar[bool] = True
    # Secret settings the service cannot start without (each at least MIN_SECRET_LENGTH characters),
    # each given as `UNBIND_<NAME>` or read from the file `UNBIND_<NAME>_FILE` (a mounted secret).
    required_secrets: ClassVar[tuple[str, ...]] = ()

    # Secure by default: `unbind up` sets development for the stack it runs on a laptop.
    env: Literal["development", "production"] = "production"
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

    # The public keys this service trusts (identity providers' and services'), as a JWKS.
    jwks_url: str | None = None
    jwks_file: Path | None = None
    # The JWKS is loaded again after this long, and on an unknown kid at most this often.
    jwks_max_age_seconds: float = Field(300.0, gt=0)
    jwks_min_refresh_seconds: float = Field(5.0, ge=0)
    # This service's private Ed25519 JWK: it signs the events it emits and its service tokens.
    signing_key_file: Path | None = None
    # Request bodies over this are refused (413) before they are read; headers over 16 KiB always are (431).
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    jwt_issuer: str = "unbind"
    # The `aud` every token this service accepts must name. Default: unbind-<service>.
    jwt_audience: str = ""

    @model_validator(mode="after")
    def _resolve(self) -> ServiceSettings:
        self.consumer_group = self.consumer_group or f"unbind-{self.service_name}"
        self.jwt_audience = self.jwt_audience or f"unbind-{self.service_name}"
        # The principal the broker's ACLs know the service by.
        self.kafka_sasl_username = self.kafka_sasl_username or self.service_name
        if not self.database_url:
            if self.database_server_url:
                self.database_url = str(
                    make_url(self.database_server_url)
                    .set(database=f"unbind_{self.service_name}")
                    .render_as_string(hide_password=False)
                )
            else:
                self.database_url = f"sqlite+aiosqlite:///{self.var_dir / f'{self.service_name}.db'}"
        return self

    def refuse_without_keys(self) -> None:
        """Raise RefusedToStart, naming the setting, unless every key and secret the service needs is set."""
        if not self.jwks_url and not self.jwks_file:
            self._refuse(
                "UNBIND_JWKS_URL or UNBIND_JWKS_FILE is not set (the public keys this service trusts)"
            )
        if self.needs_signing_key and not self.signing_key_file:
            self._refuse("UNBIND_SIGNING_KEY_FILE is not set (this service's private signing key)")
        for name in self.required_secrets:
            value: SecretStr | None = getattr(self, name)
            source: Path | None = getattr(self, f"{name}_file")
            if value is None and source is not None:
                try:
                    value = SecretStr(source.read_text().strip())
                except OSError as exc:
                    self._refuse(f"UNBIND_{name.upper()}_FILE cannot be read: {exc.strerror or exc}")
                setattr(self, name, value)
            if value is None or len(value.get_secret_value()) < MIN_SECRET_LENGTH:
                self._refuse(
                    f"UNBIND_{name.upper()} (or UNBIND_{name.upper()}_FILE) is not set or shorter than "
                    f"{MIN_SECRET_LENGTH} characters"
                )

    def load_keys(self) -> ServiceKeys:
        """The service's keys, read at start; RefusedToStart, naming the setting, if one is missing or
        unusable."""
        self.refuse_without_keys()
        trusted = KeySet(
            url=self.jwks_url,
            file=self.jwks_file,
            max_age=self.jwks_max_age_seconds,
            min_refresh=self.jwks_min_refresh_seconds,
        )
        if self.jwks_file:
            try:
                trusted.load_now()
            except (KeySetUnavailable, UnusableKey) as exc:
                self._refuse(f"UNBIND_JWKS_FILE cannot be used: {exc}")
        signing = None
        if self.signing_key_file:
            try:
                signing = SigningKey.load(self.signing_key_file)
            except UnusableKey as exc:
                self._refuse(f"UNBIND_SIGNING_KEY_FILE cannot be used: {exc}")
            if service_of_kid(signing.kid) != self.service_name:
                self._refuse(
                    f"UNBIND_SIGNING_KEY_FILE holds the key {signing.kid!r}, not one of this service "
                    f"(svc.{self.service_name}.*)"
                )
        return ServiceKeys(trusted, signing)

    def _refuse(self, reason: str) -> None:
        raise RefusedToStart(self.kafka_client(), reason)

    def kafka_client(self) -> str:
        return self.service_name
