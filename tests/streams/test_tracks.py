"""TrackBook: line crossings with hysteresis, zone visits, occupancy, speed, expiry and state.

Requirement ids: G1 (attributes at an entrance), G2 (flow lines, dwell), G3 (counts by class and
direction), G5 (crowding), T5 (statistics per place, direction, time; speed).
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.codec import epoch_ms, parsed_schema
from privaflow.schemas.site import SiteConfig, load_site_config, parse_site_config
from privaflow.streams.columns import Columns
from privaflow.streams.events import Crossing, OccupancySample, ZoneVisit, to_avro
from privaflow.streams.geometry import points_in_polygon
from privaflow.streams.tables import WindowStore
from privaflow.streams.tracks import SEGMENT_MARGIN, TrackBook, TrackTable
from privaflow_stack.simulate import HEAVY, NO_NOISE, REALISTIC, Noise, count_error, simulate

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000
WEST = [[0.05, 0.1], [0.45, 0.1], [0.45, 0.9], [0.05, 0.9]]
EAST = [[0.55, 0.1], [0.95, 0.1], [0.95, 0.9], [0.55, 0.9]]


def make_site(line: tuple[tuple[float, float], tuple[float, float]] = ((0.5, 0.1), (0.5, 0.9)),
              zones: list[dict[str, Any]] | None = None, homography: list[list[float]] | None = None,
              **counting: Any) -> SiteConfig:
    return parse_site_config({
        "site_id": "test-site",
        "cameras": [{"id": "cam", "source": 0, "homography": homography}],
        "lines": [{"id": "mid", "camera": "cam", "points": [list(line[0]), list(line[1])],
                   "directions": ["westbound", "eastbound"]}],
        "zones": zones if zones is not None else [],
        "counting": counting,
    }, "<test>")


def det(tid: int, x: float, y: float, cls: str = "person", **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"track_id": tid, "class_name": cls, "confidence": 0.9, "x1": x - 0.02, "y1": y - 0.1,
                         "x2": x + 0.02, "y2": y, "foot_x": x, "foot_y": y, "world_x_m": None,
                         "world_y_m": None, "speed_kmh": None, "heading_deg": None, "colour": None,
                         "age_bracket": None, "gender": None}
    d.update(extra)
    return d


def frame(ts: int | dt.datetime, *dets: dict[str, Any]) -> dict[str, Any]:
    return {"site_id": "test-site", "camera_id": "cam", "ts": ts, "frame_seq": 0, "frame_width": 640,
            "frame_height": 480, "detected": True, "detections": list(dets)}


def walk(book: TrackBook, points: list[tuple[float, float]], tid: int = 1, t0: int = T0, step_ms: int = 100,
         cls: str = "person", **extra: Any) -> list[Any]:
    out: list[Any] = []
    for i, (x, y) in enumerate(points):
        out += book.observe(frame(t0 + i * step_ms, det(tid, x, y, cls, **extra)))
    return out


def crossings(events: list[Any]) -> list[Crossing]:
    return [e for e in events if isinstance(e, Crossing)]


def visits(events: list[Any]) -> list[ZoneVisit]:
    return [e for e in events if isinstance(e, ZoneVisit)]


def line_points(a: np.ndarray, b: np.ndarray, n: int) -> list[tuple[float, float]]:
    return [(float(p[0]), float(p[1])) for p in np.linspace(a, b, n)]


# ---------------------------------------------------------------------------------------------- lines

def test_direction_follows_the_line_docstring_on_the_example_site() -> None:
    """campus-midline runs top to bottom with directions [westbound, eastbound]: walking from the right
    half of the picture to the left half (the line's left to its right) is westbound. Covers G3."""
    site = load_site_config(ROOT / "examples" / "site.yaml")
    book = TrackBook(site, "campus")
    out = crossings(walk(book, line_points(np.array([0.8, 0.5]), np.array([0.2, 0.5]), 20)))
    assert [(c.line_id, c.direction) for c in out] == [("campus-midline", "westbound")]
    back = crossings(walk(book, line_points(np.array([0.2, 0.6]), np.array([0.8, 0.6]), 20), tid=2,
                          t0=T0 + 10_000))
    assert [c.direction for c in back] == ["eastbound"]


@st.composite
def crossing_paths(draw: st.DrawFn) -> dict[str, Any]:
    """A line, and a straight path crossing its segment once, with per-frame jitter below the band."""
    h = draw(st.floats(0.005, 0.03))
    centre = np.array([draw(st.floats(0.4, 0.6)), draw(st.floats(0.4, 0.6))])
    theta = draw(st.floats(0, 2 * math.pi))
    half = draw(st.floats(0.15, 0.2))
    u = np.array([math.cos(theta), math.sin(theta)])
    a, b = centre - half * u, centre + half * u
    cross = a + draw(st.floats(0.25, 0.75)) * (b - a)
    left = np.array([u[1], -u[0]])  # on-screen left of a->b with y down
    phi = draw(st.floats(-math.pi / 4, math.pi / 4))  # at least 45 degrees from the line
    sign = draw(st.sampled_from([1.0, -1.0]))
    v = -sign * (math.cos(phi) * left + math.sin(phi) * u)  # from the `sign` side to the other
    jit = draw(st.floats(0.0, 0.95)) * h
    d0, d1 = (draw(st.floats(h + jit + 1e-3, 0.12)) for _ in range(2))
    start, end = cross - v * d0 / math.cos(phi), cross + v * d1 / math.cos(phi)
    n = draw(st.integers(5, 40))
    noise = draw(st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=n, max_size=n))
    pts = [(float(p[0] + jit / math.sqrt(2) * e[0]), float(p[1] + jit / math.sqrt(2) * e[1]))
           for p, e in zip(np.linspace(start, end, n), noise, strict=True)]
    return {"a": tuple(a), "b": tuple(b), "h": h, "points": pts, "from_left": sign > 0}


