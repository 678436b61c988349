"""Helpers for the worker tests: a worker subprocess, producing simulated detections, reading
partner topics and the dead-letter topic, and the in-process reference the worker must match.

Every test gets its own topic prefix and Faust app id (`Run`), so tests sharing the broker never see
each other's records. Waiting is always for an event (a record, an HTTP answer) with a deadline.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import httpx
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from privaflow.schemas.codec import RegistryError, SchemaRegistry, parsed_schema, serde_for_topic
from privaflow.schemas.detections import batch_records
from privaflow.schemas.site import SiteConfig, parse_site_config
from privaflow.schemas.topics import DETECTIONS, PARTNER_TABLES, ensure_topics, partner_topic_name
from privaflow.schemas.topics import topic as schemas_topic
from privaflow.streams.disclosure import records_for_partners
from privaflow.streams.settings import TopicNames, WorkerSettings
from privaflow.streams.tables import WindowStore
from privaflow.streams.tracks import TrackBook
from privaflow.streams.worker import worker_topics

REPO = Path(__file__).resolve().parents[2]

# Small windows so a test sees many of them close; grace > track expiry + 1 s keeps results
# independent of batch boundaries (see streams.worker.check_settings).
TEST_SITE: dict[str, Any] = {
    "site_id": "testsite",
    "cameras": [
        {"id": "campus", "source": 0, "classes": ["person", "bicycle"]},
        {"id": "street", "source": 1, "classes": ["person", "bicycle", "car", "bus", "truck"]},
        {"id": "gate", "source": 2, "classes": ["person"], "attributes": True},
    ],
    "lines": [
        {"id": "campus-midline", "camera": "campus", "points": [[0.5, 0.15], [0.5, 1.0]],
         "directions": ["westbound", "eastbound"]},
        {"id": "street-crosswalk", "camera": "street", "points": [[0.5, 0.3], [0.5, 1.0]]},
        {"id": "gate-line", "camera": "gate", "points": [[0.1, 0.5], [0.9, 0.5]], "directions": ["down", "up"]},
    ],
    "zones": [
        {"id": "campus-west", "camera": "campus", "capacity": 10,
         "polygon": [[0.05, 0.15], [0.45, 0.15], [0.45, 0.95], [0.05, 0.95]]},
        {"id": "campus-east", "camera": "campus", "capacity": 10,
         "polygon": [[0.55, 0.15], [0.95, 0.15], [0.95, 0.95], [0.55, 0.95]]},
        {"id": "gate-hall", "camera": "gate", "polygon": [[0.1, 0.1], [0.9, 0.1], [0.9, 0.45], [0.1, 0.45]]},
    ],
    "windows": {"traffic_volume": 10, "occupancy": 10, "flow_lines": 20, "dwell": 20, "attributes": 30,
                "grace_s": 5},
    "counting": {"track_expiry_s": 3},
    "partners": [{"id": "all", "k_anonymity": 1,
                  "tables": ["traffic_volume", "occupancy", "flow_lines", "dwell", "attributes"]}],
}


def site_config() -> SiteConfig:
    return parse_site_config(TEST_SITE, "<test site>")


class FakeRegistry:
    """Stands in for the schema registry in tests without a broker: ids in order of registration."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._schemas: dict[int, Any] = {}

    def register(self, subject: str, schema_json: str, compatibility: str = "BACKWARD") -> int:
        if schema_json not in self._ids:
            self._ids[schema_json] = len(self._ids) + 1
            self._schemas[self._ids[schema_json]] = fastavro.parse_schema(json.loads(schema_json))
        return self._ids[schema_json]

    def schema_by_id(self, schema_id: int) -> Any:
        if schema_id not in self._schemas:
            raise RegistryError(f"schema id {schema_id} not found in the fake registry")
        return self._schemas[schema_id]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Run:
    """One test's isolated namespace on the shared broker."""

    unique: str
    bootstrap: str
    registry_url: str
    site: SiteConfig = field(default_factory=site_config)

    @property
    def prefix(self) -> str:
        return f"t{self.unique}."

    @property
    def app_id(self) -> str:
        return f"privaflow-streams-t{self.unique}"

    @property
    def static_member(self) -> dict[str, str]:
        """Worker environment for a static group member, as the StatefulSet runs it (its pod name): a
        restarted worker takes its partitions back at once instead of waiting out the dead one's session."""
        return {"PRIVAFLOW_GROUP_INSTANCE_ID": f"worker-{self.unique}"}

    @property
    def names(self) -> TopicNames:
        return TopicNames(self.prefix)

    def settings(self) -> WorkerSettings:
        return WorkerSettings(self.site, bootstrap=self.bootstrap, registry_url=self.registry_url,
                              app_id=self.app_id, topics=self.names)

    def create_topics(self) -> None:
        ensure_topics(self.bootstrap, worker_topics(self.settings()))

    def partner_topic(self, table: str) -> str:
        return self.prefix + partner_topic_name(table)

    def delete_topics(self) -> None:
        """Remove this run's topics (its prefix) and Faust's (its app id) from the shared broker."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.prefix) or t.startswith(self.app_id + "-")]
        for future in admin.delete_topics(mine, operation_timeout=30).values() if mine else []:
            try:
                future.result()
            except Exception:  # already gone, or the broker is busy: leftovers are harmless, only clutter
                pass


class WorkerProcess:
    """`privaflow streams worker` in a subprocess, with its log in a file."""

    def __init__(self, run: Run, config: Path, data_dir: Path, log: Path, idle_timeout: float = 2.0,
                 extra_env: dict[str, str] | None = None, port: int | None = None) -> None:
        self.run, self.config, self.data_dir, self.log_path = run, config, data_dir, log
        # a restarted static group member must come back on the same port: Faust's assignor keeps
        # each member's URL in the assignment and checks it
        self.port = port or free_port()
        self.idle_timeout = idle_timeout
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        env = {**os.environ, "PRIVAFLOW_BOOTSTRAP": self.run.bootstrap, "PRIVAFLOW_REGISTRY_URL": self.run.registry_url,
               "PRIVAFLOW_TOPIC_PREFIX": self.run.prefix, "PRIVAFLOW_STREAMS_APP_ID": self.run.app_id,
               "PYTHONUNBUFFERED": "1", **self.extra_env}
        cmd = [sys.executable, "-m", "privaflow", "streams", "worker", "--config", str(self.config),
               "--web-port", str(self.port), "--data-dir", str(self.data_dir),
               "--idle-timeout", str(self.idle_timeout), "--batch-within", "0.1", "-l", "info"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    def wait_ready(self, timeout: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker exited with {self.proc.returncode if self.proc else None}:\n"
                                     + self.log_tail())
            try:
                r = httpx.get(self.url + "/readyz", timeout=2)
                if r.status_code == 200:
                    body: dict[str, Any] = r.json()
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("worker not ready in time:\n" + self.log_tail())

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, params=params, timeout=10)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return self.proc.returncode


def write_config(site: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(site))
    return path


# ---------------------------------------------------------------- producing


FRAMES_PER_RECORD = 5  # as the edge sends them by default (edge.records.DEFAULT_BATCH_FRAMES)


class DetectionsProducer:
    """Produces DetectionBatch records (encoded with our serde) or raw bytes to a run's detections
    topic, and remembers where each record landed."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.topic = run.names.detections
        self.serde = serde_for_topic(SchemaRegistry(run.registry_url), DETECTIONS)
        # configured like the edge's producer (edge/publish.py), lz4 compression included
        self.producer = Producer({"bootstrap.servers": run.bootstrap, "linger.ms": 5, "enable.idempotence": True,
                                  "acks": "all", "compression.type": "lz4"})
        self.delivered: dict[int, tuple[int, int]] = {}  # produce() sequence number -> (partition, offset)
        self.sent = 0

    def record(self, record: dict[str, Any]) -> int:
        return self.raw(record["camera_id"].encode(), self.serde.encode(record))

    def frame(self, frame: dict[str, Any]) -> int:
        """One frame (a dict with per-object detections) as a record of its own."""
        return self.record(batch_records([frame], 1)[0])

    def frames(self, frames: Iterable[dict[str, Any]], per_record: int = FRAMES_PER_RECORD) -> list[int]:
        """Frames of any cameras in capture order, packed as the edges would send them."""
        return [self.record(r) for r in batch_records(frames, per_record)]

    def raw(self, key: bytes | None, value: bytes | None) -> int:
        """Produce; returns a sequence number to look the record's partition/offset up after flush()."""
        seq = self.sent
        self.sent += 1

        def on_delivery(err: Any, msg: Any) -> None:
            assert err is None, err
            self.delivered[seq] = (msg.partition(), msg.offset())

        while True:
            try:
                self.producer.produce(self.topic, value, key=key, on_delivery=on_delivery)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)
        return seq

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


