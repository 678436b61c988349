"""`privaflow streams road`: the road_conditions table over a site's whole fleet of mobile cameras.

Every other table is kept per camera by the stream workers. A road cell is a place on a map that
every vehicle of the site may pass, and its k counts distinct trips across all of them, so this
process reads the records of every mobile camera (all partitions of the detections topic; records of
fixed cameras are skipped by their key, undecoded), aggregates them in `RoadWindows`
(streams/road_conditions.py) and publishes each closed window's cells that at least k distinct trips
passed to `privaflow.partner.road-conditions.v1`, under the strictest k of the partners receiving it.

Deterministic, so a restart re-publishes identical rows and never a changed one (docs/privacy-model.md,
rule c): a frame counts in its window when its record reached Kafka (the record's timestamp) no later
than the window's end plus grace (the site's `grace_s` plus the mobile cameras' `max_hold_s`). A
window closes once every partition has either delivered a record stamped after that, or been read
to its end with the wall clock `settle_s` past it. At start the process re-reads the last
`rebuild_s` (by default a window, its grace and ten minutes) and publishes only windows that start
inside what it re-read, so no window is ever published from part of its records. One such process
per site: two would publish the same rows twice.

The worker checks each record: its site, camera and key, its columns (one entry per frame), and
every frame's cell, which must be a valid H3 index at the site's resolution (schemas/cells.py), and
heading; a record with anything else is skipped, counted and logged.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaError, Producer, TopicPartition

from privaflow.schemas.cells import cell_problem
from privaflow.schemas.codec import (
    AvroSerde,
    DecodeError,
    SchemaRegistry,
    bootstrap_servers,
    kafka_client_config,
    serde_for_topic,
)
from privaflow.schemas.detections import layout_problem
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS, operator_topic_name, partner_topic_name
from privaflow.schemas.vocabulary import HEADINGS
from privaflow.streams.disclosure import k_anonymous_record, operator_value
from privaflow.streams.partners import partner_key, strictest_k
from privaflow.streams.road_conditions import ProbeFrame, RoadWindows
from privaflow.streams.settings import TopicNames
from privaflow.streams.tables import ClosedWindow

log = logging.getLogger(__name__)

TABLE = "road_conditions"


def probe_frames(record: Mapping[str, Any]) -> list[ProbeFrame]:
    """The frames of a decoded DetectionBatch record as the road table sees them (none for a fixed
    camera's record; none for a frame without a trip)."""
    trips = record.get("trip_id")
    if trips is None:
        return []
    cam = str(record["camera_id"])
    out = []
    for i, trip in enumerate(trips):
        if trip is None:
            continue
        speed = _at(record, "probe_speed_kmh", i)
        out.append(ProbeFrame(cam, int(record["ts"][i]), int(trip), _at(record, "h3_cell", i),
                              _at(record, "probe_heading", i),
                              None if speed is None or math.isnan(speed) else float(speed),
                              int(_at(record, "vehicles_ahead", i) or 0), int(_at(record, "people", i) or 0),
                              tuple(_at(record, "furniture", i) or ())))
    return out


def _at(record: Mapping[str, Any], column: str, i: int) -> Any:
    """Frame i's value of an optional per-frame column (None when the record has no such column)."""
    values = record.get(column)
    return None if values is None else values[i]


def record_problem(record: Mapping[str, Any], site: SiteConfig, key: str | None, resolution: int) -> str | None:
    """Why a mobile camera's record may not feed the road table, or None: its site, camera and key,
    columns that do not fit together, and every frame's cell and heading."""
    if record.get("site_id") != site.site_id:
        return f"site_id {str(record.get('site_id'))[:40]!r} is not this site"
    if record.get("camera_id") != key:
        return f"camera_id {str(record.get('camera_id'))[:40]!r} is not the record key {key!r}"
    layout = layout_problem(record)
    if layout:
        return layout
    for cell in record.get("h3_cell") or ():
        if cell is not None:
            problem = cell_problem(cell, resolution)
            if problem:
                return problem
    for heading in record.get("probe_heading") or ():
        if heading is not None and heading not in HEADINGS:
            return f"probe_heading {str(heading)[:20]!r} is not a compass sector"
    return None


@dataclass
class RoadStats:
    records: int = 0
    frames: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason kind -> records
    published: int = 0
    withheld: int = 0  # closed cells fewer than k trips passed
    windows: int = 0


class RoadWorker:
    """One site's road_conditions: consume, aggregate, close, publish (see the module docstring).
    `poll` does one step and is what tests drive; `run` loops until `stop`."""

    def __init__(self, site: SiteConfig, *, bootstrap: str | None = None, registry: SchemaRegistry | None = None,
                 topics: TopicNames | None = None, kafka_config: dict[str, str] | None = None,
                 settle_s: float = 30.0, rebuild_s: float | None = None, now: Any = time.time) -> None:
        self.site = site
        self.mobile = frozenset(c.id for c in site.mobile_cameras())
        if not self.mobile:
            raise ValueError(f"site {site.site_id!r} has no mobile camera: no road_conditions to compute")
        self.resolution = site.h3_resolution() or 0
        hold_s = max(c.mobile.max_hold_s for c in site.mobile_cameras() if c.mobile is not None)
        size_ms = site.windows.road_conditions * 1000
        grace_ms = int((site.windows.grace_s + hold_s) * 1000)
        self.windows = RoadWindows(size_ms, grace_ms)
        self.k = strictest_k(site).get(TABLE)
        self.topics = topics or TopicNames()
        self.bootstrap = bootstrap or bootstrap_servers()
        self.kafka_config = kafka_client_config() if kafka_config is None else kafka_config
        self.registry = registry or SchemaRegistry()
        self.settle_ms = int(settle_s * 1000)
        self.rebuild_ms = int((rebuild_s if rebuild_s is not None else
                               site.windows.road_conditions + site.windows.grace_s + hold_s + 600) * 1000)
        self._now = now
        self.stats = RoadStats()
        self._in: AvroSerde = serde_for_topic(self.registry, DETECTIONS)
        self._out: AvroSerde = serde_for_topic(self.registry, partner_topic_name(TABLE))
        self._operator: AvroSerde = serde_for_topic(self.registry, operator_topic_name(TABLE))
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._latest: dict[int, int] = {}  # partition -> newest record timestamp read
        self._eof: dict[int, bool] = {}
        self.publish_from_ms = 0
        self._stop = threading.Event()

    # ------------------------------------------------------------------ Kafka

    def start(self) -> RoadWorker:
        """Assign every partition of the detections topic from `rebuild_s` ago; register the schema."""
        _ = self._out.schema_id, self._operator.schema_id
        topic = self.topics.detections
        common = {"bootstrap.servers": self.bootstrap, **self.kafka_config}
        self._consumer = Consumer({**common, "group.id": f"privaflow-streams-road-{uuid.uuid4().hex[:8]}",
                                   "enable.auto.commit": False, "enable.partition.eof": True,
                                   "auto.offset.reset": "earliest"})
        self._producer = Producer({**common, "enable.idempotence": True, "linger.ms": 20})
        meta = self._consumer.list_topics(topic, timeout=30)
        parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
        if not parts:
            raise RuntimeError(f"topic {topic} does not exist yet (start the stream worker first, which creates it)")
        self.publish_from_ms = int(self._now() * 1000) - self.rebuild_ms
        wanted = [TopicPartition(topic, p, self.publish_from_ms) for p in parts]
        found = self._consumer.offsets_for_times(wanted, timeout=30)
        self._consumer.assign([TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                               for tp in found])
        self._latest = {p: -1 for p in parts}
        self._eof = {p: False for p in parts}
        log.info("road_conditions: %d mobile camera(s), k=%s trips, windows of %d s; re-reading from %d",
                 len(self.mobile), self.k, self.windows.size_ms // 1000, self.publish_from_ms)
        return self

    def poll(self, timeout: float = 0.5, max_records: int = 500) -> list[tuple[str, dict[str, Any]]]:
        """Read what is there, close what may close, publish it; returns what was published."""
        assert self._consumer is not None, "start() first"
        for m in self._consumer.consume(max_records, timeout):
            err, p = m.error(), int(m.partition() or 0)
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof[p] = True
                    continue
                log.warning("road_conditions: consumer error %s", err)
                continue
            self._eof[p] = False
            _, ts = m.timestamp()
            self._latest[p] = max(self._latest.get(p, -1), ts)
            raw = m.key()
            key = raw.decode("utf-8", "replace") if raw is not None else None
            if key is None or key not in self.mobile:
                continue  # a fixed camera's record: not decoded
            self.apply(key, m.value(), ts, p, int(m.offset() or 0))
        return self.close(self.bound_ms())

    def apply(self, key: str, payload: bytes | None, record_ts_ms: int, partition: int = -1,
              offset: int = -1) -> None:
        self.stats.records += 1
        try:
            if payload is None:
                raise DecodeError("null value", self.topics.detections, partition, offset)
            record = self._in.decode(payload, self.topics.detections, partition, offset)
        except DecodeError:
            self._skip("decode")
            return
        problem = record_problem(record, self.site, key, self.resolution)
        if problem:
            log.warning("road_conditions: skipped a record of %s: %s", key, problem)
            self._skip("value")
            return
        frames = probe_frames(record)
        self.stats.frames += len(frames)
        self.windows.add(frames, record_ts_ms)

    def bound_ms(self) -> int:
        """The record time up to which every partition has been read: its newest record's timestamp, or
        for a partition read to its end the wall clock less `settle_s`."""
        now = int(self._now() * 1000) - self.settle_ms
        if not self._latest:
            return now
        return min(now if self._eof.get(p) else ts for p, ts in self._latest.items())

    def close(self, bound_ms: int) -> list[tuple[str, dict[str, Any]]]:
        closed = self.windows.close(bound_ms)
        out = list(self.partner_rows(closed))
        mine = list(self.operator_rows(closed))
        if (out or mine) and self._producer is not None:
            topic = self.topics.partner(TABLE)
            for key, value in out:
                self._producer.produce(topic, key=key.encode(), value=self._out.encode(value))
            for key, value in mine:  # the operator's view: every closed cell, no rule applied
                self._producer.produce(self.topics.prefix + operator_topic_name(TABLE), key=key.encode(),
                                       value=self._operator.encode(value))
            left = self._producer.flush(30)
            if left:
                raise RuntimeError(f"{left} road_conditions records not acknowledged within 30 s")
        return out

    def partner_rows(self, closed: Iterable[tuple[int, int, tuple[str, str], dict[str, Any]]]
                     ) -> Iterable[tuple[str, dict[str, Any]]]:
        """Partner (key, value) of the closed cells that may be published: k trips at least, and only
        windows that start inside what this process has read (never a window from part of its records)."""
        starts = set()
        for start, end, dims, agg in closed:
            starts.add(start)
            if self.k is None or start < self.publish_from_ms:
                continue
            if int(agg["trips"]) < self.k:
                self.stats.withheld += 1  # rule (b): not even a row; its existence would place the probe
                continue
            record = k_anonymous_record(ClosedWindow(TABLE, self.site.site_id, dims, start, end, agg), self.k)
            if record is not None:  # the disclosure policy's rules (a), (b) for a cell of k trips
                self.stats.published += 1
                yield record
        self.stats.windows += len(starts)

    def operator_rows(self, closed: Iterable[tuple[int, int, tuple[str, str], dict[str, Any]]]
                      ) -> Iterable[tuple[str, dict[str, Any]]]:
        """The operator's (key, value) of the closed cells: every one, unsuppressed (the api role reads them)."""
        for start, end, dims, agg in closed:
            if start >= self.publish_from_ms:
                c = ClosedWindow(TABLE, self.site.site_id, dims, start, end, agg)
                yield partner_key(c), operator_value(c)

    def _skip(self, kind: str) -> None:
        self.stats.skipped[kind] = self.stats.skipped.get(kind, 0) + 1

    def run(self, poll_s: float = 0.5) -> None:
        self.start()
        try:
            while not self._stop.is_set():
                published = self.poll(poll_s)
                if published:
                    log.info("road_conditions: published %d cell(s); withheld so far %d below k=%s trips; "
                             "late %d", len(published), self.stats.withheld, self.k, self.windows.late_dropped)
        finally:
            self.close_clients()

    def stop(self) -> None:
        self._stop.set()

    def close_clients(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None
