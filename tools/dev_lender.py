"""The development lender: `unbind up` runs it beside the services (port 8006) so that a laptop has a
lender to confirm mandates. It plays every lender of the directory (shared.lenders), and nothing of
it is imported by a service.

It takes notification's signed lender webhook (`POST /webhook`, `X-Unbind-Signature: sha256=<hex>`
under the installation's `institution_webhook_secret`; anything unsigned is refused). For a
`MandateRequested` it answers binding after `UNBIND_DEV_LENDER_DELAY_SECONDS` (2 s) with a callback
signed under that lender's own secret (`POST /v1/lenders/callbacks`):

- `confirmed`, the usual answer;
- `refused` (reason `account_not_found`) for an account whose number ends in `0000`: bind such a
  number (say `6222 0299 9990 000`: 15 digits, so no check digit) to see a refusal.

Other webhooks (`UnbindCompleted`) are taken and noted. Everything it received and answered is a JSON
line in `<var>/lender.jsonl`, so a restart answers what was still waiting; `GET /mandates` lists the
mandates and their answers. A callback that does not reach binding is sent again (the same callback
id, so binding applies it once), with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse

from services.notification.providers import SIGNATURE_HEADER as WEBHOOK_SIGNATURE_HEADER
from services.notification.providers import sign as sign_webhook
from shared.lenders import LENDER_HEADER, LENDERS, SIGNATURE_HEADER, sign_callback
from shared.logging import configure_logging
from shared.settings import RefusedToStart
from tools.keys import InstallationKeys

log = logging.getLogger(__name__)

NAME = "lender"
DEFAULT_PORT = 8006
DEFAULT_DELAY_SECONDS = 2.0
# The rule a walk-through uses to see a refusal: the account's last four digits.
REFUSED_LAST4 = "0000"
REFUSAL_REASON = "account_not_found"
JOURNAL = "lender.jsonl"
RETRY_MAX_SECONDS = 30.0
WEBHOOK_KEY_SETTING = "institution_webhook_secret"


def secrets_env(keys: InstallationKeys) -> dict[str, str]:
    """The secrets the development lender holds: the webhook's, to check notification's requests,
    and every lender's own, to sign its callbacks (as a real lender holds its own alone)."""
    names = [WEBHOOK_KEY_SETTING, *(lender.secret_name for lender in LENDERS.values())]
    return {f"UNBIND_{name.upper()}": keys.secret(name) for name in names}


@dataclass(frozen=True)
class DevLenderConfig:
    binding_url: str
    webhook_secret: str
    lender_secrets: dict[str, str]
    delay_seconds: float
    journal: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DevLenderConfig:
        """From the environment `unbind up` gives it; RefusedToStart, naming the setting, without a secret."""

        def required(name: str) -> str:
            if not (value := env.get(name, "").strip()):
                raise RefusedToStart(
                    NAME, f"{name} is not set (`unbind up` passes it from the installation's keys)"
                )
            return value

        return cls(
            binding_url=env.get("UNBIND_DEV_LENDER_BINDING_URL", "http://127.0.0.1:8001").rstrip("/"),
            webhook_secret=required(f"UNBIND_{WEBHOOK_KEY_SETTING.upper()}"),
            lender_secrets={
                lender.id: required(f"UNBIND_{lender.secret_name.upper()}") for lender in LENDERS.values()
            },
            delay_seconds=float(env.get("UNBIND_DEV_LENDER_DELAY_SECONDS", DEFAULT_DELAY_SECONDS)),
            journal=Path(env.get("UNBIND_VAR_DIR", "var")) / JOURNAL,
        )


def decide(account_last4: str) -> tuple[str, str | None]:
    """The development lender's answer to a mandate: (decision, reason)."""
    return ("refused", REFUSAL_REASON) if account_last4 == REFUSED_LAST4 else ("confirmed", None)


