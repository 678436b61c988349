"""Tracking: ByteTrack over the detector's boxes, Kalman prediction between detections, and
ground motion (position, speed, heading) from a camera's homography.

supervision 0.31 removed `sv.ByteTrack` (its successor lives in the separate `trackers`
package, whose Kalman predict step is private). Detect-every-N needs that step as a public
call, so this module carries ByteTrack itself: a constant-velocity Kalman filter on
(cx, cy, aspect, height) and the paper's two-stage association (high-confidence boxes against
all tracks, then low-confidence boxes against the tracks still unmatched), vectorised over
tracks. It consumes and returns `supervision.Detections`.

    >>> from privaflow.edge.detections import make_detections
    >>> bt = ByteTrack(fps=10)
    >>> out = bt.update(make_detections([[10, 10, 50, 90]], [0.9], [0]))
    >>> out.tracker_id.tolist(), bt.predict().tracker_id.tolist()
    ([1], [1])
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields

import cv2
import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

from privaflow.edge.detections import Detections, box_iou

F64 = npt.NDArray[np.float64]
TENTATIVE, TRACKED, LOST = 0, 1, 2



# ---------------------------------------------------------------- Kalman filter, batched over tracks

_W_POS, _W_VEL = 1 / 20, 1 / 160  # ByteTrack's noise weights, relative to box height
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def _to_xyah(xyxy: F64) -> F64:
    w, h = xyxy[:, 2] - xyxy[:, 0], np.maximum(xyxy[:, 3] - xyxy[:, 1], 1e-6)
    return np.stack([xyxy[:, 0] + w / 2, xyxy[:, 1] + h / 2, w / h, h], axis=1)


def _to_xyxy(mean: F64) -> F64:
    cx, cy, a, h = mean[:, 0], mean[:, 1], mean[:, 2], mean[:, 3]
    w = a * h
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def _diag(std: F64) -> F64:
    out = np.zeros((*std.shape, std.shape[-1]))
    idx = np.arange(std.shape[-1])
    out[..., idx, idx] = std**2
    return out


def kalman_initiate(xyah: F64) -> tuple[F64, F64]:
    h = xyah[:, 3]
    one = np.ones_like(h)
    std = np.stack([2 * _W_POS * h, 2 * _W_POS * h, 1e-2 * one, 2 * _W_POS * h,
                    10 * _W_VEL * h, 10 * _W_VEL * h, 1e-5 * one, 10 * _W_VEL * h], axis=1)
    return np.concatenate([xyah, np.zeros_like(xyah)], axis=1), _diag(std)


def kalman_predict(mean: F64, cov: F64) -> tuple[F64, F64]:
    h = mean[:, 3]
    one = np.ones_like(h)
    std = np.stack([_W_POS * h, _W_POS * h, 1e-2 * one, _W_POS * h,
                    _W_VEL * h, _W_VEL * h, 1e-5 * one, _W_VEL * h], axis=1)
    return mean @ _F.T, _F @ cov @ _F.T + _diag(std)


def kalman_update(mean: F64, cov: F64, xyah: F64) -> tuple[F64, F64]:
    h = mean[:, 3]
    std = np.stack([_W_POS * h, _W_POS * h, 1e-1 * np.ones_like(h), _W_POS * h], axis=1)
    s = _H @ cov @ _H.T + _diag(std)  # (n, 4, 4) innovation covariance
    gain = np.linalg.solve(s, (cov @ _H.T).transpose(0, 2, 1)).transpose(0, 2, 1)  # (n, 8, 4)
    innovation = xyah - mean @ _H.T
    mean = mean + np.einsum("nij,nj->ni", gain, innovation)
    cov = cov - gain @ s @ gain.transpose(0, 2, 1)
    return mean, cov


# ---------------------------------------------------------------- ByteTrack

@dataclass
class _Tracks:
    """All live tracks as columns (one row per track)."""

    mean: F64
    cov: F64
    track_id: npt.NDArray[np.int64]
    class_id: npt.NDArray[np.int32]
    confidence: npt.NDArray[np.float32]
    state: npt.NDArray[np.int8]
    hits: npt.NDArray[np.int32]
    misses: npt.NDArray[np.int32]  # frames since the last matched detection

    @staticmethod
    def empty() -> _Tracks:
        return _Tracks(np.zeros((0, 8)), np.zeros((0, 8, 8)), np.zeros(0, np.int64), np.zeros(0, np.int32),
                       np.zeros(0, np.float32), np.zeros(0, np.int8), np.zeros(0, np.int32),
                       np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.track_id)

    def take(self, idx: npt.ArrayLike) -> _Tracks:
        return _Tracks(*(getattr(self, f.name)[idx] for f in fields(self)))

    def extend(self, other: _Tracks) -> _Tracks:
        return _Tracks(*(np.concatenate([getattr(self, f.name), getattr(other, f.name)])
                         for f in fields(self)))


def _match(iou: F64, min_iou: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Optimal assignment on IoU; pairs below `min_iou` are not matches."""
    n, m = iou.shape
    pairs: list[tuple[int, int]] = []
    if n and m:
        rows, cols = linear_sum_assignment(np.where(iou >= min_iou, iou, 0.0), maximize=True)
        pairs = [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]
    used_r, used_c = {r for r, _ in pairs}, {c for _, c in pairs}
    return pairs, [r for r in range(n) if r not in used_r], [c for c in range(m) if c not in used_c]


