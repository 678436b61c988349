"""Stream worker throughput and latency on the real local stack, side by side with bare consumers.

    .venv/bin/privaflow stack up                 # once (or have PRIVAFLOW_BOOTSTRAP/_REGISTRY_URL set)
    .venv/bin/python bench/bench_streams.py      # ~5 minutes on 2 cores
    .venv/bin/python bench/bench_streams.py --quick

1. Load: `many_cameras` (200 cameras x 10 fps x ~10 objects in view), the same scenes written twice
   into fresh topics (own topic prefix and Faust app id per run): as v1 records, one per frame
   (`bench/v1.py`, the retired contract: the fixed yardstick), and as v2 DetectionBatch records of
   5 frames each, as the edge sends them by default.
2. Bare v1: a plain aiokafka consumer reads the v1 topic from the beginning and decodes every record
   (writer schema from the registry, read into the local schema). The yardstick: what a bare Python
   consumer did with the old contract on this machine.
3. Bare v2: the same on the v2 topic with our AvroSerde.
4. Faust floor (v2): `bench/faust_floor.py`, a Faust agent that takes the same batches as the worker
   and only decodes them: what any Faust worker costs before it does anything (`--no-floor` skips it).
5. Worker: one `privaflow streams worker` process works through the v2 topic (decode, tracks,
   windows, partner topics, changelog); detections/s from its /metrics between the first and the
   last applied record. The figure that survives a change of machine is worker v2 / bare v1.
6. Latency: 100 cameras x 10 fps, frames "captured" in real time (ts = the wall clock) and packed by
   the edge's own `RecordBatcher` (5 frames or 500 ms); after a warm-up, p50/p99 from capture time to
   the table update that includes the frame, from the worker's histogram (measured part only).
7. Worker memory: peak and final RSS of the worker process.

Ends with one line: `RESULT worker_v2_per_bare_v1=<ratio> p99_ms=<ms>`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from v1 import V1Serde

from privaflow.edge.records import RecordBatcher
from privaflow.schemas.codec import SchemaRegistry, bootstrap_servers, registry_url, serde_for_topic
from privaflow.schemas.detections import batch_records, frame_columns
from privaflow.schemas.topics import DETECTIONS, Topic, ensure_topics
from privaflow.streams.settings import TopicNames, WorkerSettings
from privaflow.streams.worker import worker_topics
from privaflow_stack.simulate import REALISTIC, many_cameras, synthetic_site

ROOT = Path(__file__).resolve().parents[1]
FRAMES_PER_RECORD = 5  # the edge's default (edge.records.DEFAULT_BATCH_FRAMES)
V1_SUBJECT = "bench.privaflow.detections.v1-value"  # the yardstick's own subject, shared by every run


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- load


def preload(v1_topic: str, v2_topic: str, n_cameras: int, duration_s: float, chunk_s: float = 10.0
            ) -> dict[str, int]:
    """Produce `duration_s` of event time for `n_cameras` to both topics, generated in chunks to bound
    memory. Returns frames, v2 records and detections."""
    from confluent_kafka import Producer

    v1 = V1Serde(SchemaRegistry(), V1_SUBJECT)
    v2 = serde_for_topic(SchemaRegistry(), DETECTIONS)
    producer = Producer({"bootstrap.servers": bootstrap_servers(), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.kbytes": 1_048_576})  # lz4 as the edge

    def produce(topic: str, key: bytes, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value, key=key)
                return
            except BufferError:
                producer.poll(0.1)

    n = {"frames": 0, "records": 0, "detections": 0}
    t = 0.0
    started = time.perf_counter()
    while t < duration_s:
        chunk = min(chunk_s, duration_s - t)
        _, frames = many_cameras(n_cameras, fps=10, objects_in_view=10, duration_s=chunk, noise=REALISTIC,
                                 seed=int(t), t0_ms=1_767_225_600_000 + int(t * 1000))
        for f in frames:
            produce(v1_topic, f["camera_id"].encode(), v1.encode(f))
            n["detections"] += len(f["detections"])
        for r in batch_records(frames, FRAMES_PER_RECORD):
            produce(v2_topic, r["camera_id"].encode(), v2.encode(r))
            n["records"] += 1
        n["frames"] += len(frames)
        producer.poll(0)
        t += chunk
        log(f"  loaded {t:5.0f}/{duration_s:.0f} s of event time: {n['frames']} frames in {n['records']} v2 records, "
            f"{n['detections']} detections ({time.perf_counter() - started:.0f} s)")
    assert producer.flush(120) == 0
    return n


# ---------------------------------------------------------------- bare consumers


async def bare_consume(topic: str, expected: int, decode: Callable[[bytes], int]) -> tuple[float, int, int]:
    """(seconds, records, detections) for a plain aiokafka consumer + `decode` (payload -> detections)."""
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap_servers(), auto_offset_reset="earliest",
                         group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024)
    await c.start()
    records = detections = 0
    t0: float | None = None
    try:
        while records < expected:
            batch = await c.getmany(timeout_ms=2000, max_records=5000)
            if not batch and t0 is not None:
                break
            for msgs in batch.values():
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    detections += decode(m.value)
                records += len(msgs)
    finally:
        await c.stop()
    return time.perf_counter() - (t0 or time.perf_counter()), records, detections


def faust_floor(topic: str, expected: int, log_path: Path) -> tuple[float, int, int]:
    """(seconds, records, detections) of bench/faust_floor.py on the topic (own group, from the start)."""
    cmd = [sys.executable, str(ROOT / "bench" / "faust_floor.py"), topic, str(expected), str(6700 + os.getpid() % 200)]
    with open(log_path, "wb") as out:  # Faust sends print() to its log (stderr): read the result from there
        done = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if "faust-floor " in line]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"faust floor run failed ({done.returncode}); see {log_path}")
    got = json.loads(lines[-1].split("faust-floor ", 1)[1])
    return got["seconds"], got["records"], got["detections"]


# ---------------------------------------------------------------- worker process


class Worker:
    def __init__(self, config: Path, prefix: str, app_id: str, data_dir: Path, log_path: Path, port: int,
                 extra_args: list[str]) -> None:
        env = {**os.environ, "PRIVAFLOW_TOPIC_PREFIX": prefix, "PRIVAFLOW_STREAMS_APP_ID": app_id,
               "PRIVAFLOW_BOOTSTRAP": bootstrap_servers(), "PRIVAFLOW_REGISTRY_URL": registry_url()}
        cmd = [sys.executable, "-m", "privaflow", "streams", "worker", "--config", str(config),
               "--web-port", str(port), "--data-dir", str(data_dir), "-l", "warn", *extra_args]
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.peak_rss = 0
        self._stop = threading.Event()
        threading.Thread(target=self._watch_rss, daemon=True).start()

    def rss(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
        return 0

    def _watch_rss(self) -> None:
        while not self._stop.wait(0.5):
            self.peak_rss = max(self.peak_rss, self.rss())

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in httpx.get(self.url + "/metrics", timeout=10).text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"worker exited ({self.proc.returncode}); see {self.log_path}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"worker not ready in {timeout} s; see {self.log_path}")

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


APPLIED = 'privaflow_detection_records_total{outcome="applied"}'


def worker_throughput(w: Worker, expected: int, timeout: float) -> tuple[float, float, float]:
    """(seconds, records, detections) between the first and the last applied record, from /metrics."""
    deadline = time.monotonic() + timeout
    first: tuple[float, float, float] | None = None
    last_report = time.monotonic()
    while True:
        m = w.metrics()
        now, applied, dets = time.perf_counter(), m.get(APPLIED, 0.0), m.get("privaflow_detections_total", 0.0)
        if first is None and applied > 0:
            first = (now, applied, dets)
        if applied >= expected:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"worker applied {applied:.0f}/{expected} records in {timeout} s; see {w.log_path}")
        if time.monotonic() - last_report > 10:
            log(f"  worker: {applied:.0f}/{expected} records applied")
            last_report = time.monotonic()
        time.sleep(0.25)
    assert first is not None
    return now - first[0], applied - first[1], dets - first[2]


# ---------------------------------------------------------------- latency


def live_frames(n_cameras: int, fps: float, seconds: float) -> list[dict[str, Any]]:
    """`seconds` of frames of `n_cameras` cameras of the synthetic site (their ts is replaced when
    "captured")."""
    _, frames = many_cameras(n_cameras, fps=fps, objects_in_view=10, duration_s=seconds, noise=REALISTIC, seed=99)
    return frames


def paced_produce(topic: str, frames: list[dict[str, Any]]) -> int:
    """Capture the frames at their own pace (ts = the wall clock then), pack them per camera with
    the edge's `RecordBatcher` (its defaults) and produce each record when the edge would: when full,
    or when its first frame has waited the batcher's limit. Returns the frames sent."""
    from confluent_kafka import Producer

    serde = serde_for_topic(SchemaRegistry(), DETECTIONS)
    producer = Producer({"bootstrap.servers": bootstrap_servers(), "linger.ms": 5, "compression.type": "lz4"})
    batchers: dict[str, RecordBatcher] = {}

    def send(record: dict[str, Any] | None) -> None:
        if record is not None:
            producer.produce(topic, serde.encode(record), key=record["camera_id"].encode())

    t0, first_ts = time.time(), frames[0]["ts"]
    for f in frames:
        delay = t0 + (f["ts"] - first_ts) / 1000.0 - time.time()
        if delay > 0:
            time.sleep(delay)
        for b in batchers.values():  # the edges' T-ms check, as each of them does per frame
            if b.due():
                send(b.take())
        b = batchers.get(f["camera_id"])
        if b is None:
            b = batchers[f["camera_id"]] = RecordBatcher(f["site_id"], f["camera_id"])
        frame = {**frame_columns(f["detections"]), "ts": int(time.time() * 1000), "frame_seq": f["frame_seq"],
                 "detected": True, "frame_size": (f["frame_width"], f["frame_height"])}
        for record in b.add(frame):
            send(record)
        producer.poll(0)
    for b in batchers.values():
        send(b.take())
    producer.flush(30)
    return len(frames)


