"""Settings of the binding service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class BindingSettings(ServiceSettings):
    service_name = "binding"
    default_port = 8001

    database_url: str = Field("", validation_alias="UNBIND_BINDING_DATABASE_URL")
    # An open request not completed in this time expires (pending risk or verification)...
    unbind_request_ttl_seconds: int = Field(900, ge=1)
    # ...or in this time while a human reviews it.
    review_ttl_seconds: int = Field(72 * 3600, ge=1)
    # How often the expiry sweep looks for requests past their deadline.
    expiry_sweep_seconds: float = Field(5.0, gt=0, le=300)
    # What a customer's bindings together may add to the credit limit, CNY; a binding past it grants what is left.
    max_total_limit_uplift: int = Field(40_000, ge=0)