class ByteTrack:
    """Multi-object tracker (Zhang et al., ByteTrack, ECCV 2022), class-aware.

    `update(detections)` runs one frame with detector output; `predict()` advances one frame on
    motion alone (the frames between detections in detect-every-N). Both return the confirmed,
    currently visible tracks as `Detections` with `tracker_id` set (1, 2, 3, ...: a counter, made
    pseudonymous downstream by `edge.privacy.PseudonymousIds`). A track is confirmed after
    `min_hits` matched detections (at once on the first frame) and dropped after `lost_s`
    seconds without one.
    """

    def __init__(self, fps: float = 10.0, high_thresh: float = 0.5, new_track_thresh: float = 0.5,
                 match_iou: float = 0.2, low_match_iou: float = 0.5, tentative_iou: float = 0.3,
                 min_hits: int = 2, lost_s: float = 2.0) -> None:
        self.high_thresh, self.new_track_thresh = high_thresh, new_track_thresh
        self.match_iou, self.low_match_iou, self.tentative_iou = match_iou, low_match_iou, tentative_iou
        self.min_hits, self.max_misses = min_hits, max(1, round(lost_s * fps))
        self.tracks = _Tracks.empty()
        self._next_id = 1
        self._updates = 0

    def predict(self) -> Detections:
        """Advance every track one frame by its velocity; report the visible ones."""
        self._step()
        return self._visible()

    def update(self, detections: Detections) -> Detections:
        self._step()
        self._updates += 1
        t = self.tracks
        xyxy = np.asarray(detections.xyxy, np.float64).reshape(-1, 4)
        conf = (np.ones(len(xyxy), np.float32) if detections.confidence is None
                else np.asarray(detections.confidence, np.float32))
        cls = (np.zeros(len(xyxy), np.int32) if detections.class_id is None
               else np.asarray(detections.class_id, np.int32))
        iou = box_iou(_to_xyxy(t.mean), xyxy)
        iou[t.class_id[:, None] != cls[None, :]] = 0.0  # a person never continues a car's track
        high, low = np.flatnonzero(conf >= self.high_thresh), np.flatnonzero(conf < self.high_thresh)
        matched_rows: list[int] = []
        matched_dets: list[int] = []

        # 1: confirmed tracks (visible or lost) against confident boxes
        pool = np.flatnonzero(t.state != TENTATIVE)
        pairs, rest, free_high = _match(iou[np.ix_(pool, high)], self.match_iou)
        matched_rows += [int(pool[r]) for r, _ in pairs]
        matched_dets += [int(high[c]) for _, c in pairs]
        # 2: still-visible tracks against the low-confidence boxes (occlusion, blur)
        pool2 = np.array([pool[r] for r in rest if t.state[pool[r]] == TRACKED], np.intp)
        pairs2, rest2, _ = _match(iou[np.ix_(pool2, low)], self.low_match_iou)
        matched_rows += [int(pool2[r]) for r, _ in pairs2]
        matched_dets += [int(low[c]) for _, c in pairs2]
        t.state[pool2[rest2]] = LOST
        # 3: tentative tracks against the confident boxes nobody took
        high_left = high[free_high]
        pool3 = np.flatnonzero(t.state == TENTATIVE)
        pairs3, rest3, free3 = _match(iou[np.ix_(pool3, high_left)], self.tentative_iou)
        matched_rows += [int(pool3[r]) for r, _ in pairs3]
        matched_dets += [int(high_left[c]) for _, c in pairs3]

        rows, dets = np.array(matched_rows, np.intp), np.array(matched_dets, np.intp)
        if len(rows):
            t.mean[rows], t.cov[rows] = kalman_update(t.mean[rows], t.cov[rows], _to_xyah(xyxy[dets]))
            t.confidence[rows], t.hits[rows], t.misses[rows] = conf[dets], t.hits[rows] + 1, 0
            ready = (t.state[rows] == LOST) | (t.hits[rows] >= self.min_hits)
            promote = rows[(t.state[rows] != TRACKED) & ready]
            t.state[promote] = TRACKED
            self._assign_ids(promote)
        drop = np.zeros(len(t), bool)
        drop[pool3[rest3]] = True  # a tentative track that misses once was noise
        drop |= (t.state == LOST) & (t.misses > self.max_misses)
        self.tracks = t.take(~drop)

        # 4: new tentative tracks from confident boxes that matched nothing
        born = high_left[free3]
        born = born[conf[born] >= self.new_track_thresh]
        if len(born):
            mean, cov = kalman_initiate(_to_xyah(xyxy[born]))
            first = self._updates == 1 or self.min_hits <= 1
            new = _Tracks(mean, cov, np.zeros(len(born), np.int64), cls[born], conf[born],
                          np.full(len(born), TRACKED if first else TENTATIVE, np.int8),
                          np.ones(len(born), np.int32), np.zeros(len(born), np.int32))
            start = len(self.tracks)
            self.tracks = self.tracks.extend(new)
            if first:
                self._assign_ids(np.arange(start, len(self.tracks)))
        return self._visible()

    def _step(self) -> None:
        t = self.tracks
        if len(t):
            t.mean, t.cov = kalman_predict(t.mean, t.cov)
            t.misses += 1
            # A lost track's shape does not keep changing on momentum.
            t.mean[t.state == LOST, 6:] = 0.0

    def _assign_ids(self, rows: npt.NDArray[np.intp]) -> None:
        for r in rows:
            if self.tracks.track_id[r] == 0:
                self.tracks.track_id[r] = self._next_id
                self._next_id += 1

    def _visible(self) -> Detections:
        t = self.tracks.take(self.tracks.state == TRACKED)
        return Detections(xyxy=_to_xyxy(t.mean).astype(np.float32).reshape(-1, 4),
                          confidence=t.confidence.copy(), class_id=t.class_id.copy(),
                          tracker_id=t.track_id.copy())


