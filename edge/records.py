"""Tracked detections -> one `privaflow.FrameDetections` record (schemas/avro/frame_detections.avsc).

The record is the only thing that leaves the edge: class, confidence, normalised box and foot
point, pseudonymous track id, and where configured ground position, speed, heading, vehicle
colour and person attributes. Columns stay numpy arrays until this last step, where they become
the per-object dicts Avro wants.

    >>> from edge.detections import make_detections
    >>> d = make_detections([[64, 48, 128, 240]], [0.9], [0])
    >>> r = frame_record("s", "cam", 1700000000000, 7, (640, 480), True, d, [123])
    >>> r["detections"][0]["class_name"], round(r["detections"][0]["foot_y"], 3)
    ('person', 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detections import Detections
from schemas.site import COCO_CLASSES

# COCO 2017's 80 detection classes in model index order (the ids every detector here returns); the
# site config checks class names against the same list.
COCO_IDS = {name: i for i, name in enumerate(COCO_CLASSES)}


def class_ids(names: Sequence[str]) -> list[int]:
    """COCO ids for class names; ValueError naming any unknown one."""
    unknown = [n for n in names if n not in COCO_IDS]
    if unknown:
        raise ValueError(f"unknown COCO class name(s) {unknown}; known: {', '.join(COCO_CLASSES)}")
    return [COCO_IDS[n] for n in names]


def _opt(values: npt.ArrayLike | None, n: int) -> list[float | None]:
    if values is None:
        return [None] * n
    arr = np.asarray(values, np.float64).reshape(-1)
    return [None if np.isnan(v) else float(v) for v in arr.tolist()]


def frame_record(site_id: str, camera_id: str, ts_ms: int, frame_seq: int, frame_size: tuple[int, int],
                 detected: bool, tracks: Detections, track_ids: npt.ArrayLike, *,
                 world_xy: npt.ArrayLike | None = None, speed_kmh: npt.ArrayLike | None = None,
                 heading_deg: npt.ArrayLike | None = None, colours: Sequence[str | None] | None = None,
                 ages: Sequence[str | None] | None = None,
                 genders: Sequence[str | None] | None = None) -> dict[str, Any]:
    """One FrameDetections record. `tracks` holds pixel boxes of the analysed frame (`frame_size`
    = (width, height)); `track_ids` the pseudonymous id per row; the optional columns hold one
    value per row, NaN/None where unknown."""
    w, h = frame_size
    n = len(tracks)
    xyxy = np.clip(np.asarray(tracks.xyxy, np.float64).reshape(-1, 4) / np.array([w, h, w, h]), 0.0, 1.0)
    foot = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)
    conf = np.ones(n) if tracks.confidence is None else np.asarray(tracks.confidence, np.float64)
    cls = np.asarray(tracks.class_id).reshape(-1).tolist() if tracks.class_id is not None else [0] * n
    world = np.full((n, 2), np.nan) if world_xy is None else np.asarray(world_xy, np.float64).reshape(-1, 2)
    ids = np.asarray(track_ids, np.int64).reshape(-1).tolist()
    columns = zip(
        ids, cls, conf.tolist(), xyxy.tolist(), foot.tolist(),
        _opt(world[:, 0], n), _opt(world[:, 1], n), _opt(speed_kmh, n), _opt(heading_deg, n),
        colours or [None] * n, ages or [None] * n, genders or [None] * n, strict=True)
    detections = [
        {"track_id": tid, "class_name": COCO_CLASSES[c] if 0 <= c < len(COCO_CLASSES) else str(c),
         "confidence": cf, "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "foot_x": f[0], "foot_y": f[1],
         "world_x_m": wx, "world_y_m": wy, "speed_kmh": sp, "heading_deg": hd, "colour": col,
         "age_bracket": age, "gender": gen}
        for tid, c, cf, b, f, wx, wy, sp, hd, col, age, gen in columns
    ]
    return {"site_id": site_id, "camera_id": camera_id, "ts": int(ts_ms), "frame_seq": int(frame_seq),
            "frame_width": int(w), "frame_height": int(h), "detected": bool(detected),
            "detections": detections}
