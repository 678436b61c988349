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
# The stream workers' book of differentially private releases (streams/releases.py): each DP window's
# noisy grid, written before its partner records, so a replay after a crash republishes the same noise.
# Internal: read and written by the streams role only (schemas/access.py); noisy releases, no track id.
DP_RELEASES = "privaflow.dp-releases.v1"
# at least this long, so that a replay finds every release it may repeat (see all_topics)
DP_RELEASES_MIN_RETENTION_MS = 3 * DAY_MS

# Partner tables: table name -> its schema file stem. Every schemas/avro/partner_<table>.avsc is one
# (streams/tables.py declares how each is computed; a test holds the two together)
PARTNER_TABLES: dict[str, str] = {
    stem.removeprefix("partner_"): stem for stem in schema_names() if stem.startswith("partner_")}


# A partner topic's version goes up when its schema changes in a way the registry refuses as
# incompatible: a new topic and subject, never a silent break of the old one (whose records stay
# readable with the old schema until retention removes them). v2: class_name, age_bracket and gender
# became closed-vocabulary enums (schemas/vocabulary.py); Avro cannot read a string as an enum.
PARTNER_TOPIC_VERSIONS: dict[str, int] = {"traffic_volume": 2, "attributes": 2}


def _dashed(table: str) -> str:
    return f"{table.replace('_', '-')}.v{PARTNER_TOPIC_VERSIONS.get(table, 1)}"


def partner_topic_name(table: str) -> str:
    """`occupancy` -> `privaflow.partner.occupancy.v1`, `traffic_volume` -> `privaflow.partner.traffic-volume.v2`:
    the k-anonymous table, shared by every k-anonymity partner that receives it (under the largest k)."""
    return f"privaflow.partner.{_dashed(table)}"


# Differentially private tables go to a topic per partner: the same count released twice to one reader
# with independent noise could be averaged (docs/privacy-model.md, rule d). Still under
# privaflow.partner., where the workers write and the API reads.
DP_PARTNER_PREFIX = "privaflow.partner.dp."


def dp_topic_name(partner_id: str, table: str) -> str:
    """`("city", "traffic_volume")` -> `privaflow.partner.dp.city.traffic-volume.v2`: one partner's
    differentially private table (same schema as the shared one)."""
    return f"{DP_PARTNER_PREFIX}{partner_id}.{_dashed(table)}"


# Every closed window without any disclosure rule, for the operator's own view (the dashboard's
# operator mode): same Avro shapes as the partner tables, readable only by the api role
# (schemas/access.py), never by a partner.
OPERATOR_PREFIX = "privaflow.operator."


def operator_topic_name(table: str) -> str:
    """`traffic_volume` -> `privaflow.operator.traffic-volume.v2`."""
    return f"{OPERATOR_PREFIX}{_dashed(table)}"


def all_topics(detections_retention_ms: int = 7 * DAY_MS, partner_retention_ms: int = 365 * DAY_MS,
               partitions: int = 6, dp_partners: dict[str, list[str]] | None = None) -> list[Topic]:
    """Every topic, with retentions taken from the site config (defaults: 7 days / 1 year).
    `dp_partners` (partner id -> tables) adds each differential-privacy partner's own topics.

    The DP release book holds noisy partner values only (no track id, nothing below the partners'
    own records).

    Dead letters hold whole detection records as received (pseudonymous track ids, ms timestamps,
    attributes), so they are kept no longer than the detections (rule f). Operator tables are
    unsuppressed aggregates: kept as long as the detections they summarise, not as long as what
    partners may keep."""
    topics = [
        Topic(DETECTIONS, partitions, detections_retention_ms, "delete", "detection_batch"),
        Topic(DETECTIONS_DLQ, 1, detections_retention_ms, "delete", None),
        Topic(LINE_CROSSINGS, partitions, detections_retention_ms, "delete", "line_crossing"),
        Topic(ZONE_EVENTS, partitions, detections_retention_ms, "delete", "zone_event"),
        # compact: one record per (partner, table, camera, window); a replay reads detections, so it
        # never reaches further back than they are kept: their retention, and never under 3 days.
        # JSON, not Avro: the worker's own bookkeeping, like Faust's changelog (no reader outside it)
        Topic(DP_RELEASES, 1, max(detections_retention_ms, DP_RELEASES_MIN_RETENTION_MS), "compact,delete", None),
    ]
    for table, schema in PARTNER_TABLES.items():
        # compact: the key (table+site+dims+window) makes a re-published window replace itself
        topics.append(Topic(partner_topic_name(table), 3, partner_retention_ms, "compact,delete", schema,
                            partner_table=table))
    for table, schema in PARTNER_TABLES.items():
        topics.append(Topic(operator_topic_name(table), 3, detections_retention_ms, "compact,delete", schema,
                            partner_table=table))
    for partner_id, tables in sorted((dp_partners or {}).items()):
        for table in tables:
            topics.append(Topic(dp_topic_name(partner_id, table), 3, partner_retention_ms, "compact,delete",
                                PARTNER_TABLES[table], partner_table=table))
    return topics


def topic(name: str, topics: list[Topic] | None = None) -> Topic:
    """Look a topic up by name (a differential-privacy partner's topic by the shape of its name)."""
    for t in topics or all_topics():
        if t.name == name:
            return t
    if name.startswith(DP_PARTNER_PREFIX):
        partner, _, rest = name[len(DP_PARTNER_PREFIX):].partition(".")
        for table in PARTNER_TABLES:
            if partner and rest == _dashed(table):
                return all_topics(dp_partners={partner: [table]})[-1]
    raise KeyError(f"unknown topic {name!r}")


# ---------------------------------------------------------------- on a cluster


def topics_for_site(site: object | None = None) -> list[Topic]:
    """All topics with retentions from a site config (or the defaults), with the topics of its
    differential-privacy partners."""
    if site is None:
        return all_topics()
    ret = site.retention  # type: ignore[attr-defined]
    return all_topics(round(ret.detections_days * DAY_MS), round(ret.partner_days * DAY_MS),
                      dp_partners=dp_partner_tables(site))


def dp_partner_tables(site: object) -> dict[str, list[str]]:
    """Partner id -> tables, for the site's differential-privacy partners."""
    return {p.id: list(p.tables) for p in site.partners if p.dp}  # type: ignore[attr-defined]


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
