"""The partner tables of one site, held in memory: the latest value per key of every compacted
partner topic, read from the beginning by a background consumer thread.

Each table is read from several *views*: `shared` (the k-anonymous topic every k-anonymity partner
of the table reads), one per differential-privacy partner (its own topic), and `operator` (every
closed window without suppression, for the operator's dashboard view only). A view is the partner
id, "shared" or "operator" (`SHARED`, `OPERATOR`).

A compacted topic *is* its table: the newest record of a key replaces the older ones, a tombstone
(null value) removes the key. So replaying each topic from offset 0 and keeping the last value per
key gives exactly the table a partner's own consumer would build (streams/partners.py keys records
`table|site|dims|window_start|window_length_s`).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from privaflow.partner.rows import dims
from privaflow.schemas.codec import (
    AvroSerde,
    DecodeError,
    SchemaRegistry,
    bootstrap_servers,
    epoch_ms,
    kafka_client_config,
    serde_for_topic,
)
from privaflow.schemas.topics import PARTNER_TABLES, dp_topic_name, operator_topic_name, partner_topic_name

log = logging.getLogger(__name__)

SHARED, OPERATOR = "shared", "operator"


@dataclass(frozen=True)
class _Row:
    window_start_ms: int
    dims: tuple[str, ...]
    record: dict[str, Any]


class PartnerStore:
    """Every partner table of `site_id`, kept current by a consumer thread.

    `rows()` answers from memory and is safe to call from any thread. `ready` turns true once every
    partition that existed at start has been read to its end, so a server can say when its answers
    are complete. Records of other sites are skipped, never held.
    """

    def __init__(self, site_id: str, bootstrap: str | None = None, registry: SchemaRegistry | None = None,
                 kafka_config: dict[str, str] | None = None, refresh_s: float = 10.0,
                 dp_partners: Iterable[str] = ()) -> None:
        self.site_id = site_id
        self.bootstrap = bootstrap or bootstrap_servers()
        self.registry = registry or SchemaRegistry()
        self.kafka_config = kafka_client_config() if kafka_config is None else kafka_config
        self.refresh_s = refresh_s
        self.views = (SHARED, OPERATOR, *dp_partners)
        self._tables: dict[tuple[str, str], dict[str, _Row]] = {(v, t): {} for v in self.views for t in PARTNER_TABLES}
        self._topic_table: dict[str, tuple[str, str]] = {partner_topic_name(t): (SHARED, t) for t in PARTNER_TABLES}
        self._topic_table.update({operator_topic_name(t): (OPERATOR, t) for t in PARTNER_TABLES})
        self._topic_table.update({dp_topic_name(p, t): (p, t) for p in dp_partners for t in PARTNER_TABLES})
        self._serdes: dict[str, AvroSerde] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._pending_eof: set[tuple[str, int]] = set()
        self.missing_topics: set[str] = set()
        self.decode_errors = 0
        self.failure: str | None = None

    # ------------------------------------------------------------ state

    def apply(self, table: str, key: str | None, record: dict[str, Any] | None, view: str = SHARED) -> None:
        """One record of a partner topic: a value replaces its key, None (a tombstone) removes it."""
        if record is None:
            if key is not None:
                with self._lock:
                    self._tables[(view, table)].pop(key, None)
            return
        if record.get("site_id") != self.site_id:
            return
        row = _Row(epoch_ms(record["window_start"]), dims(table, record), record)
        if key is None:  # not how streams/ writes, but a keyless record is still a table row
            length_s = (epoch_ms(record["window_end"]) - row.window_start_ms) // 1000
            key = f"{table}|{self.site_id}|{'|'.join(row.dims)}|{row.window_start_ms}|{length_s}"
        with self._lock:
            self._tables[(view, table)][key] = row

    def rows(self, table: str, start_ms: int | None = None, end_ms: int | None = None, view: str = SHARED
             ) -> list[dict[str, Any]]:
        """Decoded records of a table in a view with start_ms <= window_start < end_ms, sorted by
        window_start then dims."""
        with self._lock:
            selected = [r for r in self._tables[(view, table)].values()
                        if (start_ms is None or r.window_start_ms >= start_ms)
                        and (end_ms is None or r.window_start_ms < end_ms)]
        selected.sort(key=lambda r: (r.window_start_ms, r.dims))
        return [r.record for r in selected]

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def status(self) -> dict[str, Any]:
        with self._lock:
            counts = {t: len(self._tables[(SHARED, t)]) for t in PARTNER_TABLES}
        return {"ready": self.ready, "rows": counts, "decode_errors": self.decode_errors,
                "missing_topics": sorted(self.missing_topics), "failure": self.failure}

    # ------------------------------------------------------------ consumer thread

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="partner-store", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        consumer = Consumer({
            "bootstrap.servers": self.bootstrap,
            # assign(), not subscribe(): no group membership, nothing committed; the id is only
            # needed by librdkafka (and by broker ACLs, hence the privaflow-api- prefix)
            "group.id": f"privaflow-api-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            **self.kafka_config,
        })
        try:
            self._assign_new(consumer)
            self._mark_ready_if_caught_up()
            next_refresh = time.monotonic() + self.refresh_s
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is not None:
                    self._handle(msg)
                if time.monotonic() >= next_refresh:
                    self._assign_new(consumer)
                    next_refresh = time.monotonic() + self.refresh_s
        except Exception as e:  # the server reports it on /healthz instead of dying silently
            self.failure = f"{type(e).__name__}: {e}"
            log.exception("partner store consumer stopped")
        finally:
            consumer.close()

    def _assign_new(self, consumer: Consumer) -> None:
        meta = consumer.list_topics(timeout=10)
        new: list[TopicPartition] = []
        missing = set()
        for topic in self._topic_table:
            tm = meta.topics.get(topic)
            if tm is None or tm.error is not None:
                missing.add(topic)
                continue
            for p in tm.partitions:
                if (topic, p) not in self._assigned:
                    new.append(TopicPartition(topic, p, OFFSET_BEGINNING))
        if missing != self.missing_topics and missing:
            log.warning("partner topics missing (will retry): %s", ", ".join(sorted(missing)))
        self.missing_topics = missing
        if new:
            consumer.incremental_assign(new)
            tps = {(tp.topic, tp.partition) for tp in new}
            self._assigned |= tps
            if not self.ready:
                self._pending_eof |= tps

    def _mark_ready_if_caught_up(self) -> None:
        if not self._pending_eof and not self.ready:
            self._ready.set()
            log.info("partner store caught up: %s", self.status()["rows"])

    def _handle(self, msg: Any) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._pending_eof.discard((msg.topic(), msg.partition()))
                self._mark_ready_if_caught_up()
            else:
                log.warning("partner store consumer: %s", err)
            return
        view, table = self._topic_table[msg.topic()]
        key = msg.key().decode("utf-8", "replace") if msg.key() is not None else None
        value = msg.value()
        if value is None:
            self.apply(table, key, None, view)
            return
        serde = self._serdes.get(msg.topic())
        if serde is None:
            serde = self._serdes[msg.topic()] = serde_for_topic(self.registry, msg.topic())
        try:
            record = serde.decode(value, msg.topic(), msg.partition(), msg.offset())
        except DecodeError as e:
            self.decode_errors += 1
            log.warning("skipping partner record: %s", e)
            return
        self.apply(table, key, record, view)
