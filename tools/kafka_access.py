"""Who may reach Kafka and what each may do: the principals, their credentials and the ACLs.

Every client authenticates with SASL/SCRAM-SHA-512 as one principal (a user):

    admin           the infrastructure tools (topics, ACLs, `unbind dlq`, `unbind chaos`, the
                    tests' and the bench's topic readers); a super user of the broker
    binding, verification, risk, notification, dashboard
                    one per service, allowed what its ACLs allow and nothing else

The local broker's controller listener has a user of its own, ``controller`` (SASL/PLAIN: SCRAM
cannot authenticate a KRaft controller, whose SCRAM credentials live in the log it serves).

ACLs (KRaft's StandardAuthorizer with allow.everyone.if.no.acl.found=false: no ACL, no access),
for an event topic T and its dead-letter topic D:

    a service that emits events (the `emitted_by` of some type in shared.events)   WRITE T
    a service that consumes events (it has an inbox)   READ T, WRITE D (dead letters), READ its groups
    dashboard                                           READ T and D, READ its groups

A service's groups are those named ``unbind-<service>`` or longer (a PREFIXED pattern), which covers
the default group and the tests' ``unbind-<service>-<topic>``. Topic ACLs are LITERAL: a service
reaches the topics it was granted and no other.

Passwords are made per installation (``secrets.token_urlsafe``) into ``<var>/kafka/credentials.json``
(mode 0600), never into the repository, never printed.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import IntEnum
from pathlib import Path
from typing import Any

from shared.kafka_security import KafkaSecurity
from tools.errors import InfraError

ADMIN = "admin"
CONTROLLER = "controller"
DASHBOARD = "dashboard"
# A file as `unbind kafka up` writes it, naming the principals of an external cluster (the tests'
# `unbind up` runs use the test broker's); without it, an external cluster is reached as KAFKA_SASL_*.
CREDENTIALS_ENV = "UNBIND_KAFKA_CREDENTIALS"


@dataclass(frozen=True)
class EventTopics:
    """An event topic and its dead-letter topic: what the ACLs of one installation are about."""

    topic: str = "unbind.events"
    dlq_topic: str = "unbind.events.dlq"

    @property
    def names(self) -> list[str]:
        return [self.topic, self.dlq_topic]


def service_principals() -> tuple[str, ...]:
    """One principal per service, named after it."""
    from shared.migrations import SERVICES  # lazily: `unbind kafka status` needs none of it

    return (*SERVICES, DASHBOARD)


def principals() -> tuple[str, ...]:
    """Every name in a credentials file."""
    return (ADMIN, CONTROLLER, *service_principals())


# --------------------------------------------------------------------------- credentials


def read_credentials(path: Path) -> dict[str, str]:
    """{principal: password} of a credentials file; {} when there is none."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InfraError(
            f"Cannot read the Kafka credentials in {path}: {exc}. Delete it (and the broker's data beside "
            f"it) to start afresh."
        ) from None
    if not isinstance(data, dict) or not all(isinstance(value, str) and value for value in data.values()):
        raise InfraError(f"{path} is not a Kafka credentials file ({{principal: password}}).")
    return data


