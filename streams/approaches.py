"""An intersection's approaches as one camera sees them, frame by frame (T1, T2, T5).

Per camera, an `ApproachBook` takes the same frames as the camera's `TrackBook` and the crossings
that book found in them, and returns:

- **Lane samples** (`ApproachSample`, one per frame and approach): the vehicles (car, motorcycle, bus,
  truck) whose foot point lies in one of the approach's lane zones, their ground speeds, and the
  queue length: metres along the ground from the stop line to the farthest vehicle of the queue.
- **Approach crossings** (`ApproachCrossing`): a vehicle crossing the inbound line in its direction
  enters the intersection, crossing the outbound line in its direction leaves it.
- **Turning movements** (`TurningMovement`): a vehicle that entered on one approach and left on one
  of the same intersection *seen by the same camera* (one track id, one camera). Vehicles are never
  matched across cameras: that would need something that re-identifies a vehicle (T6).

The queue (a convention of traffic microsimulation, PTV Vissim's default queue counter: a vehicle
joins a queue below 5 km/h and leaves it above 10 km/h, and a queue ends at a gap of more than 20 m):
a vehicle is *queued* from the frame its ground speed drops below `QUEUE_BEGIN_KMH` until it rises
above `QUEUE_END_KMH` (hysteresis, so a crawling vehicle does not flicker in and out). The queue is
the chain of queued vehicles in the lane zones starting within `MAX_QUEUE_GAP_M` of the stop line,
each within `MAX_QUEUE_GAP_M` of the one before; its length is the distance of the last one. A
vehicle's position is its foot point (the bottom centre of its box) mapped through the camera's
homography; its distance from the stop line is measured perpendicular to the stop line on the ground.

Speeds: the record's `speed_kmh` when the edge sent one, else the least-squares ground velocity over
the track's positions of the last `SPEED_WINDOW_MS`. Not the two-point difference `TrackBook` uses
for crossing speeds: a standing vehicle's foot point jitters by a metre or more far from the camera,
which two points a second apart turn into 5-10 km/h, enough to drop it out of the queue; a fit over
two seconds of frames brings that down to about 2 km/h.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privaflow.schemas.codec import epoch_ms
from privaflow.schemas.site import Approach, Intersection, SiteConfig
from privaflow.schemas.vocabulary import VEHICLE_CLASSES
from privaflow.streams.events import ApproachCrossing, ApproachSample, Crossing, Event, TurningMovement
from privaflow.streams.geometry import PolygonSet, apply_homography

QUEUE_BEGIN_KMH = 5.0
QUEUE_END_KMH = 10.0
MAX_QUEUE_GAP_M = 20.0
SPEED_WINDOW_MS = 2000  # positions a ground velocity is fitted over
SPEED_MIN_SPAN_MS = 500  # fewer than this many ms of positions: no speed yet
SWEEP_EVERY_MS = 1000  # forget gone vehicles at most once per second of event time
STATE_VERSION = 1
_VEHICLES = frozenset(VEHICLE_CLASSES)
ENTERING, LEAVING = "entering", "leaving"


@dataclass(frozen=True)
class ApproachGeometry:
    """One approach on the ground: its stop line in metres, the direction pointing upstream (away from
    the intersection, along the inbound lanes) and its lanes' total length."""

    intersection_id: str
    approach_id: str
    stop_a: tuple[float, float]
    normal: tuple[float, float]  # unit vector perpendicular to the stop line, pointing upstream
    lane_lengths_m: tuple[float, ...]
    free_flow_kmh: float

    @property
    def lane_km(self) -> float:
        return sum(self.lane_lengths_m) / 1000.0

    def distance_m(self, world: NDArray[np.float64]) -> NDArray[np.float64]:
        """Distance upstream of the stop line of ground points (N, 2), metres (negative: past it)."""
        return (world[:, 0] - self.stop_a[0]) * self.normal[0] + (world[:, 1] - self.stop_a[1]) * self.normal[1]


