"""Prometheus collectors shared by the services.

Every collector is registered on the CollectorRegistry of one app, never on the global default:
tests run several apps in one process, and each app's `/metrics` must show only its own counts.
Labels take values from closed sets (event types, channels, statuses, routes): never an id, a
phone number or anything a client chooses.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

# Label value for a record whose type cannot be trusted (not a valid CloudEvent): its header
# could hold anything, and a label must not take values a producer chooses.
MALFORMED = "malformed"
# Methods a route may answer; anything else a client sends is counted as "other".
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ConsumerMetrics:
    """What the consumer runner did with the events of the types the service subscribes to."""

    def __init__(self, registry: CollectorRegistry):
        self.handled = Counter(
            "unbind_events_handled",
            "Events handled, by CloudEvent type: counted once, when the transaction that handled the event "
            "committed",
            ["type"],
            registry=registry,
        )
        self.duplicates = Counter(
            "unbind_events_duplicates",
            "Redelivered events found in the inbox and ignored, by type (counted when that transaction "
            "committed)",
            ["type"],
            registry=registry,
        )
        self.failed = Counter(
            "unbind_events_failed",
            "Failed handler attempts, by type: each attempt of the event-by-event path that raised "
            "(a failed batch is re-run event by event, so a failure is counted where it recurs); an "
            "unreachable database is not counted, the event is read again",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "unbind_events_rejected",
            "Events refused and dead-lettered at once, by type and reason: not signed by the type's one "
            "source (unsigned, wrong-source, unknown-key, wrong-key, bad-signature) or at odds with the "
            "service's state (state)",
            ["type", "reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "unbind_events_dead_lettered",
            f"Records copied to the dead-letter topic, by type ({MALFORMED!r}: not a valid CloudEvent)",
            ["type"],
            registry=registry,
        )
