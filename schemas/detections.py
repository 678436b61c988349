"""The detections record, `privaflow.DetectionBatch` on `privaflow.detections.v2`: its column layout,
how frames are packed into it and how a decoded one is checked.

One record carries several consecutive frames of one camera, one array per field: per-frame
columns (`FRAME_COLUMNS`, one entry per frame) and per-detection columns (`DETECTION_COLUMNS`, one
entry per detection, frame after frame; frame i owns the next `detection_counts[i]` entries).
Optional columns (`OPTIONAL_NUMBERS`, `OPTIONAL_LABELS` per detection, `PROBE_COLUMNS` per frame)
are null for the whole batch when no detection or frame has the value, so a camera without a
homography, attributes or a vehicle to ride in pays nothing for them; inside a present column NaN
(numbers) or null (other values) marks a detection or frame without it. A per-frame
Kafka message cost the stream workers ~130 µs of Faust machinery each and a dict per detection to
decode; a batch of frames as columns costs one message and a few lists.

The edge packs frames with `BatchBuilder`; tools and tests that hold frames as per-object dicts
(the simulator's `frames`) use `batch_records`, and `record_frames` unpacks a record again.

    >>> b = BatchBuilder("site", "cam")
    >>> b.add(1_700_000_000_000, 1, True, (640, 480), frame_columns([{"track_id": 7, "class_name": "car",
    ...     "confidence": 0.9, "x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4, "foot_x": 0.2, "foot_y": 0.4}]))
    >>> b.add(1_700_000_000_100, 2, False, (640, 480), frame_columns([]))
    >>> r = b.take()
    >>> r["detection_counts"], r["track_id"], r["speed_kmh"], layout_problem(r)
    ([1, 0], [7], None, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

SCHEMA_NAME = "detection_batch"
FRAME_COLUMNS = ("ts", "frame_seq", "detected", "detection_counts")
DETECTION_COLUMNS = ("track_id", "class_name", "confidence", "x1", "y1", "x2", "y2", "foot_x", "foot_y")
OPTIONAL_NUMBERS = ("world_x_m", "world_y_m", "speed_kmh", "heading_deg")  # NaN: unknown for that detection
OPTIONAL_LABELS = ("colour", "age_bracket", "gender")  # null: unknown for that detection
OPTIONAL_COLUMNS = OPTIONAL_NUMBERS + OPTIONAL_LABELS
_MISSING: dict[str, Any] = {**dict.fromkeys(OPTIONAL_NUMBERS, math.nan), **dict.fromkeys(OPTIONAL_LABELS)}
# Optional per-frame columns (a mobile camera's probe fields, edge/mobile.py): one entry per frame when
# present; a frame without the value holds NaN (numbers), an empty list (furniture) or null (the rest).
PROBE_COLUMNS = ("trip_id", "h3_cell", "probe_heading", "probe_speed_kmh", "vehicles_ahead", "ahead_band", "people",
                 "furniture")
_FRAME_MISSING: dict[str, Any] = {**dict.fromkeys(PROBE_COLUMNS), "probe_speed_kmh": math.nan, "furniture": []}


def frame_columns(detections: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """One frame's detections given as per-object dicts (fields named as the columns; optional
    fields may be absent or None) -> that frame's columns, as `BatchBuilder.add` takes them."""
    out: dict[str, list[Any]] = {c: [d[c] for d in detections] for c in DETECTION_COLUMNS}
    for c in OPTIONAL_COLUMNS:
        values = [d.get(c) for d in detections]
        if any(v is not None for v in values):
            out[c] = [_MISSING[c] if v is None else v for v in values] if c in OPTIONAL_NUMBERS else values
    return out


class BatchBuilder:
    """Packs consecutive frames of one camera into one DetectionBatch record. `add` takes a frame's
    columns (`DETECTION_COLUMNS`, plus whichever optional columns the frame has, each one entry per
    detection); `take` returns the record and starts an empty one. All frames of a record have one
    frame size: add a frame of another size only after `take`."""

    def __init__(self, site_id: str, camera_id: str) -> None:
        self.site_id, self.camera_id = site_id, camera_id
        self.frame_size: tuple[int, int] | None = None
        self._frames: dict[str, list[Any]] = {c: [] for c in FRAME_COLUMNS}
        self._dets: dict[str, list[Any]] = {c: [] for c in DETECTION_COLUMNS}
        self._optional: dict[str, list[Any]] = {}
        self._probe: dict[str, list[Any]] = {}

    def __len__(self) -> int:
        """Frames in the record being built."""
        return len(self._frames["ts"])

    @property
    def detections(self) -> int:
        return len(self._dets["track_id"])

    def add(self, ts_ms: int, frame_seq: int, detected: bool, frame_size: tuple[int, int],
            columns: Mapping[str, Any]) -> None:
        """One frame: `columns` holds its per-detection lists and, if it has any, its per-frame
        optional values (`PROBE_COLUMNS`: a value each, None where absent)."""
        if self.frame_size is not None and len(self) and tuple(frame_size) != self.frame_size:
            raise ValueError(f"frame size {frame_size} differs from the batch's {self.frame_size}: take() first")
        self.frame_size = (int(frame_size[0]), int(frame_size[1]))
        n = len(columns["track_id"])
        before = self.detections
        for c in DETECTION_COLUMNS:
            if len(columns[c]) != n:
                raise ValueError(f"column {c} has {len(columns[c])} entries for {n} detections")
            self._dets[c].extend(columns[c])
        for c in OPTIONAL_COLUMNS:
            values = columns.get(c)
            if values is None:
                if c in self._optional:
                    self._optional[c].extend([_MISSING[c]] * n)
                continue
            if len(values) != n:
                raise ValueError(f"column {c} has {len(values)} entries for {n} detections")
            # a column that appears mid-batch is unknown for the detections before it
            self._optional.setdefault(c, [_MISSING[c]] * before).extend(values)
        frames = len(self)
        for c in PROBE_COLUMNS:
            value = columns.get(c)
            if value is None:
                if c in self._probe:
                    self._probe[c].append(_FRAME_MISSING[c])
                continue
            # a column that appears mid-batch is unknown for the frames before it
            self._probe.setdefault(c, [_FRAME_MISSING[c]] * frames).append(list(value) if c == "furniture" else value)
        f = self._frames
        f["ts"].append(int(ts_ms))
        f["frame_seq"].append(int(frame_seq))
        f["detected"].append(bool(detected))
        f["detection_counts"].append(n)

    def take(self) -> dict[str, Any] | None:
        """The record of the frames added since the last `take` (None if there are none)."""
        if not len(self):
            return None
        assert self.frame_size is not None
        record: dict[str, Any] = {"site_id": self.site_id, "camera_id": self.camera_id,
                                  "frame_width": self.frame_size[0], "frame_height": self.frame_size[1],
                                  **self._frames, **self._dets}
        record.update({c: self._optional.get(c) for c in OPTIONAL_COLUMNS})
        record.update({c: self._probe.get(c) for c in PROBE_COLUMNS})
        self._frames = {c: [] for c in FRAME_COLUMNS}
        self._dets = {c: [] for c in DETECTION_COLUMNS}
        self._optional = {}
        self._probe = {}
        return record


