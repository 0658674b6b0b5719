"""The development lender on its own: it takes only notification's signed webhook, answers each
mandate once with a callback signed by that mandate's lender, and answers after a restart what it
had not answered yet. (tests/binding/test_bind.py runs it against the real services.)"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request

from services.notification.providers import SIGNATURE_HEADER, sign
from shared.lenders import LENDER_HEADER, LENDERS, callback_signature_valid
from shared.lenders import SIGNATURE_HEADER as CALLBACK_SIGNATURE_HEADER
from tests.keys import KEYS
from tests.stack import eventually
from tools import dev_lender


def fake_binding(received: list[dict[str, Any]]) -> FastAPI:
    """Binding's callback endpoint, as far as the lender can tell: it keeps what a known lender signed."""
    app = FastAPI()

    @app.post("/v1/lenders/callbacks")
    async def callback(request: Request) -> dict[str, str]:
        body, lender = await request.body(), request.headers[LENDER_HEADER]
        assert callback_signature_valid(
            KEYS.secret(LENDERS[lender].secret_name),
            request.headers[CALLBACK_SIGNATURE_HEADER],
            body,
            time.time(),
            tolerance_seconds=60,
        )
        received.append({"lender": lender, **orjson.loads(body)})
        return {"status": "ok"}

    return app


def lender_app(tmp_path: Path, received: list[dict[str, Any]], delay: str = "0.05") -> FastAPI:
    env = {
        **dev_lender.secrets_env(KEYS),
        "UNBIND_DEV_LENDER_BINDING_URL": "http://binding",
        "UNBIND_DEV_LENDER_DELAY_SECONDS": delay,
        "UNBIND_VAR_DIR": str(tmp_path),
    }
    return dev_lender.create_app(
        dev_lender.DevLenderConfig.from_env(env), transport=httpx.ASGITransport(app=fake_binding(received))
    )


def mandate_request(mandate_id: str, last4: str, lender: str = "harbour_bank") -> bytes:
    return orjson.dumps(
        {
            "type": "MandateRequested",
            "mandate_id": mandate_id,
            "lender": lender,
            "account_last4": last4,
            "binding_id": "b-1",
        }
    )


async def webhook(app: FastAPI, body: bytes, secret: str | None = None) -> httpx.Response:
    signature = sign(secret or KEYS.secret("institution_webhook_secret"), body)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lender") as client:
        return await client.post("/webhook", content=body, headers={SIGNATURE_HEADER: signature})


async def test_it_answers_each_mandate_once_signed_by_its_lender_and_refuses_accounts_ending_0000(
    tmp_path: Path,
) -> None:
    received: list[dict[str, Any]] = []
    app = lender_app(tmp_path, received)
    async with app.router.lifespan_context(app):
        assert (
            await webhook(app, mandate_request("m-1", "4821"), secret=KEYS.secret("otp_hmac_key"))
        ).status_code == 401
        for mandate_id, last4 in (("m-1", "4821"), ("m-2", "0000"), ("m-1", "4821")):
            assert (await webhook(app, mandate_request(mandate_id, last4))).status_code == 202
        assert (
            await webhook(app, orjson.dumps({"type": "UnbindCompleted", "binding_id": "b-1"}))
        ).status_code == 202
        await eventually(lambda: len(received) == 2, 5, "the mandates were not answered")
    assert sorted((r["mandate_id"], r["lender"], r["decision"], r["reason"]) for r in received) == [
        ("m-1", "harbour_bank", "confirmed", None),
        ("m-2", "harbour_bank", "refused", "account_not_found"),
    ]


async def test_after_a_restart_it_answers_what_it_had_not_answered(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    first = lender_app(tmp_path, received, delay="60")
    async with first.router.lifespan_context(first):
        assert (await webhook(first, mandate_request("m-1", "4821", "example_bank"))).status_code == 202
    assert received == [], "stopped before its delay"
    again = lender_app(tmp_path, received)
    async with again.router.lifespan_context(again):
        await eventually(lambda: received, 5, "the waiting mandate was not answered after the restart")
        assert (await webhook(again, mandate_request("m-1", "4821", "example_bank"))).status_code == 202
    assert [(r["mandate_id"], r["decision"]) for r in received] == [("m-1", "confirmed")], "answered once"
