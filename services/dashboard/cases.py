"""The case of a request and the customer on the phone: read from every service at once, as the
signed-in staff user, each part masked by the service that owns it.

Parts are fetched concurrently; a service that does not answer leaves its parts null and is named
in `unavailable` (the rest of the case is still worth reading). Risk's endpoints that the running
risk version does not have yet (404, 422) count as unavailable too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from services.dashboard.service import DashboardDeps, call_service
from services.dashboard.session import OpsSession
from shared.problems import Problem

# What a part is when its service failed.
UNAVAILABLE = object()


class _Parts:
    """The parts of one view, fetched together; remembers which services failed."""

    def __init__(self, deps: DashboardDeps, session: OpsSession):
        self.deps, self.session = deps, session
        self.unavailable: set[str] = set()

    async def get(
        self,
        service: str,
        path: str,
        *,
        missing: tuple[int, ...] = (),
        absent: tuple[int, ...] = (),
        **params: Any,
    ) -> Any:
        """The service's answer; None when it answers a status of `absent` (nothing there); UNAVAILABLE
        when it fails or answers a status of `missing` (an endpoint it does not have yet). Other
        problems (404 of the case's own request) are raised."""
        try:
            return await call_service(
                self.deps, self.session, service, "GET", path=path, params=params or None
            )
        except Problem as problem:
            if problem.status in absent:
                return None
            if problem.status == 503 or problem.status in missing:
                self.unavailable.add(service)
                return UNAVAILABLE
            raise

    async def gather(self, **parts: Awaitable[Any]) -> dict[str, Any]:
        values = await asyncio.gather(*parts.values())
        return dict(zip(parts, values, strict=True))

    def names(self) -> list[str]:
        return sorted(self.unavailable)


def _value(part: Any) -> Any:
    return None if part is UNAVAILABLE else part


def _items(part: Any) -> list[Any] | None:
    return None if part is UNAVAILABLE or part is None else part.get("items", [])


# Risk answers these for an endpoint the running version does not have yet.
NOT_THERE = (404, 405, 422)


async def case(deps: DashboardDeps, session: OpsSession, request_id: str) -> dict[str, Any]:
    """Everything about one request: the request with the impact the customer saw, risk's
    assessment, every verification attempt, every message (masked, never a code), the audit trail,
    its reviews, and the customer's bindings, other requests, devices and risk profile. 404 for a
    request binding does not know."""
    parts = _Parts(deps, session)
    first = await parts.gather(
        request=parts.get("binding", f"/v1/ops/unbind-requests/{request_id}"),
        audit=parts.get("binding", f"/v1/unbind-requests/{request_id}/audit"),
        assessment=parts.get("risk", f"/v1/assessments/{request_id}", absent=(404,)),
        verifications=parts.get("verification", "/v1/ops/verifications", request_id=request_id),
        messages=parts.get("notification", "/v1/ops/notifications", request_id=request_id),
        reviews=parts.get("risk", "/v1/reviews", missing=NOT_THERE, request_id=request_id, limit=200),
    )
    request, assessment = _value(first["request"]), _value(first["assessment"])
    # Who the customer is: binding says; risk's assessment too, when binding does not answer.
    user_id = (request or {}).get("user_id") or (assessment or {}).get("user_id")
    customer = await _customer_parts(parts, user_id) if user_id else {}
    reviews = _items(first["reviews"])
    return {
        "request": request,
        "assessment": assessment,
        "verifications": _items(first["verifications"]),
        "messages": _items(first["messages"]),
        "audit": _value(first["audit"]),
        # An older risk ignores the filter: only this request's reviews.
        "reviews": [review for review in reviews if review.get("request_id") == request_id]
        if reviews is not None
        else None,
        "customer": {key: customer.get(key) for key in ("bindings", "requests", "devices", "risk")},
        "unavailable": parts.names(),
    }


async def _customer_parts(parts: _Parts, user_id: str, *, with_contact: bool = False) -> dict[str, Any]:
    asked = {
        "binding": parts.get("binding", f"/v1/ops/customers/{user_id}", absent=(404,)),
        "devices": parts.get("verification", f"/v1/ops/customers/{user_id}/devices"),
        "risk": parts.get("risk", f"/v1/customers/{user_id}/risk", missing=NOT_THERE),
    }
    if with_contact:
        asked["contact"] = parts.get("notification", "/v1/ops/customers", user_id=user_id)
        asked["messages"] = parts.get("notification", "/v1/ops/notifications", user_id=user_id)
    got = await parts.gather(**asked)
    binding = got["binding"]
    found = {
        "bindings": None if binding is UNAVAILABLE else (binding or {}).get("bindings", []),
        "requests": None if binding is UNAVAILABLE else (binding or {}).get("requests", []),
        "devices": _items(got["devices"]),
        "risk": _value(got["risk"]),
        "known_to_binding": binding is not None,
    }
    if with_contact:
        contacts = _items(got["contact"])
        found["contact"] = contacts[0] if contacts else None
        found["contact_unknown"] = contacts == []
        found["messages"] = _items(got["messages"])
    return found


async def customer(deps: DashboardDeps, session: OpsSession, user_id: str) -> dict[str, Any]:
    """What ops need with a customer on the phone: contact (masked), bindings, requests, devices,
    messages (masked, never a code) and risk profile. 404 when neither binding nor notification
    knows them."""
    parts = _Parts(deps, session)
    found = await _customer_parts(parts, user_id, with_contact=True)
    if not found["known_to_binding"] and found["contact_unknown"]:
        raise Problem(404, "not-found", "Not found", "No customer has this user id.")
    return {
        "user_id": user_id,
        **{key: found[key] for key in ("contact", "bindings", "requests", "devices", "messages", "risk")},
        "unavailable": parts.names(),
    }


async def find_customers(
    deps: DashboardDeps, session: OpsSession, *, phone: str | None, user_id: str | None
) -> dict[str, Any]:
    """Customers by masked phone (several may share one) or user id, through notification."""
    params = {"phone": phone} if phone is not None else {"user_id": user_id}
    return await call_service(deps, session, "notification", "GET", path="/v1/ops/customers", params=params)


async def resend(deps: DashboardDeps, session: OpsSession, message_id: int, reason: str) -> dict[str, Any]:
    """Resend a message the customer lost, as the signed-in staff user (recorded as who resent it)."""
    return await call_service(
        deps,
        session,
        "notification",
        "POST",
        path=f"/v1/ops/notifications/{message_id}/resend",
        json={"reason": reason},
    )