def create_credentials(path: Path) -> dict[str, str]:
    """A new password for every principal, written with mode 0600 (never printed)."""
    passwords = {name: secrets.token_urlsafe(32) for name in principals()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as fh:
        json.dump(passwords, fh, indent=2)
    partial.replace(path)
    return passwords


def local_security(principal: str, password: str) -> KafkaSecurity:
    """A principal of a broker on loopback: SCRAM without TLS (nothing leaves the machine)."""
    return KafkaSecurity(principal, password, protocol="SASL_PLAINTEXT")


# --------------------------------------------------------------------------- a cluster, as someone


@dataclass(frozen=True)
class Cluster:
    """A Kafka cluster as one principal reaches it (by default the admin, for the tools)."""

    bootstrap: str
    security: KafkaSecurity
    # Every principal's password where this installation made them (else only `security`'s).
    passwords: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def local(cls, bootstrap: str, passwords: Mapping[str, str]) -> Cluster:
        return cls(bootstrap, local_security(ADMIN, passwords[ADMIN]), passwords)

    @property
    def principal(self) -> str:
        return self.security.username

    def as_principal(self, principal: str) -> Cluster:
        """The same cluster, reached as another principal of this installation."""
        if principal not in self.passwords:
            raise InfraError(
                f"No password for the Kafka principal {principal!r} is known here (the credentials of "
                f"{self.bootstrap} name {sorted(self.passwords)})."
            )
        return replace(self, security=self.security.as_principal(principal, self.passwords[principal]))

    def client_options(self) -> dict[str, Any]:
        """bootstrap_servers and the SASL/TLS keyword arguments of any aiokafka client."""
        return {"bootstrap_servers": self.bootstrap, **self.security.client_options()}

    def service_env(self, service: str) -> dict[str, str]:
        """The environment that makes a service process connect as its own principal; {} when this
        installation does not know its password (the caller's KAFKA_SASL_* then apply)."""
        if service not in self.passwords:
            return {}
        security = self.as_principal(service).security
        env = {
            "KAFKA_SECURITY_PROTOCOL": security.protocol,
            "KAFKA_SASL_MECHANISM": security.mechanism,
            "KAFKA_SASL_USERNAME": security.username,
            "KAFKA_SASL_PASSWORD": security.password,
        }
        if security.cafile:
            env["KAFKA_SSL_CAFILE"] = security.cafile
        return env


def external_cluster(bootstrap: str) -> Cluster:
    """A cluster this project did not start: its principals from the file UNBIND_KAFKA_CREDENTIALS
    names (reached over loopback SASL_PLAINTEXT, as that file's broker is), else the admin from the
    environment's KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_* and KAFKA_SSL_CAFILE."""
    from shared.settings import (
        KafkaClientSettings,
        RefusedToStart,
    )  # lazily: pydantic is not needed for `status`

    named = os.environ.get(CREDENTIALS_ENV, "").strip()
    if named:
        passwords = read_credentials(Path(named))
        if ADMIN not in passwords:
            raise InfraError(f"{CREDENTIALS_ENV}={named} names no file with an {ADMIN!r} password.")
        return Cluster.local(bootstrap, passwords)
    try:
        security = KafkaClientSettings().kafka_security()
    except RefusedToStart as exc:
        raise InfraError(
            f"{exc.reason} (or set {CREDENTIALS_ENV} to a credentials file of that cluster)"
        ) from None
    return Cluster(bootstrap, security)


# --------------------------------------------------------------------------- ACLs


class _Resource(IntEnum):
    TOPIC = 2
    GROUP = 3


class _Pattern(IntEnum):
    LITERAL = 3
    PREFIXED = 4


class _Operation(IntEnum):
    ANY = 1
    READ = 3
    WRITE = 4


_ALLOW = 3
_ANY_PERMISSION = 1


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule: `principal` may do `operation` on a topic or group named (or prefixed) `name`."""

    principal: str
    operation: _Operation
    resource: _Resource
    name: str
    pattern: _Pattern = _Pattern.LITERAL

    def describe(self) -> str:
        pattern = "*" if self.pattern is _Pattern.PREFIXED else ""
        return f"User:{self.principal} {self.operation.name} {self.resource.name} {self.name}{pattern}"


def emitters() -> set[str]:
    """The services that emit events: only they may write the event topic."""
    from shared.events import EVENT_TYPES

    return {event.emitted_by for event in EVENT_TYPES.values()}


def service_acls(topics: EventTopics) -> list[Acl]:
    """Every service's ACLs on `topics` (see the module docstring)."""
    from shared.migrations import SERVICES  # the consumers: each service with a database has an inbox

    acls = [Acl(service, _Operation.WRITE, _Resource.TOPIC, topics.topic) for service in sorted(emitters())]
    for service in SERVICES:
        acls += [
            Acl(service, _Operation.READ, _Resource.TOPIC, topics.topic),
            Acl(service, _Operation.WRITE, _Resource.TOPIC, topics.dlq_topic),
            Acl(service, _Operation.READ, _Resource.GROUP, f"unbind-{service}", _Pattern.PREFIXED),
        ]
    acls += [
        Acl(DASHBOARD, _Operation.READ, _Resource.TOPIC, topics.topic),
        Acl(DASHBOARD, _Operation.READ, _Resource.TOPIC, topics.dlq_topic),
        Acl(DASHBOARD, _Operation.READ, _Resource.GROUP, f"unbind-{DASHBOARD}", _Pattern.PREFIXED),
    ]
    return acls


@functools.cache
def _requests() -> tuple[type, type]:
    """CreateAcls v1 and DeleteAcls v1 requests carrying many entries in one round trip.

    aiokafka 0.14's admin client has no ACL methods and its request builders carry one entry;
    Kafka 4 still takes v1 of both (only v0 was removed, KIP-896).
    """
    from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest_v1
    from aiokafka.protocol.api import Request

    class CreateAcls(Request[CreateAclsRequest_v1]):
        API_KEY = 30

        def __init__(self, acls: list[Acl]):
            self._acls = acls

        def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
            return request_struct_class(
                [
                    (acl.resource, acl.name, acl.pattern, f"User:{acl.principal}", "*", acl.operation, _ALLOW)
                    for acl in self._acls
                ]
            )

    class DeleteAcls(Request[DeleteAclsRequest_v1]):
        API_KEY = 31

        def __init__(self, topics: list[str]):
            self._topics = topics

        def build(self, request_struct_class: type[DeleteAclsRequest_v1]) -> DeleteAclsRequest_v1:
            # Any principal, host, operation and permission on exactly these topic names.
            return request_struct_class(
                [
                    (_Resource.TOPIC, name, _Pattern.LITERAL, None, None, _Operation.ANY, _ANY_PERMISSION)
                    for name in self._topics
                ]
            )

    return CreateAcls, DeleteAcls


async def _send(admin: Any, request: Any) -> Any:
    # The admin client's own request path (any broker forwards ACL changes to the controller).
    return await admin._client.send(admin._client.get_random_node(), request)


async def grant_service_acls(admin: Any, topics: EventTopics) -> None:
    """Create every service's ACLs on `topics` with a started admin client, in one round trip.

    Idempotent: the broker keeps one copy of an ACL created twice.
    """
    create, _ = _requests()
    acls = service_acls(topics)
    response = await _send(admin, create(acls))
    failed = [
        f"{acl.describe()}: {message or code}"
        for acl, (code, message) in zip(acls, response.creation_responses, strict=True)
        if code
    ]
    if failed:
        raise InfraError("Creating Kafka ACLs failed: " + "; ".join(failed))


async def revoke_topic_acls(admin: Any, topic_names: Iterable[str]) -> None:
    """Delete every ACL on exactly these topic names (the test topics', when they are dropped)."""
    _, delete = _requests()
    response = await _send(admin, delete(list(topic_names)))
    failed = [f"{message or code}" for code, message, _ in response.filter_responses if code]
    if failed:
        raise InfraError("Deleting Kafka ACLs failed: " + "; ".join(failed))