def approach_geometry(site: SiteConfig, intersection: Intersection, approach: Approach) -> ApproachGeometry:
    """The ground geometry of an approach from the site config (its camera's homography)."""
    cam = site.camera(approach.camera)
    if cam.homography is None:  # the config refuses this; a clear error if a caller builds one by hand
        raise ValueError(f"approach {approach.id!r}: camera {cam.id!r} has no homography")
    h = np.asarray(cam.homography, dtype=np.float64)
    lines = {ln.id: ln for ln in site.lines}
    zones = {z.id: z for z in site.zones}
    stop = lines[approach.stop_line or approach.inbound.line]
    a, b = apply_homography(h, np.asarray(stop.points, dtype=np.float64))
    d = b - a
    n = np.array([-d[1], d[0]]) / float(np.hypot(d[0], d[1]))
    lanes = [apply_homography(h, np.asarray(zones[z].polygon, dtype=np.float64)) for z in approach.lanes]
    centre = np.concatenate(lanes).mean(axis=0)
    if float(np.dot(centre - a, n)) < 0:
        n = -n  # the lanes lie upstream of the stop line: point the normal at them
    lengths = []
    for poly in lanes:
        along = (poly - a) @ n
        lengths.append(float(along.max() - max(float(along.min()), 0.0)))  # the part upstream of the stop line
    return ApproachGeometry(intersection.id, approach.id, (float(a[0]), float(a[1])), (float(n[0]), float(n[1])),
                            tuple(max(x, 0.0) for x in lengths), approach.free_flow_kmh)


def site_approach_geometry(site: SiteConfig) -> dict[tuple[str, str], ApproachGeometry]:
    """(intersection id, approach id) -> its ground geometry, for every approach of the site."""
    return {(x.id, a.id): approach_geometry(site, x, a) for x in site.intersections for a in x.approaches}


def queue_length(distances: Sequence[float], max_gap_m: float = MAX_QUEUE_GAP_M) -> float:
    """Length of the queue formed by queued vehicles at these distances upstream of the stop line: the
    chain from the stop line, each vehicle within `max_gap_m` of the one before (0.0: no queue).

    >>> queue_length([3.0, 9.5, 16.0, 60.0])
    16.0
    >>> queue_length([30.0])
    0.0
    """
    length, reach = 0.0, 0.0
    for d in sorted(max(x, 0.0) for x in distances):
        if d - reach > max_gap_m:
            break
        length = reach = d
    return length


class _Vehicle:
    """What the book keeps per track: frames seen, last time, ground-speed anchor, speed, queued, and the
    approach it entered on (for a turning movement when it leaves)."""

    __slots__ = ("n", "last", "trail", "speed", "queued", "entry")

    def __init__(self) -> None:
        self.n = 0
        self.last = 0
        self.trail: list[tuple[int, float, float]] = []  # (ts, ground x, ground y) of the last SPEED_WINDOW_MS
        self.speed: float | None = None
        self.queued = False
        self.entry: tuple[str, str] | None = None  # (intersection, approach)

    def to_json(self, tid: int) -> list[Any]:
        return [tid, self.n, self.last, [list(p) for p in self.trail], self.speed, self.queued,
                list(self.entry) if self.entry else None]

    @classmethod
    def from_json(cls, row: list[Any]) -> tuple[int, _Vehicle]:
        v = cls()
        tid, v.n, v.last, trail, v.speed, v.queued, entry = row
        v.trail = [(int(t), float(x), float(y)) for t, x, y in trail]
        v.entry = (str(entry[0]), str(entry[1])) if entry else None
        return int(tid), v


def fitted_speed_kmh(trail: Sequence[tuple[int, float, float]]) -> float:
    """Speed (km/h) of the least-squares straight-line motion through (ts ms, x m, y m) points.

    >>> round(fitted_speed_kmh([(0, 0.0, 0.0), (500, 5.0, 0.1), (1000, 10.0, -0.1)]), 1)
    36.0
    """
    n = len(trail)
    mt = sum(p[0] for p in trail) / n
    mx = sum(p[1] for p in trail) / n
    my = sum(p[2] for p in trail) / n
    stt = sum((p[0] - mt) ** 2 for p in trail)
    vx = sum((p[0] - mt) * (p[1] - mx) for p in trail) / stt
    vy = sum((p[0] - mt) * (p[2] - my) for p in trail) / stt
    return float(np.hypot(vx, vy)) * 3600.0  # metres per ms -> km/h


