"""Settings of the binding service (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr

from shared.lenders import LENDERS
from shared.settings import ServiceSettings


class BindingSettings(ServiceSettings):
    service_name = "binding"
    default_port = 8001
    # Each lender of the directory signs its callbacks with its own secret, shared with it alone.
    required_secrets: ClassVar[tuple[str, ...]] = tuple(lender.secret_name for lender in LENDERS.values())

    database_url: str = Field("", validation_alias="UNBIND_BINDING_DATABASE_URL")
    # An open request not completed in this time expires (pending risk or verification)...
    unbind_request_ttl_seconds: int = Field(900, ge=1)
    # ...or in this time while a human reviews it.
    review_ttl_seconds: int = Field(72 * 3600, ge=1)
    # How often the expiry sweep looks for requests past their deadline.
    expiry_sweep_seconds: float = Field(5.0, gt=0, le=300)
    # What a customer's bindings together may add to the credit limit, CNY; a binding past it grants what is
    # left.
    max_total_limit_uplift: int = Field(40_000, ge=0)
    # A lender's callback signed further than this from now (either way) is refused: a captured one cannot be
    # replayed later.
    lender_callback_tolerance_seconds: int = Field(300, ge=1, le=3600)
    # The callback secret of each lender of shared.lenders (one pair per lender; `required_secrets` names them
    # all).
    lender_secret_example_bank: SecretStr | None = None
    lender_secret_example_bank_file: Path | None = None
    lender_secret_harbour_bank: SecretStr | None = None
    lender_secret_harbour_bank_file: Path | None = None

    def lender_secret(self, lender_id: str) -> str | None:
        """The callback secret of a lender of the directory (read at start), None for any other."""
        lender = LENDERS.get(lender_id)
        secret: SecretStr | None = getattr(self, lender.secret_name) if lender else None
        return secret.get_secret_value() if secret else None
