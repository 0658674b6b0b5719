"""Bearer JWT authentication with roles (`customer`, `ops`, `reviewer`, `rules_admin`, `service`).

Staff roles add up, as in Stripe's dashboard: `ops` reads every case and helps customers,
`reviewer` decides reviews, `rules_admin` changes the risk rules. A reviewer or rules admin who
reads the cases holds `ops` too.

Tokens are asymmetric JWTs (EdDSA, or ES256 from an identity provider), checked against the JWKS
the service trusts (`shared.keys`): the key is chosen by the token's `kid` and used only with its
own algorithm. Claims: `sub` (the user or the calling service), `roles`, `iss`, `aud` and `exp`
(all required). `aud` must name this service (`UNBIND_JWT_AUDIENCE`, default `unbind-<service>`), so
a token meant for one service is refused by the others. A service's own key (`svc.<service>.*`) signs
only `service` tokens with that service as `sub`; an identity provider's key never signs a `service`
token. A customer only ever acts as `sub`; ops and services act on anyone's data through their own
endpoints.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.keys import KeySet, KeySetUnavailable, SigningKey
from shared.problems import Problem

ROLES = frozenset({"customer", "ops", "reviewer", "rules_admin", "service"})
MAX_SUBJECT_LENGTH = 64
_bearer = HTTPBearer(
    auto_error=False, description="JWT (EdDSA or ES256) with claims sub, roles, iss, aud, exp"
)


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    # The token's `exp` (Unix seconds): a long-lived connection ends when its token does.
    expires_at: int | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles


def audience_of(service: str) -> str:
    """The `aud` a service's tokens must name."""
    return f"unbind-{service}"


def issue_token(
    key: SigningKey,
    subject: str,
    roles: Iterable[str],
    *,
    audience: str | Iterable[str],
    ttl_seconds: int = 900,
    issuer: str = "unbind",
) -> str:
    roles = sorted(set(roles))
    if unknown := set(roles) - ROLES:
        raise ValueError(f"unknown roles: {sorted(unknown)}")
    now = int(time.time())
    claims = {
        "sub": subject,
        "roles": roles,
        "iss": issuer,
        "aud": audience if isinstance(audience, str) else sorted(set(audience)),
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "unauthorized", "Authentication required", detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def decode_token(keys: KeySet, token: str, *, audience: str, issuer: str = "unbind") -> Principal:
    """The principal of a valid token; 401 problem for anything else, 503 while the JWKS cannot be loaded."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("The token is not valid.") from exc
    if not isinstance(kid, str) or not kid:
        raise _unauthorized("The token names no signing key (kid).")
    try:
        trusted = await keys.get(kid)
    except KeySetUnavailable as exc:
        raise Problem(
            503,
            "keys-unavailable",
            "Service unavailable",
            "The signing keys could not be loaded; retry shortly.",
            headers={"Retry-After": "5"},
        ) from exc
    if trusted is None:
        raise _unauthorized("The token is signed by an unknown key.")
    try:
        claims = jwt.decode(
            token,
            trusted.key,
            algorithms=[trusted.algorithm],
            audience=audience,
            issuer=issuer,
            options={"require": ["sub", "exp", "iss", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise _unauthorized("The token has expired.") from exc
    except jwt.InvalidAudienceError as exc:
        raise _unauthorized("The token is not meant for this service (aud).") from exc
    except jwt.InvalidTokenError as exc:
        raise _unauthorized("The token is not valid.") from exc
    roles = claims.get("roles")
    subject = claims.get("sub")
    if (
        not isinstance(roles, list)
        or not all(isinstance(role, str) for role in roles)
        or not isinstance(subject, str)
        or not subject
    ):
        raise _unauthorized("The token lacks a subject or roles.")
    # The subject is recorded as a user id, reviewer or author (columns of 64 characters).
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise _unauthorized(
            f"The token's subject must be printable and at most {MAX_SUBJECT_LENGTH} characters."
        )
    granted = frozenset(roles) & ROLES
    if trusted.service is not None:
        # A service's key vouches for that service and nothing more: never a customer or an ops user.
        if granted != {"service"} or subject != trusted.service:
            raise _unauthorized("A service's key signs only that service's own service tokens.")
    elif "service" in granted:
        raise _unauthorized("A service token must be signed by that service's own key.")
    return Principal(subject=subject, roles=granted, expires_at=int(claims["exp"]))


async def authenticate(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Send `Authorization: Bearer <token>`.")
    settings = request.app.state.settings
    return await decode_token(
        request.app.state.keys,
        credentials.credentials,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def require_role(*roles: str) -> Callable[..., Principal]:
    """A dependency admitting a principal holding any of `roles`."""

    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.roles & set(roles):
            raise Problem(
                403, "forbidden", "Forbidden", f"This endpoint needs the role {' or '.join(roles)}."
            )
        return principal

    return dependency


def require_service(*services: str) -> Callable[..., Principal]:
    """A dependency admitting only the service tokens of the named callers: a service reaches
    another only where it has business (zero trust between services)."""

    async def dependency(principal: Annotated[Principal, Depends(require_role("service"))]) -> Principal:
        if principal.subject not in services:
            raise Problem(
                403, "forbidden", "Forbidden", f"Only {' or '.join(services)} may call this endpoint."
            )
        return principal

    return dependency


Customer = Annotated[Principal, Depends(require_role("customer"))]
Ops = Annotated[Principal, Depends(require_role("ops"))]
Reviewer = Annotated[Principal, Depends(require_role("reviewer"))]
RulesAdmin = Annotated[Principal, Depends(require_role("rules_admin"))]
