"""Everything a stream worker is configured with, in one typed object.

The site YAML says *what* to compute; these settings say *how this process runs*: where Kafka and
the registry are, which consumer group it joins, where it keeps state and how it batches. They
come from command-line options with environment fallbacks, the same variables the Kubernetes
manifests set (k8s/base/streams.yaml), so a worker runs unchanged on a laptop and in the cluster.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from privaflow.schemas.codec import bootstrap_servers, kafka_client_config, registry_url
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import (
    DETECTIONS,
    DETECTIONS_DLQ,
    LINE_CROSSINGS,
    STREAMS_APP_ID,
    ZONE_EVENTS,
    partner_topic_name,
)

APP_ID = STREAMS_APP_ID
Store = Literal["memory", "rocksdb"]


@dataclass(frozen=True)
class TopicNames:
    """Physical topic names. `prefix` is empty in production; tests and benchmarks set one so runs
    sharing a broker never read each other's data. Schema subjects stay those of the unprefixed
    topics (same schemas), so a prefix does not multiply registry subjects."""

    prefix: str = ""

    @property
    def detections(self) -> str:
        return self.prefix + DETECTIONS

    @property
    def dlq(self) -> str:
        return self.prefix + DETECTIONS_DLQ

    @property
    def line_crossings(self) -> str:
        return self.prefix + LINE_CROSSINGS

    @property
    def zone_events(self) -> str:
        return self.prefix + ZONE_EVENTS

    def partner(self, table: str) -> str:
        return self.prefix + partner_topic_name(table)

    def canonical(self, name: str) -> str:
        """The unprefixed name, as in schemas/topics.py."""
        return name[len(self.prefix):] if self.prefix and name.startswith(self.prefix) else name


@dataclass(frozen=True)
class WorkerSettings:
    """How one worker process runs. Every field has a working default for the local stack."""

    site: SiteConfig
    bootstrap: str = field(default_factory=bootstrap_servers)
    registry_url: str = field(default_factory=registry_url)
    app_id: str = APP_ID
    topics: TopicNames = field(default_factory=TopicNames)
    web_port: int = 6066
    # /tables serves unsuppressed aggregates of open windows: this machine only unless told otherwise
    # (--web-host; the Kubernetes manifest opens it for the kubelet's probes, behind a deny-all policy)
    web_host: str = "127.0.0.1"
    data_dir: Path = Path(".privaflow/streams")
    store: Store = "memory"
    # batching: faust costs ~0.2 ms per message, so work is done per batch; `batch_within_s` bounds
    # the latency it adds when traffic is light
    batch_max: int = 2000
    batch_within_s: float = 0.2
    # camera states go to the table (changelog) at most this often; a crash replays at most this much.
    # 15 s: at 900 cameras on two workers, 5-s checkpoints of states that keep each contribution's
    # track (the disclosure policy's distinct objects) outran Faust's changelog producer (docs/scaling.md)
    checkpoint_s: float = 15.0
    # processing-time fallback: a camera silent this long (wall clock) has its open windows closed
    idle_timeout_s: float = 60.0
    idle_check_s: float | None = None  # default: half the idle timeout, between 0.5 and 5 s
    # liveness: /healthz fails when records wait in the group's partitions and no batch was
    # processed for this long (a consumer wedged after a broker outage; the supervisor restarts it)
    stall_timeout_s: float = 120.0
    # closed windows kept in memory for the HTTP view
    recent_closed_s: float = 24 * 3600.0
    recent_closed_max: int = 20_000
    standby_replicas: int = 1
    replication_factor: int = 1
    group_instance_id: str | None = None
    kafka: Mapping[str, str] = field(default_factory=dict)  # security settings, librdkafka names
    # fault injection for the crash tests: exit hard right after the N-th publication of closed
    # windows, before the state that produced them is written (the worst moment to die)
    fault_exit_after_publish: int | None = None
    # and for the liveness test: stop taking batches after the N-th, as a wedged consumer does
    fault_stall_after_batches: int | None = None
    # and for the commit test: detections offsets (first, last) that reach the agent but that Faust then
    # never counts as acked, as when it loses delivered records under load
    fault_unacked_offsets: tuple[int, int] | None = None

    def with_(self, **changes: Any) -> WorkerSettings:
        return replace(self, **changes)

    @property
    def idle_check_interval_s(self) -> float:
        return self.idle_check_s or max(0.5, min(5.0, self.idle_timeout_s / 2))

    def faust_broker(self) -> str:
        """`h1:9092,h2:9092` -> faust's `kafka://h1:9092;kafka://h2:9092`."""
        return ";".join(f"kafka://{h.strip()}" for h in self.bootstrap.split(",") if h.strip())

    def librdkafka(self) -> dict[str, Any]:
        """Config for confluent-kafka clients (admin, tests): bootstrap plus security."""
        return {"bootstrap.servers": self.bootstrap, **self.kafka}

    def aiokafka_auth(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka clients: the security settings, as faust passes them."""
        from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

        return dict(credentials_to_aiokafka_auth(self.faust_credentials()))

    def faust_credentials(self) -> Any:
        """faust credentials for the security settings, or None for PLAINTEXT."""
        import faust

        proto = self.kafka.get("security.protocol", "PLAINTEXT").upper()
        if proto == "PLAINTEXT":
            return None
        ctx = None
        if proto.endswith("SSL"):
            ctx = ssl.create_default_context(cafile=self.kafka.get("ssl.ca.location"))
        if proto.startswith("SASL"):
            return faust.SASLCredentials(username=self.kafka.get("sasl.username"),
                                         password=self.kafka.get("sasl.password"),
                                         mechanism=self.kafka.get("sasl.mechanism", "PLAIN"), ssl_context=ctx)
        return faust.SSLCredentials(ctx)


def from_environment(site: SiteConfig, env: Mapping[str, str] | None = None, **overrides: Any) -> WorkerSettings:
    """Settings from the PRIVAFLOW_* variables (see k8s/base/streams.yaml), then `overrides`
    (command-line options) on top; `None` overrides are ignored."""
    env = os.environ if env is None else env
    s: dict[str, Any] = {"site": site, "kafka": kafka_client_config(dict(env))}
    if env.get("PRIVAFLOW_BOOTSTRAP"):
        s["bootstrap"] = env["PRIVAFLOW_BOOTSTRAP"]
    if env.get("PRIVAFLOW_REGISTRY_URL"):
        s["registry_url"] = env["PRIVAFLOW_REGISTRY_URL"]
    if env.get("PRIVAFLOW_STREAMS_APP_ID"):
        s["app_id"] = env["PRIVAFLOW_STREAMS_APP_ID"]
    if env.get("PRIVAFLOW_TOPIC_PREFIX"):
        s["topics"] = TopicNames(env["PRIVAFLOW_TOPIC_PREFIX"])
    if env.get("PRIVAFLOW_WEB_PORT"):
        s["web_port"] = int(env["PRIVAFLOW_WEB_PORT"])
    if env.get("PRIVAFLOW_WEB_HOST"):
        s["web_host"] = env["PRIVAFLOW_WEB_HOST"]
    if env.get("PRIVAFLOW_STATE_DIR"):
        s["data_dir"] = Path(env["PRIVAFLOW_STATE_DIR"])
    if env.get("PRIVAFLOW_GROUP_INSTANCE_ID"):
        s["group_instance_id"] = env["PRIVAFLOW_GROUP_INSTANCE_ID"]
    if env.get("PRIVAFLOW_TOPIC_REPLICATION_FACTOR"):
        s["replication_factor"] = int(env["PRIVAFLOW_TOPIC_REPLICATION_FACTOR"])
    if env.get("PRIVAFLOW_IDLE_TIMEOUT_S"):
        s["idle_timeout_s"] = float(env["PRIVAFLOW_IDLE_TIMEOUT_S"])
    if env.get("PRIVAFLOW_CHECKPOINT_S"):
        s["checkpoint_s"] = float(env["PRIVAFLOW_CHECKPOINT_S"])
    if env.get("PRIVAFLOW_STALL_TIMEOUT_S"):
        s["stall_timeout_s"] = float(env["PRIVAFLOW_STALL_TIMEOUT_S"])
    store = env.get("PRIVAFLOW_STREAMS_STORE")
    if store:
        if store not in ("memory", "rocksdb"):
            raise ValueError(f"PRIVAFLOW_STREAMS_STORE: expected memory or rocksdb, got {store!r}")
        s["store"] = store
    if env.get("PRIVAFLOW_FAULT_EXIT_AFTER_PUBLISH"):
        s["fault_exit_after_publish"] = int(env["PRIVAFLOW_FAULT_EXIT_AFTER_PUBLISH"])
    if env.get("PRIVAFLOW_FAULT_STALL_AFTER_BATCHES"):
        s["fault_stall_after_batches"] = int(env["PRIVAFLOW_FAULT_STALL_AFTER_BATCHES"])
    if env.get("PRIVAFLOW_FAULT_UNACKED_OFFSETS"):  # "first-last"
        first, last = env["PRIVAFLOW_FAULT_UNACKED_OFFSETS"].split("-")
        s["fault_unacked_offsets"] = (int(first), int(last))
    s.update({k: v for k, v in overrides.items() if v is not None})
    return WorkerSettings(**s)
