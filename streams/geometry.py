"""Plane geometry on normalised image coordinates, vectorised over many points.

Coordinates are those of the site config: x to the right, y DOWN, both 0..1 of the frame. Sides of
a line are named as a person drawn on the displayed image would name them, standing at `a` and
looking towards `b`: for a line drawn top to bottom, the left side is the right half of the
picture; for a line drawn left to right, the left side is above it. That is the convention of
`schemas.site.Line`: crossing from the left (positive `side`) to the right (negative `side`) is
`directions[0]`.

>>> import numpy as np
>>> side(np.array([[0.9, 0.5], [0.1, 0.5]]), (0.5, 0.0), (0.5, 1.0)).round(2).tolist()
[0.4, -0.4]
>>> points_in_polygon(np.array([[0.5, 0.5], [2.0, 0.5]]), [(0, 0), (1, 0), (1, 1), (0, 1)]).tolist()
[True, False]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
PointLike = Sequence[float] | NDArray[np.float64]


def _xy(points: ArrayLike) -> tuple[FloatArray, FloatArray]:
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p[:, 0], p[:, 1]


def side(points: ArrayLike, a: PointLike, b: PointLike) -> FloatArray:
    """Signed distance of each point to the infinite line through a and b, in normalised units:
    positive on the left of a->b as seen on the displayed image (y down), negative on the right."""
    px, py = _xy(points)
    dx, dy = float(b[0]) - float(a[0]), float(b[1]) - float(a[1])
    length = float(np.hypot(dx, dy))
    if length == 0.0:
        raise ValueError("a line needs two distinct points")
    # minus the usual cross product: with y pointing down, the on-screen left of a->b is clockwise
    return (dy * (px - float(a[0])) - dx * (py - float(a[1]))) / length


def along(points: ArrayLike, a: PointLike, b: PointLike) -> FloatArray:
    """Position of each point's projection on the segment: 0 at a, 1 at b, outside 0..1 beyond the ends."""
    px, py = _xy(points)
    dx, dy = float(b[0]) - float(a[0]), float(b[1]) - float(a[1])
    return ((px - float(a[0])) * dx + (py - float(a[1])) * dy) / (dx * dx + dy * dy)


def points_in_polygon(points: ArrayLike, polygon: Sequence[PointLike]) -> BoolArray:
    """Even-odd ray casting for many points at once; points exactly on an edge may fall either way."""
    return PolygonSet([polygon]).contains(*_xy(points))[:, 0]


def distance_to_boundary(points: ArrayLike, polygon: Sequence[PointLike]) -> FloatArray:
    """Euclidean distance of each point to the polygon's outline (0 on an edge)."""
    _, d2 = PolygonSet([polygon]).classify(*_xy(points))
    return np.sqrt(d2[:, 0])


def apply_homography(h: ArrayLike, points: ArrayLike) -> FloatArray:
    """Map normalised image points through a 3x3 homography (e.g. to ground metres); returns (N, 2)."""
    m = np.asarray(h, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"a homography is 3x3, got shape {m.shape}")
    px, py = _xy(points)
    w = m[2, 0] * px + m[2, 1] * py + m[2, 2]
    out = np.empty((px.shape[0], 2))
    out[:, 0] = (m[0, 0] * px + m[0, 1] * py + m[0, 2]) / w
    out[:, 1] = (m[1, 0] * px + m[1, 1] * py + m[1, 2]) / w
    return out


