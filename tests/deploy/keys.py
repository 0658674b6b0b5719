"""What a service must be given of the keys, for the compose and Kubernetes checks alike."""

from __future__ import annotations

from shared.settings import ServiceSettings


def key_settings(cls: type[ServiceSettings]) -> dict[str, str]:
    """{environment variable: what it names} of every key and secret a service needs, each a file from a
    mounted secret: the JWKS, its own signing key if it signs, each of its required secrets."""
    needed = {"UNBIND_JWKS_FILE": "the JWKS"}
    if cls.needs_signing_key:
        needed["UNBIND_SIGNING_KEY_FILE"] = "its signing key"
    return needed | {f"UNBIND_{name.upper()}_FILE": name for name in cls.required_secrets}
