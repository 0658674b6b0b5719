"""The test session's own keys and secrets, generated at start exactly as `unbind up` generates an
installation's: an issuer key for customer and ops tokens, each service's key, the JWKS and the
secrets. Tokens and events of the tests are signed with them; nothing is shared with any other run."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from shared.auth import issue_token
from shared.keys import SigningKey
from tools.keys import InstallationKeys, all_audiences, service_secrets

KEYS = InstallationKeys(Path(tempfile.mkdtemp(prefix="unbind-test-keys-")))
KEYS.generate_missing()
ISSUER = KEYS.issuer()


def service_key(service: str) -> SigningKey:
    return KEYS.service_key(service)


def key_settings(service: str, settings_class: Any) -> dict[str, Any]:
    """The key and secret settings a service is started with."""
    settings: dict[str, Any] = {"jwks_file": KEYS.jwks_file}
    if settings_class.needs_signing_key:
        settings["signing_key_file"] = KEYS.service_key_file(service)
    for name in service_secrets(service):
        settings[name] = KEYS.secret(name)
    return settings


def token(
    subject: str,
    *roles: str,
    ttl_seconds: int = 24 * 3600,
    audience: list[str] | None = None,
    key: SigningKey | None = None,
) -> str:
    """A customer's or ops user's token from the test issuer; a service token (`token("verification",
    "service")`) from that service's own key. A day, not 15 minutes: modules mint tokens at import."""
    roles = roles or ("customer",)
    signer = key or (service_key(subject) if "service" in roles else ISSUER)
    return issue_token(signer, subject, roles, audience=audience or all_audiences(), ttl_seconds=ttl_seconds)
