"""Per-track state of a site's cameras, turning anonymised detections into crossings, zone visits
and occupancy samples.

Rules (all in event time, i.e. the frames' `ts`; each camera on its own):

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
- **Speed.** The record's `speed_kmh` when present, else, with a camera homography, distance over
  ground between world positions about `SPEED_BASE_MS` apart.
- **Expiry.** At most once per second of a camera's event time (`SWEEP_EVERY_MS`, before a frame's
  detections), its tracks not seen for `track_expiry_s` are dropped.
- **Lateness.** Exits of expired tracks are emitted up to `track_expiry_s` + 1 s after their
  timestamp, so `windows.grace_s` should exceed that or they land in `late_dropped`.
- **Order.** Frames must arrive in event-time order (one camera is one Kafka key, so they do); a
  frame not newer than the camera's last one is a replay or duplicate and is skipped
  (`skipped_frames`).

How: `TrackTable.observe` takes the frames of many cameras at once (a stream worker's whole Kafka
batch, `streams.columns.Columns` per camera). Geometry is one numpy pass over every detection,
each against its own camera's lines and zones (`streams.geometry.Scenes`); the detections are
grouped by camera and track (a stable sort keeps each track's own order), and every rule above
becomes a comparison of each confident point with the previous one of its track, so only actual
changes of state (a crossing, an entry, an exit: a few per track) run as Python. Track state lives
in arrays, one row per track. Expiry only happens at sweeps, so a camera whose tracks were not
gone for longer than the expiry in the middle of the batch is processed in the one pass; one
where a track came back after such a gap is cut at its sweeps. The events (and their order per
camera) and the state are the same however the frames are cut into batches or which cameras
share a batch. `TrackBook` is one camera's view: what the tests and the in-process reference use.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from privaflow.schemas.site import SiteConfig
from privaflow.streams.columns import Columns
from privaflow.streams.events import (
    Crossing,
    Event,
    OccupancyFrames,
    OccupancySample,
    ZoneVisit,
    event_from_json,
    event_to_json,
)
from privaflow.streams.geometry import Scenes

SEGMENT_MARGIN = 0.02  # normalised distance beyond a segment's ends still counted (boxes are wobbly)
SPEED_BASE_MS = 1000  # speed baseline: long enough that foot-point jitter is small against the distance
SWEEP_EVERY_MS = 1000  # expire tracks at most once per second of event time: cheap, and precise enough
STATE_VERSION = 2  # 2: one list per track field (1: a dict per track; still read)
PERSON = "person"
_FAR_PAST = -(2**62)

IntArray = NDArray[np.int64]
# (frame, detection, kind of event at that detection, line or zone, tie-break, event): sorting a
# camera's events by the first five gives the order in which frame-by-frame processing emits them
_Keyed = tuple[int, int, int, int, int, Event]


def _ffill_last(valid: NDArray[np.bool_]) -> IntArray:
    """Per position, the index of the last valid position at or before it (-1: none)."""
    idx = np.where(valid, np.arange(valid.shape[0]), -1)
    return np.maximum.accumulate(idx) if idx.size else idx


def _opt(x: float) -> float | None:
    return None if x != x else float(x)


def _run_ends(keys: NDArray[Any]) -> IntArray:
    """Indices of the last element of each run of equal keys."""
    return np.flatnonzero(np.append(keys[1:] != keys[:-1], True)) if keys.size else keys.astype(np.int64)


@dataclass
class _Camera:
    """One camera's configuration and clock in a `TrackTable`."""

    id: str
    slot: int
    line_ids: list[str]
    zone_ids: list[str]
    dirs: list[tuple[str, str]]
    thi: list[float]  # segment extent plus margin, as distance along the line from a
    homography: NDArray[np.float64] | None
    people: bool = True  # counts people: a camera that does not (vehicles only) has no head count


@dataclass
class Observed:
    """What one camera's frames in a batch did: its crossings and zone visits in frame-by-frame
    order, and the occupancy of every frame (None for a camera without zones)."""

    events: list[Event]
    occupancy: OccupancyFrames | None


class _Groups:
    """Detections of a batch sorted by camera and track (see `TrackTable._groups`)."""

    __slots__ = ("n", "det", "scam", "tid", "dts", "starts", "cnt", "gid", "gcam", "gtid", "rows")
    n: int
    det: IntArray  # sorted position -> detection in the batch
    scam: IntArray  # camera slot per sorted position
    tid: IntArray
    dts: IntArray
    starts: IntArray  # first sorted position of each group (track)
    cnt: IntArray
    gid: IntArray  # group of each sorted position
    gcam: list[int]
    gtid: list[int]
    rows: IntArray  # the group's row, -1 for a new track


class _Batch:
    """Every camera's frames of one `observe_batch` call (frames camera after camera)."""

    __slots__ = ("cams", "fcam", "ts", "fidx", "dcam", "tid", "codes", "dts", "speed", "world", "age", "gender",
                 "colour", "sides", "along", "zstate", "present", "people_in", "frames_of", "dets_of", "cols")
    cols: Columns
    cams: list[_Camera]
    fcam: IntArray  # camera slot per frame
    ts: IntArray
    fidx: IntArray  # frame per detection
    dcam: IntArray  # camera slot per detection
    tid: IntArray
    codes: NDArray[np.int32]
    dts: IntArray  # frame time per detection
    speed: NDArray[np.float64] | None
    world: NDArray[np.float64] | None
    age: list[str | None] | None
    gender: list[str | None] | None
    colour: list[str | None] | None
    sides: NDArray[np.float64] | None
    along: NDArray[np.float64] | None
    zstate: NDArray[np.int8] | None
    present: IntArray | None
    people_in: NDArray[np.bool_] | None  # per detection and zone: a person inside (occupancy's distinct people)
    frames_of: dict[int, tuple[int, int]]
    dets_of: dict[int, tuple[int, int]]


