"""The edge agent: one camera's frames in, anonymised DetectionBatch records out.

    capture --frame--> privacy (downscale, masks) --> detect every N / predict --> track ids made
    pseudonymous --> ground motion, vehicle colour, person attributes --> frame columns
    --> batch of frames (N frames or T ms) --> sink

Each frame is dropped as soon as its columns are built; only records reach the sink. The loop
calls plain functions from the modules named above; this module adds the schedule, the
counters behind the status line, /healthz and /metrics.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np

from privaflow.edge.attributes import AttributeEstimator, ColourVotes, FaceAgeGender, person_attributes, vehicle_colours
from privaflow.edge.capture import Capture
from privaflow.edge.detect import Detector, load_detector
from privaflow.edge.detections import Detections
from privaflow.edge.health import HealthServer, Metrics
from privaflow.edge.mobile import MobileSurvey
from privaflow.edge.privacy import PrivacyFilter, PseudonymousIds
from privaflow.edge.probe import untracked_people
from privaflow.edge.publish import Sink
from privaflow.edge.records import DEFAULT_BATCH_FRAMES, DEFAULT_BATCH_MS, RecordBatcher, class_ids, frame_record
from privaflow.edge.tracking import ByteTrack, GroundMotion
from privaflow.schemas.site import Camera

log = logging.getLogger(__name__)


def build_detector(camera: Camera) -> Detector:
    """The camera's configured detector, keeping only the classes it counts. Errors (DetectorError,
    ValueError naming the `detector.` field, FileNotFoundError) are raised here, before any frame."""
    return load_detector(camera.detector, classes=class_ids(camera.classes))


@dataclass
class AgentStats:
    frames: int = 0
    detected_frames: int = 0
    records: int = 0  # DetectionBatch records handed to the sink
    objects: int = 0  # in the last frame
    inference_ms_total: float = 0.0
    started: float = 0.0
    last_frame_at: float = 0.0


class Agent:
    """Runs one camera until its source ends, `max_frames` are done, or `stop()` is called.

    `realtime` None follows the source (live streams drop frames when behind, files never do);
    `pace` replays files at their own speed rather than as fast as possible.
    `status_every_s` prints a short status line to `status_out` (stderr) that often; 0 disables it.
    `attributes` replaces the bundled age/gender estimator (`FaceAgeGender`) on cameras with
    `attributes: true`; other cameras estimate nothing.
    A record goes to the sink after `batch_frames` frames or `batch_ms` after its first frame,
    whichever comes first (checked as each frame is done: a source that stalls holds its last
    partial record until its next frame or the end), and at the end.
    """

    def __init__(self, site_id: str, camera: Camera, detector: Detector, sink: Sink, *,
                 source: str | int | None = None, realtime: bool | None = None, pace: bool = False,
                 max_frames: int | None = None, batch_frames: int = DEFAULT_BATCH_FRAMES,
                 batch_ms: float = DEFAULT_BATCH_MS,
                 attributes: AttributeEstimator | None = None, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1", status_every_s: float = 2.0,
                 status_out: TextIO | None = None) -> None:
        self.site_id, self.camera, self.detector, self.sink = site_id, camera, detector, sink
        self.batcher = RecordBatcher(site_id, camera.id, batch_frames, batch_ms)
        self.privacy = PrivacyFilter(camera.max_width, camera.privacy_masks)
        self.capture = Capture(camera.source if source is None else source, fps=camera.fps, realtime=realtime,
                               pace=pace, prepare=self.privacy.apply)
        self.max_frames = max_frames
        self.tracker = ByteTrack(fps=camera.fps)
        self.ids = PseudonymousIds()
        self.motion = GroundMotion(camera.homography) if camera.homography is not None else None
        self.colours = ColourVotes()
        self.attributes = (attributes or FaceAgeGender()) if camera.attributes else None
        # a vehicle-mounted camera (G4): positions as H3 cells, trips, privacy zones (edge/mobile.py)
        self.mobile = MobileSurvey(camera) if camera.kind == "mobile" else None
        self._person_attrs: dict[int, tuple[str | None, str | None]] = {}
        self._allowed = np.array(class_ids(camera.classes))
        self.stats = AgentStats()
        self.status_every_s, self.status_out = status_every_s, status_out or sys.stderr
        self._stop = threading.Event()
        self._window = (0.0, 0)  # (time, frames) at the last status line
        self._fps = 0.0
        self.metrics = Metrics(camera.id, self.status)
        self._server = HealthServer(metrics_port, self.status, self.metrics, self.healthy, metrics_host) \
            if metrics_port is not None else None

    # ---- running

    def run(self) -> AgentStats:
        """Process frames until done; the sink is closed (flushed, or spooled) on the way out."""
        self.stats.started = time.monotonic()
        self._window = (self.stats.started, 0)
        if self._server:
            self._server.start()
        capturing = False
        try:
            self.capture.start()
            capturing = True
            for frame in self.capture.frames():
                self.process(frame.image, frame.seq, frame.ts_ms)
                frame.image = None  # type: ignore[assignment]  # the frame is gone from here on
                self._tick()
                if self._stop.is_set() or (self.max_frames is not None and self.stats.frames >= self.max_frames):
                    break
        finally:
            self.capture.stop()
            if self.mobile is not None:
                self.mobile.end()  # the trip ends with the source: what is still held never leaves
            self._publish(self.batcher.take())
            self.sink.close()
            if capturing:  # a source that never opened gets its error alone, not a "0 frames" summary first
                self._print_status(final=True)
            if self._server:
                self._server.stop()
        return self.stats

    def stop(self) -> None:
        """Finish the current frame, then stop (safe from a signal handler or another thread)."""
        self._stop.set()
        self.capture.stop()

    def process(self, image: np.ndarray, seq: int, ts_ms: int) -> dict[str, Any]:
        """One frame through privacy, detection or prediction, tracking and attributes -> its
        columns, which join the record being built (published when it is full) and are returned."""
        # Capture already applied the filter; again here (a no-op resize, masks refilled) so that a
        # frame handed in any other way is never analysed unmasked.
        image = self.privacy.apply(image)
        h, w = image.shape[:2]
        detected = self.stats.frames % self.camera.detect_every == 0
        if detected:
            t0 = time.perf_counter()
            found = self.detector(image)
            elapsed = time.perf_counter() - t0
            self.metrics.inference.observe(elapsed)
            self.stats.inference_ms_total += elapsed * 1000
            self.stats.detected_frames += 1
            if len(found) and found.class_id is not None:
                keep = np.isin(found.class_id, self._allowed)
                if not keep.all():
                    found = found[keep]  # type: ignore[assignment]  # a boolean mask gives Detections
            tracks = self.tracker.update(found)
        else:
            tracks = self.tracker.predict()
        tids = np.asarray(tracks.tracker_id, np.int64)
        extra: dict[str, Any] = {}
        if self.motion is not None and len(tracks):
            xyxy = np.asarray(tracks.xyxy, np.float64)
            foot = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2 / w, xyxy[:, 3] / h], axis=1).clip(0, 1)
            extra["world_xy"], extra["speed_kmh"], extra["heading_deg"] = self.motion.update(tids, foot, ts_ms)
        if detected and len(tracks):
            self.colours.vote(tids, vehicle_colours(image, tracks))
        extra["colours"] = self.colours.names(tids)
        if self.attributes is not None:
            extra["ages"], extra["genders"] = self._people(image, tracks, tids, detected)
        del image  # pixels end here; the record below holds none
        ids = self.ids(tids, ts_ms)
        if self.mobile is not None and tracks.class_id is not None:
            ids = untracked_people(tracks.class_id, ids)
        frame = frame_record(seq, ts_ms, (w, h), detected, tracks, ids, **extra)
        # a mobile camera's frame gets its probe fields, and leaves only when its trip gate lets it
        for ready in (self.mobile.offer(frame, tracks, tids) if self.mobile is not None else (frame,)):
            for record in self.batcher.add(ready):
                self._publish(record)
        if detected:
            self._forget(set(tids.tolist()))
        self.stats.frames += 1
        self.stats.objects = len(tracks)
        self.stats.last_frame_at = time.monotonic()
        return frame

    def _publish(self, record: dict[str, Any] | None) -> None:
        if record is not None:
            self.sink.publish(record)
            self.stats.records += 1

    def _people(self, image: np.ndarray, tracks: Detections, tids: np.ndarray,
                detected: bool) -> tuple[list[str | None], list[str | None]]:
        """Age/gender per row; estimated on detection frames, carried by the track in between."""
        assert self.attributes is not None
        if detected and len(tracks):
            ages, genders = person_attributes(image, tracks, self.attributes)
            for tid, a, g in zip(tids.tolist(), ages, genders, strict=True):
                if a is not None or g is not None:
                    self._person_attrs[tid] = (a, g)
        got = [self._person_attrs.get(t, (None, None)) for t in tids.tolist()]
        return [a for a, _ in got], [g for _, g in got]

    def _forget(self, live: set[int]) -> None:
        """Drop per-track state of tracks the tracker no longer holds."""
        alive = set(self.tracker.tracks.track_id.tolist()) | live
        self.colours.forget_except(alive)
        if self.mobile is not None:
            self.mobile.view.forget_except(alive)
        for tid in [t for t in self._person_attrs if t not in alive]:
            del self._person_attrs[tid]

    # ---- status

    def status(self) -> dict[str, Any]:
        """A snapshot for the status line, /healthz and /metrics."""
        cs, ss = self.capture.stats, self.sink.stats
        n = self.stats.detected_frames
        return {
            "camera": self.camera.id, "frames": self.stats.frames, "fps": round(self._fps, 2),
            "objects": self.stats.objects, "dropped_frames": cs.dropped, "corrupt_frames": cs.corrupt,
            "reconnects": cs.reconnects, "source_connected": cs.connected, "records": ss.published,
            "records_dropped": ss.dropped, "spool_depth": self.sink.depth, "broker_up": ss.broker_up,
            "registry_ok": ss.registry_ok,
            "inference_ms": round(self.stats.inference_ms_total / n, 1) if n else None,
            **({"mobile": self.mobile.status()} if self.mobile is not None else {}),
            "last_frame_age_s": round(time.monotonic() - self.stats.last_frame_at, 1)
            if self.stats.last_frame_at else None,
        }

    def healthy(self, stale_s: float = 30.0) -> bool:
        """Frames are flowing (or the agent started less than `stale_s` ago)."""
        last = self.stats.last_frame_at or self.stats.started
        return not self._stop.is_set() and time.monotonic() - last < stale_s

    def _tick(self) -> None:
        if self.batcher.due():
            self._publish(self.batcher.take())
        self.sink.poll()
        now = time.monotonic()
        t0, f0 = self._window
        if now - t0 >= self.status_every_s > 0:
            self._fps = (self.stats.frames - f0) / (now - t0)
            self._window = (now, self.stats.frames)
            self._print_status()

    def _print_status(self, final: bool = False) -> None:
        if self.status_every_s <= 0:
            return
        if final:
            took = max(time.monotonic() - self.stats.started, 1e-9)
            self._fps = self.stats.frames / took
        s = self.status()
        broker = "" if s["broker_up"] else "  BROKER DOWN"
        line = (f"{'done' if final else 'edge'} {s['camera']}: {s['frames']} frames  {s['fps']:.1f} fps  "
                f"{s['objects']} objects  dropped {s['dropped_frames']}  corrupt {s['corrupt_frames']}  "
                f"spool {s['spool_depth']}  records lost {s['records_dropped']}{broker}")
        m = s.get("mobile")
        if m:
            line += (f"  trips {m['trips']}  held {m['held']}  withheld: zones {m['dropped_privacy_zone']} "
                     f"trip ends {m['dropped_trip_end']} no trip {m['dropped_no_trip']} stale {m['dropped_stale']}"
                     f"  no position {m['without_position']} (fix gaps {m['fix_gaps']})")
        print(line, file=self.status_out, flush=True)