def histogram(m: dict[str, float], name: str) -> list[tuple[float, float]]:
    """(upper bound, cumulative count) of a Prometheus histogram."""
    out = []
    for k, v in m.items():
        if k.startswith(name + "_bucket{le="):
            le = k.split('le="', 1)[1].split('"', 1)[0]
            out.append((float("inf") if le == "+Inf" else float(le), v))
    return sorted(out)


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """Quantile of the observations made between two scrapes, interpolated within a bucket."""
    delta = [(le, a - b) for (le, a), (_, b) in zip(after, before, strict=True)]
    total = delta[-1][1]
    if total <= 0:
        return float("nan")
    rank, lo_edge, lo_count = q * total, 0.0, 0.0
    for le, count in delta:
        if count >= rank:
            if le == float("inf"):
                return float("inf")
            return lo_edge + (le - lo_edge) * (rank - lo_count) / max(count - lo_count, 1e-9)
        lo_edge, lo_count = le, count
    return float("inf")


def delete_topics(prefix: str, app_id: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers()})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix) or t.startswith(app_id + "-")]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=60).values():
            future.exception()  # wait; a leftover topic is only clutter


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=200)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of event time pre-loaded")
    ap.add_argument("--latency-cameras", type=int, default=100, help="cameras at 10 fps in the latency phase")
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds at the fixed rate before measuring")
    ap.add_argument("--quick", action="store_true", help="20 s of load, 10 s of latency: a smoke test")
    ap.add_argument("--no-floor", action="store_true", help="skip the Faust floor (saves a minute)")
    ap.add_argument("--keep-topics", action="store_true", help="leave the run's topics on the broker")
    ap.add_argument("--batch-max", type=int, default=None, help="passed to the worker")
    ap.add_argument("--batch-within", type=float, default=None, help="passed to the worker")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.latency_seconds, args.warmup = 20.0, 10.0, 5.0

    run = uuid.uuid4().hex[:8]
    prefix, app_id = f"bench{run}.", f"privaflow-streams-bench{run}"
    names = TopicNames(prefix)
    v1_topic = f"{prefix}privaflow.detections.v1"
    tmp = Path(tempfile.mkdtemp(prefix="privaflow-bench-"))
    log(f"bench_streams: broker {bootstrap_servers()}, registry {registry_url()}, run {run}, logs in {tmp}")
    log(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} (other work skews absolute figures; "
        "the ratios are measured side by side)")

    site = synthetic_site(args.cameras)
    config = tmp / "site.yaml"
    config.write_text(yaml.safe_dump(site.model_dump(mode="json")))
    topics = worker_topics(WorkerSettings(site, app_id=app_id, topics=names))
    det = next(t for t in topics if t.name == names.detections)
    ensure_topics(bootstrap_servers(), [*topics, Topic(v1_topic, det.partitions, det.retention_ms, "delete", None)])

    log(f"\n1. pre-loading {args.cameras} cameras x 10 fps x {args.duration:.0f} s, as v1 records into {v1_topic} "
        f"and as v2 records ({FRAMES_PER_RECORD} frames each) into {names.detections}")
    n = preload(v1_topic, names.detections, args.cameras, args.duration)
    log(f"   {n['frames']} frames ({n['frames']} v1 records, {n['records']} v2 records), {n['detections']} detections "
        f"({n['detections'] / n['frames']:.1f} per frame)")

    log("\n2. bare aiokafka consumer + decode, v1 records (the yardstick)")
    v1 = V1Serde(SchemaRegistry(), V1_SUBJECT)
    bare1 = asyncio.run(bare_consume(v1_topic, n["frames"], lambda p: len(v1.decode(p)["detections"])))
    log(f"   {bare1[1]} records in {bare1[0]:.1f} s: {bare1[2] / bare1[0]:,.0f} detections/s")

    log("\n3. bare aiokafka consumer + decode, v2 records")
    v2 = serde_for_topic(SchemaRegistry(), DETECTIONS)
    bare2 = asyncio.run(bare_consume(names.detections, n["records"], lambda p: len(v2.decode(p)["track_id"])))
    log(f"   {bare2[1]} records in {bare2[0]:.1f} s: {bare2[2] / bare2[0]:,.0f} detections/s")

    floor = None
    if not args.no_floor:
        log("\n4. the Faust floor on v2: an agent that takes the same batches and only decodes (no state, no output)")
        floor = faust_floor(names.detections, n["records"], tmp / "faust-floor.log")
        log(f"   {floor[1]} records in {floor[0]:.1f} s: {floor[2] / floor[0]:,.0f} detections/s")

    log("\n5. one stream worker on the v2 topic")
    extra = [*(["--batch-max", str(args.batch_max)] if args.batch_max else []),
             *(["--batch-within", str(args.batch_within)] if args.batch_within else [])]
    w = Worker(config, prefix, app_id, tmp / "worker-state", tmp / "worker.log", 6180 + int(run, 16) % 500, extra)
    try:
        w.wait_ready()
        work_s, work_n, work_d = worker_throughput(w, n["records"], timeout=1800)
        log(f"   {work_n:.0f} records in {work_s:.1f} s: {work_d / work_s:,.0f} detections/s")
        rss_backlog = w.rss()

        rate = args.latency_cameras * 10
        log(f"\n6. latency: {args.latency_cameras} cameras x 10 fps = {rate} frames/s for {args.warmup:.0f} + "
            f"{args.latency_seconds:.0f} s (warm-up, measured), ts = capture time, packed as the edge does")
        # the first seconds are not steady state: the jump from the backlog's event time to now closes
        # every backlog window at once; measure after a warm-up at the same rate
        frames = live_frames(args.latency_cameras, 10, args.warmup + args.latency_seconds)
        result: dict[str, int] = {}
        feeder = threading.Thread(target=lambda: result.update(sent=paced_produce(names.detections, frames)))
        feeder.start()
        time.sleep(args.warmup)
        before = histogram(w.metrics(), "privaflow_frame_to_table_seconds")
        feeder.join()
        sent = result["sent"]
        frames_metric = "privaflow_frames_total"
        deadline = time.monotonic() + 60
        while w.metrics().get(frames_metric, 0.0) < n["frames"] + sent and time.monotonic() < deadline:
            time.sleep(0.25)
        after = histogram(w.metrics(), "privaflow_frame_to_table_seconds")
        p50, p99 = quantile(before, after, 0.50), quantile(before, after, 0.99)
        log(f"   {sent} frames: capture -> table update p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        rss_end = w.rss()
    finally:
        w.stop()
        if not args.keep_topics:
            delete_topics(prefix, app_id)

    bare_v1 = bare1[2] / bare1[0]
    rows = [("bare aiokafka consumer + decode, v1 records (yardstick)", bare_v1),
            ("bare aiokafka consumer + decode, v2 records", bare2[2] / bare2[0])]
    if floor:
        rows.append(("Faust floor: an agent that takes the batches and only decodes, v2", floor[2] / floor[0]))
    rows.append(("`privaflow streams worker`, v2 (tracks, windows, partner topics, changelog)", work_d / work_s))
    log("\nsummary")
    log("| consumer | detections/s | of bare v1 |\n|:--|---:|---:|")
    for label, rate_d in rows:
        log(f"| {label} | {rate_d:,.0f} | {rate_d / bare_v1:.2f} |")
    ratio = work_d / work_s / bare_v1
    log(f"  ratio worker v2 / bare v1 {ratio:.2f} (goal >= 0.6)")
    log(f"  latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms at {rate} frames/s  (goal p99 < 1 s)")
    log(f"  worker RSS: peak {w.peak_rss / 2**20:.0f} MiB, after backlog {rss_backlog / 2**20:.0f} MiB, "
        f"at end {rss_end / 2**20:.0f} MiB ({args.cameras} cameras)")
    log(f"RESULT worker_v2_per_bare_v1={ratio:.2f} p99_ms={p99 * 1000:.0f}")


if __name__ == "__main__":
    main()
