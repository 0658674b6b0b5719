"""How a Kafka client proves who it is: SASL/SCRAM over TLS, or over plain TCP on loopback only.

Every aiokafka client of the project (services, dashboard, the `unbind` tools, the bench) is built
with `KafkaSecurity.client_options()`, so none can talk to the broker unauthenticated; the broker's
ACLs then decide what each principal may do (see tools/kafka.py for the local broker's).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any, Literal

SecurityProtocol = Literal["SASL_SSL", "SASL_PLAINTEXT"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]


@dataclass(frozen=True)
class KafkaSecurity:
    """One principal's SASL credentials and the transport they travel on."""

    username: str
    password: str = field(repr=False)
    protocol: SecurityProtocol = "SASL_SSL"
    mechanism: SaslMechanism = "SCRAM-SHA-512"
    # The CA that signed the brokers' certificates (SASL_SSL); None: the system's trust store.
    cafile: str | None = None

    def client_options(self) -> dict[str, Any]:
        """The keyword arguments aiokafka's producer, consumer and admin client take."""
        options: dict[str, Any] = {
            "security_protocol": self.protocol,
            "sasl_mechanism": self.mechanism,
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
        }
        if self.protocol == "SASL_SSL":
            # Certificate and host name checked (create_default_context's defaults).
            options["ssl_context"] = ssl.create_default_context(cafile=self.cafile)
        return options

    def as_principal(self, username: str, password: str) -> KafkaSecurity:
        """The same transport, another principal."""
        return KafkaSecurity(username, password, self.protocol, self.mechanism, self.cafile)
