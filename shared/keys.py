"""Keys: the JWKS every service trusts, and a service's own signing key.

Every signature in unbind is asymmetric, so a service holds only the public keys of the others, and
no key it holds can sign what it must not. The trusted public keys are one JWKS document, by `kid`:

    svc.<service>.<suffix>   a service's key: it signs that service's events and the service tokens
                             naming that service as `sub`, nothing else
    any other kid            an identity provider's key: it signs customer and ops tokens, never a
                             service token and never an event

A service's private key is a JWK file (Ed25519), `UNBIND_SIGNING_KEY_FILE`. The trusted keys come from
`UNBIND_JWKS_FILE` (read: the services' own public keys, and in development the issuer's) and/or
`UNBIND_JWKS_URL` (fetched: an identity provider's JWKS, whose `svc.*` kids are ignored, so an
identity provider can never vouch for a service). They are loaded again when a token or an event
names a kid not held (at most every `min_refresh` seconds, so made-up kids cannot make it fetch in a
loop) and after `max_age` anyway: a new key is picked up, and a retired one dropped, without a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.exceptions import PyJWKError

from shared.encoding import b64url, b64url_decode

log = logging.getLogger(__name__)

SERVICE_KID_PREFIX = "svc."
# The only signature algorithms trusted; each key is used with its own, never one a token names.
TRUSTED_ALGORITHMS = frozenset({"EdDSA", "ES256"})
MAX_JWKS_BYTES = 256 * 1024


class UnusableKey(ValueError):
    """A key file or JWKS document that cannot be used."""


class KeySetUnavailable(Exception):
    """The JWKS could not be loaded (its URL did not answer, its file is gone or broken)."""


def service_of_kid(kid: str) -> str | None:
    """The service a kid belongs to (`svc.<service>.<suffix>`), or None for an identity provider's key."""
    if not kid.startswith(SERVICE_KID_PREFIX):
        return None
    service, _, suffix = kid[len(SERVICE_KID_PREFIX) :].partition(".")
    return service if service and suffix else None


def new_kid(owner: str | None = None) -> str:
    """A fresh kid: `svc.<owner>.<random>` for a service's key, `idp.<random>` for an issuer's."""
    suffix = uuid.uuid4().hex[:12]
    return f"{SERVICE_KID_PREFIX}{owner}.{suffix}" if owner else f"idp.{suffix}"


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key with its kid: a service's (events, service tokens) or an issuer's (customer and
    ops tokens)."""

    kid: str
    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid, Ed25519PrivateKey.generate())

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> SigningKey:
        if (
            jwk.get("kty") != "OKP"
            or jwk.get("crv") != "Ed25519"
            or not isinstance(jwk.get("d"), str)
            or not isinstance(jwk.get("kid"), str)
        ):
            raise UnusableKey(
                "a signing key is a private Ed25519 JWK (kty OKP, crv Ed25519) with a kid and d"
            )
        try:
            return cls(jwk["kid"], Ed25519PrivateKey.from_private_bytes(b64url_decode(jwk["d"])))
        except ValueError as exc:
            raise UnusableKey("the JWK's private key is not a valid Ed25519 key") from exc

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        try:
            return cls.from_jwk(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise UnusableKey(f"{path}: {exc}") from exc

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def public_jwk(self) -> dict[str, str]:
        raw = self.private_key.public_key().public_bytes_raw()
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(raw),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }

    def private_jwk(self) -> dict[str, str]:
        return {**self.public_jwk(), "d": b64url(self.private_key.private_bytes_raw())}


@dataclass(frozen=True)
class TrustedKey:
    """A public key of the JWKS, with the one algorithm it is used with and whose it is."""

    kid: str
    algorithm: str
    key: Any
    # The service whose key this is (svc.<service>.*), None for an identity provider's.
    service: str | None

    def verifies(self, signature: bytes, data: bytes) -> bool:
        """Whether `signature` is this (Ed25519) key's signature of `data`."""
        if not isinstance(self.key, Ed25519PublicKey):
            return False
        try:
            self.key.verify(signature, data)
        except Exception:  # noqa: BLE001 - InvalidSignature, or a signature of the wrong length
            return False
        return True


