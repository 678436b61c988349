"""Where records go: Kafka (with a disk spool for when the broker is away) or an Avro file.

`KafkaSink` produces each DetectionBatch record (several frames of one camera), keyed by camera id,
with an idempotent producer (`enable.idempotence`, `acks=all`) and Confluent-framed Avro values.
librdkafka retries without a deadline (`message.timeout.ms=0`), so a record handed to it is
delivered in order once the broker is back; at most `max_in_flight` records are handed over at a
time and the rest wait, in order, in a `DiskSpool` that drains when deliveries resume. Only encoded
records are ever spooled.

The schema id is looked up once and cached (also in the spool folder, for restarts while the
registry is down); until it is known, a background thread keeps asking the registry, and records
are spooled with a placeholder id and re-framed before they are sent. A schema the registry
refuses as incompatible is an error, not something to wait out.

What a crash can cost: while the broker is away, up to `max_in_flight` records sit in librdkafka's
memory (the rest are on disk); after a crash while draining, up to one spool segment is sent twice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro
from confluent_kafka import KafkaError, Message, Producer
from fastavro.write import Writer

from privaflow.edge.spool import DiskSpool
from privaflow.schemas.codec import (
    AvroSerde,
    IncompatibleSchemaError,
    RegistryAuthError,
    RegistryError,
    SchemaRegistry,
    bootstrap_servers,
    frame,
    kafka_client_config,
    load_schema,
    load_schema_json,
    serde_for_topic,
    unframe,
)
from privaflow.schemas.detections import SCHEMA_NAME
from privaflow.schemas.topics import DETECTIONS

log = logging.getLogger(__name__)

UNKNOWN_ID = 0xFFFFFFFF  # placeholder schema id in spooled records encoded while the registry was away
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}


class Sink(Protocol):
    """Takes DetectionBatch dicts; `poll` is called every loop turn to serve callbacks."""

    def publish(self, record: dict[str, Any]) -> None: ...

    def poll(self) -> None: ...

    def close(self, timeout_s: float = 10.0) -> None: ...

    @property
    def depth(self) -> int: ...

    @property
    def stats(self) -> SinkStats: ...


@dataclass
class SinkStats:
    published: int = 0  # records accepted from the agent
    delivered: int = 0  # records the broker (or file) has
    dropped: int = 0  # records lost: spool over its bound / disk full, or refused by the broker
    broker_up: bool = True
    registry_ok: bool = True


class AvroFileSink:
    """Writes records to an Avro container file (offline runs and tests); `depth` is always 0."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 - open for the sink's lifetime
        self._writer = Writer(self._file, fastavro.parse_schema(load_schema(SCHEMA_NAME)))
        self._stats = SinkStats()

    def publish(self, record: dict[str, Any]) -> None:
        self._writer.write(record)
        self._stats.published += 1
        self._stats.delivered += 1

    def poll(self) -> None:
        pass

    def close(self, timeout_s: float = 10.0) -> None:
        if not self._file.closed:
            self._writer.flush()
            self._file.close()

    @property
    def depth(self) -> int:
        return 0

    @property
    def stats(self) -> SinkStats:
        return self._stats