def batch_records(frames: Iterable[Mapping[str, Any]], frames_per_record: int) -> list[dict[str, Any]]:
    """Frames given as dicts with per-object `detections` (the simulator's, the tests'), of any
    cameras in capture order -> DetectionBatch records of up to `frames_per_record` consecutive
    frames of one camera each, in the order an edge per camera would send them (a record when it is
    full; at the end, each camera's remainder)."""
    if frames_per_record < 1:
        raise ValueError(f"frames_per_record must be at least 1, got {frames_per_record}")
    builders: dict[str, BatchBuilder] = {}
    out: list[dict[str, Any]] = []
    for f in frames:
        b = builders.get(f["camera_id"])
        if b is None:
            b = builders[f["camera_id"]] = BatchBuilder(f["site_id"], f["camera_id"])
        size = (int(f["frame_width"]), int(f["frame_height"]))
        if len(b) and (len(b) >= frames_per_record or size != b.frame_size):
            out.append(b.take())  # type: ignore[arg-type]
        cols: dict[str, Any] = frame_columns(f["detections"])
        cols.update({c: f[c] for c in PROBE_COLUMNS if f.get(c) is not None})
        b.add(f["ts"], f["frame_seq"], f.get("detected", True), size, cols)
    out.extend(r for b in builders.values() if (r := b.take()) is not None)
    return out


def record_frames(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A DetectionBatch record -> one dict per frame with per-object `detections` (absent optional
    values as None) and, when the record has them, the frame's probe fields (None where the frame
    has none): what `batch_records` takes. For tests and tools; the stream worker uses it only for the
    cameras that watch an intersection approach (`streams.approaches` reads frames one by one)."""
    out: list[dict[str, Any]] = []
    at = 0
    present = [c for c in OPTIONAL_COLUMNS if record.get(c) is not None]
    probe = [c for c in PROBE_COLUMNS if record.get(c) is not None]
    for i, n in enumerate(record["detection_counts"]):
        dets = []
        for j in range(at, at + n):
            d = {c: record[c][j] for c in DETECTION_COLUMNS}
            for c in OPTIONAL_COLUMNS:
                v = record[c][j] if c in present else None
                d[c] = None if isinstance(v, float) and math.isnan(v) else v
            dets.append(d)
        at += n
        frame = {"site_id": record["site_id"], "camera_id": record["camera_id"], "ts": record["ts"][i],
                 "frame_seq": record["frame_seq"][i], "frame_width": record["frame_width"],
                 "frame_height": record["frame_height"], "detected": record["detected"][i], "detections": dets}
        for c in probe:
            v = record[c][i]
            frame[c] = None if isinstance(v, float) and math.isnan(v) else v
        out.append(frame)
    return out


def layout_problem(record: Mapping[str, Any]) -> str | None:
    """Why a schema-valid record's columns do not fit together, or None: every per-frame column has
    one entry per frame (present optional ones included), frame times do not go back, the counts
    are not negative and add up to the length of every per-detection column (present optional ones
    included)."""
    ts = record["ts"]
    frames = len(ts)
    if frames == 0:
        return "a batch without frames"
    for c in _PER_FRAME:
        values = record.get(c)
        if values is not None and len(values) != frames:
            return f"column {c} has {len(values)} entries for {frames} frames"
    if frames > 1 and ts != sorted(ts):
        return "frame times are not in capture order"
    counts = record["detection_counts"]
    if min(counts) < 0:
        return f"a negative detection count ({min(counts)})"
    n = sum(counts)
    for c in _PER_DETECTION:
        values = record.get(c)
        if values is not None and len(values) != n:
            return f"column {c} has {len(values)} entries for {n} detections (the sum of detection_counts)"
    return None


_PER_DETECTION = DETECTION_COLUMNS + OPTIONAL_COLUMNS
_PER_FRAME = FRAME_COLUMNS[1:] + PROBE_COLUMNS
