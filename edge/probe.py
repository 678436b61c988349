"""What a vehicle-mounted camera sees of the road, per processed frame (G4): vehicles ahead, people as
a count, and road furniture counted once per object passed.

- **Vehicles ahead**: motor vehicles and bicycles whose box centre lies in the middle of the picture
  (`CORRIDOR`: the lane ahead converges there on a forward-facing camera) and whose bottom edge is
  below the horizon band, within `MAX_AHEAD_M`. Their distance comes from box geometry alone: a
  pinhole camera of horizontal field of view `hfov` sees an object `W` metres wide at `d` metres as
  `W * f / d` of the picture's width, `f = 0.5 / tan(hfov / 2)`, with `W` a typical width per class.
  The frame reports the count and the distance band of the nearest (`near` < 10 m, `mid` 10-30 m,
  `far` beyond). Approximate by design: a band, not a measurement.
- **People** are only counted (G4: no tracks, no attributes). Their rows in the record get a fresh
  random id in every frame, so a person is never followed across frames; the boxes stay for the
  operator's icon scene.
- **Road furniture** (`schemas.vocabulary.ROAD_FURNITURE`: traffic lights, stop signs, hydrants, ...)
  is counted once per tracked object, when its track has been seen in `MIN_FURNITURE_FRAMES` frames
  (a flicker is not a sign).

    >>> from privaflow.edge.detections import make_detections
    >>> seen = RoadView(hfov_deg=90)
    >>> d = make_detections([[300, 200, 340, 240], [10, 10, 20, 40]], [0.9, 0.8], [2, 0])
    >>> v = seen.observe(d, [11, 12], (640, 480))
    >>> v.vehicles_ahead, v.ahead_band, v.people
    (1, 'mid', 1)
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from privaflow.edge.detections import Detections
from privaflow.schemas.vocabulary import OBJECT_CLASSES, ROAD_FURNITURE

CORRIDOR = (0.3, 0.7)  # box centre x, normalised: the lane ahead of a centred, forward-facing camera
HORIZON_Y = 0.4  # a box whose bottom is above this is beyond the road (a bridge, a sign gantry)
MAX_AHEAD_M = 80.0
BANDS = ((10.0, "near"), (30.0, "mid"))  # else "far"
TYPICAL_WIDTH_M = {"car": 1.8, "truck": 2.5, "bus": 2.5, "motorcycle": 0.8, "bicycle": 0.6}
MIN_FURNITURE_FRAMES = 3
PERSON = OBJECT_CLASSES.index("person")
_FURNITURE_IDS = {OBJECT_CLASSES.index(n) for n in ROAD_FURNITURE}
_VEHICLE_IDS = {OBJECT_CLASSES.index(n): w for n, w in TYPICAL_WIDTH_M.items()}


@dataclass(frozen=True, slots=True)
class RoadFrame:
    """One frame's observations: vehicles ahead and the band of the nearest, people, furniture passed."""

    vehicles_ahead: int
    ahead_band: str | None  # None when nothing is ahead
    people: int
    furniture: tuple[str, ...]  # class names of furniture first counted in this frame


def distance_band(distance_m: float) -> str:
    for limit, band in BANDS:
        if distance_m < limit:
            return band
    return "far"


class RoadView:
    """Per-frame road observations for one mobile camera; keeps which furniture tracks it has counted."""

    def __init__(self, hfov_deg: float = 100.0) -> None:
        self.focal = 0.5 / math.tan(math.radians(hfov_deg) / 2)  # in picture widths
        self._frames: dict[int, int] = {}  # furniture track -> frames seen
        self._counted: set[int] = set()
        self.furniture_total = 0

    def distances_m(self, xyxy: npt.NDArray[np.float64], widths_m: npt.NDArray[np.float64],
                    frame_width: int) -> npt.NDArray[np.float64]:
        w = np.maximum((xyxy[:, 2] - xyxy[:, 0]) / frame_width, 1e-6)
        out: npt.NDArray[np.float64] = widths_m * self.focal / w
        return out

    def observe(self, tracks: Detections, track_ids: Sequence[int] | npt.ArrayLike,
                frame_size: tuple[int, int]) -> RoadFrame:
        w, h = frame_size
        n = len(tracks)
        cls = np.asarray(tracks.class_id, np.int64).reshape(-1) if tracks.class_id is not None else np.zeros(n, int)
        xyxy = np.asarray(tracks.xyxy, np.float64).reshape(-1, 4)
        people = int(np.count_nonzero(cls == PERSON))
        widths = np.array([_VEHICLE_IDS.get(int(c), np.nan) for c in cls.tolist()], np.float64)
        vehicle = ~np.isnan(widths)
        cx = (xyxy[:, 0] + xyxy[:, 2]) / 2 / w
        ahead = vehicle & (cx >= CORRIDOR[0]) & (cx <= CORRIDOR[1]) & (xyxy[:, 3] / h >= HORIZON_Y)
        dist = self.distances_m(xyxy[ahead], widths[ahead], w) if ahead.any() else np.zeros(0)
        dist = dist[dist <= MAX_AHEAD_M]
        band = distance_band(float(dist.min())) if dist.size else None
        return RoadFrame(int(dist.size), band, people, self._furniture(cls, track_ids))

    def _furniture(self, cls: npt.NDArray[np.int64], track_ids: Sequence[int] | npt.ArrayLike) -> tuple[str, ...]:
        ids = np.asarray(track_ids, np.int64).reshape(-1).tolist()
        out = []
        live = set()
        for c, tid in zip(cls.tolist(), ids, strict=True):
            if c not in _FURNITURE_IDS:
                continue
            live.add(tid)
            self._frames[tid] = self._frames.get(tid, 0) + 1
            if tid not in self._counted and self._frames[tid] >= MIN_FURNITURE_FRAMES:
                self._counted.add(tid)
                out.append(OBJECT_CLASSES[c])
        self.furniture_total += len(out)
        return tuple(out)

    def forget_except(self, alive: set[int]) -> None:
        """Drop state of furniture tracks the tracker no longer holds."""
        for tid in [t for t in self._frames if t not in alive]:
            del self._frames[tid]
            self._counted.discard(tid)


def untracked_people(class_id: npt.ArrayLike, track_ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """`track_ids` with every person's id replaced by a fresh random one: on a mobile camera a person
    is a count and an icon, never a path across frames."""
    ids = np.asarray(track_ids, np.int64).reshape(-1).copy()
    people = np.asarray(class_id, np.int64).reshape(-1) == PERSON
    for i in np.flatnonzero(people):
        ids[i] = secrets.randbits(62) + 1
    return ids
