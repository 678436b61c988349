"""`/healthz` and Prometheus `/metrics` for one edge agent, on a small HTTP server thread.

Metrics are read from the agent's status snapshot at scrape time, so nothing is counted twice;
only inference time is a histogram observed as it happens. Neither endpoint carries anything
about what the camera saw beyond counts.

    $ curl -s localhost:9108/healthz
    {"status": "ok", "camera": "campus", "fps": 9.9, ...}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

Status = Callable[[], dict[str, Any]]

# name, kind, help, status key
_FROM_STATUS = (
    ("privaflow_edge_fps", "gauge", "Frames analysed per second over the last status interval", "fps"),
    ("privaflow_edge_objects", "gauge", "Tracked objects in the last analysed frame", "objects"),
    ("privaflow_edge_spool_depth", "gauge", "Records waiting in the disk spool for the broker", "spool_depth"),
    ("privaflow_edge_broker_up", "gauge", "1 while the Kafka broker accepts records", "broker_up"),
    ("privaflow_edge_frames", "counter", "Frames analysed", "frames"),
    ("privaflow_edge_frames_dropped", "counter", "Frames dropped because analysis fell behind", "dropped_frames"),
    ("privaflow_edge_frames_corrupt", "counter", "Frames skipped because they could not be decoded",
     "corrupt_frames"),
    ("privaflow_edge_source_reconnects", "counter", "Times the camera source was reopened", "reconnects"),
    ("privaflow_edge_records", "counter", "Records handed to the sink", "records"),
    ("privaflow_edge_records_dropped", "counter", "Records lost (spool bound, full disk, broker refusal)",
     "records_dropped"),
)


class _StatusCollector(Collector):
    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        s = self.status()
        for name, kind, help_text, key in _FROM_STATUS:
            family = (GaugeMetricFamily if kind == "gauge" else CounterMetricFamily)(name, help_text,
                                                                                    labels=["camera"])
            family.add_metric([str(s["camera"])], float(s.get(key) or 0))
            yield family


class Metrics:
    """A private Prometheus registry (so several agents can live in one test process)."""

    def __init__(self, camera_id: str, status: Status) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StatusCollector(status))
        buckets = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
        self.inference = Histogram("privaflow_edge_inference_seconds", "Detector time per analysed frame",
                                   ["camera"], registry=self.registry, buckets=buckets).labels(camera_id)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Serves GET /healthz (200 while `healthy()`, else 503; JSON status either way) and GET /metrics."""

    def __init__(self, port: int, status: Status, metrics: Metrics, healthy: Callable[[], bool],
                 host: str = "127.0.0.1") -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, outer.metrics.exposition())
                elif self.path.split("?")[0] in ("/healthz", "/"):
                    ok = outer.healthy()
                    body = json.dumps({"status": "ok" if ok else "unhealthy", **outer.status()}).encode()
                    self._send(200 if ok else 503, "application/json", body)
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not news
                pass

        self.status, self.metrics, self.healthy = status, metrics, healthy
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="healthz", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