@settings(max_examples=150, deadline=None)
@given(case=crossing_paths())
def test_one_crossing_counts_once_whatever_the_jitter_below_the_band(case: dict[str, Any]) -> None:
    """Covers G3, T5: one passage is one count, in the right direction."""
    site = make_site(line=(case["a"], case["b"]), hysteresis=case["h"])
    out = crossings(walk(TrackBook(site, "cam"), case["points"]))
    assert [c.direction for c in out] == ["westbound" if case["from_left"] else "eastbound"]


@settings(max_examples=75, deadline=None)
@given(case=crossing_paths(), shift=st.integers(-10**12, 10**12))
def test_reversing_swaps_direction_and_time_shifts_change_nothing(case: dict[str, Any], shift: int) -> None:
    """Covers G3, T5: the direction is a property of the path; the count is not one of the clock."""
    site = make_site(line=(case["a"], case["b"]), hysteresis=case["h"])
    forward = crossings(walk(TrackBook(site, "cam"), case["points"]))
    backward = crossings(walk(TrackBook(site, "cam"), case["points"][::-1]))
    assert {c.direction for c in forward} | {c.direction for c in backward} == {"westbound", "eastbound"}
    assert len(forward) == len(backward) == 1
    shifted = crossings(walk(TrackBook(site, "cam"), case["points"], t0=T0 + shift))
    assert [(c.direction, c.ts_ms - shift) for c in shifted] == [(c.direction, c.ts_ms) for c in forward]


@settings(max_examples=100, deadline=None)
@given(h=st.floats(0.005, 0.05), theta=st.floats(0, 2 * math.pi),
       pts=st.lists(st.tuples(st.floats(-0.5, 1.5), st.floats(-0.999, 0.999)), min_size=1, max_size=60))
def test_jitter_inside_the_band_never_counts(h: float, theta: float, pts: list[tuple[float, float]]) -> None:
    """A box wobbling on the line (anywhere along it, even past its ends) never counts. Covers G3."""
    c = np.array([0.5, 0.5])
    u = np.array([math.cos(theta), math.sin(theta)])
    a, b = c - 0.3 * u, c + 0.3 * u
    left = np.array([u[1], -u[0]])
    site = make_site(line=(tuple(a), tuple(b)), hysteresis=h, min_track_frames=1)
    path = [tuple(a + t * (b - a) + s * h * left) for t, s in pts]
    assert crossings(walk(TrackBook(site, "cam"), path)) == []


def test_the_band_edge_is_inclusive() -> None:
    """'At least hysteresis' on each side counts; a hair less does not."""
    site = make_site(hysteresis=0.125, min_track_frames=1)  # binary fractions: exact arithmetic
    assert len(crossings(walk(TrackBook(site, "cam"), [(0.625, 0.5), (0.375, 0.5)]))) == 1
    assert crossings(walk(TrackBook(site, "cam"), [(0.6249, 0.5), (0.3751, 0.5)])) == []