class TrackTable:
    """Per-track state of every camera of a site; see the module docstring. `observe` advances
    many cameras at once and returns each one's events; `to_state`/`load_state` hold one camera's
    state as JSON (the format of `TrackBook.to_state`)."""

    _ARRAYS = ("_cam", "_tid", "_seq", "_n", "_last", "_cls", "_votes", "_ls", "_lt", "_done", "_zin", "_zts",
               "_xz", "_xts", "_age", "_gender", "_colour", "_speed", "_anchor")

    def __init__(self, site: SiteConfig) -> None:
        self.site_id = site.site_id
        c = site.counting
        self._h = float(c.hysteresis)
        self._hpos = max(self._h, 1e-12)  # with zero hysteresis a point on the line is on neither side
        self._min_frames = c.min_track_frames
        self._expiry_ms = int(round(c.track_expiry_s * 1000))
        self._cams: list[_Camera] = []
        self._slot: dict[str, int] = {}
        for s, cam in enumerate(site.cameras):
            lines, zones = site.lines_for(cam.id), site.zones_for(cam.id)
            self._slot[cam.id] = s
            self._cams.append(_Camera(cam.id, s, [ln.id for ln in lines], [z.id for z in zones],
                                      [ln.directions for ln in lines], [],
                                      np.asarray(cam.homography, np.float64) if cam.homography else None,
                                      PERSON in cam.classes))
        self._scenes = Scenes([[ln.points for ln in site.lines_for(c.id)] for c in self._cams],
                              [[z.polygon for z in site.zones_for(c.id)] for c in self._cams])
        self._thi = np.full(self._scenes.length.shape, -np.inf)
        self._homs = np.zeros((len(self._cams), 3, 3))
        self._has_homography = np.zeros(len(self._cams), bool)
        for tc in self._cams:
            tc.thi = [float(n) + SEGMENT_MARGIN for n in self._scenes.length[tc.slot, :len(tc.line_ids)].tolist()]
            self._thi[tc.slot, :len(tc.thi)] = tc.thi
            if tc.homography is not None:
                self._homs[tc.slot] = tc.homography
                self._has_homography[tc.slot] = True
        self._codes: dict[str, int] = {PERSON: 0}  # class name -> small int, for vectorised votes
        self._names: list[str] = [PERSON]
        # each camera's clock: newest frame time, when its next sweep is due, frames skipped as replays
        self._last_ts = np.full(len(self._cams), _FAR_PAST, np.int64)
        self._next_sweep = np.full(len(self._cams), _FAR_PAST, np.int64)
        self._skipped = np.zeros(len(self._cams), np.int64)
        nl, nz = self._scenes.n_lines, self._scenes.n_zones
        self._index: list[dict[int, int]] = [{} for _ in self._cams]  # per camera: track id -> row
        self._free: list[int] = []  # rows of expired tracks, to reuse
        self._next_seq = 0  # creation order: a camera's tracks are listed and expired in it
        self._cam = np.zeros(0, np.int64)  # -1: a free row
        self._tid = np.zeros(0, np.int64)
        self._seq = np.zeros(0, np.int64)
        self._n = np.zeros(0, np.int64)  # observations
        self._last = np.zeros(0, np.int64)  # last seen (event time)
        self._cls = np.zeros(0, np.int32)  # majority class (code, -1 none yet): Boyer-Moore vote
        self._votes = np.zeros(0, np.int64)
        self._ls = np.zeros((0, nl))  # side of the last confident point per line; 0.0 = none yet
        self._lt = np.zeros((0, nl))  # its distance along the segment from a
        self._done = np.zeros((0, nl), np.int8)  # bit 1: directions[0] counted, bit 2: directions[1]
        self._zin = np.zeros((0, nz), np.int8)  # 1 inside, -1 outside, 0 not known yet
        self._zts = np.zeros((0, nz), np.int64)  # entry time per zone
        self._xz = np.zeros(0, object)  # zone left last (id) or None
        self._xts = np.zeros(0, np.int64)  # when
        self._age = np.zeros(0, object)
        self._gender = np.zeros(0, object)
        self._colour = np.zeros(0, object)  # vehicles: the colour the edge voted for the track (T5)
        self._speed = np.zeros(0)  # NaN: unknown
        self._anchor = np.zeros((0, 3))  # (ts, world x, world y) for speed; NaN: none yet
        self._pending: dict[tuple[int, int], list[Event]] = {}  # (camera, track) -> events held back

    # ------------------------------------------------------------------ cameras and rows

    def camera(self, camera_id: str) -> _Camera:
        try:
            return self._cams[self._slot[camera_id]]
        except KeyError:
            raise KeyError(f"camera {camera_id!r} is not in the site config") from None

    def tracks(self, camera_id: str) -> int:
        """Live tracks of a camera."""
        return len(self._index[self.camera(camera_id).slot])

    def skipped_frames(self, camera_id: str) -> int:
        return int(self._skipped[self.camera(camera_id).slot])

    def _rows_of(self, slot: int) -> IntArray:
        """A camera's rows in creation order."""
        rows = np.fromiter(self._index[slot].values(), np.int64, len(self._index[slot]))
        return rows[np.argsort(self._seq[rows], kind="stable")]

    def _alloc_many(self, slots: IntArray, tids: IntArray) -> IntArray:
        """Rows for new tracks (their cameras and ids, in the order to create them); returns them."""
        out = np.empty(slots.shape[0], np.int64)
        bounds = np.flatnonzero(np.append(True, slots[1:] != slots[:-1]))
        ends = np.append(bounds[1:], slots.shape[0])
        for lo, hi in zip(bounds.tolist(), ends.tolist(), strict=True):
            out[lo:hi] = self._alloc(int(slots[lo]), tids[lo:hi].tolist())
        return out

    def _alloc(self, slot: int, tids: Sequence[int]) -> IntArray:
        """Rows for new tracks of one camera (in this order); returns them."""
        k = len(tids)
        take = min(k, len(self._free))
        reused = [self._free.pop() for _ in range(take)]
        size = self._cam.shape[0]
        if k > take:
            grow = max(64, size, k - take)
            for name in self._ARRAYS:
                old = getattr(self, name)
                new = np.zeros((size + grow, *old.shape[1:]), old.dtype)
                new[:size] = old
                setattr(self, name, new)
            self._cam[size:] = -1
            self._free.extend(range(size + grow - 1, size + (k - take) - 1, -1))
            reused += list(range(size, size + k - take))
        rows = np.array(reused, np.int64)
        self._cam[rows] = slot
        self._tid[rows] = tids
        self._seq[rows] = np.arange(self._next_seq, self._next_seq + k)
        self._next_seq += k
        self._n[rows] = 0
        self._last[rows] = 0
        self._cls[rows] = -1
        self._votes[rows] = 0
        self._ls[rows] = 0.0
        self._lt[rows] = 0.0
        self._done[rows] = 0
        self._zin[rows] = 0
        self._zts[rows] = 0
        self._xz[rows] = None
        self._xts[rows] = 0
        self._age[rows] = None
        self._gender[rows] = None
        self._colour[rows] = None
        self._speed[rows] = np.nan
        self._anchor[rows] = np.nan
        index = self._index[slot]
        for r, t in zip(rows.tolist(), tids, strict=True):
            index[int(t)] = r
        return rows

    def _release(self, rows: Iterable[int]) -> None:
        for r in rows:
            slot, tid = int(self._cam[r]), int(self._tid[r])
            del self._index[slot][tid]
            self._pending.pop((slot, tid), None)
            self._cam[r] = -1
            self._xz[r] = self._age[r] = self._gender[r] = self._colour[r] = None
            self._free.append(r)

    def drop(self, camera_id: str) -> None:
        """Forget a camera's tracks and clock (its state lives elsewhere now)."""
        slot = self.camera(camera_id).slot
        self._release(list(self._index[slot].values()))
        self._last_ts[slot] = self._next_sweep[slot] = _FAR_PAST
        self._skipped[slot] = 0

    def clear(self) -> None:
        for cam in self._cams:
            self.drop(cam.id)

    def class_codes(self, names: list[str]) -> NDArray[np.int32]:
        """Small ints for class names (new names get new codes); `class_name` turns them back."""
        return self._class_codes(names)

    def class_name(self, code: int) -> str:
        return self._names[code]

    def n_classes(self) -> int:
        return len(self._names)

    def _class_codes(self, names: list[str]) -> NDArray[np.int32]:
        codes = self._codes
        out = [codes.get(c, -1) for c in names]
        if -1 in out:
            for i, c in enumerate(names):
                if out[i] == -1:
                    if c not in codes:
                        codes[c] = len(self._names)
                        self._names.append(c)
                    out[i] = codes[c]
        return np.array(out, np.int32)

    # ------------------------------------------------------------------ the hot path

    def observe(self, batches: Sequence[tuple[str, Columns]]) -> list[list[Event]]:
        """Consecutive frames of several cameras (each camera at most once, frames in event-time
        order); returns per camera, in the order given, its crossings, zone visits (exits of tracks
        that expired meanwhile and held-back events of tracks that just became old enough
        included) and one occupancy sample per zone and frame, in frame-by-frame order."""
        cams = [(camera_id, cols.frames) for camera_id, cols in batches]
        done = self.observe_batch(Columns.concat([cols for _, cols in batches]), cams, interleave=True)
        return [o.events for o in done]

    def observe_batch(self, cols: Columns, cams: Sequence[tuple[str, int]], interleave: bool = False,
                      codes: NDArray[np.int32] | None = None) -> list[Observed]:
        """`cols` holds frames of several cameras, camera after camera: `cams` names them and how
        many frames each has (each camera at most once). Returns per camera, in that order, what
        its frames did; with `interleave`, the occupancy samples are in `events`, after each
        frame's other events, as frame-by-frame processing emits them. `codes`: the detections'
        `class_codes`, if the caller has them already."""
        b = self._batch(cols, cams, codes)
        if b is None:
            return [Observed([], None) for _ in cams]
        keyed: dict[int, list[_Keyed]] = {cam.slot: [] for cam in b.cams}
        sweeps = self._sweeps(b)
        groups = self._groups(b, None)
        gaps = self._gap_cameras(groups, sweeps) if sweeps else set()
        if len(gaps) < len(b.cams):
            if gaps:
                groups = self._groups(b, np.flatnonzero(~np.isin(b.dcam, list(gaps))))
            self._segment(b, groups, keyed)
            self._expire_at_sweeps({slot: frames for slot, frames in sweeps.items() if slot not in gaps}, b, keyed)
        for slot in sorted(gaps):  # a track came back after a gap a sweep may have ended it in
            f_lo, f_hi = b.frames_of[slot]
            cuts = [f_lo, *sweeps[slot]] if sweeps[slot][0] != f_lo else list(sweeps[slot])
            for i, f0 in enumerate(cuts):
                f1 = cuts[i + 1] if i + 1 < len(cuts) else f_hi
                if f0 in sweeps[slot]:
                    self._expire_at_sweeps({slot: [f0]}, b, keyed)
                lo = np.searchsorted(b.fidx, f0)
                hi = np.searchsorted(b.fidx, f1)
                self._segment(b, self._groups(b, np.arange(lo, hi)), keyed)
        out = []
        for camera_id, _ in cams:
            slot = self._slot[camera_id]
            cam = self._cams[slot]
            out.append(self._ordered(b, cam, keyed[slot], interleave) if slot in keyed else Observed([], None))
        return out

    def _batch(self, cols: Columns, cams: Sequence[tuple[str, int]], codes: NDArray[np.int32] | None
               ) -> _Batch | None:
        if cols.frames == 0:
            return None
        slots = np.array([self.camera(c).slot for c, _ in cams], np.int64)
        nf = np.array([n for _, n in cams], np.int64)
        fcam = np.repeat(slots, nf)
        ts = cols.ts
        firsts = np.concatenate(([0], np.cumsum(nf)[:-1]))[nf > 0]
        fresh = np.ones(ts.shape[0], bool)
        fresh[1:] = ts[1:] > ts[:-1]
        fresh[firsts] = ts[firsts] > self._last_ts[fcam[firsts]]
        if not fresh.all():  # replays or duplicates: per camera, frames not newer than its newest so far
            fresh[:] = True
            bounds = np.concatenate(([0], np.cumsum(nf))).tolist()
            for i, slot in enumerate(slots.tolist()):
                lo, hi = bounds[i], bounds[i + 1]
                if hi > lo:
                    runmax = np.maximum.accumulate(np.concatenate(([self._last_ts[slot]], ts[lo:hi])))
                    fresh[lo:hi] = ts[lo:hi] > runmax[:-1]
                    self._skipped[slot] += int((~fresh[lo:hi]).sum())
            cols = cols.select(fresh)
            codes = None
            nf = np.bincount(np.searchsorted(np.cumsum(nf), np.flatnonzero(fresh), side="right"),
                             minlength=len(cams))
            fcam = np.repeat(slots, nf)
            ts = cols.ts
            if cols.frames == 0:
                return None
        present_cams = nf > 0
        slots, nf = slots[present_cams], nf[present_cams]
        f_bounds = np.concatenate(([0], np.cumsum(nf)))
        self._last_ts[slots] = ts[f_bounds[1:] - 1]
        b = _Batch()
        b.cols = cols
        b.cams = [self._cams[s] for s in slots.tolist()]
        b.fcam, b.ts = fcam, ts
        counts = cols.counts
        d_bounds = np.concatenate(([0], np.cumsum(counts)))[f_bounds].tolist()
        fb = f_bounds.tolist()
        b.frames_of = {c.slot: (fb[i], fb[i + 1]) for i, c in enumerate(b.cams)}
        b.dets_of = {c.slot: (d_bounds[i], d_bounds[i + 1]) for i, c in enumerate(b.cams)}
        n = len(cols)
        b.fidx = np.repeat(np.arange(ts.shape[0]), counts)
        b.dcam = fcam[b.fidx]
        b.dts = ts[b.fidx]
        b.tid = cols.track_id
        b.codes = codes if codes is not None else self._class_codes(cols.class_name)
        b.speed, b.age, b.gender, b.colour = cols.speed_kmh, cols.age_bracket, cols.gender, cols.colour
        b.world = None
        b.sides = b.along = b.zstate = None
        b.present = None
        b.people_in = None
        if n == 0:
            if self._scenes.n_zones:
                b.present = np.zeros((ts.shape[0], self._scenes.n_zones), np.int64)
            return b
        z = cols.foot_x + 1j * cols.foot_y
        if self._scenes.n_lines:
            b.sides, b.along = self._scenes.measure(z, b.dcam)
        if self._scenes.n_zones:
            inside, dist = self._scenes.classify(z, b.dcam)
            # +1 confidently inside, -1 confidently outside, 0 within the hysteresis band (or no zone)
            b.zstate = np.where(dist >= self._h, np.where(inside, 1, -1), 0).astype(np.int8)
            # people inside per frame: differences of a running sum at the frames' boundaries
            cum = np.zeros((n + 1, self._scenes.n_zones), np.int64)
            b.people_in = inside & (b.codes == 0)[:, None]
            np.cumsum(b.people_in, axis=0, out=cum[1:])
            bounds = np.concatenate(([0], np.cumsum(counts)))
            b.present = cum[bounds[1:]] - cum[bounds[:-1]]
        if self._has_homography[slots].any():
            b.world = self._world(b)
        return b

    def _world(self, b: _Batch) -> NDArray[np.float64]:
        """Ground positions for the detections of cameras with a homography (the record's own
        where it has them); NaN elsewhere."""
        fx, fy = b.cols.foot_x, b.cols.foot_y
        m = self._homs[b.dcam]
        w = m[:, 2, 0] * fx + m[:, 2, 1] * fy + m[:, 2, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            world = np.stack([(m[:, 0, 0] * fx + m[:, 0, 1] * fy + m[:, 0, 2]) / w,
                              (m[:, 1, 0] * fx + m[:, 1, 1] * fy + m[:, 1, 2]) / w], axis=1)
        world[~self._has_homography[b.dcam]] = np.nan
        wx, wy = b.cols.world_x_m, b.cols.world_y_m
        if wx is not None and wy is not None:  # the record's own ground position wins
            known = ~(np.isnan(wx) | np.isnan(wy)) & self._has_homography[b.dcam]
            world[known, 0] = wx[known]
            world[known, 1] = wy[known]
        return world

    def _sweeps(self, b: _Batch) -> dict[int, list[int]]:
        """Camera slot -> the frames (batch indices) before whose detections its tracks expire."""
        out: dict[int, list[int]] = {}
        slots = np.array([c.slot for c in b.cams], np.int64)
        lasts = np.array([b.frames_of[c.slot][1] - 1 for c in b.cams], np.int64)
        due = np.flatnonzero(b.ts[lasts] >= self._next_sweep[slots])
        ts = b.ts
        for i in due.tolist():
            slot = int(slots[i])
            lo, hi = b.frames_of[slot]
            nxt = int(self._next_sweep[slot])
            frames = []
            for f, t in enumerate(ts[lo:hi].tolist(), lo):
                if t >= nxt:
                    frames.append(f)
                    nxt = t + SWEEP_EVERY_MS
            self._next_sweep[slot] = nxt
            out[slot] = frames
        return out

    def _groups(self, b: _Batch, sel: IntArray | None) -> _Groups:
        """The detections `sel` (indices in the batch, None: all) grouped by camera and track,
        each track's in frame order, with the rows of the tracks known already (-1: new)."""
        g = _Groups()
        idx = np.arange(b.tid.shape[0]) if sel is None else sel
        n = g.n = int(idx.shape[0])
        cam_d, tid_d = b.dcam[idx], b.tid[idx]
        order = np.lexsort((tid_d, cam_d))  # stable: each track's detections stay in frame order
        g.det = idx[order]  # sorted position -> detection in the batch
        g.scam, g.tid, g.dts = cam_d[order], tid_d[order], b.dts[g.det]
        gstart = np.ones(n, bool)
        gstart[1:] = (g.tid[1:] != g.tid[:-1]) | (g.scam[1:] != g.scam[:-1])
        g.starts = np.flatnonzero(gstart)
        g.cnt = np.diff(np.append(g.starts, n))
        g.gid = np.cumsum(gstart) - 1  # group (track) of each sorted position
        g.gcam, g.gtid = g.scam[g.starts].tolist(), g.tid[g.starts].tolist()
        index = self._index
        g.rows = np.fromiter((index[s].get(t, -1) for s, t in zip(g.gcam, g.gtid, strict=True)), np.int64,
                             len(g.gtid))
        return g

    def _gap_cameras(self, g: _Groups, sweeps: dict[int, list[int]]) -> set[int]:
        """Cameras (with a sweep) where a track reappears more than the expiry after its previous
        sighting, in the batch or before it."""
        exp = self._expiry_ms
        same = g.gid[1:] == g.gid[:-1]
        later = np.flatnonzero(same & (g.dts[1:] - g.dts[:-1] > exp)) + 1
        known = g.rows >= 0
        back = g.starts[known][g.dts[g.starts[known]] - self._last[g.rows[known]] > exp]
        return {s for s in set(g.scam[later].tolist()) | set(g.scam[back].tolist()) if s in sweeps}

    def _segment(self, b: _Batch, groups: _Groups, keyed: dict[int, list[_Keyed]]) -> None:
        """The detections of `groups`, with no sweep among them."""
        n = groups.n
        if n == 0:
            return
        det, scam, tid, dts, starts, cnt, gid, gcam, gtid = (
            groups.det, groups.scam, groups.tid, groups.dts, groups.starts, groups.cnt, groups.gid, groups.gcam,
            groups.gtid)
        rows = groups.rows.copy()
        new = np.flatnonzero(rows < 0)
        if new.size:  # created per camera in order of first appearance, as frame by frame
            new = new[np.lexsort((det[starts[new]], scam[starts[new]]))]
            rows[new] = self._alloc_many(scam[starts[new]], tid[starts[new]])
        n_before = self._n[rows]
        n_at = n_before[gid] + (np.arange(n) - starts[gid]) + 1
        self._n[rows] = n_before + cnt
        last_pos = starts + cnt - 1
        self._last[rows] = dts[last_pos]
        cls_at = self._votes_for(b.codes[det], starts, cnt, rows)
        age_at = self._labels_at(b.age, det, starts, gid, last_pos, rows, self._age)
        gender_at = self._labels_at(b.gender, det, starts, gid, last_pos, rows, self._gender)
        colour_at = self._labels_at(b.colour, det, starts, gid, last_pos, rows, self._colour)
        speed_at = self._speeds_at(b, det, starts, gid, last_pos, rows, dts)
        cams = self._cams

        def attrs(p: int) -> tuple[str, int, int, Any, Any]:
            return self._names[cls_at[p]], int(dts[p]), int(tid[p]), age_at(p), gender_at(p)

        events: list[tuple[int, int, int, Event]] = []  # (sorted position, kind, line/zone, event)
        if b.sides is not None and b.along is not None:
            sides, along = b.sides[det], b.along[det]
            for j in range(self._scenes.n_lines):
                s = sides[:, j]
                ci = np.flatnonzero((s >= self._hpos) | (s <= -self._hpos))
                if not ci.size:
                    continue
                cs, ct, cg = s[ci], along[ci, j], gid[ci]
                first = np.ones(ci.shape[0], bool)
                first[1:] = cg[1:] != cg[:-1]
                fi = np.flatnonzero(first)
                ps, pt = np.empty_like(cs), np.empty_like(ct)
                ps[1:], pt[1:] = cs[:-1], ct[:-1]
                ps[fi], pt[fi] = self._ls[rows[cg[fi]], j], self._lt[rows[cg[fi]], j]
                cand = np.flatnonzero((ps != 0.0) & ((ps > 0.0) != (cs > 0.0)))
                if cand.size:
                    # where the straight path between the two confident points meets the line
                    tc = pt[cand] + (ct[cand] - pt[cand]) * ps[cand] / (ps[cand] - cs[cand])
                    hit = cand[(tc >= -SEGMENT_MARGIN) & (tc <= self._thi[scam[ci[cand]], j])]
                    for q in hit.tolist():
                        p = int(ci[q])
                        row = int(rows[cg[q]])
                        bit = 1 if ps[q] > 0.0 else 2
                        if not self._done[row, j] & bit:
                            self._done[row, j] |= bit
                            cam = cams[int(scam[p])]
                            cls, t, track, age, gender = attrs(p)
                            events.append((p, 1, j, Crossing(self.site_id, cam.id, cam.line_ids[j],
                                                             cam.dirs[j][bit - 1], cls, t, track,
                                                             speed_at(p), age, gender, colour_at(p))))
                last = _run_ends(cg)
                self._ls[rows[cg[last]], j] = cs[last]
                self._lt[rows[cg[last]], j] = ct[last]
        if b.zstate is not None:
            zs = b.zstate[det]
            changes: list[tuple[IntArray, int, int]] = []
            for k in range(self._scenes.n_zones):
                nzi = np.flatnonzero(zs[:, k])
                if not nzi.size:
                    continue
                v, vg = zs[nzi, k], gid[nzi]
                first = np.ones(nzi.shape[0], bool)
                first[1:] = vg[1:] != vg[:-1]
                fi = np.flatnonzero(first)
                pv = np.empty_like(v)
                pv[1:] = v[:-1]
                pv[fi] = self._zin[rows[vg[fi]], k]
                changes.append((nzi[(v == -1) & (pv == 1)], 0, k))
                changes.append((nzi[(v == 1) & (pv != 1)], 1, k))
                last = _run_ends(vg)
                self._zin[rows[vg[last]], k] = v[last]
            # exits before entries at one detection, so stepping from one zone into its neighbour
            # records the origin
            for p, kind, k in sorted((p, kind, k) for at, kind, k in changes for p in at.tolist()):
                row = int(rows[gid[p]])
                cam = cams[int(scam[p])]
                cls, t, track, age, gender = attrs(p)
                zone = cam.zone_ids[k]
                if kind == 0:
                    self._xz[row], self._xts[row] = zone, t
                    ev: Event = ZoneVisit(self.site_id, cam.id, zone, "EXIT", cls, t, track,
                                          (t - int(self._zts[row, k])) / 1000.0, None, None, age, gender)
                else:
                    self._zts[row, k] = t
                    origin = self._xz[row]
                    ev = ZoneVisit(self.site_id, cam.id, zone, "ENTRY", cls, t, track, None, origin,
                                   (t - int(self._xts[row])) / 1000.0 if origin is not None else None, age, gender)
                events.append((p, 2 + kind, k, ev))

        # young tracks' events wait; a track reaching `min_frames` releases them at that detection
        mf = self._min_frames
        events.sort(key=lambda e: e[:3])
        for p, kind, k, ev in events:
            slot = int(scam[p])
            if n_at[p] < mf:
                self._pending.setdefault((slot, int(tid[p])), []).append(ev)
            else:
                d = int(det[p])
                keyed[slot].append((int(b.fidx[d]), d, kind, k, 0, ev))
        if self._pending and mf > 1:
            for grp in np.flatnonzero((n_before < mf) & (n_before + cnt >= mf)).tolist():
                held = self._pending.pop((gcam[grp], gtid[grp]), None)
                if held:
                    d = int(det[starts[grp] + (mf - int(n_before[grp]) - 1)])
                    keyed[gcam[grp]].extend((int(b.fidx[d]), d, 0, i, 0, e) for i, e in enumerate(held))

    def _votes_for(self, sc: NDArray[np.int32], starts: IntArray, cnt: IntArray, rows: IntArray) -> list[int]:
        """Class (code) of each sorted detection's track right after it voted; updates the votes."""
        mn, mx = np.minimum.reduceat(sc, starts), np.maximum.reduceat(sc, starts)
        cur, votes = self._cls[rows], self._votes[rows]
        same = (mn == mx) & (cur == mn)
        fresh = (mn == mx) & (votes == 0) & ~same
        self._votes[rows[same]] += cnt[same]
        self._cls[rows[fresh]] = mn[fresh]
        self._votes[rows[fresh]] = cnt[fresh]
        cls_at: list[int] = np.repeat(mn, cnt).tolist()
        for g in np.flatnonzero(~(same | fresh)).tolist():  # a label changed within the track: one by one
            row, c_cur, v = int(rows[g]), int(cur[g]), int(votes[g])
            for p in range(int(starts[g]), int(starts[g] + cnt[g])):
                c = int(sc[p])
                if c == c_cur:
                    v += 1
                elif v == 0:
                    c_cur, v = c, 1
                else:
                    v -= 1  # Boyer-Moore majority vote: a car briefly labelled truck stays a car
                cls_at[p] = c_cur
            self._cls[row], self._votes[row] = c_cur, v
        return cls_at

    def _labels_at(self, values: list[str | None] | None, det: IntArray, starts: IntArray, gid: IntArray,
                   last_pos: IntArray, rows: IntArray, state: NDArray[Any]) -> Callable[[int], Any]:
        """A function: sorted position -> the track's latest known label at that detection. The
        tracks' `state` is updated to their latest."""
        before = state[rows].copy()
        if values is None:
            return lambda p: before[gid[p]]
        vals = [values[d] for d in det.tolist()]
        last = _ffill_last(np.fromiter((v is not None for v in vals), bool, len(vals)))
        lp = last[last_pos]
        for g in np.flatnonzero(lp >= starts).tolist():
            state[rows[g]] = vals[lp[g]]
        return lambda p: vals[last[p]] if last[p] >= starts[gid[p]] else before[gid[p]]

    def _speeds_at(self, b: _Batch, det: IntArray, starts: IntArray, gid: IntArray, last_pos: IntArray,
                   rows: IntArray, dts: IntArray) -> Callable[[int], float | None]:
        """A function: sorted position -> the track's speed right after that detection (None:
        unknown). The tracks' speeds (and anchors) are updated."""
        before = self._speed[rows].copy()
        vals = b.speed[det] if b.speed is not None else None
        speed_at: Any
        if vals is not None:
            last = _ffill_last(~np.isnan(vals))
            lp = last[last_pos]
            ok = lp >= starts
            self._speed[rows[ok]] = vals[lp[ok]]
            speed_at = np.where(last >= starts[gid], vals[np.maximum(last, 0)], before[gid])
        else:
            speed_at = before[gid]
        if b.world is not None:
            speed_at = self._ground_speeds(b, det, starts, last_pos, rows, dts, speed_at, before)
        return lambda p: _opt(speed_at[p])

    def _ground_speeds(self, b: _Batch, det: IntArray, starts: IntArray, last_pos: IntArray, rows: IntArray,
                       dts: IntArray, speed_at: Any, before: NDArray[np.float64]) -> list[float]:
        """Tracks of cameras with a homography: the record's speed when it has one, else distance
        over ground between anchors about SPEED_BASE_MS apart, one detection after the other."""
        assert b.world is not None
        out: list[float] = np.asarray(speed_at, np.float64).tolist()
        world = b.world[det].tolist()
        rec = b.speed[det].tolist() if b.speed is not None else None
        dl = dts.tolist()
        for g in np.flatnonzero(self._has_homography[b.dcam[det[starts]]]).tolist():
            row = int(rows[g])
            speed = _opt(before[g])
            a = self._anchor[row]
            anchor = None if a[0] != a[0] else (int(a[0]), float(a[1]), float(a[2]))
            for p in range(int(starts[g]), int(last_pos[g]) + 1):
                r = rec[p] if rec is not None else float("nan")
                if r == r:  # the record's speed
                    speed = float(r)
                else:
                    t, (wx, wy) = dl[p], world[p]
                    if anchor is None:
                        anchor = (t, wx, wy)
                    else:
                        elapsed = t - anchor[0]
                        if elapsed >= SPEED_BASE_MS or (speed is None and elapsed >= SPEED_BASE_MS // 4):
                            speed = float(np.hypot(wx - anchor[1], wy - anchor[2])) / (elapsed / 1000.0) * 3.6
                            if elapsed >= SPEED_BASE_MS:
                                anchor = (t, wx, wy)
                out[p] = np.nan if speed is None else speed
            self._speed[row] = np.nan if speed is None else speed
            self._anchor[row] = np.nan if anchor is None else anchor
        return out

    # ------------------------------------------------------------------ expiry

    def _expire_at_sweeps(self, sweeps: dict[int, list[int]], b: _Batch, keyed: dict[int, list[_Keyed]]) -> None:
        """For each camera (slot -> its sweep frames): drop the tracks last seen before its last
        sweep's cutoff, as the sweeps one by one would; exits keyed at the sweep that ended them."""
        if not sweeps:
            return
        cutoff = np.full(len(self._cams), _FAR_PAST, np.int64)
        cutoffs: dict[int, list[int]] = {}
        for slot, frames in sweeps.items():
            cutoffs[slot] = [int(t) - self._expiry_ms for t in b.ts[frames].tolist()]
            cutoff[slot] = cutoffs[slot][-1]
        size = self._cam.shape[0]
        live = self._cam[:size] >= 0
        gone = np.flatnonzero(live & (self._last[:size] < cutoff[np.maximum(self._cam[:size], 0)]))
        if not gone.size:
            return
        gone = gone[np.lexsort((self._seq[gone], self._cam[gone]))]  # per camera, in creation order
        gslot = self._cam[gone]
        first_of_cam = np.flatnonzero(np.append(True, gslot[1:] != gslot[:-1]))
        rank = np.arange(gone.shape[0]) - np.repeat(first_of_cam, np.diff(np.append(first_of_cam, gone.shape[0])))
        exits = (self._n[gone] >= self._min_frames) & (self._zin[gone] == 1).any(axis=1)
        for i in np.flatnonzero(exits).tolist():
            row, slot = int(gone[i]), int(gslot[i])
            cam, last, tid = self._cams[slot], int(self._last[row]), int(self._tid[row])
            f = sweeps[slot][bisect.bisect_right(cutoffs[slot], last)]
            cls = self._names[self._cls[row]] if self._cls[row] >= 0 else ""
            for k in np.flatnonzero(self._zin[row] == 1).tolist():
                keyed[slot].append((f, -1, int(rank[i]), k, 0, ZoneVisit(
                    self.site_id, cam.id, cam.zone_ids[k], "EXIT", cls, last, tid,
                    (last - int(self._zts[row, k])) / 1000.0, None, None, self._age[row], self._gender[row])))
        self._release(gone.tolist())

    def _expire_before(self, slot: int, cutoff_ts: int, keyed: list[_Keyed], frame_of: Callable[[int], int]) -> None:
        """Drop a camera's tracks last seen before `cutoff_ts`; exits of those inside a zone, keyed
        at the frame `frame_of(last seen)` whose sweep ended them."""
        rows = self._rows_of(slot)
        gone = rows[self._last[rows] < cutoff_ts]
        if not gone.size:
            return
        cam = self._cams[slot]
        for rank, row in enumerate(gone.tolist()):
            if self._n[row] < self._min_frames:
                continue  # never proved itself: its held-back events were flicker
            inside = np.flatnonzero(self._zin[row] == 1).tolist()
            if not inside:
                continue
            last, tid = int(self._last[row]), int(self._tid[row])
            f = frame_of(last)
            cls = self._names[self._cls[row]] if self._cls[row] >= 0 else ""
            for k in inside:
                keyed.append((f, -1, rank, k, 0, ZoneVisit(
                    self.site_id, cam.id, cam.zone_ids[k], "EXIT", cls, last, tid,
                    (last - int(self._zts[row, k])) / 1000.0, None, None, self._age[row], self._gender[row])))
        self._release(gone.tolist())

    def expire(self, camera_id: str, now_ms: int) -> list[Event]:
        """Expire a camera's tracks not seen for `track_expiry_s` before `now_ms` (e.g. it went
        quiet and the worker's timer calls this); returns the exits they imply."""
        keyed: list[_Keyed] = []
        self._expire_before(self.camera(camera_id).slot, now_ms - self._expiry_ms, keyed, lambda _last: 0)
        return [e[5] for e in sorted(keyed, key=lambda e: e[:5])]

    def _ordered(self, b: _Batch, cam: _Camera, keyed: list[_Keyed], interleave: bool) -> Observed:
        """A camera's events in frame-by-frame order, and its occupancy (with `interleave`: as
        samples after each frame's other events)."""
        keyed.sort(key=lambda e: e[:5])
        nz = len(cam.zone_ids)
        if not nz or not cam.people:  # no zones, or no head count of people (vehicles only)
            return Observed([e[5] for e in keyed], None)
        assert b.present is not None
        lo, hi = b.frames_of[cam.slot]
        inside: list[list[tuple[int, int]]] = [[] for _ in range(nz)]
        if b.people_in is not None:
            dlo, dhi = b.dets_of[cam.slot]
            det_i, zone_k = np.nonzero(b.people_in[dlo:dhi, :nz])
            det_i += dlo
            for k, t, track in zip(zone_k.tolist(), b.dts[det_i].tolist(), b.tid[det_i].tolist(), strict=True):
                inside[k].append((t, track))
        occupancy = OccupancyFrames(self.site_id, cam.id, tuple(cam.zone_ids), b.ts[lo:hi].tolist(),
                                    b.present[lo:hi, :nz].tolist(), tuple(tuple(z) for z in inside))
        if not interleave:
            return Observed([e[5] for e in keyed], occupancy)
        out: list[Event] = []
        site, camera_id, zone_ids = self.site_id, cam.id, cam.zone_ids
        i, n_keyed = 0, len(keyed)
        for f, t, row in zip(range(lo, hi), occupancy.ts_ms, occupancy.present, strict=True):
            while i < n_keyed and keyed[i][0] == f:
                out.append(keyed[i][5])
                i += 1
            out.extend(OccupancySample(site, camera_id, zone_ids[k], t, row[k],
                                       tuple(tid for ts_, tid in occupancy.inside[k] if ts_ == t))
                       for k in range(nz))
        out.extend(e[5] for e in keyed[i:])
        return Observed(out, None)

    # ------------------------------------------------------------------ state

    def to_state(self, camera_id: str) -> dict[str, Any]:
        """A camera's tracks as a JSON-serialisable snapshot (plain dicts, lists, numbers, strings):
        one list per field, one entry per track in order of creation (`TRACK_FIELDS`)."""
        cam = self.camera(camera_id)
        slot = cam.slot
        r = self._rows_of(slot)
        nl, nz = len(cam.line_ids), len(cam.zone_ids)
        names = self._names
        speed = self._speed[r]
        anchor = self._anchor[r]
        tids = self._tid[r].tolist()
        tracks = {
            "id": tids, "n": self._n[r].tolist(), "last": self._last[r].tolist(),
            "cls": [names[c] if c >= 0 else "" for c in self._cls[r].tolist()], "votes": self._votes[r].tolist(),
            "ls": self._ls[r, :nl].tolist(), "lt": self._lt[r, :nl].tolist(), "done": self._done[r, :nl].tolist(),
            "zin": self._zin[r, :nz].tolist(), "zts": self._zts[r, :nz].tolist(), "xz": self._xz[r].tolist(),
            "xts": self._xts[r].tolist(), "age": self._age[r].tolist(), "gender": self._gender[r].tolist(),
            "colour": self._colour[r].tolist(),
            "speed": [None if v != v else v for v in speed.tolist()],
            "anchor": [None if a[0] != a[0] else [int(a[0]), a[1], a[2]] for a in anchor.tolist()],
            "pending": {str(t): [event_to_json(e) for e in self._pending[(slot, t)]]
                        for t in tids if (slot, t) in self._pending},
        }
        return {
            "version": STATE_VERSION, "site_id": self.site_id, "camera_id": cam.id,
            "lines": list(cam.line_ids), "zones": list(cam.zone_ids), "last_ts": int(self._last_ts[slot]),
            "next_sweep": int(self._next_sweep[slot]), "skipped_frames": int(self._skipped[slot]), "tracks": tracks,
        }

    def load_state(self, camera_id: str, state: Mapping[str, Any]) -> None:
        """Replace a camera's tracks and clock with `to_state()` output (or that of version 1, a
        dict per track); lines and zones are matched by id, so a config change keeps the state of
        those still present."""
        version = state.get("version")
        if version == 1:
            state = _from_version_1(state)
        elif version != STATE_VERSION:
            raise ValueError(f"track state version {version!r} is neither {STATE_VERSION} nor 1 (a newer "
                             "worker wrote it; run that version, or drop the camera-state changelog to start over)")
        cam = self.camera(camera_id)
        self.drop(camera_id)
        old_lines = {lid: j for j, lid in enumerate(state["lines"])}
        old_zones = {zid: k for k, zid in enumerate(state["zones"])}
        slot = cam.slot
        self._last_ts[slot] = int(state["last_ts"])
        self._next_sweep[slot] = int(state["next_sweep"])
        self._skipped[slot] = int(state["skipped_frames"])
        t = state["tracks"]
        if not t["id"]:
            return
        rows = self._alloc(slot, [int(i) for i in t["id"]])
        self._n[rows], self._last[rows], self._votes[rows] = t["n"], t["last"], t["votes"]
        self._cls[rows] = [self._class_codes([c])[0] if c else -1 for c in t["cls"]]
        for j, lid in enumerate(cam.line_ids):
            if lid in old_lines:
                old = old_lines[lid]
                self._ls[rows, j] = [v[old] for v in t["ls"]]
                self._lt[rows, j] = [v[old] for v in t["lt"]]
                self._done[rows, j] = [v[old] for v in t["done"]]
        for k, zid in enumerate(cam.zone_ids):
            if zid in old_zones:
                old = old_zones[zid]
                self._zin[rows, k] = [v[old] for v in t["zin"]]
                self._zts[rows, k] = [v[old] for v in t["zts"]]
        # colours: absent in snapshots from before colours were kept
        for name, values in (("_xz", t["xz"]), ("_age", t["age"]), ("_gender", t["gender"]),
                             ("_colour", t.get("colour") or [None] * len(t["id"]))):
            arr = getattr(self, name)
            for row, v in zip(rows.tolist(), values, strict=True):
                arr[row] = v
        self._xts[rows] = t["xts"]
        self._speed[rows] = [np.nan if v is None else float(v) for v in t["speed"]]
        self._anchor[rows] = [(np.nan, np.nan, np.nan) if not a else (int(a[0]), float(a[1]), float(a[2]))
                              for a in t["anchor"]]
        for tid, events in t["pending"].items():
            self._pending[(slot, int(tid))] = [event_from_json(e) for e in events]


TRACK_FIELDS = ("id", "n", "last", "cls", "votes", "ls", "lt", "done", "zin", "zts", "xz", "xts", "age", "gender",
                "speed", "anchor")


def _from_version_1(state: Mapping[str, Any]) -> dict[str, Any]:
    """Version 1 kept a dict per track; version 2 a list per field (a fifth the work and fewer
    bytes at every checkpoint). Same content."""
    tracks = state["tracks"]
    columns: dict[str, Any] = {f: [d[f] for d in tracks] for f in TRACK_FIELDS}
    columns["pending"] = {str(d["id"]): d["pending"] for d in tracks if d["pending"]}
    return {**state, "version": STATE_VERSION, "tracks": columns}


class TrackBook:
    """All per-track state of one camera: a view of a `TrackTable` (its own unless one is given).
    `observe` takes frames as dicts with per-object `detections`, in event-time order, and returns
    the events they complete; `to_state`/`from_state` survive a restart.

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

    def __init__(self, site: SiteConfig, camera_id: str, table: TrackTable | None = None) -> None:
        self.table = table if table is not None else TrackTable(site)
        self.camera_id = camera_id
        self.table.camera(camera_id)  # a KeyError naming it, now

    def __len__(self) -> int:
        """Number of live tracks."""
        return self.table.tracks(self.camera_id)

    @property
    def skipped_frames(self) -> int:
        return self.table.skipped_frames(self.camera_id)

    def observe(self, frame: Mapping[str, Any]) -> list[Event]:
        """Feed one frame; returns crossings, zone visits (including exits of tracks that expired
        meanwhile and held-back events of tracks that just became old enough) and one occupancy
        sample per zone."""
        return self.observe_many((frame,))

    def observe_many(self, frames: Iterable[Mapping[str, Any]]) -> list[Event]:
        """`observe` for several frames of this camera in order."""
        return self.observe_columns(Columns.from_frames(list(frames)))

    def observe_columns(self, cols: Columns) -> list[Event]:
        return self.table.observe([(self.camera_id, cols)])[0]

    def expire(self, now_ms: int) -> list[Event]:
        """Expire tracks not seen for `track_expiry_s` before `now_ms`; returns the exits they imply."""
        return self.table.expire(self.camera_id, now_ms)

    def expire_all(self) -> list[Event]:
        """End of stream: every track is over now (exits at their last-seen time)."""
        return self.table.expire(self.camera_id, 2**62)

    def to_state(self) -> dict[str, Any]:
        """JSON-serialisable snapshot (plain dicts, lists, numbers, strings)."""
        return self.table.to_state(self.camera_id)

    @classmethod
    def from_state(cls, site: SiteConfig, camera_id: str, state: Mapping[str, Any],
                   table: TrackTable | None = None) -> TrackBook:
        """Rebuild from `to_state()` (into `table` if given); lines and zones are matched by id."""
        book = cls(site, camera_id, table)
        book.table.load_state(camera_id, state)
        return book