class LineSet:
    """Many counting segments measured together: one numpy pass gives every point's side and
    position along every line (the per-frame hot path of `streams.tracks`)."""

    def __init__(self, segments: Sequence[tuple[PointLike, PointLike]]) -> None:
        a = np.array([s[0] for s in segments], dtype=np.float64).reshape(-1, 2)
        b = np.array([s[1] for s in segments], dtype=np.float64).reshape(-1, 2)
        d = b - a
        self.length = np.hypot(d[:, 0], d[:, 1])
        if np.any(self.length == 0):
            raise ValueError("a line needs two distinct points")
        self._za = a[:, 0] + 1j * a[:, 1]
        # (rx + i ry)(dy + i dx) / len = side + i (position along, in units of length): one multiply
        self._rot = (d[:, 1] + 1j * d[:, 0]) / self.length

    def __len__(self) -> int:
        return int(self.length.shape[0])

    def measure(self, px: FloatArray, py: FloatArray) -> tuple[FloatArray, FloatArray]:
        """(side, t), each (n_points, n_lines): signed distance as in `side`, and position as in `along`."""
        s, dist = self.measure_z(np.asarray(px) + 1j * np.asarray(py))
        return s, dist / self.length

    def measure_z(self, z: NDArray[np.complex128]) -> tuple[FloatArray, FloatArray]:
        """(side, distance along the line from a), for points given as complex numbers x + iy: the
        per-frame hot path, so one subtraction and one multiplication for all points and lines."""
        w = (z[:, None] - self._za) * self._rot
        return w.real, w.imag


class PolygonSet:
    """Many polygons tested together: their edges are concatenated so one numpy pass answers
    'inside?' and 'how far from the outline?' for every point and polygon."""

    def __init__(self, polygons: Sequence[Sequence[PointLike]]) -> None:
        starts: list[int] = []
        z1: list[complex] = []
        e: list[complex] = []
        for poly in polygons:
            p = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
            if p.shape[0] < 3:
                raise ValueError("a polygon needs at least 3 points")
            q = np.roll(p, -1, axis=0)
            starts.append(len(z1))
            z1.extend(p[:, 0] + 1j * p[:, 1])
            e.extend((q[:, 0] - p[:, 0]) + 1j * (q[:, 1] - p[:, 1]))
        self.n = len(starts)
        self._starts = np.array(starts, dtype=np.intp)
        self._z1 = np.array(z1, dtype=np.complex128)
        self._e = np.array(e, dtype=np.complex128)
        ex, ey = self._e.real, self._e.imag
        self._ey = ey
        # x offset of the edge per unit of y (0 for horizontal edges, which no ray crosses anyway)
        self._slope = np.divide(ex, ey, out=np.zeros_like(ex), where=ey != 0)
        len2 = ex * ex + ey * ey
        # Re(r * conj(e) / |e|^2) is the projection of r on the edge, 0..1 between its ends
        self._proj = np.divide(np.conj(self._e), len2, out=np.zeros_like(self._e), where=len2 != 0)

    def contains(self, px: FloatArray, py: FloatArray) -> BoolArray:
        """(n_points, n_polygons) even-odd inside test."""
        return self.classify(px, py)[0]

    def classify(self, px: FloatArray, py: FloatArray) -> tuple[BoolArray, FloatArray]:
        """(inside, squared distance to the outline), each (n_points, n_polygons)."""
        inside, d = self.classify_z(np.asarray(px) + 1j * np.asarray(py))
        return inside, d * d

    def classify_z(self, z: NDArray[np.complex128]) -> tuple[BoolArray, FloatArray]:
        """(inside, distance to the outline) for points given as complex numbers x + iy."""
        if self.n == 0:
            return np.zeros((z.shape[0], 0), dtype=bool), np.zeros((z.shape[0], 0))
        r = z[:, None] - self._z1
        rx, ry = r.real, r.imag
        # even-odd rule: the edge spans the point's height (half-open at vertices) and lies to its right
        hits = ((ry < 0) != (ry < self._ey)) & (rx < ry * self._slope)
        inside = np.bitwise_xor.reduceat(hits, self._starts, axis=1)
        t = (r * self._proj).real
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
        d = np.abs(r - t * self._e)
        return inside, np.minimum.reduceat(d, self._starts, axis=1)


CHUNK = 2048  # points measured at once by `Scenes` (~1 MB of temporaries per array)


