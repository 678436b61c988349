"""Who may read and write what: the roles of a privaflow cluster, their Kafka ACLs and their schema
registry roles. Part of the contract because every deployment derives from it: the Kubernetes
KafkaUsers and registry users (k8s/generate_topics.py) and the local secure stack (stack/security.py).

The edge writes detections only; the stream workers read detections and write events, partner topics,
operator topics and the dead-letter topic, and they alone read and write their book of DP releases;
the API (partner HTTP API and operator dashboard) reads partner and operator topics; each partner
reads only the partner topics of the tables it was granted: the shared k-anonymous ones, or, for a
differential-privacy partner, its own (never the shared ones, never the operator's).
The schema registry follows the same rule for writes: edge and streams may register schemas,
partners may only read them, anonymous callers get nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from privaflow.schemas.topics import (
    DETECTIONS,
    DETECTIONS_DLQ,
    DP_RELEASES,
    OPERATOR_PREFIX,
    STREAMS_APP_ID,
    dp_topic_name,
    partner_topic_name,
)

MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Acl:
    """One allow rule: principal may `operation` on resource `kind` named `name` (literal or prefixed)."""

    kind: str  # TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID
    name: str
    operation: str  # READ, WRITE, DESCRIBE, CREATE, ALL, IDEMPOTENT_WRITE, ...
    pattern: str = "LITERAL"  # or PREFIXED


def partner_topics(partner_id: str, tables: Sequence[str], dp: bool = False) -> list[str]:
    """The topics a partner may read: its tables' shared topics, or its own DP topics."""
    return [dp_topic_name(partner_id, t) if dp else partner_topic_name(t) for t in tables]


def role_acls(partners: Mapping[str, Sequence[str]], dp: Collection[str] = ()) -> dict[str, list[Acl]]:
    """user -> ACLs, for the fixed roles plus one user per partner (id -> tables it receives; `dp`:
    ids of the differential-privacy partners)."""
    acls: dict[str, list[Acl]] = {
        "edge": [Acl("TOPIC", DETECTIONS, "WRITE"), Acl("TOPIC", DETECTIONS, "DESCRIBE"),
                 Acl("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE")],
        "streams": [
            Acl("TOPIC", DETECTIONS, "READ"), Acl("TOPIC", DETECTIONS, "DESCRIBE"),
            Acl("TOPIC", DETECTIONS_DLQ, "WRITE"), Acl("TOPIC", DETECTIONS_DLQ, "DESCRIBE"),
            Acl("TOPIC", "privaflow.events.", "WRITE", "PREFIXED"),
            Acl("TOPIC", "privaflow.events.", "DESCRIBE", "PREFIXED"),
            Acl("TOPIC", "privaflow.partner.", "WRITE", "PREFIXED"),
            Acl("TOPIC", "privaflow.partner.", "DESCRIBE", "PREFIXED"),
            Acl("TOPIC", OPERATOR_PREFIX, "WRITE", "PREFIXED"), Acl("TOPIC", OPERATOR_PREFIX, "DESCRIBE", "PREFIXED"),
            # the book of DP releases (streams/releases.py): written before partner records, read at start
            Acl("TOPIC", DP_RELEASES, "READ"), Acl("TOPIC", DP_RELEASES, "WRITE"),
            Acl("TOPIC", DP_RELEASES, "DESCRIBE"),
            # Faust's own changelog/repartition topics and its consumer group
            Acl("TOPIC", STREAMS_APP_ID, "ALL", "PREFIXED"), Acl("GROUP", STREAMS_APP_ID, "ALL", "PREFIXED"),
            Acl("TRANSACTIONAL_ID", STREAMS_APP_ID, "ALL", "PREFIXED"),
            Acl("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE"), Acl("CLUSTER", "kafka-cluster", "DESCRIBE"),
        ],
        # the partner API and dashboard: every partner table (it serves each partner its own) and the
        # operator's unsuppressed tables (the operator view, behind the operator token)
        "api": [Acl("TOPIC", "privaflow.partner.", "READ", "PREFIXED"),
                Acl("TOPIC", "privaflow.partner.", "DESCRIBE", "PREFIXED"),
                Acl("TOPIC", OPERATOR_PREFIX, "READ", "PREFIXED"),
                Acl("TOPIC", OPERATOR_PREFIX, "DESCRIBE", "PREFIXED"),
                Acl("GROUP", "privaflow-api-", "READ", "PREFIXED")],
        # Apicurio's kafkasql storage: its journal topics, and any group (each replica picks its own group id)
        "registry": [Acl("TOPIC", "kafkasql-", "ALL", "PREFIXED"),
                     Acl("TOPIC", "registry-", "ALL", "PREFIXED"), Acl("GROUP", "*", "ALL"),
                     Acl("CLUSTER", "kafka-cluster", "DESCRIBE"), Acl("CLUSTER", "kafka-cluster", "CREATE"),
                     Acl("CLUSTER", "kafka-cluster", "IDEMPOTENT_WRITE")],
    }
    for pid, tables in partners.items():
        rules = [Acl("GROUP", f"partner-{pid}-", "READ", "PREFIXED")]
        for name in partner_topics(pid, tables, pid in dp):
            rules += [Acl("TOPIC", name, "READ"), Acl("TOPIC", name, "DESCRIBE")]
        acls[f"partner-{pid}"] = rules
    return acls


def registry_role(user: str) -> str | None:
    """The Apicurio role of a user on the registry's HTTP API, or None for no access at all.
    streams is admin because it also sets compatibility rules; api (the partner HTTP API, which decodes
    partner records) and partners only read; `registry` (the registry's own Kafka identity) and `admin`
    (the broker's) never call the HTTP API. Kubernetes users are named `privaflow-<role>`."""
    if user.startswith("partner-"):
        return "sr-readonly"
    return {"edge": "sr-developer", "streams": "sr-admin", "api": "sr-readonly"}.get(user.removeprefix("privaflow-"))


# Apicurio's HTTP API behind Basic auth with role-based authorization; anonymous callers get nothing
# (Apicurio's own default, apicurio.auth.anonymous-read-access.enabled=false, is left alone)
REGISTRY_AUTH = ("quarkus.http.auth.basic=true", "apicurio.auth.role-based-authorization=true")


def registry_user_lines(user: str, password: str) -> list[str]:
    """The embedded user and its role, in Quarkus properties."""
    return [f"quarkus.security.users.embedded.users.{user}={password}",
            f"quarkus.security.users.embedded.roles.{user}={registry_role(user)}"]
