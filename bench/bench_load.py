"""Load: how many cameras (10 fps x ~10 objects) one broker and two stream workers sustain here.

For each camera count, a fresh topic namespace gets real-time traffic from pre-encoded simulated
frames (so the producer costs little CPU), two `privaflow streams worker` processes share it, and
the consumer-group lag is sampled every second. A count is *sustained* when the lag over the last
third of the run stays below 5 s of input (offsets are committed every few seconds) and the
workers catch up within 10 s once the traffic stops. Prints, per count: offered and
consumed detections/s, their ratio, lag, and worker memory.

    .venv/bin/python bench/bench_load.py [--counts 50,100,200,400] [--seconds 45]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path

import yaml
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.topics import DETECTIONS, ensure_topics, topic
from privaflow_stack.local import LocalStack
from privaflow_stack.simulate import REALISTIC, many_cameras

REPO = Path(__file__).resolve().parents[1]
FPS = 10.0


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def lag(admin: AdminClient, consumer: Consumer, group: str, name: str, partitions: int) -> int:
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    committed = {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == name}
    total = 0
    for p in range(partitions):
        hi = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5, cached=False)[1]
        c = committed.get(p, -1)
        total += hi - (c if c >= 0 else 0)
    return total


def run_step(stack: LocalStack, cameras: int, seconds: float, workdir: Path) -> dict[str, float]:
    site, frames = many_cameras(cameras, FPS, 10.0, seconds, REALISTIC, seed=cameras)
    serde = serde_for_topic(SchemaRegistry(stack.registry_url), DETECTIONS)
    payloads = [(f["camera_id"].encode(), serde.encode(f), f["ts"]) for f in frames]
    n_det = sum(len(f["detections"]) for f in frames)
    del frames

    unique = uuid.uuid4().hex[:6]
    prefix, app_id = f"load{unique}.", f"privaflow-streams-load{unique}"
    det = replace(topic(DETECTIONS), name=prefix + DETECTIONS)
    ensure_topics(stack.bootstrap, [det])
    site_path = workdir / f"site-{cameras}.yaml"
    site_path.write_text(yaml.safe_dump(site.model_dump(mode="json")))
    env = {**os.environ, "PRIVAFLOW_BOOTSTRAP": stack.bootstrap, "PRIVAFLOW_REGISTRY_URL": stack.registry_url,
           "PRIVAFLOW_TOPIC_PREFIX": prefix, "PRIVAFLOW_STREAMS_APP_ID": app_id}
    workers = []
    for i in range(2):
        cmd = [sys.executable, "-m", "privaflow", "streams", "worker", "--config", str(site_path),
               "--web-port", str(6300 + i + (cameras % 50) * 2), "--data-dir", str(workdir / f"w{cameras}-{i}"),
               "-l", "warn"]
        log = open(workdir / f"worker-{cameras}-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
        workers.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log))
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    probe = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"probe-{unique}"})
    producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "enable.idempotence": True, "acks": "all"})
    time.sleep(8)  # let both workers join the group before traffic starts

    t0_ms = payloads[0][2]
    start = time.monotonic()
    samples: list[tuple[float, int]] = []
    peak_rss = 0.0
    next_sample = start
    for key, value, ts in payloads:
        due = start + (ts - t0_ms) / 1000
        while True:
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - start, lag(admin, probe, app_id, det.name, det.partitions)))
                peak_rss = max(peak_rss, *(rss_mib(p.pid) for p, _ in workers))
                next_sample += 1.0
            if now >= due:
                break
            time.sleep(min(due - now, 0.01))
        while True:
            try:
                producer.produce(det.name, value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(30)
    produced_s = time.monotonic() - start
    # drain: how long until the workers have caught up completely
    drain_start = time.monotonic()
    while lag(admin, probe, app_id, det.name, det.partitions) > 0 and time.monotonic() - drain_start < 120:
        time.sleep(0.5)
    drain_s = time.monotonic() - drain_start
    for p, log in workers:
        p.terminate()
        p.wait(30)
        log.close()
    probe.close()

    tail = [lag_ for t, lag_ in samples if t >= produced_s * 2 / 3]
    per_s = cameras * FPS
    # lag is read from committed offsets, which Faust commits every few seconds: allow 5 s of input
    bounded = bool(tail) and max(tail) < 5 * per_s and drain_s < 10
    return {"cameras": cameras, "offered_det_s": n_det / produced_s, "consumed_det_s": n_det / (produced_s + drain_s),
            "max_lag_records": max((x for _, x in samples), default=0), "tail_lag_records": tail[-1] if tail else -1,
            "drain_s": drain_s, "peak_worker_rss_mib": peak_rss, "sustained": float(bounded)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="50,100,200,300,400", help="camera counts to try, in order")
    ap.add_argument("--seconds", type=float, default=45.0, help="traffic per count")
    ap.add_argument("--keep", metavar="DIR", help="leave the workers' logs and state in a folder under DIR")
    args = ap.parse_args()
    stack = LocalStack()
    stack.up()
    print(f"{'cameras':>7} {'offered det/s':>13} {'consumed det/s':>14} {'ratio':>6} {'max lag':>8} "
          f"{'end lag':>8} {'drain s':>7} {'RSS/worker MiB':>14}  sustained", flush=True)
    best = 0
    work = (contextlib.nullcontext(tempfile.mkdtemp(prefix="privaflow-load-", dir=args.keep)) if args.keep
            else tempfile.TemporaryDirectory(prefix="privaflow-load-"))
    with work as tmp:
        for n in (int(x) for x in args.counts.split(",")):
            r = run_step(stack, n, args.seconds, Path(tmp))
            print(f"{n:7d} {r['offered_det_s']:13.0f} {r['consumed_det_s']:14.0f} "
                  f"{r['consumed_det_s'] / r['offered_det_s']:6.2f} {r['max_lag_records']:8.0f} "
                  f"{r['tail_lag_records']:8.0f} {r['drain_s']:7.1f} {r['peak_worker_rss_mib']:14.0f}  "
                  f"{'yes' if r['sustained'] else 'NO'}", flush=True)
            if not r["sustained"]:  # say why: what the workers warned about, most frequent first
                for log in sorted(Path(tmp).glob(f"worker-{n}-*.log")):
                    said = Counter(re.sub(r"^\[[^]]*\] \[\d+\] |\d+", "", line).strip()[:150]
                                   for line in log.read_text(errors="replace").splitlines() if line.strip())
                    print(f"  {log.name}:", *(f"    {k:5d} x {m}" for m, k in said.most_common(6)), sep="\n")
                break
            best = n
    print(f"largest sustained camera count (10 fps x ~10 objects, 1 broker + 2 workers, this machine): {best}")
    if args.keep:
        print(f"worker logs and state kept in {tmp}")


if __name__ == "__main__":
    main()