def parse_jwks(document: Any) -> dict[str, TrustedKey]:
    """The usable signing keys of a JWKS document by kid; raises UnusableKey for a malformed document."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UnusableKey('a JWKS is a JSON object with a "keys" list')
    keys: dict[str, TrustedKey] = {}
    for jwk in document["keys"]:
        if (
            not isinstance(jwk, dict)
            or not isinstance(jwk.get("kid"), str)
            or jwk.get("use", "sig") != "sig"
            or "d" in jwk
        ):
            continue  # not a public signing key of ours (a private key has no place in a JWKS)
        try:
            parsed = jwt.PyJWK(jwk)
        except (PyJWKError, ValueError, TypeError):
            log.warning("JWKS key skipped: not usable", extra={"kid": jwk["kid"][:64]})
            continue
        service = service_of_kid(jwk["kid"])
        if parsed.algorithm_name not in TRUSTED_ALGORITHMS or (service and parsed.algorithm_name != "EdDSA"):
            continue
        keys[jwk["kid"]] = TrustedKey(jwk["kid"], parsed.algorithm_name, parsed.key, service)
    return keys


def jwks_document(keys: list[SigningKey]) -> dict[str, Any]:
    return {"keys": [key.public_jwk() for key in keys]}


class KeySet:
    """The trusted public keys by kid, from a JWKS file and/or URL, reloaded on an unknown kid and with
    age."""

    def __init__(
        self,
        *,
        url: str | None = None,
        file: Path | None = None,
        max_age: float = 300.0,
        min_refresh: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        if not url and not file:
            raise ValueError("a key set reads a JWKS file, a JWKS URL or both")
        # An empty setting (compose hands one through when no identity provider is set) is no URL.
        self._url = url or None
        self._file = Path(file) if file else None
        self._max_age = max_age
        self._min_refresh = min_refresh
        self._transport = transport
        self._from_file: dict[str, TrustedKey] = {}
        self._from_url: dict[str, TrustedKey] = {}
        self._keys: dict[str, TrustedKey] = {}
        self._loaded_at: float | None = None
        self._tried_at = float("-inf")
        self._lock = asyncio.Lock()

    @property
    def source(self) -> str:
        return " and ".join(str(source) for source in (self._file, self._url) if source)

    def load_now(self) -> None:
        """Read the JWKS file synchronously, at start: a service without it refuses to start (a URL is
        fetched on first use)."""
        assert self._file is not None, "only a JWKS file is read at start"
        self._from_file = parse_jwks(self._read_file())
        self._install()

    async def get(self, kid: str) -> TrustedKey | None:
        """The trusted key named `kid`, or None. Raises KeySetUnavailable when the JWKS cannot be loaded
        and no copy of it is held."""
        now = time.monotonic()
        key = self._keys.get(kid)
        stale = self._loaded_at is None or now - self._loaded_at > self._max_age
        if (key is None or stale) and now - self._tried_at >= self._min_refresh:
            await self._refresh()
            key = self._keys.get(kid)
        if self._loaded_at is None:
            raise KeySetUnavailable(f"the JWKS at {self.source} could not be loaded")
        return key

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._tried_at < self._min_refresh:
                return  # another caller refreshed while this one waited
            self._tried_at = time.monotonic()
            loaded = False
            try:
                if self._file is not None:
                    self._from_file = parse_jwks(await asyncio.to_thread(self._read_file))
                    loaded = True
            except (KeySetUnavailable, UnusableKey) as exc:
                # The keys held stay in use: a JWKS that blinks must not lock everyone out.
                log.warning(
                    "JWKS file not reloaded", extra={"source": str(self._file), "error": str(exc)[:300]}
                )
            try:
                if self._url is not None:
                    # An identity provider vouches for customers and ops, never for a service.
                    self._from_url = {
                        kid: key
                        for kid, key in parse_jwks(await self._fetch()).items()
                        if key.service is None
                    }
                    loaded = True
            except (KeySetUnavailable, UnusableKey) as exc:
                log.warning("JWKS URL not reloaded", extra={"source": self._url, "error": str(exc)[:300]})
            if loaded:
                self._install()

    def _install(self) -> None:
        self._keys = {**self._from_url, **self._from_file}
        self._loaded_at = time.monotonic()

    def _read_file(self) -> Any:
        assert self._file is not None
        try:
            return json.loads(self._file.read_bytes()[:MAX_JWKS_BYTES])
        except OSError as exc:
            raise KeySetUnavailable(f"{self._file}: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise UnusableKey(f"{self._file} is not JSON") from exc

    async def _fetch(self) -> Any:
        assert self._url is not None
        try:
            async with httpx.AsyncClient(
                transport=self._transport, timeout=httpx.Timeout(5.0, connect=2.0)
            ) as client:
                response = await client.get(self._url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise KeySetUnavailable(f"{self._url}: {type(exc).__name__}") from exc
        if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
            raise KeySetUnavailable(f"{self._url} answered {response.status_code}")
        try:
            return response.json()
        except ValueError as exc:
            raise UnusableKey(f"{self._url} did not answer JSON") from exc