def interleave(frames_by_camera: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """All cameras' frames in capture-time order (as live edges would produce them)."""
    out = [f for frames in frames_by_camera.values() for f in frames]
    out.sort(key=lambda f: f["ts"])
    return out


# ---------------------------------------------------------------- reading


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0
               ) -> list[Any]:
    """Every record of `topic` from the beginning, polling until `until(records)` or the deadline."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        c.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while not until(records):
            if time.monotonic() > deadline:
                break
            for m in c.consume(500, 0.5):
                if m.error() is None:
                    records.append(m)
        return records
    finally:
        c.close()


def read_partner(run: Run, table: str, until: Callable[[list[tuple[str, dict[str, Any]]]], bool],
                 timeout: float = 60.0) -> list[tuple[str, dict[str, Any]]]:
    """(key, decoded value) of a partner topic, in arrival order per partition."""
    serde = serde_for_topic(SchemaRegistry(run.registry_url), partner_topic_name(table))
    decoded: list[tuple[str, dict[str, Any]]] = []

    def done(records: list[Any]) -> bool:
        while len(decoded) < len(records):
            m = records[len(decoded)]
            decoded.append((m.key().decode(), serde.decode(m.value())))
        return until(decoded)

    read_topic(run.bootstrap, run.partner_topic(table), done, timeout)
    return decoded


def holds_keys(want: Iterable[str]) -> Callable[[list[tuple[str, dict[str, Any]]]], bool]:
    """A `read_partner` stop condition: every key in `want` has arrived."""
    keys = set(want)
    return lambda records: keys <= {k for k, _ in records}


def read_partner_tables(run: Run, expected: dict[str, dict[str, dict[str, Any]]], timeout: float = 120,
                        worker: WorkerProcess | None = None) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Every partner table's records once all its expected windows are there or `timeout` (one
    deadline for all tables) has passed; stops waiting early if `worker` has exited."""
    deadline = time.monotonic() + timeout
    got: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for table in PARTNER_TABLES:
        wait = 0.0 if worker is not None and not worker.alive() else max(1.0, deadline - time.monotonic())
        got[table] = read_partner(run, table, holds_keys(expected.get(partner_topic_name(table), {})), wait)
    return got