def test_zigzag_counts_at_most_once_per_direction() -> None:
    site = make_site(min_track_frames=1)
    xs = [0.7, 0.3, 0.7, 0.3, 0.7, 0.3]
    out = crossings(walk(TrackBook(site, "cam"), [(x, 0.5) for x in xs]))
    assert [c.direction for c in out] == ["westbound", "eastbound"]


def test_only_the_segment_counts_with_a_small_margin() -> None:
    """Passing the infinite line beyond the segment's end does not count; within the margin it does."""
    site = make_site(min_track_frames=1)  # segment from y=0.1 to y=0.9
    beyond = 0.9 + 2.5 * SEGMENT_MARGIN
    assert crossings(walk(TrackBook(site, "cam"), [(0.7, beyond), (0.3, beyond)])) == []
    near = 0.9 + 0.5 * SEGMENT_MARGIN
    assert len(crossings(walk(TrackBook(site, "cam"), [(0.7, near), (0.3, near)]))) == 1


def test_walking_around_the_end_of_a_segment_is_not_a_crossing() -> None:
    site = make_site(min_track_frames=1)
    around = [(0.7, 0.5), (0.7, 0.97), (0.5, 0.99), (0.3, 0.97), (0.3, 0.5)]
    book = TrackBook(site, "cam")
    assert crossings(walk(book, around)) == []
    # ...and coming back through the segment afterwards is one crossing
    back = crossings(walk(book, [(0.3, 0.5), (0.7, 0.5)], t0=T0 + 1000))
    assert [c.direction for c in back] == ["eastbound"]


def test_young_tracks_are_held_back_then_released_with_their_own_time() -> None:
    """min_track_frames=3: a crossing completed at the 2nd observation is emitted at the 3rd, stamped
    with the 2nd frame's time; a track that never reaches 3 observations counts nothing."""
    site = make_site(min_track_frames=3, track_expiry_s=1)
    book = TrackBook(site, "cam")
    assert crossings(walk(book, [(0.7, 0.5), (0.3, 0.5)])) == []
    out = crossings(book.observe(frame(T0 + 200, det(1, 0.25, 0.5))))
    assert [(c.direction, c.ts_ms) for c in out] == [("westbound", T0 + 100)]
    flicker = TrackBook(site, "cam")
    walk(flicker, [(0.7, 0.5), (0.3, 0.5)], tid=9)
    assert crossings(flicker.observe(frame(T0 + 5000, det(10, 0.1, 0.1)))) == []
    assert len(flicker) == 1  # track 9 expired silently


def test_class_is_the_majority_label() -> None:
    site = make_site(min_track_frames=1)
    labels = ["car", "truck", "car", "car", "truck", "car"]
    book = TrackBook(site, "cam")
    out = []
    for i, (x, c) in enumerate(zip(np.linspace(0.8, 0.2, 6), labels, strict=True)):
        out += book.observe(frame(T0 + 100 * i, det(1, float(x), 0.5, c)))
    assert [c.class_name for c in crossings(out)] == ["car"]


def test_attributes_and_record_speed_travel_with_the_crossing() -> None:
    """Covers G1 (attributes at an entrance) and T5 (speed per vehicle)."""
    site = make_site(min_track_frames=1)
    book = TrackBook(site, "cam")
    book.observe(frame(T0, det(1, 0.7, 0.5, age_bracket="30-39")))
    book.observe(frame(T0 + 100, det(1, 0.6, 0.5, gender="female", speed_kmh=4.5)))
    (c,) = crossings(book.observe(frame(T0 + 200, det(1, 0.4, 0.5, speed_kmh=5.0))))
    assert (c.age_bracket, c.gender, c.speed_kmh) == ("30-39", "female", 5.0)


