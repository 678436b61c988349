"""Per-track state of one camera, turning anonymised detections into crossings, zone visits and
occupancy samples.

Rules (all in event time, i.e. the frames' `ts`):

- **Lines.** A track's state on a line changes only when its foot point is at least
  `counting.hysteresis` (normalised units) from the line; points inside that band change nothing,
  so a box jittering on the line never counts. A change of state is a crossing if the path between
  the last confident point and this one meets the *segment* (interpolated), allowing
  `SEGMENT_MARGIN` beyond each end. Left to right of a->b (positive to negative `side`, see
  `streams.geometry`) is `directions[0]`. A track counts at most once per line per direction.
- **Zones.** Same hysteresis against the polygon outline: a track enters when it is inside and at
  least `hysteresis` from the outline, leaves when outside and that far away. A track first seen
  confidently inside a zone enters it in that frame. Exits carry the dwell time; entries carry the
  zone the track left last (`from_zone_id`) and the time since (`travel_s`). A track that expires
  inside a zone leaves it at its last-seen time.
- **Young tracks.** Events of a track with fewer than `counting.min_track_frames` observations are
  held back; when the track reaches that age they are released with their original timestamps,
  and if it expires younger they are dropped as flicker.
- **Occupancy.** Every frame yields one sample per zone: the number of `person` detections whose
  foot point is inside it (raw geometry, no hysteresis, no track age: it is a head count per frame).
  A camera that does not count people (e.g. `vehicles_only`) yields none: its head count is no reading.
- **Speed.** The record's `speed_kmh` when present, else, with a camera homography, distance over
  ground between world positions about `SPEED_BASE_MS` apart.
- **Lateness.** Exits of expired tracks are emitted up to `track_expiry_s` + 1 s after their
  timestamp, so `windows.grace_s` should exceed that or they land in `late_dropped`.
- **Order.** Frames must arrive in event-time order (one camera is one Kafka key, so they do); a
  frame not newer than the last one is a replay or duplicate and is skipped (`skipped_frames`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate
from typing import Any

import numpy as np

from privaflow.schemas.codec import epoch_ms
from privaflow.schemas.site import SiteConfig
from privaflow.streams.events import Crossing, Event, OccupancySample, ZoneVisit, event_from_json, event_to_json
from privaflow.streams.geometry import LineSet, PolygonSet, apply_homography

SEGMENT_MARGIN = 0.02  # normalised distance beyond a segment's ends still counted (boxes are wobbly)
SPEED_BASE_MS = 1000  # speed baseline: long enough that foot-point jitter is small against the distance
SWEEP_EVERY_MS = 1000  # expire tracks at most once per second of event time: cheap, and precise enough
STATE_VERSION = 1


class _Track:
    """Mutable state of one track; plain fields so the hot loop stays cheap."""

    __slots__ = ("n", "last_ts", "cls", "votes", "ls", "lt", "done", "zin", "zts", "exit_zone", "exit_ts",
                 "age", "gender", "colour", "speed", "anchor", "pending")

    def __init__(self, n_lines: int, n_zones: int) -> None:
        self.n = 0
        self.last_ts = 0
        self.cls = ""
        self.votes = 0  # Boyer-Moore majority vote: a car briefly labelled truck stays a car
        self.ls = [0.0] * n_lines  # side of the last confident point per line; 0.0 = none yet
        self.lt = [0.0] * n_lines  # its distance along the segment from a
        self.done = [0] * n_lines  # bit 1: directions[0] counted, bit 2: directions[1]
        self.zin = [0] * n_zones  # 1 inside, -1 outside, 0 not known yet
        self.zts = [0] * n_zones  # entry time per zone
        self.exit_zone: str | None = None
        self.exit_ts = 0
        self.age: str | None = None
        self.gender: str | None = None
        self.colour: str | None = None
        self.speed: float | None = None
        self.anchor: tuple[int, float, float] | None = None  # (ts, world x, world y) for speed
        self.pending: list[Event] = []

    def to_json(self, tid: int) -> dict[str, Any]:
        # copies: a snapshot must not change when the book carries on (the worker may keep it in memory)
        return {"id": tid, "n": self.n, "last": self.last_ts, "cls": self.cls, "votes": self.votes,
                "ls": list(self.ls), "lt": list(self.lt), "done": list(self.done), "zin": list(self.zin),
                "zts": list(self.zts),
                "xz": self.exit_zone, "xts": self.exit_ts, "age": self.age, "gender": self.gender,
                "colour": self.colour, "speed": self.speed, "anchor": list(self.anchor) if self.anchor else None,
                "pending": [event_to_json(e) for e in self.pending]}

    @classmethod
    def from_json(cls, d: dict[str, Any], line_map: list[int | None], zone_map: list[int | None]) -> _Track:
        t = cls(len(line_map), len(zone_map))
        t.n, t.last_ts, t.cls, t.votes = int(d["n"]), int(d["last"]), d["cls"], int(d["votes"])
        # config may have changed between snapshot and restart: keep state of lines/zones still there
        for j, old in enumerate(line_map):
            if old is not None:
                t.ls[j], t.lt[j], t.done[j] = float(d["ls"][old]), float(d["lt"][old]), int(d["done"][old])
        for k, old in enumerate(zone_map):
            if old is not None:
                t.zin[k], t.zts[k] = int(d["zin"][old]), int(d["zts"][old])
        t.exit_zone, t.exit_ts = d["xz"], int(d["xts"])
        t.age, t.gender, t.speed = d["age"], d["gender"], d["speed"]
        t.colour = d.get("colour")  # absent in snapshots from before colours were kept
        a = d["anchor"]
        t.anchor = (int(a[0]), float(a[1]), float(a[2])) if a else None
        t.pending = [event_from_json(e) for e in d["pending"]]
        return t


class TrackBook:
    """All per-track state of one camera. `observe` takes decoded FrameDetections records in event
    time order and returns the events they complete; `to_state`/`from_state` survive a restart.

    >>> from privaflow.schemas.site import parse_site_config
    >>> site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0}],
    ...     "lines": [{"id": "l", "camera": "c", "points": [[0.5, 0.0], [0.5, 1.0]]}],
    ...     "counting": {"min_track_frames": 1}})
    >>> book = TrackBook(site, "c")
    >>> det = lambda x: {"track_id": 7, "class_name": "car", "foot_x": x, "foot_y": 0.5}
    >>> _ = book.observe({"ts": 0, "detections": [det(0.9)]})
    >>> [e.direction for e in book.observe({"ts": 100, "detections": [det(0.1)]})]
    ['in']
    """

    def __init__(self, site: SiteConfig, camera_id: str) -> None:
        cam = site.camera(camera_id)
        self.site_id, self.camera_id = site.site_id, camera_id
        self._lines = site.lines_for(camera_id)
        self._zones = site.zones_for(camera_id)
        self._line_ids = [ln.id for ln in self._lines]
        self._zone_ids = [z.id for z in self._zones]
        self._dirs = [ln.directions for ln in self._lines]
        self._lineset = LineSet([ln.points for ln in self._lines]) if self._lines else None
        self._polys = PolygonSet([z.polygon for z in self._zones]) if self._zones else None
        # the segment's extent plus margin, as distance along it from `a` (what LineSet.measure_z gives)
        self._tlo = [-SEGMENT_MARGIN] * len(self._lines)
        self._thi = [float(n) + SEGMENT_MARGIN for n in self._lineset.length] if self._lineset else []
        self._h = float(site.counting.hysteresis)
        self._hpos = max(self._h, 1e-12)  # with zero hysteresis a point on the line is on neither side
        self._min_frames = site.counting.min_track_frames
        self._expiry_ms = int(round(site.counting.track_expiry_s * 1000))
        self._homography = np.asarray(cam.homography, dtype=np.float64) if cam.homography else None
        self._people = "person" in cam.classes
        self._tracks: dict[int, _Track] = {}
        self._last_ts = -(2**62)
        self._next_sweep = -(2**62)
        self.skipped_frames = 0

    def __len__(self) -> int:
        """Number of live tracks."""
        return len(self._tracks)

    # ------------------------------------------------------------------ the hot path

    def observe(self, frame: dict[str, Any]) -> list[Event]:
        """Feed one FrameDetections record; returns crossings, zone visits (including exits of tracks
        that expired meanwhile and held-back events of tracks that just became old enough) and one
        occupancy sample per zone."""
        return self.observe_many((frame,))

    def observe_many(self, frames: Iterable[dict[str, Any]]) -> list[Event]:
        """`observe` for several frames of this camera in order, with the geometry of all their
        detections computed in one numpy pass (worth it: per-call overhead dominates small frames)."""
        if not isinstance(frames, list | tuple):
            frames = list(frames)
        dets_all = [d for f in frames for d in f["detections"]]
        nz = len(self._zone_ids)
        sides: list[list[float]] = []
        along: list[list[float]] = []
        zstate: list[list[int]] = []
        present: list[list[int]] = []
        inside_tracks: dict[tuple[int, int], list[int]] = {}  # (frame, zone) -> tracks of the people inside
        world: list[list[float]] | None = None
        if dets_all:
            z = np.array([d["foot_x"] + 1j * d["foot_y"] for d in dets_all], dtype=np.complex128)
            if self._lineset is not None:
                s_arr, t_arr = self._lineset.measure_z(z)
                sides, along = s_arr.tolist(), t_arr.tolist()
            if self._polys is not None:
                inside, dist = self._polys.classify_z(z)
                # +1 confidently inside, -1 confidently outside, 0 within the hysteresis band
                zstate = np.where(dist >= self._h, np.where(inside, 1, -1), 0).tolist()
                person = np.array([d["class_name"] == "person" for d in dets_all], dtype=bool)
                if len(frames) == 1:
                    present = [inside[person].sum(axis=0).tolist()]
                else:  # people inside per frame: differences of a running sum at the frames' boundaries
                    cum = np.zeros((len(dets_all) + 1, nz), dtype=np.int64)
                    np.cumsum(inside & person[:, None], axis=0, out=cum[1:])
                    bounds = np.fromiter(accumulate((len(f["detections"]) for f in frames), initial=0), np.intp)
                    present = (cum[bounds[1:]] - cum[bounds[:-1]]).tolist()
                det_i, zone_k = np.nonzero(inside & person[:, None])
                if det_i.size:
                    ends = np.cumsum([len(f["detections"]) for f in frames])
                    for f_i, k, i in zip(np.searchsorted(ends, det_i, side="right").tolist(), zone_k.tolist(),
                                         det_i.tolist(), strict=True):
                        inside_tracks.setdefault((f_i, k), []).append(dets_all[i]["track_id"])
            if self._homography is not None:
                world = apply_homography(self._homography, np.stack([z.real, z.imag], axis=1)).tolist()
        out: list[Event] = []
        site, cam, zone_ids = self.site_id, self.camera_id, self._zone_ids
        offset = 0
        for fi, frame in enumerate(frames):
            dets = frame["detections"]
            first = offset
            offset += len(dets)
            ts = epoch_ms(frame["ts"])
            if ts <= self._last_ts:
                self.skipped_frames += 1
                continue
            self._last_ts = ts
            if ts >= self._next_sweep:
                self._expire_before(ts - self._expiry_ms, out)
                self._next_sweep = ts + SWEEP_EVERY_MS
            if dets:
                self._detections(dets, ts, first, sides, along, zstate, world, out)
            if self._people:
                for k in range(nz):
                    out.append(OccupancySample(site, cam, zone_ids[k], ts, present[fi][k] if dets else 0,
                                               tuple(inside_tracks.get((fi, k), ()))))
        return out

    def _detections(self, dets: list[dict[str, Any]], ts: int, first: int, sides: list[list[float]],
                    along: list[list[float]], zstate: list[list[int]], world: list[list[float]] | None,
                    out: list[Event]) -> None:
        nl, nz = len(self._line_ids), len(self._zone_ids)
        tracks, min_frames, hpos = self._tracks, self._min_frames, self._hpos
        for i, d in enumerate(dets, first):
            tid = d["track_id"]
            tr = tracks.get(tid)
            if tr is None:
                tr = tracks[tid] = _Track(nl, nz)
            tr.n += 1
            tr.last_ts = ts
            c = d["class_name"]
            if c == tr.cls:
                tr.votes += 1
            elif tr.votes == 0:
                tr.cls, tr.votes = c, 1
            else:
                tr.votes -= 1
            age, gender, speed = d.get("age_bracket"), d.get("gender"), d.get("speed_kmh")
            if age is not None:
                tr.age = age
            if gender is not None:
                tr.gender = gender
            colour = d.get("colour")
            if colour is not None:
                tr.colour = colour  # the edge votes a track's colour over its frames: the latest is its best
            if speed is not None:
                tr.speed = float(speed)
            elif world is not None:
                wx, wy = d.get("world_x_m"), d.get("world_y_m")
                if wx is None or wy is None:
                    wx, wy = world[i]
                self._update_speed(tr, ts, float(wx), float(wy))
            if tr.n == min_frames and tr.pending:
                out.extend(tr.pending)  # the track proved itself: release what it did while young
                tr.pending = []
            sink = out if tr.n >= min_frames else tr.pending
            if nl:
                srow, trow, ls = sides[i], along[i], tr.ls
                for j in range(nl):
                    s = srow[j]
                    if s >= hpos or s <= -hpos:
                        prev = ls[j]
                        if prev != 0.0 and (prev > 0.0) != (s > 0.0):
                            t0 = tr.lt[j]
                            # where the straight path between the two confident points meets the line
                            tc = t0 + (trow[j] - t0) * prev / (prev - s)
                            if self._tlo[j] <= tc <= self._thi[j]:
                                bit = 1 if prev > 0.0 else 2
                                if not tr.done[j] & bit:
                                    tr.done[j] |= bit
                                    sink.append(Crossing(
                                        self.site_id, self.camera_id, self._line_ids[j],
                                        self._dirs[j][bit - 1], tr.cls, ts, tid, tr.speed, tr.age, tr.gender,
                                        tr.colour))
                        ls[j] = s
                        tr.lt[j] = trow[j]
            if nz:
                zrow, zin = zstate[i], tr.zin
                if zrow == zin:
                    continue  # the usual case: nothing changed
                # exits before entries, so stepping from one zone into its neighbour records the origin
                for k in range(nz):
                    if zrow[k] == -1:
                        if zin[k] == 1:
                            sink.append(self._exit(tr, tid, k, ts))
                        zin[k] = -1
                for k in range(nz):
                    if zrow[k] == 1 and zin[k] != 1:
                        zin[k] = 1
                        tr.zts[k] = ts
                        origin = tr.exit_zone
                        sink.append(ZoneVisit(
                            self.site_id, self.camera_id, self._zone_ids[k], "ENTRY", tr.cls, ts, tid, None,
                            origin, (ts - tr.exit_ts) / 1000.0 if origin is not None else None,
                            tr.age, tr.gender))

    def _exit(self, tr: _Track, tid: int, k: int, ts: int) -> ZoneVisit:
        tr.exit_zone, tr.exit_ts = self._zone_ids[k], ts
        return ZoneVisit(self.site_id, self.camera_id, self._zone_ids[k], "EXIT", tr.cls, ts, tid,
                         (ts - tr.zts[k]) / 1000.0, None, None, tr.age, tr.gender)

    def _update_speed(self, tr: _Track, ts: int, wx: float, wy: float) -> None:
        a = tr.anchor
        if a is None:
            tr.anchor = (ts, wx, wy)
            return
        elapsed = ts - a[0]
        if elapsed >= SPEED_BASE_MS or (tr.speed is None and elapsed >= SPEED_BASE_MS // 4):
            tr.speed = float(np.hypot(wx - a[1], wy - a[2])) / (elapsed / 1000.0) * 3.6
            if elapsed >= SPEED_BASE_MS:
                tr.anchor = (ts, wx, wy)

    # ------------------------------------------------------------------ expiry

    def _expire_before(self, cutoff_ts: int, out: list[Event]) -> None:
        gone = [tid for tid, tr in self._tracks.items() if tr.last_ts < cutoff_ts]
        for tid in gone:
            tr = self._tracks.pop(tid)
            if tr.n < self._min_frames:
                continue  # never proved itself: its held-back events were flicker
            for k, state in enumerate(tr.zin):
                if state == 1:
                    out.append(self._exit(tr, tid, k, tr.last_ts))

    def expire(self, now_ms: int) -> list[Event]:
        """Expire tracks not seen for `track_expiry_s` before `now_ms` (e.g. a camera went quiet and
        the worker's timer calls this); returns the exits they imply."""
        out: list[Event] = []
        self._expire_before(now_ms - self._expiry_ms, out)
        return out

    def expire_all(self) -> list[Event]:
        """End of stream: every track is over now (exits at their last-seen time)."""
        out: list[Event] = []
        self._expire_before(2**62, out)
        return out

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (plain dicts, lists, numbers, strings)."""
        return {
            "version": STATE_VERSION, "site_id": self.site_id, "camera_id": self.camera_id,
            "lines": list(self._line_ids), "zones": list(self._zone_ids),
            "last_ts": self._last_ts, "next_sweep": self._next_sweep, "skipped_frames": self.skipped_frames,
            "tracks": [tr.to_json(tid) for tid, tr in self._tracks.items()],
        }

    @classmethod
    def from_state(cls, site: SiteConfig, camera_id: str, state: dict[str, Any]) -> TrackBook:
        """Rebuild from `to_state()`; lines and zones are matched by id, so a config change keeps the
        state of those still present."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"track state version {state.get('version')!r} is not {STATE_VERSION}")
        book = cls(site, camera_id)
        old_lines = {lid: j for j, lid in enumerate(state["lines"])}
        old_zones = {zid: k for k, zid in enumerate(state["zones"])}
        line_map = [old_lines.get(lid) for lid in book._line_ids]
        zone_map = [old_zones.get(zid) for zid in book._zone_ids]
        book._last_ts = int(state["last_ts"])
        book._next_sweep = int(state["next_sweep"])
        book.skipped_frames = int(state["skipped_frames"])
        for d in state["tracks"]:
            book._tracks[int(d["id"])] = _Track.from_json(d, line_map, zone_map)
        return book
