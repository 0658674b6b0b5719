"""Nothing secret is in the repository: no private key, no default secret, no key file. Every
installation generates its own (`unbind up`, `unbind keys generate`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# A PEM private key, a JWK with its private member, or a secret-looking setting with a literal value.
SUSPECTS = [
    re.compile(r"BEGIN [A-Z ]*PRIVATE KEY"),
    re.compile(r'"d"\s*:\s*"[A-Za-z0-9_-]{20,}"'),
    re.compile(
        r"(?i)(secret|password|passwd|api_key|signing_key|hmac_key)[a-z_]*\s*[:=]\s*[rbf]?['\"][^'\"${}\s]{8,}['\"]"
    ),
]


def tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    return [ROOT / name.decode() for name in listed if name]


def test_no_private_key_or_default_secret_is_committed() -> None:
    files = tracked_files()
    assert len(files) > 100, "git ls-files listed the repository"
    # This file names the patterns; the key files a deployment generates must never be tracked at all.
    assert not [
        path
        for path in files
        if path.suffix in (".jwk", ".secret", ".pem", ".key") or path.name in ("secrets.env", "jwks.json")
    ]
    findings = []
    for path in files:
        if path == Path(__file__) or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        findings += [
            f"{path.relative_to(ROOT)}: {match.group(0)[:60]}"
            for pattern in SUSPECTS
            for match in pattern.finditer(text)
        ]
    assert findings == []