def test_speed_from_the_homography_when_the_record_has_none() -> None:
    """100 m per normalised unit; 0.01 per 100 ms is 10 m/s = 36 km/h. Covers T5."""
    site = make_site(homography=[[100, 0, 0], [0, 100, 0], [0, 0, 1]], min_track_frames=1)
    xs = [0.60 - 0.01 * i for i in range(21)]
    out = crossings(walk(TrackBook(site, "cam"), [(x, 0.5) for x in xs], cls="car"))
    assert len(out) == 1 and out[0].speed_kmh == pytest.approx(36.0, rel=1e-6)
    worlds = TrackBook(site, "cam")  # world positions from the record win over the homography
    out2: list[Any] = []
    for i, x in enumerate(xs):
        out2 += worlds.observe(frame(T0 + 100 * i, det(1, x, 0.5, "car", world_x_m=2 * i, world_y_m=0.0)))
    assert crossings(out2)[0].speed_kmh == pytest.approx(72.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------- zones

def two_zones(**counting: Any) -> SiteConfig:
    return make_site(zones=[{"id": "west", "camera": "cam", "polygon": WEST, "capacity": 4},
                            {"id": "east", "camera": "cam", "polygon": EAST}], **counting)


def test_entry_exit_dwell_and_transition() -> None:
    """Covers G2: dwell per zone and zone-to-zone flow with travel time."""
    book = TrackBook(two_zones(min_track_frames=1), "cam")
    path = [(0.2, 0.5)] * 30 + [(0.5, 0.5)] * 5 + [(0.8, 0.5)] * 10 + [(0.99, 0.99)]
    out = visits(walk(book, path))
    assert [(v.zone_id, v.kind) for v in out] == [("west", "ENTRY"), ("west", "EXIT"), ("east", "ENTRY"),
                                                   ("east", "EXIT")]
    entry_w, exit_w, entry_e, exit_e = out
    assert entry_w.ts_ms == T0 and entry_w.from_zone_id is None and entry_w.travel_s is None
    assert exit_w.dwell_s == pytest.approx(3.0)
    assert (entry_e.from_zone_id, entry_e.travel_s) == ("west", pytest.approx(0.5))
    assert exit_e.dwell_s == pytest.approx(1.0)


def test_neighbouring_zones_record_the_origin_whatever_the_config_order() -> None:
    site = make_site(zones=[{"id": "east", "camera": "cam", "polygon": [[0.5, 0.1], [0.95, 0.1], [0.95, 0.9],
                                                                         [0.5, 0.9]]},
                            {"id": "west", "camera": "cam", "polygon": [[0.05, 0.1], [0.5, 0.1], [0.5, 0.9],
                                                                         [0.05, 0.9]]}], min_track_frames=1)
    out = visits(walk(TrackBook(site, "cam"), [(0.2, 0.5), (0.8, 0.5)]))
    entry_e = [v for v in out if v.kind == "ENTRY" and v.zone_id == "east"]
    assert entry_e[0].from_zone_id == "west" and entry_e[0].travel_s == 0.0


def test_an_expiring_track_leaves_its_zone_at_its_last_sighting() -> None:
    book = TrackBook(two_zones(min_track_frames=1, track_expiry_s=2), "cam")
    walk(book, [(0.2, 0.5)] * 11)  # last seen at T0 + 1000
    out = visits(book.observe(frame(T0 + 3500)))
    assert [(v.zone_id, v.kind, v.ts_ms, v.dwell_s) for v in out] == [("west", "EXIT", T0 + 1000, 1.0)]
    assert len(book) == 0
    again = TrackBook(two_zones(min_track_frames=1, track_expiry_s=2), "cam")
    walk(again, [(0.8, 0.5)] * 3)
    assert [v.kind for v in visits(again.expire(T0 + 2300))] == ["EXIT"]
    assert [v.kind for v in visits(TrackBook.expire_all(again))] == []


@settings(max_examples=75, deadline=None)
@given(offsets=st.lists(st.floats(-0.0199, 0.0199), min_size=2, max_size=40), y=st.floats(0.2, 0.8))
def test_standing_on_a_zone_edge_makes_no_events(offsets: list[float], y: float) -> None:
    """Jitter within the hysteresis band of an outline neither enters nor leaves. Covers G2, G5."""
    site = make_site(zones=[{"id": "west", "camera": "cam", "polygon": WEST}], min_track_frames=1)
    book = TrackBook(site, "cam")
    walk(book, [(0.2, 0.5), (0.2, 0.5)])  # confidently inside first
    out = walk(book, [(0.45 + o, y) for o in offsets], t0=T0 + 1000)
    assert visits(out) == []


def test_occupancy_counts_people_per_zone_per_frame() -> None:
    """Covers G5: people present, per zone per frame; vehicles do not count."""
    book = TrackBook(two_zones(), "cam")
    rng = np.random.default_rng(3)
    for i in range(20):
        pts = rng.uniform(0, 1, size=(12, 2))
        classes = rng.choice(["person", "car"], size=12)
        dets = [det(100 * i + j, float(p[0]), float(p[1]), str(c)) for j, (p, c) in enumerate(zip(pts, classes,
                                                                                                   strict=True))]
        samples = [e for e in book.observe(frame(T0 + 100 * i, *dets)) if isinstance(e, OccupancySample)]
        people = pts[classes == "person"]
        expect = [int(points_in_polygon(people, WEST).sum()), int(points_in_polygon(people, EAST).sum())]
        assert [(s.zone_id, s.present, s.ts_ms) for s in samples] == \
            [("west", expect[0], T0 + 100 * i), ("east", expect[1], T0 + 100 * i)]
    empty = [e for e in book.observe(frame(T0 + 5000)) if isinstance(e, OccupancySample)]
    assert [s.present for s in empty] == [0, 0]


# ---------------------------------------------------------------------------------------------- input handling

def test_datetime_timestamps_as_fastavro_decodes_them() -> None:
    site = make_site(min_track_frames=1)
    when = dt.datetime.fromtimestamp(T0 / 1000, tz=dt.UTC) + dt.timedelta(milliseconds=7)
    assert epoch_ms(when) == T0 + 7
    assert epoch_ms(when.replace(tzinfo=None)) == T0 + 7
    book = TrackBook(site, "cam")
    book.observe(frame(when, det(1, 0.7, 0.5)))
    (c,) = crossings(book.observe(frame(when + dt.timedelta(milliseconds=100), det(1, 0.3, 0.5))))
    assert c.ts_ms == T0 + 107


def test_replayed_or_out_of_order_frames_are_skipped() -> None:
    site = make_site(min_track_frames=1)
    book = TrackBook(site, "cam")
    book.observe(frame(T0, det(1, 0.7, 0.5)))
    assert len(crossings(book.observe(frame(T0 + 100, det(1, 0.3, 0.5))))) == 1
    assert book.observe(frame(T0 + 100, det(1, 0.3, 0.5))) == []
    assert book.observe(frame(T0 + 50, det(1, 0.7, 0.5))) == []
    assert book.skipped_frames == 2


def test_observe_many_equals_observe_frame_by_frame() -> None:
    site = load_site_config(ROOT / "examples" / "site.yaml")
    sim = simulate(site, "campus", 120, 10, 40, REALISTIC, seed=5)
    one = TrackBook(site, "campus")
    expected = [e for f in sim.frames for e in one.observe(f)]
    many = TrackBook(site, "campus")
    got: list[Any] = []
    for i in range(0, len(sim.frames), 7):
        got += many.observe_many(iter(sim.frames[i:i + 7]))
    assert got == expected
    assert many.to_state() == one.to_state()


def test_events_encode_to_the_internal_event_schemas() -> None:
    """Crossings and zone visits become line_crossing / zone_event records (internal topics only)."""
    site = parse_site_config({**load_site_config(ROOT / "examples" / "site.yaml").model_dump(), "cameras": [
        {"id": "campus", "source": 0, "attributes": True, "homography": [[30, 0, 0], [0, 20, 0], [0, 0, 1]]}],
        "lines": [{"id": "m", "camera": "campus", "points": [[0.5, 0.15], [0.5, 1.0]]}],
        "zones": [{"id": "w", "camera": "campus", "polygon": WEST}, {"id": "e", "camera": "campus",
                                                                      "polygon": EAST}], "intersections": []},
        "<test>")
    sim = simulate(site, "campus", 120, 10, 30, REALISTIC, seed=2)
    book = TrackBook(site, "campus")
    events = [e for f in sim.frames for e in book.observe(f)] + book.expire_all()
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["Crossing"] and kinds["ZoneVisit"] and kinds["OccupancySample"]
    for e in events:
        if isinstance(e, OccupancySample):
            with pytest.raises(TypeError):
                to_avro(e)  # type: ignore[arg-type]
            continue
        record = to_avro(e)
        schema = parsed_schema("line_crossing" if isinstance(e, Crossing) else "zone_event")
        assert validate(record, schema, raise_errors=True)
        assert record["ts"] == e.ts_ms and record["track_id"] == e.track_id
    assert any(e.speed_kmh is not None for e in events if isinstance(e, Crossing))
    assert any(e.from_zone_id for e in events if isinstance(e, ZoneVisit))


# ---------------------------------------------------------------------------------------------- state

@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), cut=st.floats(0.05, 0.95))
def test_state_round_trips_through_json_with_identical_behaviour(seed: int, cut: float) -> None:
    """A restarted worker restores the book from its changelog and carries on exactly as before."""
    site = load_site_config(ROOT / "examples" / "site.yaml")
    sim = simulate(site, "campus", 90, 10, 30, HEAVY, seed=seed)
    at = int(len(sim.frames) * cut)
    straight = TrackBook(site, "campus")
    for f in sim.frames[:at]:
        straight.observe(f)
    restored = TrackBook.from_state(site, "campus", json.loads(json.dumps(straight.to_state())))
    for f in sim.frames[at:]:
        assert restored.observe(f) == straight.observe(f)
    assert restored.expire_all() == straight.expire_all()


