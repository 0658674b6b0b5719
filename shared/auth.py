"""Bearer JWT authentication with roles (`customer`, `ops`, `service`).

Tokens are HS256 JWTs signed with the shared `UNBIND_JWT_SECRET`, with claims `sub` (the user or
calling service), `roles`, `iss` and `exp` (required). A customer only ever acts as `sub`; ops and
services act on anyone's data through their own endpoints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.problems import Problem

ROLES = frozenset({"customer", "ops", "service"})
MAX_SUBJECT_LENGTH = 64
_bearer = HTTPBearer(auto_error=False, description="JWT with claims sub, roles, exp")


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    # The token's `exp` (Unix seconds): a long-lived connection ends when its token does.
    expires_at: int | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


def issue_token(secret: str, subject: str, roles: Iterable[str], *, ttl_seconds: int = 900, issuer: str = "unbind") -> str:
    roles = sorted(set(roles))
    if unknown := set(roles) - ROLES:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    now = int(time.time())
    return jwt.encode({"sub": subject, "roles": roles, "iss": issuer, "iat": now, "exp": now + ttl_seconds}, secret, algorithm="HS256")


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", "Authentication required", detail, headers={"WWW-Authenticate": "Bearer"})


def decode_token(secret: str, token: str, *, issuer: str = "unbind") -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer, options={"require": ["sub", "exp", "iss"]})
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("The token has expired.") from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("The token is not valid.") from exc
    roles = claims.get("roles")
    subject = claims.get("sub")
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles) or not isinstance(subject, str) or not subject:
        raise _unauthorized("The token lacks a subject or roles.")
    # The subject is recorded as a user id, reviewer or author (columns of 64 characters).
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise _unauthorized(f"The token's subject must be printable and at most {MAX_SUBJECT_LENGTH} characters.")
    return Principal(subject=subject, roles=frozenset(roles) & ROLES, expires_at=int(claims["exp"]))


async def authenticate(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Send `Authorization: Bearer <token>`.")
    settings = request.app.state.settings
    return decode_token(settings.jwt_secret.get_secret_value(), credentials.credentials, issuer=settings.jwt_issuer)


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting a principal holding any of `roles`."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.roles & set(roles):
            raise Problem(403, "forbidden", "Forbidden", f"This endpoint needs the role {' or '.join(roles)}.")
        return principal

    return dependency


Customer = Annotated[Principal, Depends(require_role("customer"))]
Ops = Annotated[Principal, Depends(require_role("ops"))]
Service = Annotated[Principal, Depends(require_role("service"))]
