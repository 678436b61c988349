"""Geometry on normalised image coordinates (y down): sides of a line, inside a polygon, homographies.

Covers G2, G3, G5 and T5: every count and zone statistic rests on these predicates.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from privaflow.streams.geometry import (
    LineSet,
    PolygonSet,
    along,
    apply_homography,
    distance_to_boundary,
    points_in_polygon,
    side,
)

unit = st.floats(0.0, 1.0, allow_nan=False)
point = st.tuples(unit, unit)


def ray_cast_reference(p: tuple[float, float], poly: list[tuple[float, float]]) -> bool:
    """The textbook even-odd test, one point at a time."""
    x, y = p
    inside = False
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def segment_distance_reference(p: tuple[float, float], poly: list[tuple[float, float]]) -> float:
    best = math.inf
    for (x1, y1), (x2, y2) in zip(poly, poly[1:] + poly[:1], strict=True):
        ex, ey = x2 - x1, y2 - y1
        l2 = ex * ex + ey * ey
        t = 0.0 if l2 == 0 else min(1.0, max(0.0, ((p[0] - x1) * ex + (p[1] - y1) * ey) / l2))
        best = min(best, math.hypot(p[0] - x1 - t * ex, p[1] - y1 - t * ey))
    return best


@st.composite
def simple_polygons(draw: st.DrawFn) -> list[tuple[float, float]]:
    """Star-shaped (hence simple, possibly concave) polygons inside the unit square."""
    n = draw(st.integers(3, 10))
    cx, cy = draw(st.floats(0.3, 0.7)), draw(st.floats(0.3, 0.7))
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi, exclude_max=True), min_size=n, max_size=n,
                                  unique=True)))
    assume(all(b - a > 0.05 for a, b in zip(angles, angles[1:], strict=False)))
    radii = draw(st.lists(st.floats(0.05, 0.29), min_size=n, max_size=n))
    return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)]


def test_left_is_the_on_screen_left_looking_from_a_to_b() -> None:
    """A line drawn top to bottom: its left is the right half of the picture; drawn left to right:
    its left is above it (y grows downwards). Covers G3."""
    down = side(np.array([[0.9, 0.5], [0.1, 0.5]]), (0.5, 0.0), (0.5, 1.0))
    assert down[0] > 0 > down[1]
    rightwards = side(np.array([[0.5, 0.2], [0.5, 0.8]]), (0.0, 0.5), (1.0, 0.5))
    assert rightwards[0] > 0 > rightwards[1]
    assert down[0] == pytest.approx(0.4)


@settings(max_examples=200, deadline=None)
@given(p=point, a=point, b=point)
def test_side_is_a_signed_distance_and_reverses_with_the_line(p: tuple[float, float], a: tuple[float, float],
                                                             b: tuple[float, float]) -> None:
    assume(math.dist(a, b) > 1e-3)
    s = side(np.array([p]), a, b)[0]
    assert side(np.array([p]), b, a)[0] == pytest.approx(-s, abs=1e-12)
    # |side| is the distance to the infinite line
    t = along(np.array([p]), a, b)[0]
    foot = (a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))
    assert abs(s) == pytest.approx(math.dist(p, foot), abs=1e-9)


def test_along_is_zero_at_a_and_one_at_b() -> None:
    assert along(np.array([[0.1, 0.2], [0.5, 0.6], [0.3, 0.4]]), (0.1, 0.2), (0.5, 0.6)).tolist() == \
        pytest.approx([0.0, 1.0, 0.5])


@settings(max_examples=100, deadline=None)
@given(pts=st.lists(point, min_size=1, max_size=20), segs=st.lists(st.tuples(point, point), min_size=1, max_size=4))
def test_lineset_agrees_with_side_and_along(pts: list[tuple[float, float]],
                                            segs: list[tuple[tuple[float, float], tuple[float, float]]]) -> None:
    assume(all(math.dist(a, b) > 1e-3 for a, b in segs))
    arr = np.array(pts)
    s, t = LineSet(segs).measure(arr[:, 0], arr[:, 1])
    for j, (a, b) in enumerate(segs):
        np.testing.assert_allclose(s[:, j], side(arr, a, b), atol=1e-9)
        np.testing.assert_allclose(t[:, j], along(arr, a, b), rtol=1e-9, atol=1e-6)


@settings(max_examples=150, deadline=None)
@given(poly=simple_polygons(), pts=st.lists(point, min_size=1, max_size=40))
def test_point_in_polygon_agrees_with_references(poly: list[tuple[float, float]],
                                                 pts: list[tuple[float, float]]) -> None:
    """Vectorised even-odd test vs the textbook loop and, where installed, matplotlib.path."""
    pts = [p for p in pts if segment_distance_reference(p, poly) > 1e-9]  # on the outline: either answer
    assume(pts)
    got = points_in_polygon(np.array(pts), poly).tolist()
    assert got == [ray_cast_reference(p, poly) for p in pts]
    try:
        from matplotlib.path import Path
    except ImportError:
        return
    assert got == Path(np.array(poly)).contains_points(np.array(pts)).tolist()


@settings(max_examples=100, deadline=None)
@given(polys=st.lists(simple_polygons(), min_size=1, max_size=4), pts=st.lists(point, min_size=1, max_size=30))
def test_polygonset_distance_and_inside_for_many_polygons(polys: list[list[tuple[float, float]]],
                                                          pts: list[tuple[float, float]]) -> None:
    arr = np.array(pts)
    inside, d2 = PolygonSet(polys).classify(arr[:, 0], arr[:, 1])
    for k, poly in enumerate(polys):
        for i, p in enumerate(pts):
            dist = segment_distance_reference(p, poly)
            assert math.sqrt(d2[i, k]) == pytest.approx(dist, abs=1e-9)
            if dist > 1e-9:
                assert inside[i, k] == ray_cast_reference(p, poly)
    np.testing.assert_allclose(distance_to_boundary(arr, polys[0]), np.sqrt(d2[:, 0]))


def test_vertex_heights_use_half_open_edges() -> None:
    """A point level with a vertex must not be counted twice by the two edges meeting there."""
    diamond = [(0.5, 0.1), (0.9, 0.5), (0.5, 0.9), (0.1, 0.5)]
    assert points_in_polygon(np.array([[0.5, 0.5], [0.05, 0.5], [0.95, 0.5]]), diamond).tolist() == \
        [True, False, False]


def test_homography_identity_scale_and_projective() -> None:
    pts = np.array([[0.0, 0.0], [1.0, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(apply_homography(np.eye(3), pts), pts)
    np.testing.assert_allclose(apply_homography([[40, 0, 0], [0, -30, 30], [0, 0, 1]], pts),
                               np.array([[0, 30], [40, 15], [10, 7.5]]))
    h = np.array([[2.0, 0.1, 1.0], [0.2, 1.5, -1.0], [0.3, 0.2, 1.0]])
    x, y = 0.25, 0.75
    w = 0.3 * x + 0.2 * y + 1.0
    np.testing.assert_allclose(apply_homography(h, [[x, y]])[0],
                               [(2 * x + 0.1 * y + 1) / w, (0.2 * x + 1.5 * y - 1) / w])
    np.testing.assert_allclose(apply_homography(np.linalg.inv(h), apply_homography(h, pts)), pts, atol=1e-12)
    with pytest.raises(ValueError):
        apply_homography(np.eye(2), pts)


def test_degenerate_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        side(np.array([[0.1, 0.1]]), (0.5, 0.5), (0.5, 0.5))
    with pytest.raises(ValueError):
        PolygonSet([[(0, 0), (1, 1)]])
    assert PolygonSet([]).contains(np.array([0.5]), np.array([0.5])).shape == (1, 0)