def test_a_snapshot_does_not_change_when_the_book_carries_on() -> None:
    book = TrackBook(two_zones(min_track_frames=1), "cam")
    walk(book, [(0.7, 0.5)] * 3)
    state = book.to_state()
    frozen = json.dumps(state)
    walk(book, [(0.3, 0.5), (0.2, 0.5)], t0=T0 + 1000)
    assert json.dumps(state) == frozen


def test_state_survives_a_config_change_by_id() -> None:
    site = two_zones(min_track_frames=1)
    book = TrackBook(site, "cam")
    walk(book, [(0.8, 0.5)] * 3)
    fewer = make_site(zones=[{"id": "east", "camera": "cam", "polygon": EAST}], min_track_frames=1)
    restored = TrackBook.from_state(fewer, "cam", json.loads(json.dumps(book.to_state())))
    out = visits(restored.observe(frame(T0 + 1000, det(1, 0.5, 0.5))))
    assert [(v.zone_id, v.kind, v.dwell_s) for v in out] == [("east", "EXIT", 1.0)]
    with pytest.raises(ValueError):
        TrackBook.from_state(site, "cam", {**book.to_state(), "version": 99})


# ---------------------------------------------------------------------------------------------- ground truth

JUNCTION: dict[str, Any] = {
    "site_id": "junction",
    "cameras": [{"id": "junction", "source": 0, "classes": ["person", "bicycle", "car", "bus", "truck"],
                 "homography": [[40, 0, 0], [0, 30, 0], [0, 0, 1]]}],
    "lines": [
        {"id": "ns", "camera": "junction", "points": [[0.5, 0.1], [0.5, 0.9]], "directions": ["west", "east"]},
        {"id": "ew", "camera": "junction", "points": [[0.1, 0.5], [0.9, 0.5]], "directions": ["south", "north"]},
        {"id": "diag", "camera": "junction", "points": [[0.6, 0.95], [0.95, 0.6]]},
    ],
    "zones": [
        {"id": "nw", "camera": "junction", "polygon": [[0.05, 0.05], [0.4, 0.05], [0.4, 0.4], [0.05, 0.4]]},
        {"id": "ne", "camera": "junction", "polygon": [[0.6, 0.05], [0.95, 0.05], [0.95, 0.4], [0.6, 0.4]]},
        {"id": "sw", "camera": "junction", "polygon": [[0.05, 0.6], [0.4, 0.6], [0.4, 0.95], [0.05, 0.95]]},
    ],
}


