"""H3 cells: the only form in which a moving camera's position leaves the edge (G4).

A mobile camera's own position is personal data of its driver and passengers, so the edge snaps
it to an H3 cell (Uber's hexagonal grid, the `h3` package) and sends the cell, never the
coordinates. The worker checks every cell it reads is a valid H3 index at the site's configured
resolution, and the partner schema declares the cell as a spatial-cell dimension (schemas/privacy.py),
so neither a finer cell nor a coordinate smuggled into the field is ever published.

Resolution 9 is the default: its hexagons average about 200 m a side and 0.1 km² (H3 4.x's figures;
the 3.x documentation listed 174 m), the "about 170 m" of a block or two in a city. 8 (530 m) is a
district, 10 (76 m) almost a house front: `MIN_RESOLUTION`..`MAX_RESOLUTION` is what a site may choose.

    >>> cell = snap(35.681236, 139.767125, 9)
    >>> cell, cell_problem(cell, 9), cell_problem(cell, 10) is not None
    ('892f5a32d97ffff', None, True)
"""

from __future__ import annotations

import math

import h3

DEFAULT_RESOLUTION = 9
MIN_RESOLUTION, MAX_RESOLUTION = 6, 10
EARTH_RADIUS_M = 6_371_008.8  # mean radius, as h3.great_circle_distance uses


def snap(lat: float, lon: float, resolution: int) -> str:
    """The H3 cell (hex string) holding a position."""
    return str(h3.latlng_to_cell(lat, lon, resolution))


def cell_problem(value: object, resolution: int) -> str | None:
    """Why `value` is not an H3 cell at `resolution` (not a string, not a valid cell index, another
    resolution), or None. Never raises."""
    if not isinstance(value, str):
        return f"expected an H3 cell index (a string), got {type(value).__name__}"
    if len(value) > 16 or not h3.is_valid_cell(value):
        return f"{value[:40]!r} is not a valid H3 cell index"
    got = h3.get_resolution(value)
    if got != resolution:
        return f"H3 cell {value!r} has resolution {got}, expected the site's {resolution}"
    return None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres."""
    return float(h3.great_circle_distance((lat1, lon1), (lat2, lon2), unit="m"))


def cell_centre(cell: str) -> tuple[float, float]:
    lat, lon = h3.cell_to_latlng(cell)
    return float(lat), float(lon)


def cell_reach_m(cell: str) -> float:
    """How far any point of the cell may be from its centre (the largest centre-to-vertex distance).
    A place at least `radius + cell_reach_m(cell)` from the centre is at least `radius` from every
    point of the cell."""
    lat, lon = h3.cell_to_latlng(cell)
    return max(distance_m(lat, lon, vlat, vlon) for vlat, vlon in h3.cell_to_boundary(cell))


def cell_within(cell: str, lat: float, lon: float, radius_m: float) -> bool:
    """Does any point of the cell come within `radius_m` of the place? (Conservative: true also when
    only the cell's circumscribed circle does.)"""
    clat, clon = cell_centre(cell)
    return distance_m(clat, clon, lat, lon) < radius_m + cell_reach_m(cell)


def boundary(cell: str) -> list[tuple[float, float]]:
    """The cell's polygon as (lat, lon) vertices (for the operator's road-condition map)."""
    return [(float(a), float(b)) for a, b in h3.cell_to_boundary(cell)]


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Initial great-circle bearing from the first position to the second, degrees clockwise from
    north in [0, 360)."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(x, y)) % 360.0
