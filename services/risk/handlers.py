"""Event handlers of the risk service and its subscriptions: every event about a binding is
behaviour; an UnbindRequested is scored, an UnbindAppealed or UnbindDisputed opens a case, and a
cancelled or expired request withdraws its pending review. A customer's device keys, enrolled or
revoked, are its known devices."""

from __future__ import annotations

from services.risk import service
from services.risk.service import RiskDeps
from shared.consumer import Handler, Subscriptions
from shared.events import EVENT_TYPES, BindingEvent, DeviceEnrolled, DeviceRevoked, Event, UnbindAppealed, UnbindCancelled, UnbindDisputed, UnbindExpired, UnbindRequested
from shared.uow import UnitOfWork


async def on_unbind_requested(event: UnbindRequested, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.assess(uow, deps, event)


async def on_unbind_appealed(event: UnbindAppealed, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.open_appeal_review(uow, event, deps.clock())


async def on_unbind_disputed(event: UnbindDisputed, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.open_dispute_review(uow, event, deps.clock())


async def on_device_enrolled(event: DeviceEnrolled, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.learn_device(uow, event, deps.clock())


async def on_device_revoked(event: DeviceRevoked, uow: UnitOfWork, deps: RiskDeps) -> None:
    await service.forget_device(uow, event, deps.clock())


async def on_request_closed(event: UnbindCancelled | UnbindExpired, uow: UnitOfWork, deps: RiskDeps) -> None:
    now = deps.clock()
    service.observe(uow, event, now)
    await service.withdraw_reviews(uow, event, now)


async def on_any_other_event(event: BindingEvent, uow: UnitOfWork, deps: RiskDeps) -> None:
    service.observe(uow, event, deps.clock())


_SPECIFIC: dict[type[Event], Handler] = {
    UnbindRequested: on_unbind_requested,
    UnbindAppealed: on_unbind_appealed,
    UnbindDisputed: on_unbind_disputed,
    UnbindCancelled: on_request_closed,
    UnbindExpired: on_request_closed,
}
SUBSCRIPTIONS: Subscriptions = {
    **{event_type: _SPECIFIC.get(event_type, on_any_other_event) for event_type in EVENT_TYPES.values() if issubclass(event_type, BindingEvent)},
    DeviceEnrolled: on_device_enrolled,
    DeviceRevoked: on_device_revoked,
}
