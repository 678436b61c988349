"""Prometheus metrics of a stream worker, served at /metrics.

Label values are table names, topics and reasons, never camera-independent identifiers of people
or tracks (there are none at this level) and never free text from records.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from privaflow.streams.tables import TABLES

# fine buckets below a second: the latency goal is p99 < 1 s and the bench reads quantiles from here
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0,
                   1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


class WorkerMetrics:
    """One registry per worker (not the global one), so tests can build several apps in a process."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter("privaflow_detection_records_total",
                               "DetectionBatch records taken from Kafka, by outcome", ["outcome"], registry=r)
        self.frames = Counter("privaflow_frames_total", "Frames (in applied records) applied to camera state",
                              registry=r)
        self.detections = Counter("privaflow_detections_total",
                                  "Detections (objects in frames) applied to camera state", registry=r)
        self.late = Counter("privaflow_late_records_total",
                            "Events later than their window's grace period, dropped and counted", ["table"],
                            registry=r)
        self.refetched = Counter("privaflow_refetched_records_total",
                                 "Records the consumer skipped over and the worker read back directly", registry=r)
        self.dead_letters = Counter("privaflow_dead_letters_total",
                                    "Records sent to the dead-letter topic, by reason", ["reason"], registry=r)
        self.published = Counter("privaflow_published_records_total", "Records produced, by topic", ["topic"],
                                 registry=r)
        self.windows_closed = Counter("privaflow_windows_closed_total", "Window cells closed, by table and why",
                                      ["table", "trigger"], registry=r)
        self.batch_size = Histogram("privaflow_batch_records", "Records per processed batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000), registry=r)
        self.batch_seconds = Histogram("privaflow_batch_seconds", "Wall time to process and commit one batch",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.latency = Histogram("privaflow_frame_to_table_seconds",
                                 "From a frame's capture time (its ts) to the table update that includes it",
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.dp_epsilon = Counter("privaflow_dp_epsilon_spent_total",
                                  "Epsilon spent on differentially private windows, summed over cameras (each camera "
                                  "has the partner's daily budget), by partner and table", ["partner", "table"],
                                  registry=r)
        self.dp_withheld = Counter("privaflow_dp_windows_withheld_total",
                                   "Differentially private windows not published because the partner's daily "
                                   "epsilon budget of the camera was spent, by partner and table",
                                   ["partner", "table"], registry=r)
        self.cameras = Gauge("privaflow_cameras_active", "Cameras whose state this worker holds in memory",
                             registry=r)
        # process CPU/RSS and collector counts: batch latency on a busy 2-core box is mostly these
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        # a labelled series exists only once touched: start every table's at 0 so dashboards see it
        for table in TABLES:
            self.late.labels(table)
        for outcome in ("applied", "replayed", "dead_letter"):
            self.records.labels(outcome)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) for the /metrics endpoint (aiohttp wants the charset apart, and
        Prometheus text is ASCII anyway)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.split(";")[0] + "; version=0.0.4"
