"""The keys and secrets of one installation, generated on its first start: nothing secret comes from
the repository, and no two installations share a key.

Under `<var>/keys/` (a folder of mode 0700, every file 0600):

    jwks.json            the public keys every service trusts (the issuer's and each service's)
    issuer.jwk           the development identity provider's private key: `unbind token` and the
                         dashboard's login links sign customer and ops tokens with it; no service holds it
    <service>.jwk        a service's private key (events, service tokens), for those that sign, and
                         customer-system.jwk: the bank's customer system, which tells risk of
                         profile changes (in production it brings its own key, added to the JWKS)
    <secret>.secret      a service's secret, e.g. otp_hmac_key for verification

`unbind keys generate --out DIR` writes the same set for a deployment (compose, Kubernetes), plus
`secrets.env` with the secrets as `UNBIND_<NAME>=` lines. With `--compose`, the files the services
read (`service_files`) are 0644 inside the 0700 folder: compose bind-mounts a secret file with its
host mode, and the containers' user (uid 10001) is not its owner.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from shared.auth import MAX_SUBJECT_LENGTH, audience_of, issue_token
from shared.keys import SigningKey, UnusableKey, jwks_document, new_kid
from shared.login_links import write_login_link
from tools.errors import InfraError
from tools.kafka_secrets import MOUNTED_MODE
from tools.services import APPS, load_settings, settings_class

KEYS_DIR = "keys"
LOGIN_LINKS_DIR = "login-links"
ISSUER_KEY = "issuer.jwk"
JWKS_FILE = "jwks.json"
# A login link is good once, for this long.
LOGIN_LINK_TTL_SECONDS = 600
# How long the ops session a login link opens lasts.
LOGIN_SESSION_TTL_SECONDS = 8 * 3600
# Callers outside the four services that hold a service key of their own.
EXTERNAL_CALLERS = ("customer-system",)
# Default subject of an ops token, so `unbind token --role ops` needs no --user.
OPS_SUBJECT = "ops-admin"
# The development operator holds every staff role (shared.auth).
STAFF_ROLES = ("ops", "reviewer", "rules_admin")


def _write_private(path: Path, text: str) -> None:
    """Create `path` with mode 0600 from the start (never readable by others, not even for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def signing_services() -> list[str]:
    """Every holder of a service key: the services that sign, and the external callers."""
    return [*(service for service in APPS if settings_class(service).needs_signing_key), *EXTERNAL_CALLERS]


def service_secrets(service: str) -> tuple[str, ...]:
    return settings_class(service).required_secrets


def all_secrets() -> list[str]:
    return sorted({name for service in APPS for name in service_secrets(service)})


@dataclass(frozen=True)
class InstallationKeys:
    """Where one installation's keys and secrets are."""

    dir: Path

    @property
    def jwks_file(self) -> Path:
        return self.dir / JWKS_FILE

    @property
    def issuer_key_file(self) -> Path:
        return self.dir / ISSUER_KEY

    def service_key_file(self, service: str) -> Path:
        return self.dir / f"{service}.jwk"

    def secret_file(self, name: str) -> Path:
        return self.dir / f"{name}.secret"

    def secret(self, name: str) -> str:
        return self.secret_file(name).read_text().strip()

    def generate_missing(self) -> list[str]:
        """Create every key and secret not there yet, and the JWKS of all keys; what was created."""
        _private_dir(self.dir)
        created: list[str] = []
        keys: list[SigningKey] = []
        for owner, path in [
            (None, self.issuer_key_file),
            *((service, self.service_key_file(service)) for service in signing_services()),
        ]:
            if not path.exists():
                _write_private(path, json.dumps(SigningKey.generate(new_kid(owner)).private_jwk()))
                created.append(path.name)
            keys.append(_load(path))
        for name in all_secrets():
            if not self.secret_file(name).exists():
                _write_private(self.secret_file(name), secrets.token_urlsafe(48))
                created.append(self.secret_file(name).name)
        document = json.dumps(jwks_document(keys), indent=2)
        if not self.jwks_file.exists() or self.jwks_file.read_text() != document:
            partial = self.dir / f".{JWKS_FILE}.partial"
            partial.unlink(missing_ok=True)
            _write_private(partial, document)
            partial.replace(self.jwks_file)  # atomic: a service reloading it never reads half a file
            created.append(JWKS_FILE)
        return created

    def service_files(self) -> list[Path]:
        """What the services read: the JWKS, the signing services' own keys and their secrets; never the
        issuer's key or an external caller's, which stay with whoever mints their tokens."""
        signing = (
            self.service_key_file(service) for service in APPS if settings_class(service).needs_signing_key
        )
        return [self.jwks_file, *signing, *(self.secret_file(name) for name in all_secrets())]

    def service_env(self, service: str) -> dict[str, str]:
        """What one service process is given: the JWKS, its own key, its own secrets, nothing else."""
        env = {"UNBIND_JWKS_FILE": str(self.jwks_file)}
        if settings_class(service).needs_signing_key:
            env["UNBIND_SIGNING_KEY_FILE"] = str(self.service_key_file(service))
        for name in service_secrets(service):
            env[f"UNBIND_{name.upper()}"] = self.secret(name)
        return env

    def service_key(self, service: str) -> SigningKey:
        path = self.service_key_file(service)
        if not path.exists():
            raise InfraError(
                f"No key of {service!r} in {self.dir}; the holders of service keys are "
                f"{', '.join(signing_services())}."
            )
        return _load(path)

    def issuer(self) -> SigningKey:
        if not self.issuer_key_file.exists():
            raise InfraError(
                f"No issuer key in {self.dir}: `unbind up` creates one for a development installation. "
                "In production, customer and ops tokens come from your identity provider."
            )
        return _load(self.issuer_key_file)


def installation_keys(var_dir: Path) -> InstallationKeys:
    return InstallationKeys(Path(var_dir).resolve() / KEYS_DIR)


def _load(path: Path) -> SigningKey:
    try:
        return SigningKey.load(path)
    except UnusableKey as exc:
        raise InfraError(
            f"{exc}. Delete it to have a new one generated (tokens and events it signed stop being trusted)."
        ) from None


def all_audiences() -> list[str]:
    return [audience_of(service) for service in APPS]


def login_links_dir(var_dir: Path) -> Path:
    return Path(var_dir).resolve() / LOGIN_LINKS_DIR


def new_login_link(var_dir: Path, dashboard_url: str, *, subject: str) -> str:
    """A one-time dashboard sign-in link (shared.login_links) opening a staff session: the development
    operator reads, decides reviews and changes rules; the dashboard forwards the token to each service."""
    token = TokenMinter(var_dir).token(
        subject, list(STAFF_ROLES), ttl_seconds=LOGIN_SESSION_TTL_SECONDS, audience=all_audiences()
    )
    code = write_login_link(login_links_dir(var_dir), token, LOGIN_LINK_TTL_SECONDS)
    return f"{dashboard_url.rstrip('/')}/login?code={code}"


class TokenMinter:
    """Tokens of a development installation, for the tools that play its customers, ops users and
    callers: a customer's or ops user's from the issuer key, a service's from that service's own key."""

    def __init__(self, var_dir: Path):
        self._keys = installation_keys(var_dir)
        self._issuer = load_settings(APPS[0], var_dir).jwt_issuer
        self._signers: dict[str, SigningKey] = {}

    def _signer(self, subject: str, roles: list[str]) -> SigningKey:
        name = subject if "service" in roles else ""
        if name not in self._signers:
            self._signers[name] = self._keys.service_key(subject) if name else self._keys.issuer()
        return self._signers[name]

    def token(
        self, subject: str, roles: list[str], *, ttl_seconds: int = 3600, audience: list[str] | None = None
    ) -> str:
        if "service" in roles and set(roles) != {"service"}:
            raise InfraError("A service token carries the service role alone.")
        return issue_token(
            self._signer(subject, roles),
            subject,
            roles,
            audience=audience or all_audiences(),
            ttl_seconds=ttl_seconds,
            issuer=self._issuer,
        )

    def headers(self, subject: str, role: str = "customer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, [role])}"}


def token(
    var_dir: Path,
    user: str | None,
    roles: list[str],
    ttl_seconds: int | None,
    *,
    audience: list[str] | None = None,
) -> str:
    """`unbind token`: a development token (see TokenMinter)."""
    subject = user or (OPS_SUBJECT if set(roles) & set(STAFF_ROLES) else None)
    if not subject:
        raise InfraError(
            "Give --user ID (e.g. --user u-zhangsan); only an ops token has a default subject (ops-admin)."
        )
    if len(subject) > MAX_SUBJECT_LENGTH or not subject.isprintable():
        raise InfraError(
            f"--user must be printable and at most {MAX_SUBJECT_LENGTH} characters: the services refuse any "
            f"other subject."
        )
    ttl = ttl_seconds if ttl_seconds is not None else 900
    if ttl <= 0:
        raise InfraError(f"--ttl must be positive, not {ttl}.")
    return TokenMinter(var_dir).token(subject, roles, ttl_seconds=ttl, audience=audience)


def generate_for_deployment(out: Path, *, compose: bool = False) -> int:
    """`unbind keys generate --out DIR [--compose]`: the JWKS, the private keys and the secrets of a
    deployment, and `secrets.env` holding the secrets as environment lines. Keys already in the folder
    are kept, so running it again is safe. Every file is 0600; with `compose`, the files the services
    read are 0644 (inside the 0700 folder), since compose mounts them with their host mode."""
    keys = InstallationKeys(Path(out).resolve())
    created = keys.generate_missing()
    lines = "".join(f"UNBIND_{name.upper()}={keys.secret(name)}\n" for name in all_secrets())
    env_file = keys.dir / "secrets.env"
    env_file.unlink(missing_ok=True)
    _write_private(env_file, lines)
    # Set on every run, so the option of the last run holds for keys made earlier too.
    for path in keys.service_files():
        path.chmod(MOUNTED_MODE if compose else 0o600)
    print(
        f"keys: {keys.dir}: "
        + (f"generated {', '.join(created)}" if created else "every key was there already")
        + "; secrets.env written"
    )
    if compose:
        print(
            f"keys: {', '.join(path.name for path in keys.service_files())} are 0644, for compose's mounts; "
            f"the folder stays 0700."
        )
    print(
        "keys: the *.jwk and *.secret files and secrets.env are secret: never commit them (the .gitignore of "
        "deploy/ keeps them out)."
    )
    return 0