def pipeline_errors(site: SiteConfig, camera: str, noise: Noise, n_objects: int, seed: int) -> tuple[float, float]:
    """(line counting error, transition error) of TrackBook + WindowStore against the simulator's truth,
    read from the closed windows as a partner would see them (before k-anonymity)."""
    sim = simulate(site, camera, duration_s=n_objects * 2.5, fps=10, n_objects=n_objects, noise=noise, seed=seed)
    book, store = TrackBook(site, camera), WindowStore(site)
    for f in sim.frames:
        store.add(book.observe(f))
    store.add(book.expire_all())
    volume: Counter[Any] = Counter()
    flows: Counter[Any] = Counter()
    for w in store.close(2**62):
        if w.table == "traffic_volume":
            volume[w.dims] += w.agg["count"]
        elif w.table == "flow_lines":
            flows[w.dims] += w.agg["count"]
    assert sum(store.late_dropped.values()) == 0
    return count_error(volume, Counter(dict(sim.truth.crossings))), count_error(flows, sim.truth.transitions)


@pytest.mark.parametrize("scene", ["campus", "junction"])
@pytest.mark.parametrize(("noise", "line_limit", "flow_limit"), [
    (NO_NOISE, 0.0, 0.0), (REALISTIC, 0.02, 0.05), (HEAVY, 0.05, 0.15)], ids=["none", "realistic", "heavy"])
