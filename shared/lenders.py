"""The lenders a repayment account can be held at, and how a lender signs what it tells us.

Each lender confirms or refuses the auto-debit mandate of a binding by calling binding's
`POST /v1/lenders/callbacks`, signed with HMAC-SHA256 under its own secret (one per lender, generated
per installation like every other secret, shared with that lender alone). The signature covers a
timestamp and the raw body, and the body carries the callback's own id, so a captured callback
cannot be replayed later nor passed off as another:

    X-Unbind-Lender:    example_bank
    X-Unbind-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>

The directory also gives each lender's name in every locale and its customer-service hotline, for
the notices that name the account and the follow-up after an unbind. Binding owns which lenders
exist; notification reads the names, so the directory is here rather than copied into both. Every
name and number here is fictional.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shared.i18n import DEFAULT_LOCALE

LENDER_HEADER = "X-Unbind-Lender"
SIGNATURE_HEADER = "X-Unbind-Signature"


@dataclass(frozen=True)
class Lender:
    id: str  # a code (events carry it), also in the names of its secret's settings
    # What customers call it, per locale; any of them (or the id) names it in `POST /v1/bindings`.
    names: dict[str, str]
    hotline: str

    def name(self, locale: str) -> str:
        return self.names.get(locale) or self.names[DEFAULT_LOCALE]

    @property
    def secret_name(self) -> str:
        """The setting of the lender's callback secret: `UNBIND_LENDER_SECRET_<ID>` (or `..._FILE`)."""
        return f"lender_secret_{self.id}"


LENDERS: dict[str, Lender] = {
    lender.id: lender
    for lender in (
        Lender("example_bank", {"en": "Example Bank", "zh-CN": "示例银行"}, "400-000-9555"),
        Lender("harbour_bank", {"en": "Harbour Bank", "zh-CN": "海港银行"}, "400-000-9566"),
    )
}


def find_lender(name: str) -> Lender | None:
    """The lender an id or one of its names (any case, outer spaces ignored) stands for."""
    wanted = name.strip().casefold()
    return next(
        (
            lender
            for lender in LENDERS.values()
            if wanted in {lender.id, *(value.casefold() for value in lender.names.values())}
        ),
        None,
    )


def sign_callback(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-Unbind-Signature` value of a callback body sent at `timestamp` (unix seconds)."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def callback_signature_valid(
    secret: str, header: str, body: bytes, now: float, *, tolerance_seconds: float
) -> bool:
    """Whether `header` signs `body` under `secret` at a time within `tolerance_seconds` of `now`."""
    fields = dict(part.strip().partition("=")[::2] for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(
        sign_callback(secret, timestamp, body), f"t={timestamp},v1={fields.get('v1', '')}"
    )
