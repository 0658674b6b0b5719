"""Event handlers of the risk service and its subscriptions: every event about a binding is
behaviour; an UnbindRequested is scored, an UnbindAppealed opens a review, and a cancelled or
expired request withdraws its pending review. (Events about a customer's device keys are not read:
risk's known devices are those a customer has unbound from, whatever keys are enrolled.)"""

from __future__ import annotations

from services.risk import service
from services.risk.service import RiskDeps
from shared.consumer import Handler, Subscriptions
from shared.events import EVENT_TYPES, BindingEvent, Event, UnbindAppealed, UnbindCancelled, UnbindExpired, UnbindRequested
from shared.uow import UnitOfWork


async def on_unbind_requested(event: UnbindRequested, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.assess(uow, deps, event)


async def on_unbind_appealed(event: UnbindAppealed, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.open_appeal_review(uow, event)


async def on_request_closed(event: UnbindCancelled | UnbindExpired, uow: UnitOfWork, deps: RiskDeps) -> None:
    service.observe(uow, event, deps.clock())
    await service.withdraw_reviews(uow, event)


async def on_any_other_event(event: BindingEvent, uow: UnitOfWork, deps: RiskDeps) -> None:
    service.observe(uow, event, deps.clock())


_SPECIFIC: dict[type[Event], Handler] = {
    UnbindRequested: on_unbind_requested,
    UnbindAppealed: on_unbind_appealed,
    UnbindCancelled: on_request_closed,
    UnbindExpired: on_request_closed,
}
SUBSCRIPTIONS: Subscriptions = {
    event_type: _SPECIFIC.get(event_type, on_any_other_event) for event_type in EVENT_TYPES.values() if issubclass(event_type, BindingEvent)
}