class KafkaSink:
    """Produces to `topic` (default privaflow.detections.v2) in order, spooling to disk when it must."""

    def __init__(self, spool_dir: str | Path, key: str, topic: str = DETECTIONS, bootstrap: str | None = None,
                 registry: SchemaRegistry | None = None, max_in_flight: int = 500,
                 spool_max_bytes: int = 256 << 20, producer_config: dict[str, Any] | None = None) -> None:
        self.topic, self.key = topic, key.encode()
        self.max_in_flight = max_in_flight
        self.spool = DiskSpool(spool_dir, max_bytes=spool_max_bytes)
        # No long blocking retries inside the loop: a registry that is away is retried below, lazily.
        registry = registry or SchemaRegistry(retries=0, timeout=5.0)
        self._serde: AvroSerde = serde_for_topic(registry, DETECTIONS)
        self._id_file = Path(spool_dir) / "schema-id.json"
        self._schema_id: int | None = None
        self._closed = threading.Event()
        self._registry_error: IncompatibleSchemaError | None = None
        self._stats = SinkStats()
        self._in_flight = 0
        self._held: list[tuple[int, bytes]] = []  # (index, payload) of direct records purged at close
        self._refused = 0  # records the broker rejected for good (e.g. too large)
        config = {
            "bootstrap.servers": bootstrap or bootstrap_servers(),
            "enable.idempotence": True,
            "acks": "all",
            "message.timeout.ms": 0,  # never give up on a record; the spool bounds what waits
            "linger.ms": 20,
            "compression.type": "lz4",
            "queue.buffering.max.messages": max(10 * max_in_flight, 10_000),
            "error_cb": self._on_error,
            "logger": logging.getLogger("privaflow.edge.publish.librdkafka"),  # its logs into ours, not raw stderr
        }
        config.update(kafka_client_config())  # SASL/TLS from PRIVAFLOW_KAFKA_* (k8s, secure stack)
        config.update(producer_config or {})
        self._producer = Producer(config)
        if not self._resolve_schema_id(first=True):
            threading.Thread(target=self._keep_asking, name="schema-id", daemon=True).start()

    # ---- schema id

    def _fingerprint(self) -> str:
        serde = self._serde
        text = f"{serde.registry.url}\n{serde.subject}\n{load_schema_json(serde.schema_name)}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _resolve_schema_id(self, first: bool = False) -> bool:
        """Ask the registry (or, at start, the cache) for the schema id; True once it is known."""
        try:
            schema_id = self._serde.schema_id
        except (IncompatibleSchemaError, RegistryAuthError):
            raise  # waiting will not fix a schema or a credential: say so at once
        except RegistryError as e:
            self._stats.registry_ok = False
            if first:
                cached = self._cached_id()
                if cached is not None:
                    log.warning("schema registry unavailable (%s); using cached schema id %d", e, cached)
                    self._schema_id = cached
                    return True
                log.warning("schema registry unavailable (%s); spooling records until it answers", e)
            return False
        self._stats.registry_ok = True
        try:
            self._id_file.write_text(json.dumps({"fingerprint": self._fingerprint(), "id": schema_id}))
        except OSError as e:
            log.warning("cannot cache the schema id: %s", e)
        self._schema_id = schema_id
        return True

    def _cached_id(self) -> int | None:
        try:
            cached = json.loads(self._id_file.read_text())
            return int(cached["id"]) if cached.get("fingerprint") == self._fingerprint() else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _keep_asking(self, first_wait_s: float = 0.5, max_wait_s: float = 30.0) -> None:
        """Background: retry the registry with exponential backoff, so the frame loop never waits on it."""
        wait = first_wait_s
        while not self._closed.wait(wait):
            try:
                if self._resolve_schema_id():
                    log.info("schema registry answered: schema id %d", self._schema_id)
                    return
            except IncompatibleSchemaError as e:
                self._registry_error = e
                return
            wait = min(wait * 2, max_wait_s)

    # ---- the sink protocol

    def publish(self, record: dict[str, Any]) -> None:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._serde.schema, record)
        payload = frame(UNKNOWN_ID if self._schema_id is None else self._schema_id, buf.getvalue())
        self._stats.published += 1
        if self._schema_id is not None and len(self.spool) == 0 and self._in_flight < self.max_in_flight:
            self._produce(payload, spooled=False)
        else:
            self.spool.append(payload)
        self.poll()

    def poll(self) -> None:
        self._producer.poll(0)
        if self._registry_error is not None:
            raise self._registry_error
        if self._schema_id is None:
            return
        room = self.max_in_flight - self._in_flight
        if room > 0 and len(self.spool):
            for payload in self.spool.read(room):
                self._produce(self._reframe(payload), spooled=True)

    def close(self, timeout_s: float = 10.0) -> None:
        """Deliver what can be delivered within `timeout_s`; keep the rest in the spool for next time."""
        self._closed.set()
        if self._registry_error is None:
            self.poll()
        remaining = self._producer.flush(timeout_s)
        if remaining:
            log.warning("%d records not delivered at shutdown; keeping them in the spool", remaining)
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._producer.flush(1.0)
        self.spool.rewind()
        self.spool.push_front([p for _, p in sorted(self._held)])
        self._held.clear()
        self.spool.close()

    @property
    def depth(self) -> int:
        return len(self.spool)

    @property
    def stats(self) -> SinkStats:
        self._stats.dropped = self._refused + self.spool.dropped
        return self._stats

    # ---- internals

    def _reframe(self, payload: bytes) -> bytes:
        schema_id, body = unframe(payload)
        if schema_id == UNKNOWN_ID and self._schema_id is not None:
            return frame(self._schema_id, body)
        return payload

    def _produce(self, payload: bytes, spooled: bool) -> None:
        index = self._stats.published
        self._in_flight += 1

        def delivered(err: KafkaError | None, msg: Message) -> None:
            self._on_delivery(err, msg, spooled, index, payload)

        while True:
            try:
                self._producer.produce(self.topic, payload, self.key, on_delivery=delivered)
                return
            except BufferError:  # librdkafka's own queue is full: serve callbacks, then retry
                self._producer.poll(0.1)

    def _on_delivery(self, err: KafkaError | None, msg: Message, spooled: bool, index: int,
                     payload: bytes) -> None:
        self._in_flight -= 1
        if err is not None and err.code() in _PURGED:
            if not spooled:  # still ours: back into the spool at close
                self._held.append((index, payload))
            return
        if err is None:
            self._stats.delivered += 1
            self._stats.broker_up = True
        else:
            self._refused += 1
            log.error("broker refused a record (%s); dropped", err.str())
        if spooled:
            self.spool.commit(1)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            if self._stats.broker_up:
                log.warning("broker unreachable (%s); records wait in the spool", err.str())
            self._stats.broker_up = False
        else:
            log.warning("kafka: %s", err.str())
