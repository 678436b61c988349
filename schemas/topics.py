"""The one definition of every Kafka topic privaflow uses, and how to create and reconfigure them.

The stream workers, `privaflow retention apply` and the local stack create topics from this table
on any Kafka cluster, and the Kubernetes manifests are generated from it and checked against it, so
partitions, retention and cleanup policy cannot drift between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from privaflow.schemas.codec import schema_names

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


# the stream workers' Faust app id: prefix of their consumer group and their own topics (and so of their ACLs)
STREAMS_APP_ID = "privaflow-streams"

DETECTIONS = "privaflow.detections.v2"  # DetectionBatch records: several frames of one camera (schemas.detections)
DETECTIONS_DLQ = "privaflow.detections.dlq.v2"
LINE_CROSSINGS = "privaflow.events.line-crossings.v1"
ZONE_EVENTS = "privaflow.events.zone-events.v1"

# Partner tables: table name -> its schema file stem. Every schemas/avro/partner_<table>.avsc is one
# (streams/tables.py declares how each is computed; a test holds the two together)
PARTNER_TABLES: dict[str, str] = {
    stem.removeprefix("partner_"): stem for stem in schema_names() if stem.startswith("partner_")}


# A partner topic's version goes up when its schema changes in a way the registry refuses as
# incompatible: a new topic and subject, never a silent break of the old one (whose records stay
# readable with the old schema until retention removes them). v2: class_name, age_bracket and gender
# became closed-vocabulary enums (schemas/vocabulary.py); Avro cannot read a string as an enum.
PARTNER_TOPIC_VERSIONS: dict[str, int] = {"traffic_volume": 2, "attributes": 2}


def partner_topic_name(table: str) -> str:
    """`occupancy` -> `privaflow.partner.occupancy.v1`, `traffic_volume` -> `privaflow.partner.traffic-volume.v2`."""
    return f"privaflow.partner.{table.replace('_', '-')}.v{PARTNER_TOPIC_VERSIONS.get(table, 1)}"


def all_topics(detections_retention_ms: int = 7 * DAY_MS, partner_retention_ms: int = 365 * DAY_MS,
               partitions: int = 6) -> list[Topic]:
    """Every topic, with retentions taken from the site config (defaults: 7 days / 1 year)."""
    topics = [
        Topic(DETECTIONS, partitions, detections_retention_ms, "delete", "detection_batch"),
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


# ---------------------------------------------------------------- on a cluster


def topics_for_site(site: object | None = None) -> list[Topic]:
    """All topics with retentions from a site config (or the defaults)."""
    if site is None:
        return all_topics()
    ret = site.retention  # type: ignore[attr-defined]
    return all_topics(int(ret.detections_days * DAY_MS), int(ret.partner_days * DAY_MS))


def _admin(bootstrap: str, extra: dict[str, str] | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, **(extra or {})})


def ensure_topics(bootstrap: str, topics: list[Topic] | None = None, extra: dict[str, str] | None = None,
                  timeout: float = 30) -> list[str]:
    """Create the topics that are missing (existing ones are left alone); returns the names created."""
    topics = topics or all_topics()
    admin = _admin(bootstrap, extra)
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics([NewTopic(t.name, t.partitions, 1, config=t.config()) for t in missing],
                                  operation_timeout=timeout)
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except Exception as e:  # another process may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    return created


def apply_retention(bootstrap: str, topics: list[Topic], extra: dict[str, str] | None = None,
                    timeout: float = 30) -> dict[str, str]:
    """Set retention.ms and cleanup.policy of existing topics to the definition; returns name -> retention."""
    admin = _admin(bootstrap, extra)
    existing = set(admin.list_topics(timeout=timeout).topics)
    chosen = [t for t in topics if t.name in existing]
    resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.config().items()])
        for t in chosen]
    if not resources:
        return {}
    for fut in admin.incremental_alter_configs(resources, request_timeout=timeout).values():
        fut.result()
    return {t.name: t.config()["retention.ms"] for t in chosen}
