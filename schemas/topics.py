"""The one definition of every Kafka topic privaflow uses.

The local stack creates topics from this table and the Kubernetes manifests are checked
against it, so partitions, retention and cleanup policy cannot drift between the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class Topic:
    """A topic, its value schema (file stem in schemas/avro) and its broker settings."""

    name: str
    partitions: int
    retention_ms: int
    cleanup_policy: str  # "delete", "compact" or "compact,delete"
    value_schema: str | None  # None: the payload is not Avro (e.g. the DLQ carries raw bytes + headers)
    partner_table: str | None = None  # set for partner topics: the table they publish
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def value_subject(self) -> str:
        """Confluent TopicNameStrategy subject for the value schema."""
        return f"{self.name}-value"

    def config(self) -> dict[str, str]:
        """Broker-side topic config, as passed to CreateTopics / KafkaTopic.spec.config."""
        cfg = {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}
        cfg.update(self.extra_config)
        return cfg


DETECTIONS = "privaflow.detections.v1"
DETECTIONS_DLQ = "privaflow.detections.dlq.v1"
LINE_CROSSINGS = "privaflow.events.line-crossings.v1"
ZONE_EVENTS = "privaflow.events.zone-events.v1"

# Partner tables: table name -> (topic, schema file stem)
PARTNER_TABLES: dict[str, str] = {
    "traffic_volume": "partner_traffic_volume",
    "occupancy": "partner_occupancy",
    "flow_lines": "partner_flow_lines",
    "dwell": "partner_dwell",
    "attributes": "partner_attributes",
}


def partner_topic_name(table: str) -> str:
    """`traffic_volume` -> `privaflow.partner.traffic-volume.v1`."""
    return f"privaflow.partner.{table.replace('_', '-')}.v1"


def all_topics(detections_retention_ms: int = 7 * DAY_MS, partner_retention_ms: int = 365 * DAY_MS,
               partitions: int = 6) -> list[Topic]:
    """Every topic, with retentions taken from the site config (defaults: 7 days / 1 year)."""
    topics = [
        Topic(DETECTIONS, partitions, detections_retention_ms, "delete", "frame_detections"),
        Topic(DETECTIONS_DLQ, 1, 30 * DAY_MS, "delete", None),
        Topic(LINE_CROSSINGS, partitions, detections_retention_ms, "delete", "line_crossing"),
        Topic(ZONE_EVENTS, partitions, detections_retention_ms, "delete", "zone_event"),
    ]
    for table, schema in PARTNER_TABLES.items():
        # compact: the key (table+site+dims+window) makes a re-published window replace itself
        topics.append(Topic(partner_topic_name(table), 3, partner_retention_ms, "compact,delete", schema,
                            partner_table=table))
    return topics


def topic(name: str, topics: list[Topic] | None = None) -> Topic:
    """Look a topic up by name."""
    for t in topics or all_topics():
        if t.name == name:
            return t
    raise KeyError(f"unknown topic {name!r}")
