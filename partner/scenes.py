"""What the operator dashboard draws without a single pixel of a camera (G4, G5: people as icons):
each camera's latest processed frame as a list of objects (class and box, nothing else), and for
mobile cameras the road-condition map (H3 cell polygons coloured by congestion level).

`LatestFrames` follows the detections topic from near its end in a background thread and keeps, per
camera of the site, only the newest frame: class names and normalised boxes. Track ids, trip ids and
attributes are dropped as the record is read; a camera's records are decoded at most every
`min_interval_s` (the dashboard polls every few seconds), so a busy site costs a few decodes a second.

`road_map` turns road_conditions partner rows into cells with their polygon vertices (lat, lon) and,
per cell, the latest window's worst congestion level over its directions.

    GET /api/v1/operator/scene/{camera}     {"camera_id", "kind", "ts", "frame_width", "frame_height",
                                             "objects": [{"class_name", "box": [x1, y1, x2, y2]}], "probe"}
    GET /api/v1/operator/road-map?from&to   {"resolution", "cells": [{"h3_cell", "boundary", "congestion_level",
                                             "heading", "trips", "median_speed_kmh", "window_start"}]}
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition

from privaflow.schemas.cells import boundary, cell_problem
from privaflow.schemas.codec import (
    AvroSerde,
    DecodeError,
    SchemaRegistry,
    bootstrap_servers,
    epoch_ms,
    kafka_client_config,
    serde_for_topic,
)
from privaflow.schemas.site import SiteConfig
from privaflow.schemas.topics import DETECTIONS
from privaflow.schemas.vocabulary import CONGESTION_LEVELS

log = logging.getLogger(__name__)

BACKLOG = 50  # records per partition read back at start, so a quiet camera's last frame is shown
PROBE_FIELDS = ("h3_cell", "probe_heading", "probe_speed_kmh", "vehicles_ahead", "ahead_band", "people")


def scene_of(record: Mapping[str, Any], kind: str = "fixed") -> dict[str, Any]:
    """A detections record -> what the icon scene draws: classes and boxes of its (last) frame, and for a
    mobile camera what it says about the vehicle. Nothing that links one frame to another."""
    objects = [{"class_name": str(d["class_name"]),
                "box": [round(float(d[k]), 4) for k in ("x1", "y1", "x2", "y2")]} for d in record["detections"]]
    probe = {k: record.get(k) for k in PROBE_FIELDS} if kind == "mobile" else None
    return {"camera_id": record["camera_id"], "kind": kind, "ts": int(epoch_ms(record["ts"])),
            "frame_width": int(record["frame_width"]), "frame_height": int(record["frame_height"]),
            "objects": objects, "probe": probe}


class LatestFrames:
    """The newest frame of every camera of one site, kept current by a consumer thread."""

    def __init__(self, site: SiteConfig, bootstrap: str | None = None, registry: SchemaRegistry | None = None,
                 kafka_config: dict[str, str] | None = None, topic: str = DETECTIONS,
                 min_interval_s: float = 0.5) -> None:
        self.site = site
        self.kinds = {c.id: c.kind for c in site.cameras}
        self.bootstrap = bootstrap or bootstrap_servers()
        self.registry = registry or SchemaRegistry()
        self.kafka_config = kafka_client_config() if kafka_config is None else kafka_config
        self.topic, self.min_interval_s = topic, min_interval_s
        self._latest: dict[str, dict[str, Any]] = {}
        self._decoded_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serde: AvroSerde | None = None

    def scene(self, camera_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._latest.get(camera_id)

    def apply(self, record: Mapping[str, Any]) -> None:
        """One decoded detections record (of any site: others are ignored)."""
        cam = record.get("camera_id")
        if record.get("site_id") != self.site.site_id or cam not in self.kinds:
            return
        scene = scene_of(record, self.kinds[cam])
        with self._lock:
            old = self._latest.get(cam)
            if old is None or scene["ts"] >= old["ts"]:
                self._latest[cam] = scene

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="latest-frames", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        try:
            consumer = Consumer({"bootstrap.servers": self.bootstrap,
                                 "group.id": f"privaflow-api-scenes-{uuid.uuid4().hex[:12]}",
                                 "enable.auto.commit": False, "auto.offset.reset": "latest", **self.kafka_config})
        except Exception as e:  # the dashboard shows "no frame yet"; the tables still work
            log.warning("icon scenes unavailable: %s", e)
            return
        try:
            while not self._stop.is_set() and not self._assign(consumer):
                self._stop.wait(5)
            while not self._stop.is_set():
                for m in consumer.consume(200, 0.5):
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            log.debug("scenes consumer: %s", err)
                        continue
                    self._message(m.key(), m.value())
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> bool:
        meta = consumer.list_topics(self.topic, timeout=10)
        t = meta.topics.get(self.topic)
        if t is None or t.error is not None or not t.partitions:
            return False
        tps = []
        for p in sorted(t.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)
            tps.append(TopicPartition(self.topic, p, max(low, high - BACKLOG)))
        consumer.assign(tps)
        return True

    def _message(self, key: bytes | None, value: bytes | None) -> None:
        cam = key.decode("utf-8", "replace") if key else None
        if cam not in self.kinds or value is None:
            return
        now = time.monotonic()
        if now - self._decoded_at.get(cam, -1e9) < self.min_interval_s:
            return
        self._decoded_at[cam] = now
        if self._serde is None:
            self._serde = serde_for_topic(self.registry, DETECTIONS)
        try:
            self.apply(self._serde.decode(value))
        except DecodeError:
            pass  # the stream worker dead-letters it; the scene keeps the last good frame


_SEVERITY = {level: i for i, level in enumerate(CONGESTION_LEVELS)}


def road_map(rows: Iterable[Mapping[str, Any]], resolution: int | None) -> dict[str, Any]:
    """road_conditions rows (as the partner store holds them) -> one entry per cell: the latest window's
    row with the worst congestion level over its directions, and the cell's polygon."""
    latest: dict[str, tuple[int, int, Mapping[str, Any]]] = {}
    for r in rows:
        cell, level = r.get("h3_cell"), r.get("congestion_level")
        if not isinstance(cell, str) or resolution is None or cell_problem(cell, resolution):
            continue
        ws = r["window_start"]  # epoch ms or a datetime as stored, an ISO string as served
        start = int(epoch_ms(dt.datetime.fromisoformat(ws.replace("Z", "+00:00")) if isinstance(ws, str) else ws))
        sev = _SEVERITY.get(level, -1) if isinstance(level, str) else -1
        got = latest.get(cell)
        if got is None or (start, sev) > (got[0], got[1]):
            latest[cell] = (start, sev, r)
    cells = []
    for cell, (start, _sev, r) in sorted(latest.items()):
        cells.append({"h3_cell": cell, "boundary": [[round(a, 7), round(b, 7)] for a, b in boundary(cell)],
                      "congestion_level": r.get("congestion_level"), "heading": r.get("heading"),
                      "trips": r.get("trips"), "median_speed_kmh": r.get("median_speed_kmh"),
                      "mean_vehicles_ahead": r.get("mean_vehicles_ahead"), "window_start": start})
    return {"resolution": resolution, "cells": cells}
