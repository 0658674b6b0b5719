"""Settings of the binding service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class BindingSettings(ServiceSettings):
    service_name = "binding"
    default_port = 8001

    database_url: str = Field("", validation_alias="UNBIND_BINDING_DATABASE_URL")
    # How long a customer has to pass verification once risk has cleared the request.
    unbind_request_ttl_seconds: int = Field(900, ge=60)