class Scenes:
    """The lines and zones of many cameras, padded to one shape, so that the points of all cameras
    are measured in one numpy pass, each point against its own camera's lines and zones (`cam`:
    the camera's index per point). Values are those of `LineSet.measure_z` and
    `PolygonSet.classify_z` of each camera: the same arithmetic, gathered per point. A camera with
    fewer lines or zones than the most has padding there: side 0 and position 0 on a missing
    line (never confidently on either side), outside and at distance -1 from a missing zone.

    >>> s = Scenes([[((0.5, 0.0), (0.5, 1.0))], []], [[], [[(0, 0), (1, 0), (1, 1), (0, 1)]]])
    >>> z = np.array([0.75 + 0.5j, 0.25 + 0.5j])
    >>> s.measure(z, np.array([0, 0]))[0].round(2).tolist(), s.classify(z, np.array([1, 0]))[0].tolist()
    ([[0.25], [-0.25]], [[True], [False]])
    """

    def __init__(self, lines: Sequence[Sequence[tuple[PointLike, PointLike]]],
                 zones: Sequence[Sequence[Sequence[PointLike]]]) -> None:
        n_cams = len(lines)
        n_lines = max((len(x) for x in lines), default=0)
        n_zones = max((len(x) for x in zones), default=0)
        sets = [PolygonSet(list(z)) if z else None for z in zones]
        edges = max((int(np.diff(np.append(p._starts, p._z1.shape[0])).max()) for p in sets if p), default=0)
        self.n_lines, self.n_zones = n_lines, n_zones
        self.length = np.zeros((n_cams, n_lines))
        self.origin = np.zeros((n_cams, n_lines), np.complex128)
        self.rotation = np.zeros((n_cams, n_lines), np.complex128)  # 0 on padding: every point measures 0
        for c, segs in enumerate(lines):
            if segs:
                ls = LineSet(list(segs))
                k = len(ls)
                self.length[c, :k], self.origin[c, :k], self.rotation[c, :k] = ls.length, ls._za, ls._rot
        shape = (n_cams, n_zones, edges)
        self._z1 = np.zeros(shape, np.complex128)
        self._e = np.zeros(shape, np.complex128)
        self._ey = np.zeros(shape)
        self._slope = np.zeros(shape)
        self._proj = np.zeros(shape, np.complex128)
        self.zone_valid = np.zeros((n_cams, n_zones), bool)
        for c, p in enumerate(sets):
            if p is None:
                continue
            bounds = [*p._starts.tolist(), p._z1.shape[0]]
            for k in range(p.n):
                lo, hi = bounds[k], bounds[k + 1]
                self.zone_valid[c, k] = True
                # padding: zero-length edges at the polygon's first vertex cross no ray and are no
                # nearer than the outline, so they change neither answer
                self._z1[c, k, :] = p._z1[lo]
                self._z1[c, k, :hi - lo] = p._z1[lo:hi]
                self._e[c, k, :hi - lo] = p._e[lo:hi]
                self._ey[c, k, :hi - lo] = p._ey[lo:hi]
                self._slope[c, k, :hi - lo] = p._slope[lo:hi]
                self._proj[c, k, :hi - lo] = p._proj[lo:hi]

    def measure(self, z: NDArray[np.complex128], cam: NDArray[np.intp]) -> tuple[FloatArray, FloatArray]:
        """(side, distance along the line from a), each (n_points, n_lines)."""
        w = (z[:, None] - self.origin[cam]) * self.rotation[cam]
        return w.real, w.imag

    def classify(self, z: NDArray[np.complex128], cam: NDArray[np.intp]) -> tuple[BoolArray, FloatArray]:
        """(inside, distance to the outline), each (n_points, n_zones)."""
        if z.shape[0] > CHUNK:  # a backlog's batch: in pieces whose temporaries stay in the CPU's cache
            parts = [self.classify(z[i:i + CHUNK], cam[i:i + CHUNK]) for i in range(0, z.shape[0], CHUNK)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        r = z[:, None, None] - self._z1[cam]
        rx, ry = r.real, r.imag
        hits = ((ry < 0) != (ry < self._ey[cam])) & (rx < ry * self._slope[cam])
        valid = self.zone_valid[cam]
        inside = np.bitwise_xor.reduce(hits, axis=2) & valid
        t = (r * self._proj[cam]).real
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
        d = np.abs(r - t * self._e[cam]).min(axis=2) if r.shape[2] else np.zeros(valid.shape)
        return inside, np.where(valid, d, -1.0)
