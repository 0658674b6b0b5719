"""Service-to-service HTTP: an httpx client with timeouts, retries and a service token signed with
the calling service's own key, for the one service it calls (`aud`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator
from typing import Any

import httpx

from shared.auth import audience_of, issue_token
from shared.keys import SigningKey
from shared.logging import correlation_id
from shared.settings import ServiceSettings

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class ServiceTokenAuth(httpx.Auth):
    """Signs each request with a short-lived `service` token naming the calling service."""

    TTL_SECONDS = 60
    # A token is reused for half its life, so it never expires in flight and is not signed per call.
    REUSE_SECONDS = 30

    def __init__(self, settings: ServiceSettings, key: SigningKey, callee: str):
        self._settings = settings
        self._key = key
        self._audience = audience_of(callee)
        self._token = ""
        self._renew_at = 0.0

    def _current_token(self) -> str:
        if time.monotonic() >= self._renew_at:
            settings = self._settings
            self._token = issue_token(
                self._key,
                settings.service_name,
                ["service"],
                audience=self._audience,
                ttl_seconds=self.TTL_SECONDS,
                issuer=settings.jwt_issuer,
            )
            self._renew_at = time.monotonic() + self.REUSE_SECONDS
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._current_token()}"
        if cid := correlation_id.get():
            request.headers["X-Request-ID"] = cid
        yield request


def service_client(
    settings: ServiceSettings,
    key: SigningKey,
    callee: str,
    base_url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """One client per app (created in the lifespan), reusing connections, to the service `callee`."""
    return httpx.AsyncClient(
        base_url=base_url,
        auth=ServiceTokenAuth(settings, key, callee),
        timeout=httpx.Timeout(5.0, connect=2.0),
        # Below uvicorn's 5 s keep-alive: a connection the server is closing is never reused.
        limits=httpx.Limits(max_connections=200, max_keepalive_connections=100, keepalive_expiry=2.0),
        transport=transport or httpx.AsyncHTTPTransport(retries=1),
    )


async def post_with_retries(
    client: httpx.AsyncClient,
    url: str,
    *,
    json: Any,
    headers: dict[str, str] | None = None,
    attempts: int = 3,
    backoff: float = 0.2,
    retry_status: frozenset[int] = RETRYABLE_STATUS,
) -> httpx.Response:
    """POST an idempotent request (the caller sends an Idempotency-Key), retrying transport errors
    and 429/5xx-unavailable answers (or `retry_status`) with exponential backoff. Raises the last error."""
    for attempt in range(1, attempts):
        try:
            response = await client.post(url, json=json, headers=headers)
            if response.status_code not in retry_status:
                return response
            log.warning(
                "retrying call", extra={"url": url, "status": response.status_code, "attempt": attempt}
            )
        except httpx.TransportError as exc:
            log.warning("retrying call", extra={"url": url, "error": repr(exc), "attempt": attempt})
        await asyncio.sleep(backoff * 2 ** (attempt - 1))
    return await client.post(url, json=json, headers=headers)
