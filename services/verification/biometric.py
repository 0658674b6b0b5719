"""The device-key biometric protocol (in the manner of WebAuthn / IFAA).

The phone holds an EC P-256 key in its secure hardware, unlocked by the fingerprint; the server
knows only the public key. To pass, the device signs, with ECDSA-SHA256 (DER signature, sent as
base64url), exactly these bytes:

    b"UNBIND-BIOMETRIC-V1" 0x00
    challenge          the 32 raw bytes the server issued (sent as base64url without padding)
    verification_id    UTF-8, then 0x00
    request_id         UTF-8, then 0x00
    impact_hash        64 lowercase hex characters (ASCII), then 0x00
    counter            unsigned 64-bit big-endian

so a signature is good for one challenge, one verification, one unbind request and the impact the
customer saw, and its counter must exceed the last one the server accepted from that device.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DOMAIN = b"UNBIND-BIOMETRIC-V1"
CHALLENGE_BYTES = 32


def signed_message(
    challenge: bytes, verification_id: str, request_id: str, impact_hash: str, *, counter: int
) -> bytes:
    if len(challenge) != CHALLENGE_BYTES:
        raise ValueError("a challenge is 32 bytes")
    return b"".join(
        [
            DOMAIN,
            b"\x00",
            challenge,
            verification_id.encode(),
            b"\x00",
            request_id.encode(),
            b"\x00",
            impact_hash.encode("ascii"),
            b"\x00",
            counter.to_bytes(8, "big"),
        ]
    )


def load_p256_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """The public key of a PEM, if it is an EC key on P-256; ValueError otherwise."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an EC P-256 public key")
    return key


def signature_valid(public_key_pem: str, message: bytes, signature: bytes) -> bool:
    try:
        load_p256_public_key(public_key_pem).verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
