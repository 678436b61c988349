"""Load: how many cameras (10 fps x ~10 objects) one broker and two stream workers sustain here.

For each camera count, a fresh topic namespace gets real-time traffic from pre-encoded simulated
frames packed as the edge packs them (DetectionBatch records of 5 frames, each sent when its last
frame is captured; so the producer costs little CPU), two `privaflow streams worker` processes
share it, and the consumer-group lag is sampled every second. A count is *sustained* when the lag
over the last third of the run stays below 5 s of input (offsets are committed every few seconds)
and the workers catch up within 10 s once the traffic stops. Prints, per count: offered and
consumed detections/s, their ratio, lag (in records), and worker memory.

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
from typing import Any

import yaml
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from privaflow.schemas.codec import SchemaRegistry, serde_for_topic
from privaflow.schemas.detections import batch_records
from privaflow.schemas.topics import DETECTIONS, ensure_topics, topic
from privaflow_stack.local import LocalStack
from privaflow_stack.simulate import REALISTIC, T0_MS, many_cameras

REPO = Path(__file__).resolve().parents[1]
FPS = 10.0
FRAMES_PER_RECORD = 5  # the edge's default (edge.records.DEFAULT_BATCH_FRAMES)


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


def encoded_load(stack: LocalStack, cameras: int, seconds: float, chunk_s: float = 10.0
                 ) -> tuple[Any, list[tuple[bytes, bytes, int]], int]:
    """(site, [(key, value, when to send: the capture time of the record's last frame)], detections),
    generated in chunks of event time to bound memory."""
    serde = serde_for_topic(SchemaRegistry(stack.registry_url), DETECTIONS)
    payloads: list[tuple[bytes, bytes, int]] = []
    n_det, t, site = 0, 0.0, None
    while t < seconds:
        chunk = min(chunk_s, seconds - t)
        site, frames = many_cameras(cameras, FPS, 10.0, chunk, REALISTIC, seed=cameras + int(t),
                                    t0_ms=T0_MS + int(t * 1000))
        n_det += sum(len(f["detections"]) for f in frames)
        payloads += [(r["camera_id"].encode(), serde.encode(r), r["ts"][-1])
                     for r in batch_records(frames, FRAMES_PER_RECORD)]
        t += chunk
    payloads.sort(key=lambda p: p[2])
    return site, payloads, n_det


def worker_metrics(port: int) -> dict[str, float]:
    """The counters of a worker's /metrics that say what it did and what it cost."""
    import httpx

    wanted = ("privaflow_detections_total", "process_cpu_seconds_total")
    out = dict.fromkeys(wanted, 0.0)
    try:
        for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
            name, _, value = line.rpartition(" ")
            if name in wanted:
                out[name] = float(value)
    except Exception:  # a worker that does not answer: zeros say so
        pass
    return out


def process_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def run_step(stack: LocalStack, cameras: int, seconds: float, workdir: Path, profile: bool = False
             ) -> dict[str, float]:
    site, payloads, n_det = encoded_load(stack, cameras, seconds)

    unique = uuid.uuid4().hex[:6]
    prefix, app_id = f"load{unique}.", f"privaflow-streams-load{unique}"
    det = replace(topic(DETECTIONS), name=prefix + DETECTIONS)
    ensure_topics(stack.bootstrap, [det])
    site_path = workdir / f"site-{cameras}.yaml"
    site_path.write_text(yaml.safe_dump(site.model_dump(mode="json")))
    env = {**os.environ, "PRIVAFLOW_BOOTSTRAP": stack.bootstrap, "PRIVAFLOW_REGISTRY_URL": stack.registry_url,
           "PRIVAFLOW_TOPIC_PREFIX": prefix, "PRIVAFLOW_STREAMS_APP_ID": app_id}
    workers = []
    ports = [6300 + i + (cameras % 50) * 2 for i in range(2)]
    for i in range(2):
        cmd = [sys.executable, "-m", "privaflow", "streams", "worker", "--config", str(site_path),
               "--web-port", str(ports[i]), "--data-dir", str(workdir / f"w{cameras}-{i}"), "-l", "warn"]
        log = open(workdir / f"worker-{cameras}-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
        workers.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log))
    admin = AdminClient({"bootstrap.servers": stack.bootstrap})
    probe = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"probe-{unique}"})
    producer = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "enable.idempotence": True, "acks": "all"})
    time.sleep(8)  # let both workers join the group before traffic starts
    if profile:  # a sampling profile of the first worker while the traffic runs (py-spy, attached)
        out = workdir / f"profile-{cameras}-0.txt"
        subprocess.Popen(["py-spy", "record", "-p", str(workers[0][0].pid), "-d", str(int(seconds)), "-r", "50",
                          "-f", "raw", "-o", str(out), "--nonblocking"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)

    before = [worker_metrics(port) for port in ports]
    busy0, total0 = cpu_busy()
    stack_pids = {"broker": stack.kafka.pid(), "registry": stack.registry.pid()}
    stack0 = {k: process_cpu_s(pid) for k, pid in stack_pids.items()}
    self0 = time.process_time()
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
    after = [worker_metrics(port) for port in ports]
    busy1, total1 = cpu_busy()
    wall = produced_s + drain_s
    cores = os.cpu_count() or 1
    used = {"load generator (this process)": time.process_time() - self0}
    used.update({k: process_cpu_s(pid) - stack0[k] for k, pid in stack_pids.items()})
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        dets = a["privaflow_detections_total"] - b["privaflow_detections_total"]
        cpu = used[f"worker {i}"] = a["process_cpu_seconds_total"] - b["process_cpu_seconds_total"]
        print(f"  worker {i}: {dets:,.0f} detections applied, {cpu:.1f} s CPU ({cpu / wall:.0%} of a core), "
              f"{cpu / max(dets, 1) * 1e6:.1f} us CPU per detection", flush=True)
    machine = (busy1 - busy0) / (total1 - total0) * cores * wall  # CPU seconds used on the machine
    used["everything else on the machine"] = max(machine - sum(used.values()), 0.0)
    print(f"  the machine was {machine / cores / wall:.0%} busy ({cores} cores); of that, in cores: "
          + ", ".join(f"{k} {v / wall:.2f}" for k, v in used.items()), flush=True)
    for p, log in workers:
        p.terminate()
        p.wait(30)
        log.close()
    probe.close()

    tail = [lag_ for t, lag_ in samples if t >= produced_s * 2 / 3]
    per_s = cameras * FPS / FRAMES_PER_RECORD  # records per second
    # lag is read from committed offsets, which Faust commits every few seconds: allow 5 s of input
    bounded = bool(tail) and max(tail) < 5 * per_s and drain_s < 10
    return {"cameras": cameras, "offered_det_s": n_det / produced_s, "consumed_det_s": n_det / (produced_s + drain_s),
            "max_lag_records": max((x for _, x in samples), default=0), "tail_lag_records": tail[-1] if tail else -1,
            "drain_s": drain_s, "peak_worker_rss_mib": peak_rss, "sustained": float(bounded)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", default="300,600,900,1200", help="camera counts to try, in order")
    ap.add_argument("--seconds", type=float, default=45.0, help="traffic per count")
    ap.add_argument("--keep", metavar="DIR", help="leave the workers' logs and state in a folder under DIR")
    ap.add_argument("--profile", action="store_true", help="with --keep: record a sampling profile of the first "
                    "worker during the traffic (needs py-spy: pip install py-spy), as collapsed stacks")
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
            r = run_step(stack, n, args.seconds, Path(tmp), profile=args.profile and bool(args.keep))
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
