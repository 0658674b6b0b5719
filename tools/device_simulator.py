"""A software stand-in for the phone's secure element, used by the tests, the demo, chaos and the
bench: it holds a P-256 private key and signs challenges exactly as the app would (see
services/verification/biometric.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.verification.biometric import signed_message
from shared.encoding import b64url, b64url_decode

# The demo device of u-zhangsan (design.md: "one enrolled device key"). Its key is derived from a
# public seed, like every development default: it is demo data, never a production credential.
DEMO_DEVICE_ID = "d-zhangsan-phone"
_DEMO_SEED = b"unbind development demo device: Zhang San's phone"
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@dataclass
class DeviceSimulator:
    device_id: str
    private_key: ec.EllipticCurvePrivateKey
    counter: int = 0

    @classmethod
    def generate(cls, device_id: str, counter: int = 0) -> DeviceSimulator:
        return cls(device_id, ec.generate_private_key(ec.SECP256R1()), counter)

    @classmethod
    def demo(cls, counter: int = 0) -> DeviceSimulator:
        scalar = int.from_bytes(hashlib.sha256(_DEMO_SEED).digest(), "big") % (_P256_ORDER - 1) + 1
        return cls(DEMO_DEVICE_ID, ec.derive_private_key(scalar, ec.SECP256R1()), counter)

    @property
    def public_key_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def enrolment(self, name: str = "Phone") -> dict[str, str]:
        """The body of `POST /v1/devices`."""
        return {"device_id": self.device_id, "public_key": self.public_key_pem, "name": name}

    def sign(
        self,
        challenge: str,
        verification_id: str,
        request_id: str,
        impact_hash: str,
        *,
        counter: int | None = None,
    ) -> dict[str, object]:
        """The body of `POST /v1/verifications/{id}/biometric`: the fingerprint unlocked the key,
        which signs the challenge bound to this verification, request and impact."""
        if counter is None:
            self.counter += 1
            counter = self.counter
        message = signed_message(
            b64url_decode(challenge), verification_id, request_id, impact_hash, counter=counter
        )
        signature = self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        return {
            "device_id": self.device_id,
            "challenge": challenge,
            "signature": b64url(signature),
            "counter": counter,
        }
