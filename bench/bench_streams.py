"""Stream worker throughput and latency on the real local stack, side by side with a bare consumer.

    .venv/bin/privaflow stack up                 # once (or have PRIVAFLOW_BOOTSTRAP/_REGISTRY_URL set)
    .venv/bin/python bench/bench_streams.py      # ~3-4 minutes on 2 cores
    .venv/bin/python bench/bench_streams.py --quick

1. Load: `many_cameras` (200 cameras x 10 fps x ~10 objects in view) encoded with our AvroSerde and
   pre-loaded into a fresh detections topic (own topic prefix and Faust app id per run).
2. Bare: a plain aiokafka consumer reads the topic from the beginning and decodes every record with
   the same AvroSerde; nothing else. That is the ceiling for any Python consumer on this machine.
3. Faust floor: `bench/faust_floor.py`, a Faust agent that takes the same batches as the worker and
   only decodes them. What any Faust worker costs before it does anything: the goal of 0.5 is out of
   reach when this floor is below it.
4. Worker: one `privaflow streams worker` process works through the same topic (decode, tracks,
   windows, partner topics, changelog); detections/s from its /metrics between the first and the
   last applied record. The figure that survives a change of machine is the ratio worker / bare.
5. Latency: frames produced at a fixed rate with `ts` = now; after a warm-up, p50/p99 from capture
   time to the table update that includes the frame, from the worker's histogram (delta over the
   measured part only).
6. Worker memory: peak and final RSS of the worker process.
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
from pathlib import Path
from typing import Any

import httpx
import yaml

from privaflow.schemas.codec import SchemaRegistry, bootstrap_servers, registry_url, serde_for_topic
from privaflow.schemas.topics import (
    DETECTIONS,  # noqa: E402
    ensure_topics,  # noqa: E402
)
from privaflow.streams.settings import TopicNames, WorkerSettings
from privaflow.streams.worker import worker_topics
from privaflow_stack.simulate import REALISTIC, many_cameras

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------- load


def preload(topic: str, n_cameras: int, duration_s: float, chunk_s: float = 10.0) -> tuple[Any, int, int]:
    """Produce `duration_s` of event time for `n_cameras`, generated in chunks to bound memory.
    Returns (site, records, detections)."""
    from confluent_kafka import Producer

    serde = serde_for_topic(SchemaRegistry(), DETECTIONS)
    producer = Producer({"bootstrap.servers": bootstrap_servers(), "linger.ms": 50, "batch.size": 1_000_000,
                         "compression.type": "lz4", "queue.buffering.max.kbytes": 1_048_576})  # lz4 as the edge
    site, records, detections, t = None, 0, 0, 0.0
    started = time.perf_counter()
    while t < duration_s:
        chunk = min(chunk_s, duration_s - t)
        site, frames = many_cameras(n_cameras, fps=10, objects_in_view=10, duration_s=chunk, noise=REALISTIC,
                                    seed=int(t), t0_ms=1_767_225_600_000 + int(t * 1000))
        for f in frames:
            while True:
                try:
                    producer.produce(topic, serde.encode(f), key=f["camera_id"].encode())
                    break
                except BufferError:
                    producer.poll(0.1)
            detections += len(f["detections"])
        records += len(frames)
        producer.poll(0)
        t += chunk
        log(f"  loaded {t:5.0f}/{duration_s:.0f} s of event time: {records} records, {detections} detections "
            f"({time.perf_counter() - started:.0f} s)")
    assert producer.flush(120) == 0
    return site, records, detections


# ---------------------------------------------------------------- bare consumer


async def bare_consume(topic: str, expected: int) -> tuple[float, int, int]:
    """(seconds, records, detections) for a plain aiokafka consumer + AvroSerde.decode."""
    from aiokafka import AIOKafkaConsumer

    serde = serde_for_topic(SchemaRegistry(), DETECTIONS)
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
            for tp, msgs in batch.items():
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    frame = serde.decode(m.value, tp.topic, tp.partition, m.offset)
                    detections += len(frame["detections"])
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


def live_frames(site: Any, n_cameras: int, fps: float, seconds: float) -> list[dict[str, Any]]:
    """`seconds` of frames of the first `n_cameras` cameras (their ts is replaced when produced)."""
    _, frames = many_cameras(len(site.cameras), fps=fps, objects_in_view=10, duration_s=seconds, noise=REALISTIC,
                             seed=99)
    cams = {c.id for c in site.cameras[:n_cameras]}
    return [f for f in frames if f["camera_id"] in cams]


def paced_produce(topic: str, frames: list[dict[str, Any]]) -> int:
    """Produce at the frames' own pace, with ts = the wall clock when produced."""
    from confluent_kafka import Producer

    serde = serde_for_topic(SchemaRegistry(), DETECTIONS)
    producer = Producer({"bootstrap.servers": bootstrap_servers(), "linger.ms": 5, "compression.type": "lz4"})
    t0, first_ts = time.time(), frames[0]["ts"]
    for f in frames:
        delay = t0 + (f["ts"] - first_ts) / 1000.0 - time.time()
        if delay > 0:
            time.sleep(delay)
        producer.produce(topic, serde.encode(dict(f, ts=int(time.time() * 1000))), key=f["camera_id"].encode())
        producer.poll(0)
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
    ap.add_argument("--keep-topics", action="store_true", help="leave the run's topics on the broker")
    ap.add_argument("--batch-max", type=int, default=None, help="passed to the worker")
    ap.add_argument("--batch-within", type=float, default=None, help="passed to the worker")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.latency_seconds, args.warmup = 20.0, 10.0, 5.0

    run = uuid.uuid4().hex[:8]
    prefix, app_id = f"bench{run}.", f"privaflow-streams-bench{run}"
    names = TopicNames(prefix)
    tmp = Path(tempfile.mkdtemp(prefix="privaflow-bench-"))
    log(f"bench_streams: broker {bootstrap_servers()}, registry {registry_url()}, run {run}, logs in {tmp}")
    log(f"machine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} (other work skews absolute figures; "
        "the ratio is measured side by side)")

    from privaflow_stack.simulate import synthetic_site

    site = synthetic_site(args.cameras)
    config = tmp / "site.yaml"
    config.write_text(yaml.safe_dump(site.model_dump(mode="json")))
    ensure_topics(bootstrap_servers(), worker_topics(WorkerSettings(site, app_id=app_id, topics=names)))

    log(f"\n1. pre-loading {args.cameras} cameras x 10 fps x {args.duration:.0f} s into {names.detections}")
    _, records, detections = preload(names.detections, args.cameras, args.duration)
    log(f"   {records} records, {detections} detections ({detections / records:.1f} per record)")

    log("\n2. bare aiokafka consumer + AvroSerde.decode")
    bare_s, bare_n, bare_d = asyncio.run(bare_consume(names.detections, records))
    log(f"   {bare_n} records in {bare_s:.1f} s: {bare_n / bare_s:,.0f} records/s, {bare_d / bare_s:,.0f} detections/s")

    log("\n3. the Faust floor: an agent that takes the same batches and only decodes (no state, no output)")
    floor_s, floor_n, floor_d = faust_floor(names.detections, records, tmp / "faust-floor.log")
    log(f"   {floor_n} records in {floor_s:.1f} s: {floor_n / floor_s:,.0f} records/s, "
        f"{floor_d / floor_s:,.0f} detections/s")

    log("\n4. one stream worker on the same topic")
    extra = [*(["--batch-max", str(args.batch_max)] if args.batch_max else []),
             *(["--batch-within", str(args.batch_within)] if args.batch_within else [])]
    w = Worker(config, prefix, app_id, tmp / "worker-state", tmp / "worker.log", 6180 + int(run, 16) % 500, extra)
    try:
        w.wait_ready()
        work_s, work_n, work_d = worker_throughput(w, records, timeout=1800)
        log(f"   {work_n:.0f} records in {work_s:.1f} s: {work_n / work_s:,.0f} records/s, "
            f"{work_d / work_s:,.0f} detections/s")
        rss_backlog = w.rss()

        rate = args.latency_cameras * 10
        log(f"\n5. latency: {args.latency_cameras} cameras x 10 fps = {rate} records/s "
            f"for {args.warmup:.0f} + {args.latency_seconds:.0f} s (warm-up, measured), ts = now")
        # the first seconds are not steady state: the jump from the backlog's event time to now closes
        # every backlog window at once; measure after a warm-up at the same rate
        frames = live_frames(site, args.latency_cameras, 10, args.warmup + args.latency_seconds)
        result: dict[str, int] = {}
        feeder = threading.Thread(target=lambda: result.update(sent=paced_produce(names.detections, frames)))
        feeder.start()
        time.sleep(args.warmup)
        before = histogram(w.metrics(), "privaflow_frame_to_table_seconds")
        feeder.join()
        sent = result["sent"]
        deadline = time.monotonic() + 60
        while w.metrics().get(APPLIED, 0.0) < records + sent and time.monotonic() < deadline:
            time.sleep(0.25)
        after = histogram(w.metrics(), "privaflow_frame_to_table_seconds")
        p50, p99 = quantile(before, after, 0.50), quantile(before, after, 0.99)
        log(f"   {sent} frames: capture -> table update p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        rss_end = w.rss()
    finally:
        w.stop()
        if not args.keep_topics:
            delete_topics(prefix, app_id)

    bare_rate, work_rate = bare_d / bare_s, work_d / work_s
    log("\nsummary")
    log(f"  worker   {work_rate:>10,.0f} detections/s  ({work_n / work_s:,.0f} records/s)")
    log(f"  bare     {bare_rate:>10,.0f} detections/s  ({bare_n / bare_s:,.0f} records/s)")
    log(f"  floor    {floor_d / floor_s:>10,.0f} detections/s  (Faust delivering batches + decode, nothing else)")
    log(f"  ratio    {work_rate / bare_rate:>10.2f}  (goal >= 0.5); Faust floor / bare "
        f"{floor_d / floor_s / bare_rate:.2f}, worker / Faust floor {work_rate / (floor_d / floor_s):.2f}")
    log(f"  latency  p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms at {rate} records/s  (goal p99 < 1 s)")
    log(f"  worker RSS: peak {w.peak_rss / 2**20:.0f} MiB, after backlog {rss_backlog / 2**20:.0f} MiB, "
        f"at end {rss_end / 2**20:.0f} MiB ({args.cameras} cameras)")


if __name__ == "__main__":
    main()