def test_counts_match_ground_truth(scene: str, noise: Noise, line_limit: float, flow_limit: float) -> None:
    """500 simulated objects per scene: exact without noise, within 2% of truth per line, direction
    and class at realistic noise (5% misses, 1% false positives, jitter 0.005, 1% id switches), and
    bounded under heavy noise. Covers G2, G3, T5 (bench/bench_counting.py prints the figures)."""
    site = (load_site_config(ROOT / "examples" / "site.yaml") if scene == "campus"
            else parse_site_config(JUNCTION, "<junction>"))
    line_err, flow_err = pipeline_errors(site, scene, noise, 500, seed=11)
    assert line_err <= line_limit
    assert flow_err <= flow_limit


# ---------------------------------------------------------------------------------------------- many cameras at once

@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_many_cameras_in_one_pass_equal_each_camera_frame_by_frame(seed: int) -> None:
    """A worker passes every camera of a Kafka batch through one TrackTable call, cut wherever the
    batches happen to end: each camera's events (and their order) and state are those of its own
    frames one by one. Covers T5, T9 (results do not depend on batching)."""
    import random

    site = parse_site_config({**JUNCTION, "cameras": [*JUNCTION["cameras"], {"id": "north", "source": 1}],
                              "zones": [*JUNCTION["zones"], {"id": "yard", "camera": "north", "polygon": WEST}],
                              "counting": {"min_track_frames": 3, "track_expiry_s": 2}}, "<test>")
    frames = {cam: simulate(site, cam, 40, 10, 25, HEAVY, seed=seed + i).frames
              for i, cam in enumerate(("junction", "north"))}
    rng = random.Random(seed)
    frames["north"] = [f for i, f in enumerate(frames["north"]) if not 100 <= i < 140]  # a camera pauses
    expected = {}
    for cam, fs in frames.items():
        book = TrackBook(site, cam)
        expected[cam] = [e for f in fs for e in book.observe(f)] + book.expire_all()
    table = TrackTable(site)
    got: dict[str, list[Any]] = {cam: [] for cam in frames}
    at = dict.fromkeys(frames, 0)
    while any(at[c] < len(frames[c]) for c in frames):
        batch = []
        for cam in rng.sample(sorted(frames), 2):
            if at[cam] < len(frames[cam]) and rng.random() < 0.8:
                k = rng.randint(1, 30)
                batch.append((cam, Columns.from_frames(frames[cam][at[cam]:at[cam] + k])))
                at[cam] += k
        for (cam, _), events in zip(batch, table.observe(batch), strict=True):
            got[cam] += events
    for cam in frames:
        assert got[cam] + table.expire(cam, 2**62) == expected[cam], cam


def test_state_written_by_version_1_is_read_and_carries_on_identically() -> None:
    """A worker of the previous version wrote a dict per track; this one writes a list per field and
    still reads the old form (what the changelog holds after an upgrade)."""
    site = load_site_config(ROOT / "examples" / "site.yaml")
    sim = simulate(site, "campus", 60, 10, 30, REALISTIC, seed=8)
    book = TrackBook(site, "campus")
    book.observe_many(sim.frames[:300])
    state = book.to_state()
    assert state["version"] == 2 and isinstance(state["tracks"]["id"], list)
    t = state["tracks"]
    v1 = {**state, "version": 1, "tracks": [
        {**{f: t[f][i] for f in t if f != "pending"}, "pending": t["pending"].get(str(t["id"][i]), [])}
        for i in range(len(t["id"]))]}
    old = TrackBook.from_state(site, "campus", json.loads(json.dumps(v1)))
    assert old.to_state() == state
    assert old.observe_many(sim.frames[300:]) + old.expire_all() == book.observe_many(sim.frames[300:]) + \
        book.expire_all()
    with pytest.raises(ValueError, match="neither 2 nor 1"):
        TrackBook.from_state(site, "campus", {**state, "version": 3})
