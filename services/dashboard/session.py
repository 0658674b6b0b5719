"""Who is looking at the dashboard: an ops user, signed in with an ops JWT or a one-time link.

The page keeps the token in an HttpOnly, SameSite=Strict cookie (so the browser's EventSource,
which cannot send headers, is authenticated too, and no script can read the token); API clients
may send `Authorization: Bearer` instead. A state-changing request authenticated by the cookie must
come from the dashboard's own origin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from services.dashboard.config import DashboardSettings
from shared.auth import Principal, decode_token
from shared.keys import KeySet
from shared.problems import Problem

COOKIE = "unbind_ops_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class OpsSession:
    principal: Principal
    token: str


def settings_of(request: Request) -> DashboardSettings:
    return request.app.state.settings


def keys_of(request: Request) -> KeySet:
    return request.app.state.keys


async def read_token(settings: DashboardSettings, keys: KeySet, token: str) -> Principal:
    """The principal of an ops token; 401 for a bad token, 403 for one without the ops role."""
    principal = await decode_token(keys, token, audience=settings.jwt_audience, issuer=settings.jwt_issuer)
    if not principal.has_role("ops"):
        raise Problem(
            403, "forbidden", "Forbidden", "The dashboard is for ops: this token lacks the ops role."
        )
    return principal


async def ops_session(request: Request) -> OpsSession:
    settings = settings_of(request)
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return OpsSession(
            await read_token(settings, keys_of(request), header[7:].strip()), header[7:].strip()
        )
    token = request.cookies.get(COOKIE)
    if not token:
        raise Problem(
            401,
            "unauthorized",
            "Authentication required",
            "Sign in with an ops token.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if request.method not in SAFE_METHODS:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise Problem(
                403,
                "cross-origin",
                "Forbidden",
                "A cookie-authenticated change must come from the dashboard's own page.",
            )
    return OpsSession(await read_token(settings, keys_of(request), token), token)


Ops = Annotated[OpsSession, Depends(ops_session)]


def set_session_cookie(
    response: Response, settings: DashboardSettings, token: str, principal: Principal
) -> None:
    max_age = max(0, (principal.expires_at or 0) - int(time.time()))
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        # Outside development the dashboard is served over TLS; the cookie never travels in clear.
        secure=settings.env != "development",
        path="/",
    )


def clear_session_cookie(response: Response, settings: DashboardSettings) -> None:
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=settings.env != "development"
    )
