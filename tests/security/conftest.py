"""All five services in this process on the in-memory bus, with data that gives each path
parameter a real value: an owner with an active device key whose request waits for verification, another
customer whose request waits for an ops review (and whose account is flagged for it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from services.binding.agreements import CURRENT as CURRENT_AGREEMENT
from services.notification.service import CODE_KINDS
from tests.dashboard.conftest import running_dashboard
from tests.factories import Customer, customer_with_binding, enrolled_device, request_unbind, save_rules
from tests.stack import Stack, auth, eventually, make_bus_topics, running_stack

OPS = auth("ops-security", "ops")
REVIEW_EVERYTHING = {
    "rules": [{"name": "look at every request", "action": "review", "if": "requests_24h >= 0"}]
}


@dataclass
class World:
    stack: Stack
    dashboard: FastAPI
    owner: Customer
    other: Customer
    # Path parameter name -> a real value: the owner's (`device_id`: an active key), but `review_id` and
    # `user_id` (the other's review, and the other's account, flagged by it).
    ids: dict[str, str]

    def app(self, service: str) -> FastAPI:
        return self.dashboard if service == "dashboard" else self.stack.apps[service]


async def _inbox_item(stack: Stack, customer: Customer) -> str:
    async def first() -> str | None:
        items = (
            await stack.client("notification").get("/v1/notifications", headers=auth(customer.user_id))
        ).json()["items"]
        return items[0]["id"] if items else None

    return await eventually(first, 20, "nothing reached the owner's inbox")


async def _sent_message(stack: Stack, customer: Customer) -> int:
    """A message to the owner that went out and may be resent (not a code)."""

    async def first() -> int | None:
        items = (
            await stack.client("notification").get(
                "/v1/ops/notifications", params={"user_id": customer.user_id}, headers=OPS
            )
        ).json()["items"]
        return next(
            (
                item["id"]
                for item in items
                if item["status"] == "sent"
                and item["channel"] != "institution"
                and item["kind"] not in CODE_KINDS
            ),
            None,
        )

    return await eventually(first, 20, "no message to the owner went out")


async def _pending_review(stack: Stack, request_id: str) -> str:
    async def listed() -> str | None:
        items = (
            await stack.client("risk").get("/v1/reviews", params={"status": "pending"}, headers=OPS)
        ).json()["items"]
        return next((review["id"] for review in items if review["request_id"] == request_id), None)

    return await eventually(listed, 20, "the review never opened")


@asynccontextmanager
async def populated_world(database_urls: dict[str, str], var_dir: Path) -> AsyncIterator[World]:
    topics = make_bus_topics("memory", None)
    # No pause between code sends: a resend is then answered by its rules, not by the clock.
    overrides = {"verification": {"otp_resend_interval_seconds": 0}}
    async with (
        running_stack(topics, database_urls, var_dir, overrides=overrides) as stack,
        running_dashboard(topics, var_dir, service_apps=stack.apps) as (dashboard, _),
    ):
        owner, other = await customer_with_binding(stack), await customer_with_binding(stack)
        device = await enrolled_device(stack, owner)
        request_id = await request_unbind(stack, owner)
        verification = (
            await stack.wait_for_request(
                request_id, owner.user_id, lambda body: body["verification"] is not None
            )
        )["verification"]
        # The other customer's request goes to review: the queue then holds a real case.
        rules_version = (await save_rules(stack.client("risk"), REVIEW_EVERYTHING["rules"]))["version"]
        review_id = await _pending_review(stack, await request_unbind(stack, other))
        ids = {
            "binding_id": owner.binding_id,
            "request_id": request_id,
            "verification_id": verification["id"],
            "notification_id": await _inbox_item(stack, owner),
            "review_id": review_id,
            "user_id": other.user_id,
            "device_id": device.device_id,
            "version": CURRENT_AGREEMENT,
            "rules_version": rules_version,
            "delivery_id": await _sent_message(stack, owner),
        }
        yield World(stack, dashboard, owner, other, ids)