@dataclass
class DevLender:
    config: DevLenderConfig
    client: httpx.AsyncClient
    mandates: dict[str, dict[str, Any]] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def load(self) -> None:
        """What an earlier run received and answered; the mandates not answered yet are answered now."""
        if not self.config.journal.exists():
            return
        for line in self.config.journal.read_bytes().splitlines():
            with contextlib.suppress(ValueError):
                entry = orjson.loads(line)
                self.mandates.setdefault(entry["mandate_id"], {}).update(entry)
        for mandate in self.mandates.values():
            if "answered" not in mandate:
                self.schedule(mandate)

    def _note(self, entry: dict[str, Any]) -> None:
        self.config.journal.parent.mkdir(parents=True, exist_ok=True)
        with self.config.journal.open("ab") as journal:
            journal.write(orjson.dumps(entry) + b"\n")

    def receive(self, request: dict[str, Any]) -> dict[str, Any]:
        """A mandate request: answered once, after the delay; the same request again is not a new one."""
        if (known := self.mandates.get(request["mandate_id"])) is not None:
            return known
        decision, reason = decide(str(request.get("account_last4", "")))
        mandate = {
            "mandate_id": request["mandate_id"],
            "lender": request["lender"],
            "account_last4": request.get("account_last4"),
            "decision": decision,
            "reason": reason,
            "received_at": time.time(),
        }
        self.mandates[mandate["mandate_id"]] = mandate
        self._note(mandate)
        self.schedule(mandate)
        return mandate

    def schedule(self, mandate: dict[str, Any]) -> None:
        task = asyncio.create_task(self._answer(mandate))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, mandate: dict[str, Any]) -> None:
        await asyncio.sleep(self.config.delay_seconds)
        body = orjson.dumps(
            {
                "callback_id": f"dev-{mandate['mandate_id']}",
                "mandate_id": mandate["mandate_id"],
                "decision": mandate["decision"],
                "reason": mandate["reason"],
            }
        )
        secret = self.config.lender_secrets[mandate["lender"]]
        backoff = 0.5
        while True:
            headers = {
                "Content-Type": "application/json",
                LENDER_HEADER: mandate["lender"],
                SIGNATURE_HEADER: sign_callback(secret, int(time.time()), body),
            }
            try:
                response = await self.client.post(
                    f"{self.config.binding_url}/v1/lenders/callbacks", content=body, headers=headers
                )
                if response.status_code < 500:
                    break
                outcome = f"answered {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            log.warning(
                "callback not taken; sending it again",
                extra={"mandate_id": mandate["mandate_id"], "outcome": outcome, "in_seconds": backoff},
            )
            await asyncio.sleep(backoff)
            backoff = min(RETRY_MAX_SECONDS, backoff * 2)
        # A 4xx is binding's last word (the mandate was cancelled meanwhile, say): noted, not retried.
        answer = {
            "mandate_id": mandate["mandate_id"],
            "answered": time.time(),
            "binding_status": response.status_code,
        }
        mandate.update(answer)
        self._note(answer)
        log.info(
            "mandate answered",
            extra={
                "mandate_id": mandate["mandate_id"],
                "decision": mandate["decision"],
                "binding_status": response.status_code,
            },
        )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def create_app(
    config: DevLenderConfig | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The development lender's app (`transport` reaches binding in-process, for the tests)."""
    if config is None:
        configure_logging(NAME, os.environ.get("UNBIND_LOG_LEVEL", "INFO"))
        config = DevLenderConfig.from_env()
    resolved = config

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(5.0, connect=2.0), transport=transport, trust_env=False
        ) as client:
            lender = DevLender(resolved, client)
            lender.load()
            app.state.lender = lender
            try:
                yield
            finally:
                await lender.stop()

    app = FastAPI(
        title="unbind · development lender",
        description=(
            "Plays the lenders for `unbind up`: confirms each mandate after a delay, refuses accounts ending "
            "0000. Development only."
        ),
        lifespan=lifespan,
    )

    @app.get("/healthz")
    @app.get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/webhook", status_code=202)
    async def webhook(request: Request, signature: str = Header("", alias=WEBHOOK_SIGNATURE_HEADER)) -> Any:
        body = await request.body()
        if not hmac.compare_digest(sign_webhook(resolved.webhook_secret, body), signature):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return JSONResponse({"error": "not JSON"}, status_code=400)
        if message.get("type") != "MandateRequested":
            log.info(
                "lender webhook taken",
                extra={"type": message.get("type"), "binding_id": message.get("binding_id")},
            )
            return {"taken": message.get("type")}
        if message.get("lender") not in resolved.lender_secrets or not message.get("mandate_id"):
            return JSONResponse({"error": "not a mandate of a lender played here"}, status_code=422)
        mandate = request.app.state.lender.receive(message)
        return {
            "mandate_id": mandate["mandate_id"],
            "decision": mandate["decision"],
            "in_seconds": resolved.delay_seconds,
        }

    @app.get("/mandates")
    async def mandates(request: Request) -> list[dict[str, Any]]:
        """Every mandate request received, with its answer (`answered`: when binding took it)."""
        return list(request.app.state.lender.mandates.values())

    return app
