"""`unbind device sign`: the demo phone (Zhang San's enrolled device key) passes the biometric
step of a verification, as the app would after the fingerprint: it asks for a challenge, signs
it with the device key over the verification, the request and the impact, and submits it."""

from __future__ import annotations

import time

import httpx

from tools.device_simulator import DeviceSimulator
from tools.errors import InfraError


def sign(verification_url: str, token: str, verification_id: str) -> dict:
    """Run the biometric step against the verification service; returns the verification."""
    # A wall-clock counter keeps going up across separate runs of this command.
    device = DeviceSimulator.demo(counter=int(time.time()))
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=verification_url, headers=headers, timeout=10, trust_env=False) as client:
        challenge = client.post(f"/v1/verifications/{verification_id}/biometric/challenge")
        if challenge.status_code != 201:
            raise InfraError(f"No challenge: {challenge.status_code} {challenge.text}")
        issued = challenge.json()
        body = device.sign(issued["challenge"], verification_id, issued["request_id"], issued["impact_hash"])
        result = client.post(f"/v1/verifications/{verification_id}/biometric", json=body)
        if result.status_code != 200:
            raise InfraError(f"Signature refused: {result.status_code} {result.text}")
        return result.json()