class ApproachBook:
    """The approaches one camera watches; see the module docstring. `observe` takes the frames a
    `TrackBook` took (decoded FrameDetections records, in event-time order) and the events it returned
    for them; `to_state`/`from_state` survive a restart. A camera without approaches gets no book
    (`ApproachBook.for_camera` returns None).

    >>> from privaflow.schemas.site import parse_site_config
    >>> site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0, "vehicles_only": True,
    ...     "homography": [[20, 0, 0], [0, 100, 0], [0, 0, 1]]}],
    ...     "lines": [{"id": "stop", "camera": "c", "points": [[0.0, 0.1], [1.0, 0.1]]}],
    ...     "zones": [{"id": "lane", "camera": "c", "polygon": [[0, 0.1], [1, 0.1], [1, 0.9], [0, 0.9]]}],
    ...     "intersections": [{"id": "x", "approaches": [{"id": "n", "camera": "c", "road": "Main St",
    ...         "compass": "N", "inbound": {"line": "stop", "direction": "in"}, "lanes": ["lane"]}]}]})
    >>> book = ApproachBook.for_camera(site, "c")
    >>> book.geometry[0].lane_lengths_m
    (80.0,)
    >>> car = lambda y: {"track_id": 1, "class_name": "car", "foot_x": 0.5, "foot_y": y, "speed_kmh": 0.0}
    >>> [(s.present, s.queue_m) for s in book.observe([{"ts": 0, "detections": [car(0.2)]}], [])]
    [(1, 10.0)]
    """

    def __init__(self, site: SiteConfig, camera_id: str) -> None:
        cam = site.camera(camera_id)
        self.site_id, self.camera_id = site.site_id, camera_id
        approaches = site.approaches_for(camera_id)
        if not approaches:
            raise ValueError(f"camera {camera_id!r} watches no intersection approach")
        self.geometry = [approach_geometry(site, x, a) for x, a in approaches]
        self._h = np.asarray(cam.homography, dtype=np.float64)
        zones = {z.id: z for z in site.zones}
        polys, owner = [], []
        for j, (_x, a) in enumerate(approaches):
            for zid in a.lanes:
                polys.append(zones[zid].polygon)
                owner.append(j)
        self._lanes = PolygonSet(polys)
        # lane zone -> approach, as a (zones, approaches) 0/1 matrix: in-any-lane per approach is one product
        self._lane_of = np.zeros((len(polys), len(approaches)), dtype=np.int64)
        self._lane_of[np.arange(len(polys)), owner] = 1
        self._moves: dict[tuple[str, str], tuple[str, str, str]] = {}  # (line, direction) -> (x, approach, flow)
        for x, a in approaches:
            self._moves[(a.inbound.line, a.inbound.direction)] = (x.id, a.id, ENTERING)
            if a.outbound is not None:
                self._moves[(a.outbound.line, a.outbound.direction)] = (x.id, a.id, LEAVING)
        self._min_frames = site.counting.min_track_frames
        self._expiry_ms = int(round(site.counting.track_expiry_s * 1000))
        self._vehicles: dict[int, _Vehicle] = {}
        self._next_sweep = -(2**62)

    @classmethod
    def for_camera(cls, site: SiteConfig, camera_id: str) -> ApproachBook | None:
        return cls(site, camera_id) if site.approaches_for(camera_id) else None

    def __len__(self) -> int:
        """Vehicles remembered."""
        return len(self._vehicles)

    # ------------------------------------------------------------------ frames

    def observe(self, frames: Sequence[dict[str, Any]], events: Iterable[Event]) -> list[Event]:
        """Lane samples for every frame and approach, then the approach crossings and turning movements
        of the crossings among `events` (those the camera's TrackBook returned for these frames)."""
        out: list[Event] = []
        for frame in frames:
            self._frame(frame, out)
        for e in events:
            if type(e) is Crossing:
                self._crossing(e, out)
        return out

    def _frame(self, frame: dict[str, Any], out: list[Event]) -> None:
        ts = epoch_ms(frame["ts"])
        if ts >= self._next_sweep:
            self.expire(ts)
            self._next_sweep = ts + SWEEP_EVERY_MS
        dets = [d for d in frame["detections"] if d["class_name"] in _VEHICLES]
        n_app = len(self.geometry)
        present = [0] * n_app
        speed_sum = [0.0] * n_app
        speeds = [0] * n_app
        queued: list[list[float]] = [[] for _ in range(n_app)]
        tracks: list[list[int]] = [[] for _ in range(n_app)]
        if dets:
            foot = np.array([[d["foot_x"], d["foot_y"]] for d in dets], dtype=np.float64)
            world = apply_homography(self._h, foot)
            inside = self._lanes.contains(foot[:, 0], foot[:, 1]).astype(np.int64) @ self._lane_of > 0
            dist = np.stack([g.distance_m(world) for g in self.geometry], axis=1)
            for i, d in enumerate(dets):
                v = self._vehicle(d, ts, float(world[i, 0]), float(world[i, 1]))
                for j in np.flatnonzero(inside[i]).tolist():
                    present[j] += 1
                    if v.speed is not None:
                        speed_sum[j] += v.speed
                        speeds[j] += 1
                    if v.queued:
                        queued[j].append(float(dist[i, j]))
                    if v.n >= self._min_frames:
                        tracks[j].append(int(d["track_id"]))
        for j, g in enumerate(self.geometry):
            out.append(ApproachSample(self.site_id, self.camera_id, g.intersection_id, g.approach_id, ts,
                                      present[j], speed_sum[j], speeds[j], queue_length(queued[j]),
                                      tuple(sorted(set(tracks[j])))))

    def _vehicle(self, d: dict[str, Any], ts: int, wx: float, wy: float) -> _Vehicle:
        tid = int(d["track_id"])
        v = self._vehicles.get(tid)
        if v is None:
            v = self._vehicles[tid] = _Vehicle()
        v.n += 1
        v.last = ts
        sent = d.get("speed_kmh")
        if sent is not None:
            v.speed = float(sent)
        else:
            trail = v.trail
            trail.append((ts, wx, wy))
            while ts - trail[0][0] > SPEED_WINDOW_MS:
                trail.pop(0)
            if ts - trail[0][0] >= SPEED_MIN_SPAN_MS and len(trail) >= 3:
                v.speed = fitted_speed_kmh(trail)
        if v.speed is not None:
            if v.speed < QUEUE_BEGIN_KMH:
                v.queued = True
            elif v.speed > QUEUE_END_KMH:
                v.queued = False
        return v

    # ------------------------------------------------------------------ crossings

    def _crossing(self, e: Crossing, out: list[Event]) -> None:
        move = self._moves.get((e.line_id, e.direction))
        if move is None or e.class_name not in _VEHICLES:
            return
        x, approach, flow = move
        out.append(ApproachCrossing(self.site_id, self.camera_id, x, approach, flow, e.class_name, e.ts_ms,
                                    e.track_id, e.speed_kmh))
        v = self._vehicles.get(e.track_id)
        if v is None:  # a crossing of a track this book has not seen (restored from an older state)
            v = self._vehicles[e.track_id] = _Vehicle()
            v.last = e.ts_ms
        if flow == ENTERING:
            v.entry = (x, approach)
        elif v.entry is not None and v.entry[0] == x:
            out.append(TurningMovement(self.site_id, self.camera_id, x, v.entry[1], approach, e.class_name,
                                       e.ts_ms, e.track_id))
            v.entry = None  # one movement per passage

    # ------------------------------------------------------------------ expiry and state

    def expire(self, now_ms: int) -> None:
        """Forget vehicles not seen for `track_expiry_s` before `now_ms` (as their tracks expire)."""
        cutoff = now_ms - self._expiry_ms
        for tid in [t for t, v in self._vehicles.items() if v.last < cutoff]:
            del self._vehicles[tid]

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot."""
        return {"version": STATE_VERSION, "approaches": [[g.intersection_id, g.approach_id] for g in self.geometry],
                "next_sweep": self._next_sweep, "vehicles": [v.to_json(t) for t, v in self._vehicles.items()]}

    @classmethod
    def from_state(cls, site: SiteConfig, camera_id: str, state: dict[str, Any] | None) -> ApproachBook | None:
        """Rebuild from `to_state()` (None or an absent state: a fresh book). A vehicle's entry approach is
        forgotten if the approach is no longer in the config."""
        book = cls.for_camera(site, camera_id)
        if book is None or not state:
            return book
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"approach state version {state.get('version')!r} is not {STATE_VERSION}")
        known = {(g.intersection_id, g.approach_id) for g in book.geometry}
        book._next_sweep = int(state["next_sweep"])
        for row in state["vehicles"]:
            tid, v = _Vehicle.from_json(row)
            if v.entry is not None and v.entry not in known:
                v.entry = None
            book._vehicles[tid] = v
        return book
