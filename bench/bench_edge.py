"""Edge agent benchmark: the detector alone against the whole pipeline, side by side in one run.

Not a test: it prints figures. Input is vtest.avi downscaled to 640 px wide (the default
`max_width`), every frame analysed (no subsampling, no pacing, no drops).

    detector only   decode + downscale outside the clock; only the detector call is timed
    pipeline N=1    capture thread (decode) -> mask -> detect -> track -> record -> encode -> produce
    pipeline N=k    the same, detecting every k-th frame and predicting tracks in between

Goals: pipeline N=1 >= 0.85 x detector only; >= 25 fps of tracked output with detect-every-N;
peak RSS < 500 MiB. Records go to a fresh topic on the broker at PRIVAFLOW_BOOTSTRAP (deleted
afterwards) or, with --sink file or no broker, to an Avro file in a temp folder.

    .venv/bin/python bench/bench_edge.py [--frames 150] [--rounds 6] [--every 3] [--sink kafka|file]
"""

from __future__ import annotations

import argparse
import logging
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import cv2

from privaflow.edge.agent import Agent, build_detector
from privaflow.edge.detect import Detector
from privaflow.edge.privacy import PrivacyFilter
from privaflow.edge.publish import AvroFileSink, KafkaSink, Sink
from privaflow.schemas.codec import bootstrap_servers
from privaflow.schemas.site import Camera

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / ".privaflow" / "media" / "vtest.avi"


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def detector_only(camera: Camera, detector: Detector, frames: int) -> float:
    cap = cv2.VideoCapture(str(camera.source))
    privacy = PrivacyFilter(camera.max_width, camera.privacy_masks)
    busy = 0.0
    for _ in range(frames):
        ok, raw = cap.read()
        if not ok:
            raise SystemExit(f"{camera.source} has fewer than {frames} frames")
        image = privacy.apply(raw)
        t0 = time.perf_counter()
        detector(image)
        busy += time.perf_counter() - t0
    cap.release()
    return frames / busy


def pipeline(camera: Camera, detector: Detector, make_sink: Callable[[], Sink], frames: int) -> float:
    agent = Agent("bench", camera, detector, make_sink(), realtime=False, max_frames=frames, status_every_s=0)
    t0 = time.perf_counter()
    stats = agent.run()
    took = time.perf_counter() - t0
    assert stats.frames == frames and agent.capture.stats.dropped == 0
    return frames / took


def kafka_sinks(workdir: Path) -> tuple[Callable[[], Sink], Callable[[], None], str] | None:
    """A sink factory on a fresh topic, its clean-up, and a description; None if no broker answers."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap_servers(), "socket.timeout.ms": 5000})
    topic = f"bench.edge.{uuid.uuid4().hex[:8]}"
    try:
        admin.create_topics([NewTopic(topic, 1, 1)], operation_timeout=10)[topic].result(timeout=15)
    except Exception as e:  # no broker, or it refuses: fall back to the file sink
        print(f"(no broker at {bootstrap_servers()}: {e}; using the file sink)", file=sys.stderr)
        return None
    n = iter(range(1_000_000))

    def make() -> Sink:
        return KafkaSink(workdir / f"spool{next(n)}", key="bench", topic=topic)

    def cleanup() -> None:
        admin.delete_topics([topic], operation_timeout=10)

    return make, cleanup, f"Kafka topic {topic} at {bootstrap_servers()} (idempotent, acks=all)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=150, help="frames per measurement (vtest.avi has 795)")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds; medians are reported")
    ap.add_argument("--every", type=int, default=3, help="detect every N frames for the tracked-output figure")
    ap.add_argument("--sink", choices=["kafka", "file"], default="kafka")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not VIDEO.exists():
        raise SystemExit(f"{VIDEO} missing: run `make media`")

    camera = Camera(id="bench", source=str(VIDEO), fps=120, max_width=640, detect_every=1,
                    classes=["person", "bicycle", "car", "motorcycle", "bus", "truck"])
    every = camera.model_copy(update={"detect_every": args.every})
    detector = build_detector(camera)
    rss_loaded = rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        kafka = kafka_sinks(work) if args.sink == "kafka" else None
        if kafka:
            make_sink, cleanup, where = kafka
        else:
            counter = iter(range(1_000_000))

            def make_sink() -> Sink:
                return AvroFileSink(work / f"out{next(counter)}.avro")

            def cleanup() -> None:
                pass

            where = f"Avro file in {work}"
        detector_only(camera, detector, 10)  # warm-up: first inferences allocate
        results: dict[str, list[float]] = {"detector": [], "pipeline": [], "every": []}
        try:
            for r in range(args.rounds):
                results["detector"].append(detector_only(camera, detector, args.frames))
                results["pipeline"].append(pipeline(camera, detector, make_sink, args.frames))
                results["every"].append(pipeline(every, detector, make_sink, args.frames))
                print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{k} {v[-1]:.1f} fps" for k, v in results.items()),
                      file=sys.stderr)
        finally:
            cleanup()
    det, pipe, tracked = (statistics.median(results[k]) for k in ("detector", "pipeline", "every"))
    # Load on a shared machine drifts; the ratio is taken within each round, then its median.
    ratios = [p / d for p, d in zip(results["pipeline"], results["detector"], strict=True)]
    peak = rss_mib()
    cap = cv2.VideoCapture(str(VIDEO))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    print(f"\nedge benchmark: {VIDEO.name} {w}x{h} -> 640x{round(h * 640 / w)}, {args.frames} frames x "
          f"{args.rounds} rounds (medians), sink: {where}")
    print(f"  detector only (NanoDet-g 416)        {det:6.1f} fps")
    print(f"  full pipeline, detect every frame    {pipe:6.1f} fps   ratio {statistics.median(ratios):.2f} "
          f"(per round {min(ratios):.2f}..{max(ratios):.2f}; goal >= 0.85)")
    print(f"  full pipeline, detect every {args.every}        {tracked:6.1f} fps   of tracked output  (goal >= 25)")
    print(f"  peak RSS                             {peak:6.0f} MiB   (after model load {rss_loaded:.0f} MiB; "
          "goal < 500)")


if __name__ == "__main__":
    main()
