"""Tracked detections -> one frame's columns -> `privaflow.DetectionBatch` records of several
frames (schemas/avro/detection_batch.avsc, laid out by `privaflow.schemas.detections`).

The record is the only thing that leaves the edge: class, confidence, normalised box and foot
point, pseudonymous track id, and where configured ground position, speed, heading, vehicle
colour and person attributes. Columns stay columns: `frame_record` turns the tracker's arrays into
one frame's column lists, and `RecordBatcher` appends frames to the record being built and hands
it out after `max_frames` frames or `max_wait_ms` after its first frame, whichever comes first
(defaults: 5 frames, 500 ms: a frame waits at most ~0.5 s at the edge, so capture -> table stays
under a second; one Kafka message per 5 frames instead of one per frame).

    >>> from privaflow.edge.detections import make_detections
    >>> d = make_detections([[64, 48, 128, 240]], [0.9], [0])
    >>> f = frame_record(7, 1700000000000, (640, 480), True, d, [123])
    >>> f["class_name"], round(f["foot_y"][0], 3), f["speed_kmh"]
    (['person'], 0.5, None)
    >>> b = RecordBatcher("s", "cam", max_frames=2)
    >>> b.add(f, now=0.0), [r["detection_counts"] for r in b.add(f, now=0.1)]
    ([], [[1, 1]])
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from privaflow.edge.detections import Detections
from privaflow.schemas.detections import BatchBuilder
from privaflow.schemas.vocabulary import OBJECT_CLASSES as COCO_CLASSES  # COCO 2017, in model id order

COCO_IDS = {name: i for i, name in enumerate(COCO_CLASSES)}


def class_ids(names: Sequence[str]) -> list[int]:
    """COCO ids for class names; ValueError naming any unknown one."""
    unknown = [n for n in names if n not in COCO_IDS]
    if unknown:
        raise ValueError(f"unknown COCO class name(s) {unknown}; known: {', '.join(COCO_CLASSES)}")
    return [COCO_IDS[n] for n in names]


DEFAULT_BATCH_FRAMES = 5
DEFAULT_BATCH_MS = 500


def _opt(values: npt.ArrayLike | None, n: int) -> list[float] | None:
    if values is None or n == 0:
        return None
    arr = np.asarray(values, np.float64).reshape(-1)
    return None if np.isnan(arr).all() else arr.tolist()  # NaN: unknown for that detection


def _labels(values: Sequence[str | None] | None) -> list[str | None] | None:
    return None if values is None or all(v is None for v in values) else list(values)


def frame_record(frame_seq: int, ts_ms: int, frame_size: tuple[int, int], detected: bool, tracks: Detections,
                 track_ids: npt.ArrayLike, *, world_xy: npt.ArrayLike | None = None,
                 speed_kmh: npt.ArrayLike | None = None, heading_deg: npt.ArrayLike | None = None,
                 colours: Sequence[str | None] | None = None, ages: Sequence[str | None] | None = None,
                 genders: Sequence[str | None] | None = None) -> dict[str, Any]:
    """One frame as columns: `ts`, `frame_seq`, `detected`, `frame_size` (analysed width, height)
    and one list per detection field (`schemas.detections.DETECTION_COLUMNS`, and the optional
    columns this frame has). `tracks` holds pixel boxes of the analysed frame; `track_ids` the
    pseudonymous id per row; the optional columns hold one value per row, NaN/None where unknown."""
    w, h = frame_size
    n = len(tracks)
    xyxy = np.clip(np.asarray(tracks.xyxy, np.float64).reshape(-1, 4) / np.array([w, h, w, h]), 0.0, 1.0)
    conf = np.ones(n) if tracks.confidence is None else np.asarray(tracks.confidence, np.float64)
    cls = np.asarray(tracks.class_id).reshape(-1).tolist() if tracks.class_id is not None else [0] * n
    world = np.full((n, 2), np.nan) if world_xy is None else np.asarray(world_xy, np.float64).reshape(-1, 2)
    x1, y1, x2, y2 = (xyxy[:, i].tolist() for i in range(4))
    return {
        "ts": int(ts_ms), "frame_seq": int(frame_seq), "detected": bool(detected), "frame_size": (int(w), int(h)),
        "track_id": np.asarray(track_ids, np.int64).reshape(-1).tolist(),
        "class_name": [COCO_CLASSES[c] if 0 <= c < len(COCO_CLASSES) else str(c) for c in cls],
        "confidence": conf.tolist(), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "foot_x": ((xyxy[:, 0] + xyxy[:, 2]) / 2).tolist(), "foot_y": y2,
        "world_x_m": _opt(world[:, 0], n), "world_y_m": _opt(world[:, 1], n), "speed_kmh": _opt(speed_kmh, n),
        "heading_deg": _opt(heading_deg, n), "colour": _labels(colours), "age_bracket": _labels(ages),
        "gender": _labels(genders),
    }


class RecordBatcher:
    """Frames of one camera -> DetectionBatch records: `add` returns a record when the one being
    built is full (`max_frames`), `due` says when its first frame has waited `max_wait_ms` (the
    agent checks it every loop turn), `take` hands out what there is (at the end)."""

    def __init__(self, site_id: str, camera_id: str, max_frames: int = DEFAULT_BATCH_FRAMES,
                 max_wait_ms: float = DEFAULT_BATCH_MS) -> None:
        if max_frames < 1 or max_wait_ms < 0:
            raise ValueError(f"a batch needs at least 1 frame and a wait of at least 0 ms "
                             f"(got {max_frames} frames, {max_wait_ms} ms)")
        self.max_frames, self.max_wait_s = max_frames, max_wait_ms / 1000.0
        self._builder = BatchBuilder(site_id, camera_id)
        self._since: float | None = None  # monotonic time of the first frame in the batch

    def __len__(self) -> int:
        return len(self._builder)

    def add(self, frame: dict[str, Any], now: float | None = None) -> list[dict[str, Any]]:
        """Add a frame (from `frame_record`); returns the records it finished: the batch when this
        frame fills it, and before that the batch so far if this frame has another size."""
        now = time.monotonic() if now is None else now
        out = []
        if len(self._builder) and self._builder.frame_size != frame["frame_size"]:
            out.append(self._take())
        if not len(self._builder):
            self._since = now
        self._builder.add(frame["ts"], frame["frame_seq"], frame["detected"], frame["frame_size"], frame)
        if len(self._builder) >= self.max_frames:
            out.append(self._take())
        return out

    def due(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        return self._since is not None and now - self._since >= self.max_wait_s

    def take(self) -> dict[str, Any] | None:
        """The record of the frames added so far (None if there are none)."""
        self._since = None
        return self._builder.take()

    def _take(self) -> dict[str, Any]:
        record = self.take()
        assert record is not None
        return record
