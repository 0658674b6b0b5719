"""`unbind kafka secrets`: the Kafka credentials and TLS files of one compose installation.

Written into a git-ignored folder (default ``deploy/secrets/kafka``, mode 0700), nothing printed
but the file names; docker-compose.yml reads them (``env_file`` and ``secrets``). The env files are
read by compose itself (mode 0600); the two PEM files are bind-mounted into containers that run as
other users, so they are 0644 inside the private folder::

    ca.pem            the CA that signed the broker's certificate: every client's KAFKA_SSL_CAFILE
    broker.pem        the broker's private key (PKCS#8) and certificate chain (ssl.keystore.type=PEM)
    broker.env        KAFKA_ADMIN_PASSWORD and KAFKA_CONTROLLER_PASSWORD, for the broker's own config
    admin.env         KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD of the admin, for the setup job
    users.env         KAFKA_PASSWORD_<SERVICE> of every service, for the setup job (SCRAM users)
    <service>.env     that service's KAFKA_SASL_PASSWORD, and nothing of any other service's

With ``--k8s`` it writes ``deploy/k8s/common/kafka.env`` instead: every principal's password, for
the Secret ``unbind-kafka`` (the cluster's CA, ``kafka-ca.pem`` beside it, is its operator's).
An existing file is never overwritten: delete the folder to make new ones (see docs/security.md on rotation).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from tools.errors import InfraError
from tools.kafka_access import ADMIN, CONTROLLER, principals, service_principals

# The names the broker is reached by in compose (and from the host, through the published port).
BROKER_HOSTS = ("kafka", "localhost", "127.0.0.1")
CERTIFICATE_DAYS = 825
# Readable by the containers' users (the kafka image's appuser, the unbind image's 10001).
MOUNTED_MODE = 0o644
DEFAULT_OUT = Path("deploy/secrets/kafka")
DEFAULT_K8S_FILE = Path("deploy/k8s/common/kafka.env")


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "w") as fh:
        os.fchmod(fh.fileno(), mode)  # whatever the umask
        fh.write(text)


def _env(values: dict[str, str]) -> str:
    return "".join(f"{name}={value}\n" for name, value in values.items())


def _certificates(hosts: tuple[str, ...]) -> tuple[str, str]:
    """(CA certificate, broker key + certificate chain), PEM; the CA's key is not kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unbind Kafka CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    broker = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERTIFICATE_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    ca_pem = ca.public_bytes(pem).decode()
    return ca_pem, key_pem + broker.public_bytes(pem).decode() + ca_pem


def write_compose_secrets(out: Path, extra_hosts: tuple[str, ...] = ()) -> list[Path]:
    """Every file docker-compose.yml reads, with new passwords and a new CA; returns them."""
    import secrets

    if out.exists() and any(out.iterdir()):
        raise InfraError(
            f"{out} already holds secrets; nothing was overwritten. Delete it first to make new ones (every "
            f"service then needs a restart)."
        )
    out.mkdir(parents=True, exist_ok=True)
    out.chmod(0o700)
    passwords = {name: secrets.token_urlsafe(32) for name in principals()}
    ca_pem, broker_pem = _certificates((*BROKER_HOSTS, *extra_hosts))
    files = {
        "ca.pem": ca_pem,
        "broker.pem": broker_pem,
        "broker.env": _env(
            {"KAFKA_ADMIN_PASSWORD": passwords[ADMIN], "KAFKA_CONTROLLER_PASSWORD": passwords[CONTROLLER]}
        ),
        "admin.env": _env({"KAFKA_SASL_USERNAME": ADMIN, "KAFKA_SASL_PASSWORD": passwords[ADMIN]}),
        "users.env": _env(
            {f"KAFKA_PASSWORD_{service.upper()}": passwords[service] for service in service_principals()}
        ),
        **{
            f"{service}.env": _env({"KAFKA_SASL_PASSWORD": passwords[service]})
            for service in service_principals()
        },
    }
    for name, text in files.items():
        _write(out / name, text, MOUNTED_MODE if name.endswith(".pem") else 0o600)
    return [out / name for name in files]


def write_k8s_secrets(path: Path) -> list[Path]:
    """The env file of the Secret `unbind-kafka`: every principal's password under its name."""
    import secrets

    if path.exists():
        raise InfraError(f"{path} exists; nothing was overwritten. Delete it first to make new passwords.")
    _write(path, _env({name: secrets.token_urlsafe(32) for name in (ADMIN, *service_principals())}))
    return [path]
