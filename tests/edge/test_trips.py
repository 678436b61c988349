"""What leaves the edge of a moving camera (edge/trips.py): privacy zones around configured places and
around where a trip starts and ends, pseudonymous trip ids rotating daily, H3 cells only. Covers G4
(the probe vehicle's path is personal data of its driver) and T6."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.position import Position
from privaflow.edge.trips import TripGate
from privaflow.schemas.cells import cell_problem, cell_reach_m, cell_within, distance_m
from privaflow.schemas.mobile import MobileSettings
from privaflow.schemas.vocabulary import HEADINGS

LAT0, LON0 = 35.68, 139.76
M_PER_DEG = 111_195.0
T0 = dt.datetime(2024, 5, 14, 12, 0, tzinfo=dt.UTC).timestamp()


def settings_(**kw: object) -> MobileSettings:
    return MobileSettings.model_validate({"position": {"kind": "gpx", "path": "d.gpx"}, **kw})


def north(m: float) -> tuple[float, float]:
    return LAT0 + m / M_PER_DEG, LON0


def run(gate: TripGate[int], points: list[tuple[float, tuple[float, float] | None]], speed: float = 36.0
        ) -> list[tuple[int, object]]:
    """Offer frames (t seconds after T0, position or None) numbered 0..; returns what was released."""
    out = []
    for i, (t, p) in enumerate(points):
        pos = None if p is None else Position(p[0], p[1], 0.0, speed)
        out += gate.offer(int((T0 + t) * 1000), pos, i)
    return out


def straight(metres: float, step_m: float = 10.0, speed_mps: float = 10.0) -> list[tuple[float, tuple[float, float]]]:
    n = int(metres / step_m)
    return [(i * step_m / speed_mps, north(i * step_m)) for i in range(n + 1)]


def test_nothing_within_a_privacy_zone_leaves_and_no_published_cell_reaches_into_it() -> None:
    depot = north(1500)
    gate: TripGate[int] = TripGate(settings_(privacy_zones=[{"id": "depot", "lat": depot[0], "lon": depot[1],
                                                             "radius_m": 250}], trip_end_radius_m=0))
    points = straight(3000)
    released = run(gate, points)
    assert released and gate.stats.dropped_zone > 0
    for i, fields in released:
        lat, lon = points[i][1]
        assert distance_m(lat, lon, *depot) >= 250  # the frame itself
        assert not cell_within(fields.cell, depot[0], depot[1], 250)  # and every point of its cell
    # frames far from the depot are not lost
    assert any(distance_m(*points[i][1], *depot) < 600 for i, _ in released)


def test_the_first_and_last_few_hundred_metres_of_a_trip_never_leave() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=300))
    points = straight(4000)
    released = run(gate, points)
    gate.end()
    start, end = points[0][1], points[-1][1]
    assert released
    kept = {i for i, _ in released}
    for _i, fields in released:
        assert not cell_within(fields.cell, *start, 300) and not cell_within(fields.cell, *end, 300)
    reach = max(cell_reach_m(f.cell) for _, f in released)
    middle = [i for i, (_, p) in enumerate(points)
              if distance_m(*p, *start) > 300 + 2 * reach and distance_m(*p, *end) > 300 + 2 * reach]
    assert set(middle) <= kept  # nothing else is withheld
    assert gate.stats.dropped_trip_end > 0 and gate.stats.dropped_zone > 0


def test_records_are_held_until_the_vehicle_is_clear_and_released_in_capture_order() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=200))
    points = straight(3000)
    out = []
    for i, (t, p) in enumerate(points):
        got = gate.offer(int((T0 + t) * 1000), Position(*p, 0.0, 36.0), i)
        for j, fields in got:
            assert not cell_within(fields.cell, *p, 200)  # were the trip to end now, the record is clear of it
            out.append(j)
    assert out == sorted(out)


def test_a_crawl_near_where_a_trip_may_end_is_dropped_after_max_hold_never_published_late() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=300, max_hold_s=60))
    fast = straight(1500)
    crawl = [(fast[-1][0] + 1 + i, north(1500 + i * 0.8)) for i in range(200)]  # 3 km/h for 200 s
    points = fast + crawl
    delays = []
    for i, (t, p) in enumerate(points):
        for j, _ in gate.offer(int((T0 + t) * 1000), Position(*p, 0.0, 36.0), i):
            delays.append(t - points[j][0])
    assert gate.stats.dropped_stale > 0 and delays
    assert max(delays) <= 60  # what leaves, leaves within max_hold_s of capture


def test_a_long_stop_ends_the_trip_and_the_next_movement_starts_a_new_one() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=150, trip_break_s=120))
    leg1 = straight(2000)
    t1 = leg1[-1][0]
    stop = [(t1 + 1 + i, leg1[-1][1]) for i in range(150)]
    leg2 = [(t1 + 152 + t, north(2000 + m_lat_to_m(p[0] - LAT0))) for t, p in straight(2000)]
    released = run(gate, leg1 + stop + leg2)
    gate.end()
    trips = {f.trip_id for _, f in released}
    assert len(trips) == 2 and gate.stats.trips == 2
    park = leg1[-1][1]
    assert not any(cell_within(f.cell, *park, 150) for _, f in released)  # both the end and the next start


def m_lat_to_m(dlat: float) -> float:
    return dlat * M_PER_DEG


def test_trip_ids_are_random_and_rotate_at_utc_midnight() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=0))
    start = dt.datetime(2024, 5, 14, 23, 59, 0, tzinfo=dt.UTC).timestamp() - T0
    released = run(gate, [(start + t, p) for t, p in straight(1500)])
    by_day: dict[str, set[int]] = {}
    for i, f in released:
        day = dt.datetime.fromtimestamp(T0 + start + i, dt.UTC).date().isoformat()
        by_day.setdefault(day, set()).add(f.trip_id)
    assert len(by_day) == 2 and all(len(ids) == 1 for ids in by_day.values())
    assert by_day["2024-05-14"].isdisjoint(by_day["2024-05-15"])
    other: TripGate[int] = TripGate(settings_(trip_end_radius_m=0))
    assert {f.trip_id for _, f in run(other, straight(500))}.isdisjoint({f.trip_id for _, f in released})


def test_frames_in_a_fix_gap_leave_without_a_position_and_frames_before_the_first_fix_never() -> None:
    gate: TripGate[int] = TripGate(settings_(trip_end_radius_m=0))
    points: list[tuple[float, tuple[float, float] | None]] = [(0.0, None), (0.5, None)]
    points += [(1 + t, p) for t, p in straight(300)]
    points[10] = (points[10][0], None)
    released = run(gate, points)
    assert 0 not in {i for i, _ in released} and gate.stats.dropped_no_trip == 2
    gap = [f for i, f in released if i == 10]
    assert len(gap) == 1 and gap[0].cell is None and gap[0].heading is None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-0.02, 0.02), st.floats(-0.02, 0.02)), min_size=2, max_size=60),
       st.integers(8, 10), st.floats(0, 600))
def test_what_leaves_is_a_cell_at_the_resolution_a_sector_and_whole_kmh(
        moves: list[tuple[float, float]], res: int, radius: float) -> None:
    gate: TripGate[int] = TripGate(settings_(h3_resolution=res, trip_end_radius_m=radius))
    out = []
    for i, (dlat, dlon) in enumerate(moves):
        out += gate.offer(int((T0 + 5 * i) * 1000), Position(LAT0 + dlat, LON0 + dlon, (i * 37.0) % 360, 12.34), i)
    for _, f in out:
        assert f.cell is None or cell_problem(f.cell, res) is None
        assert f.heading is None or f.heading in HEADINGS
        assert f.speed_kmh is None or (f.speed_kmh == math.floor(f.speed_kmh) and f.speed_kmh == 12)


def test_settings_refuse_what_would_pinpoint_a_place() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="less than or equal to 10"):
        settings_(h3_resolution=12)
    with pytest.raises(ValidationError, match="used twice"):
        settings_(privacy_zones=[{"id": "home", "lat": 1, "lon": 1}, {"id": "home", "lat": 2, "lon": 2}])
