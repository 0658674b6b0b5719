"""Settings common to every service, read from the environment when an app is built.

Names: `UNBIND_ENV`, `UNBIND_VAR_DIR`, `UNBIND_JWT_SECRET`, `KAFKA_BOOTSTRAP_SERVERS`,
`UNBIND_TOPIC`, `UNBIND_DLQ_TOPIC`, `UNBIND_DATABASE_SERVER_URL` (a PostgreSQL server URL without a
database: each service then uses its own database `unbind_<service>` on it) and
`UNBIND_<SERVICE>_DATABASE_URL` (one service's full URL, which wins). Development defaults exist
so `unbind up` works out of the box; outside development mode they are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-never-use-in-production"


class DevelopmentDefaultRefused(ValueError):
    """A development default was left in place outside development mode."""


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a refused setting must not echo the secrets it was given.
    model_config = SettingsConfigDict(env_prefix="UNBIND_", extra="ignore", hide_input_in_errors=True)

    service_name: ClassVar[str]
    default_port: ClassVar[int]
    # Secrets whose development defaults must be replaced outside development mode.
    development_secrets: ClassVar[dict[str, str]] = {"jwt_secret": DEVELOPMENT_JWT_SECRET}

    env: Literal["development", "production"] = "development"
    var_dir: Path = Path("var")
    log_level: str = "INFO"

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
    )
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

    # Request bodies over this are refused (413) before they are read; headers over 16 KiB always are (431).
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)

    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    jwt_issuer: str = "unbind"
    jwt_ttl_seconds: int = 900

    @model_validator(mode="after")
    def _resolve_and_guard(self) -> ServiceSettings:
        self.consumer_group = self.consumer_group or f"unbind-{self.service_name}"
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