def latest_by_key(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for k, v in records:
        out[k] = v
    return out


def _canon(v: dict[str, Any]) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def conflicting_duplicates(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Keys published more than once with different values (must be empty)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for k, v in records:
        seen.setdefault(k, []).append(v)
    return {k: vs for k, vs in seen.items() if any(_canon(v) != _canon(vs[0])
                                                    for v in vs)}


# ---------------------------------------------------------------- the reference


def reference(site: SiteConfig, frames_by_camera: dict[str, list[dict[str, Any]]]
              ) -> dict[str, dict[str, dict[str, Any]]]:
    """partner topic (unprefixed) -> key -> value, computed in-process by the same domain code with
    every window finally closed: what the worker must publish, record for record."""
    closed = []
    for cam, frames in frames_by_camera.items():
        book, store = TrackBook(site, cam), WindowStore(site)
        store.add(book.observe_many(frames))
        last = max(f["ts"] for f in frames)
        store.add(book.expire(last + 10**9))
        closed += store.close(last + 10**9)
    return {topic: {k: _avro_roundtrip(topic, v) for k, v in recs}
            for topic, recs in records_for_partners(closed, site).items()}


def _avro_roundtrip(topic: str, value: dict[str, Any]) -> dict[str, Any]:
    """The value as a consumer decodes it (Avro floats are 32-bit)."""
    schema = parsed_schema(schemas_topic(topic).value_schema or "")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, value)
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, schema, None)
    assert isinstance(out, dict)
    return out


def summed(records: Iterable[tuple[str, dict[str, Any]]], dims: tuple[str, ...]) -> Counter[tuple[Any, ...]]:
    out: Counter[tuple[Any, ...]] = Counter()
    for _, v in records:
        out[tuple(v[d] for d in dims)] += int(v["count"] or 0)
    return +out