# ---------------------------------------------------------------- ground motion

class GroundMotion:
    """Position on the ground (metres), speed (km/h) and heading (degrees clockwise from north)
    per track, from foot points through a homography that maps normalised image points to metres
    (x east, y north).

    Speed and heading compare the newest position with the oldest one inside `window_s`; they
    stay NaN until the track has `min_span_s` of history, and heading stays NaN while the object
    has moved less than `min_move_m` (a parked car has no direction).
    """

    def __init__(self, homography: npt.ArrayLike, window_s: float = 1.0, min_span_s: float = 0.3,
                 min_move_m: float = 0.3, forget_s: float = 10.0) -> None:
        self.h = np.asarray(homography, np.float64).reshape(3, 3)
        self.window_ms, self.min_span_ms = window_s * 1000, min_span_s * 1000
        self.min_move_m, self.forget_ms = min_move_m, forget_s * 1000
        self._history: dict[int, deque[tuple[int, float, float]]] = {}

    def to_ground(self, points_norm: npt.ArrayLike) -> F64:
        pts = np.asarray(points_norm, np.float64).reshape(-1, 1, 2)
        if not len(pts):
            return np.zeros((0, 2))
        return np.asarray(cv2.perspectiveTransform(pts, self.h), np.float64).reshape(-1, 2)

    def update(self, track_ids: npt.ArrayLike, foot_norm: npt.ArrayLike, ts_ms: int) -> tuple[F64, F64, F64]:
        """(world xy (n, 2), speed km/h (n,), heading deg (n,)); NaN where unknown."""
        ids = np.asarray(track_ids).reshape(-1)
        world = self.to_ground(foot_norm)
        speed, heading = np.full(len(ids), np.nan), np.full(len(ids), np.nan)
        for i, tid in enumerate(ids.tolist()):
            hist = self._history.setdefault(tid, deque())
            hist.append((ts_ms, float(world[i, 0]), float(world[i, 1])))
            while len(hist) > 2 and ts_ms - hist[1][0] >= self.window_ms:
                hist.popleft()
            t0, x0, y0 = hist[0]
            span = ts_ms - t0
            if span >= self.min_span_ms:
                dx, dy = world[i, 0] - x0, world[i, 1] - y0
                dist = math.hypot(dx, dy)
                speed[i] = dist / (span / 1000) * 3.6
                if dist >= self.min_move_m:
                    heading[i] = math.degrees(math.atan2(dx, dy)) % 360.0
        stale = [k for k, h in self._history.items() if ts_ms - h[-1][0] > self.forget_ms]
        for k in stale:
            del self._history[k]
        return world, speed, heading
