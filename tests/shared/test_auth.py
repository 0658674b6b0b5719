"""Bearer JWTs: who the caller is and which roles they hold."""

from __future__ import annotations

import jwt
import pytest

from shared.auth import decode_token, issue_token
from shared.problems import Problem

SECRET = "s" * 40


def test_round_trip() -> None:
    principal = decode_token(SECRET, issue_token(SECRET, "u-zhangsan", ["customer"]))
    assert principal.subject == "u-zhangsan"
    assert principal.roles == {"customer"}


@pytest.mark.parametrize(
    "token",
    [
        issue_token("another-secret-of-sufficient-length!!", "u-zhangsan", ["customer"]),
        issue_token(SECRET, "u-zhangsan", ["customer"], ttl_seconds=-10),
        issue_token(SECRET, "u-zhangsan", ["customer"], issuer="elsewhere"),
        jwt.encode({"sub": "u-zhangsan", "roles": ["ops"], "iss": "unbind"}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u-zhangsan", "roles": "ops", "iss": "unbind", "exp": 4102444800}, SECRET, algorithm="HS256"),
        jwt.encode({"sub": "u-zhangsan", "roles": ["ops"], "iss": "unbind", "exp": 4102444800}, SECRET, algorithm="HS512"),
        "not.a.token",
    ],
    ids=["wrong-secret", "expired", "wrong-issuer", "no-exp", "roles-not-a-list", "other-algorithm", "garbage"],
)
def test_invalid_tokens_are_401(token: str) -> None:
    with pytest.raises(Problem) as raised:
        decode_token(SECRET, token)
    assert raised.value.status == 401
    assert raised.value.headers == {"WWW-Authenticate": "Bearer"}


def test_unknown_roles_are_dropped_and_cannot_be_issued() -> None:
    token = jwt.encode({"sub": "u-1", "roles": ["customer", "admin"], "iss": "unbind", "exp": 4102444800}, SECRET, algorithm="HS256")
    assert decode_token(SECRET, token).roles == {"customer"}
    with pytest.raises(ValueError):
        issue_token(SECRET, "u-1", ["admin"])
