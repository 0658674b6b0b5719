"""Bearer JWTs: asymmetric, checked against the JWKS by kid, per audience, and a service's key signs
nothing but that service's own service tokens."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from shared.auth import audience_of, decode_token, issue_token
from shared.keys import KeySet, SigningKey, jwks_document, new_kid
from shared.problems import Problem

ISSUER = SigningKey.generate(new_kid())
BINDING = SigningKey.generate(new_kid("binding"))
VERIFICATION = SigningKey.generate(new_kid("verification"))
STRANGER = SigningKey.generate(new_kid())  # a well-formed key the JWKS does not hold
AUD = audience_of("binding")


def key_set(tmp_path: Path, *keys: SigningKey, min_refresh: float = 0.0) -> KeySet:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document(list(keys or (ISSUER, BINDING, VERIFICATION)))))
    keys_ = KeySet(file=path, min_refresh=min_refresh)
    keys_.load_now()
    return keys_


def customer(key: SigningKey = ISSUER, **overrides: object) -> str:
    claims = {
        "sub": "u-zhangsan",
        "roles": ["customer"],
        "iss": "unbind",
        "aud": [AUD],
        "exp": int(time.time()) + 600,
    } | overrides
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        key.private_key,
        algorithm="EdDSA",
        headers={"kid": key.kid},
    )


async def test_round_trip(tmp_path: Path) -> None:
    principal = await decode_token(
        key_set(tmp_path),
        issue_token(ISSUER, "u-zhangsan", ["customer"], audience=[AUD, audience_of("risk")]),
        audience=AUD,
    )
    assert principal.subject == "u-zhangsan" and principal.roles == {"customer"}


def _hs256_with_the_public_key() -> str:
    # Algorithm confusion: an HMAC "signed" with the public key, which anyone can read from the JWKS.
    public = ISSUER.private_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    header = {"kid": ISSUER.kid, "alg": "HS256"}
    return jwt.api_jws.PyJWS().encode(
        json.dumps({"sub": "u-1", "roles": ["ops"], "iss": "unbind", "aud": AUD, "exp": 4102444800}).encode(),
        public,
        "HS256",
        header,
    )


@pytest.mark.parametrize(
    "token",
    [
        customer(STRANGER),
        customer(exp=int(time.time()) - 10),
        customer(iss="elsewhere"),
        customer(aud=[audience_of("risk")]),
        customer(aud=None),
        customer(exp=None),
        customer(roles="ops"),
        jwt.encode(
            {"sub": "u-1", "roles": ["ops"], "iss": "unbind", "aud": AUD, "exp": 4102444800},
            ISSUER.private_key,
            algorithm="EdDSA",
        ),
        _hs256_with_the_public_key(),
        jwt.encode(
            {"sub": "u-1", "roles": ["ops"], "iss": "unbind", "aud": AUD, "exp": 4102444800},
            None,
            algorithm="none",
            headers={"kid": ISSUER.kid},
        ),
        "not.a.token",
    ],
    ids=[
        "unknown-key",
        "expired",
        "wrong-issuer",
        "meant-for-another-service",
        "no-aud",
        "no-exp",
        "roles-not-a-list",
        "no-kid",
        "hs256-with-public-key",
        "alg-none",
        "garbage",
    ],
)
async def test_invalid_tokens_are_401(tmp_path: Path, token: str) -> None:
    with pytest.raises(Problem) as raised:
        await decode_token(key_set(tmp_path), token, audience=AUD)
    assert raised.value.status == 401
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize(
    ("key", "subject", "roles"),
    [
        (BINDING, "u-zhangsan", ["customer"]),
        (BINDING, "ops-admin", ["ops"]),
        (BINDING, "binding", ["service", "ops"]),
        (BINDING, "verification", ["service"]),
        (ISSUER, "verification", ["service"]),
    ],
    ids=[
        "service-key-signs-a-customer",
        "service-key-signs-ops",
        "service-key-adds-ops",
        "service-key-poses-as-another",
        "issuer-signs-a-service",
    ],
)
async def test_a_key_signs_only_what_it_vouches_for(
    tmp_path: Path, key: SigningKey, subject: str, roles: list[str]
) -> None:
    with pytest.raises(Problem) as raised:
        await decode_token(key_set(tmp_path), customer(key, sub=subject, roles=roles), audience=AUD)
    assert raised.value.status == 401


async def test_a_service_key_signs_its_own_service_token(tmp_path: Path) -> None:
    token = issue_token(VERIFICATION, "verification", ["service"], audience=audience_of("notification"))
    principal = await decode_token(key_set(tmp_path), token, audience=audience_of("notification"))
    assert principal.subject == "verification" and principal.roles == {"service"}


def test_unknown_roles_cannot_be_issued() -> None:
    with pytest.raises(ValueError):
        issue_token(ISSUER, "u-1", ["admin"], audience=AUD)


async def test_unknown_roles_are_dropped(tmp_path: Path) -> None:
    assert (
        await decode_token(key_set(tmp_path), customer(roles=["customer", "admin"]), audience=AUD)
    ).roles == {"customer"}


async def test_a_new_key_in_the_jwks_file_is_picked_up_without_a_restart(tmp_path: Path) -> None:
    keys = key_set(tmp_path, ISSUER)
    rotated = SigningKey.generate(new_kid())
    with pytest.raises(Problem):
        await decode_token(keys, customer(rotated), audience=AUD)
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document([ISSUER, rotated])))
    assert (await decode_token(keys, customer(rotated), audience=AUD)).subject == "u-zhangsan"
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document([rotated])))
    keys._loaded_at = 0.0  # as after max_age: the retired key is dropped at the next load
    with pytest.raises(Problem):
        await decode_token(keys, customer(ISSUER), audience=AUD)


def _jwks_server(documents: list[dict]) -> tuple[httpx.ASGITransport, list[int]]:
    app, fetches = FastAPI(), []

    @app.get("/.well-known/jwks.json")
    async def jwks() -> dict:
        fetches.append(1)
        return documents[-1]

    return httpx.ASGITransport(app=app), fetches


async def test_a_jwks_url_is_fetched_cached_by_kid_and_refetched_for_a_new_key() -> None:
    documents = [jwks_document([ISSUER])]
    transport, fetches = _jwks_server(documents)
    keys = KeySet(url="http://idp/.well-known/jwks.json", transport=transport, min_refresh=0.0)
    for _ in range(3):
        assert (await decode_token(keys, customer(), audience=AUD)).subject == "u-zhangsan"
    assert len(fetches) == 1, "known kids are served from the cache"
    rotated = SigningKey.generate(new_kid())
    documents.append(jwks_document([ISSUER, rotated]))
    assert (await decode_token(keys, customer(rotated), audience=AUD)).subject == "u-zhangsan"
    assert len(fetches) == 2


async def test_made_up_kids_cannot_make_the_service_fetch_in_a_loop() -> None:
    transport, fetches = _jwks_server([jwks_document([ISSUER])])
    keys = KeySet(url="http://idp/.well-known/jwks.json", transport=transport, min_refresh=60.0)
    await decode_token(keys, customer(), audience=AUD)
    for _ in range(20):
        with pytest.raises(Problem):
            await decode_token(keys, customer(SigningKey.generate(new_kid())), audience=AUD)
    assert len(fetches) == 1


async def test_an_unreachable_jwks_url_is_503_not_401() -> None:
    keys = KeySet(url="http://127.0.0.1:1/jwks.json")
    with pytest.raises(Problem) as raised:
        await decode_token(keys, customer(), audience=AUD)
    assert raised.value.status == 503 and raised.value.headers == {"Retry-After": "5"}


async def test_an_identity_provider_s_jwks_never_vouches_for_a_service(tmp_path: Path) -> None:
    impostor = SigningKey.generate(
        new_kid("verification")
    )  # a service-shaped kid, served by the identity provider
    transport, _ = _jwks_server([jwks_document([ISSUER, impostor])])
    (tmp_path / "services.json").write_text(json.dumps(jwks_document([VERIFICATION])))
    keys = KeySet(
        url="http://idp/.well-known/jwks.json",
        file=tmp_path / "services.json",
        transport=transport,
        min_refresh=0.0,
    )
    keys.load_now()
    audience = audience_of("notification")
    assert (await decode_token(keys, customer(aud=[audience]), audience=audience)).subject == "u-zhangsan", (
        "customers from the identity provider"
    )
    real = issue_token(VERIFICATION, "verification", ["service"], audience=audience)
    assert (await decode_token(keys, real, audience=audience)).roles == {"service"}, "services from the file"
    with pytest.raises(Problem):
        await decode_token(
            keys, issue_token(impostor, "verification", ["service"], audience=audience), audience=audience
        )
    assert await keys.get(impostor.kid) is None


async def test_an_empty_jwks_url_is_no_url(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Compose hands `UNBIND_JWKS_URL` through as empty when no identity provider is set: the file alone
    is read, and nothing tries to fetch an empty URL (a warning on every refresh)."""
    (tmp_path / "jwks.json").write_text(json.dumps(jwks_document([ISSUER])))
    keys = KeySet(url="", file=tmp_path / "jwks.json", min_refresh=0.0)
    keys.load_now()
    assert await keys.get(SigningKey.generate(new_kid()).kid) is None
    assert (await decode_token(keys, customer(), audience=AUD)).subject == "u-zhangsan"
    assert "JWKS URL not reloaded" not in caplog.text
