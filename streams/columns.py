"""Consecutive frames of one camera as numpy columns: what `TrackBook.observe_columns` works on.

A stream worker decodes DetectionBatch records (`schemas.detections`) into dicts of Python lists;
`Columns.from_records` joins the records of one camera in a Kafka batch and hands each column to
numpy once, so the per-detection work that follows is vectorised over every frame of the batch.
`Columns.from_frames` builds the same from frames given as per-object dicts (tests, the in-process
reference, the simulator).

Optional columns are None when no detection has them; inside a column, NaN (numbers) or None
(labels) marks a detection without the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privaflow.schemas.codec import epoch_ms

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


@dataclass(slots=True)
class Columns:
    """Frames `ts` (capture times, epoch ms, in arrival order) with `counts[i]` detections each;
    per-detection columns frame after frame."""

    ts: IntArray
    counts: IntArray
    track_id: IntArray
    class_name: list[str]
    foot_x: FloatArray
    foot_y: FloatArray
    world_x_m: FloatArray | None = None
    world_y_m: FloatArray | None = None
    speed_kmh: FloatArray | None = None
    age_bracket: list[str | None] | None = None
    gender: list[str | None] | None = None
    colour: list[str | None] | None = None  # vehicles: the colour the edge voted for the box (T5)

    @property
    def frames(self) -> int:
        return int(self.ts.shape[0])

    def __len__(self) -> int:
        """Detections."""
        return int(self.track_id.shape[0])

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> Columns:
        """Decoded DetectionBatch records of one camera, in order (their layout already checked)."""
        if len(records) == 1:
            r = records[0]

            def col(name: str) -> Any:
                return r[name]

            def opt(name: str) -> Any:
                return r.get(name)
        else:
            def col(name: str) -> Any:
                return list(chain.from_iterable(r[name] for r in records))

            def opt(name: str) -> Any:
                if all(r.get(name) is None for r in records):
                    return None
                fill: Any = np.nan if name in _NUMBERS else None
                return list(chain.from_iterable(r[name] if r.get(name) is not None else [fill] * len(r["track_id"])
                                                for r in records))
        return cls(
            ts=np.asarray(col("ts"), np.int64), counts=np.asarray(col("detection_counts"), np.int64),
            track_id=np.asarray(col("track_id"), np.int64), class_name=list(col("class_name")),
            foot_x=np.asarray(col("foot_x"), np.float64), foot_y=np.asarray(col("foot_y"), np.float64),
            world_x_m=_floats(opt("world_x_m")), world_y_m=_floats(opt("world_y_m")),
            speed_kmh=_floats(opt("speed_kmh")), age_bracket=_labels(opt("age_bracket")),
            gender=_labels(opt("gender")), colour=_labels(opt("colour")))

    @classmethod
    def from_frames(cls, frames: Sequence[Mapping[str, Any]]) -> Columns:
        """Frames as dicts with per-object `detections` (their `ts` an int or a datetime)."""
        dets = [d for f in frames for d in f["detections"]]

        def opt_num(name: str) -> FloatArray | None:
            values = [d.get(name) for d in dets]
            if all(v is None for v in values):
                return None
            return np.array([np.nan if v is None else float(v) for v in values], np.float64)

        def opt_label(name: str) -> list[str | None] | None:
            values = [d.get(name) for d in dets]
            return None if all(v is None for v in values) else values

        return cls(
            ts=np.array([epoch_ms(f["ts"]) for f in frames], np.int64).reshape(-1),
            counts=np.array([len(f["detections"]) for f in frames], np.int64).reshape(-1),
            track_id=np.array([d["track_id"] for d in dets], np.int64).reshape(-1),
            class_name=[d["class_name"] for d in dets],
            foot_x=np.array([d["foot_x"] for d in dets], np.float64).reshape(-1),
            foot_y=np.array([d["foot_y"] for d in dets], np.float64).reshape(-1),
            world_x_m=opt_num("world_x_m"), world_y_m=opt_num("world_y_m"), speed_kmh=opt_num("speed_kmh"),
            age_bracket=opt_label("age_bracket"), gender=opt_label("gender"), colour=opt_label("colour"))

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """The frames of `parts`, one after the other."""
        if len(parts) == 1:
            return parts[0]

        def floats(name: str) -> FloatArray | None:
            cols = [getattr(p, name) for p in parts]
            if all(c is None for c in cols):
                return None
            return np.concatenate([np.full(len(p), np.nan) if c is None else c for p, c in zip(parts, cols,
                                                                                               strict=True)])

        def labels(name: str) -> list[str | None] | None:
            cols = [getattr(p, name) for p in parts]
            if all(c is None for c in cols):
                return None
            return [v for p, c in zip(parts, cols, strict=True) for v in (c if c is not None else [None] * len(p))]

        return cls(
            ts=np.concatenate([p.ts for p in parts]) if parts else np.zeros(0, np.int64),
            counts=np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, np.int64),
            track_id=np.concatenate([p.track_id for p in parts]) if parts else np.zeros(0, np.int64),
            class_name=[c for p in parts for c in p.class_name],
            foot_x=np.concatenate([p.foot_x for p in parts]) if parts else np.zeros(0),
            foot_y=np.concatenate([p.foot_y for p in parts]) if parts else np.zeros(0),
            world_x_m=floats("world_x_m"), world_y_m=floats("world_y_m"), speed_kmh=floats("speed_kmh"),
            age_bracket=labels("age_bracket"), gender=labels("gender"), colour=labels("colour"))

    def select(self, frames: NDArray[np.bool_]) -> Columns:
        """Only the frames where `frames` is true, with their detections."""
        dets = np.repeat(frames, self.counts)
        idx = np.flatnonzero(dets)

        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in idx.tolist()]

        def sub(a: FloatArray | None) -> FloatArray | None:
            return None if a is None else a[dets]

        return Columns(self.ts[frames], self.counts[frames], self.track_id[dets], pick(self.class_name) or [],
                       self.foot_x[dets], self.foot_y[dets], sub(self.world_x_m), sub(self.world_y_m),
                       sub(self.speed_kmh), pick(self.age_bracket), pick(self.gender), pick(self.colour))


_NUMBERS = ("world_x_m", "world_y_m", "speed_kmh", "heading_deg")


def _floats(values: Any) -> FloatArray | None:
    return None if values is None else np.asarray(values, np.float64)


def _labels(values: Any) -> list[str | None] | None:
    return None if values is None else list(values)
