"""App factory of the binding service (port 8001)."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.binding import api, service, texts
from services.binding.config import BindingSettings
from services.binding.models import CustomerLocale, InboxEntry, OutboxMessage
from shared.app import ServiceRuntime, build_service_app
from shared.bus import EventBus
from shared.consumer import Subscriptions
from shared.events import (
    BindingVerificationFailed,
    BindingVerified,
    PreferencesChanged,
    ReviewDecided,
    RiskAssessed,
    VerificationFailed,
    VerificationRequested,
    Verified,
)
from shared.i18n import remember_locales, saved_locales

log = logging.getLogger(__name__)

SUBSCRIPTIONS: Subscriptions = {
    BindingVerified: service.confirm_binding,
    BindingVerificationFailed: service.abandon_binding,
    RiskAssessed: service.apply_risk_assessment,
    ReviewDecided: service.apply_review_decision,
    VerificationRequested: service.record_verification_issued,
    Verified: service.complete_request,
    VerificationFailed: service.fail_verification,
    PreferencesChanged: remember_locales(CustomerLocale),
}


async def expiry_sweep(runtime: ServiceRuntime) -> None:
    """Expire open requests past their deadline, and resume paused auto-debits whose pause ran out.
    Both deadlines are columns, so they survive restarts: what fell due while the service was down
    is done on the next sweep."""
    settings: BindingSettings = runtime.settings  # type: ignore[assignment]
    while True:
        try:
            async with runtime.unit_of_work() as uow:
                expired = await service.expire_overdue(uow)
            async with runtime.unit_of_work() as uow:
                resumed = await service.resume_paused(uow)
            if expired or resumed:
                log.info(
                    "expired open requests, resumed paused auto-debits",
                    extra={"count": expired, "resumed": resumed},
                )
                continue
        except Exception:
            log.exception("expiry sweep failed; retrying")
        await asyncio.sleep(settings.expiry_sweep_seconds)


def create_app(settings: BindingSettings | None = None, *, bus: EventBus | None = None) -> FastAPI:
    return build_service_app(
        settings or BindingSettings(),
        title="unbind · binding",
        description=(
            "Bindings between mortgage repayment accounts and credit accounts, and the requests to unbind "
            "them."
        ),
        routers=[api.router, api.public_router],
        outbox_model=OutboxMessage,
        inbox_model=InboxEntry,
        subscriptions=SUBSCRIPTIONS,
        workers=[expiry_sweep],
        bus=bus,
        texts=texts.TEXTS,
        saved_locale=saved_locales(CustomerLocale),
    )
