"""Intersection approaches (streams/approaches.py): lane presence, ground speeds, queue lengths through
the homography, approach crossings and turning movements; issue 17.

Requirement ids: T1 (congestion and its causes), T2 (vehicles only), T5 (position, speed, statistics per
place and direction, congestion), T6 (never matching a vehicle across cameras).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.site import SiteConfig, parse_site_config
from privaflow.streams.approaches import (
    MAX_QUEUE_GAP_M,
    ApproachBook,
    approach_geometry,
    fitted_speed_kmh,
    queue_length,
)
from privaflow.streams.consume import CameraState
from privaflow.streams.events import ApproachCrossing, ApproachSample, Crossing, TurningMovement
from privaflow_stack.simulate import NO_NOISE, REALISTIC
from privaflow_stack.simulate_intersection import simulate_intersection, truth_windows

T0 = 1_767_225_600_000
LANE_X = 1.75  # metres right of the road's centre line: the inbound lane
GROUND = np.float32([[-8, -5], [8, -5], [8, 150], [-8, 150]])  # the road the camera sees, metres


def camera_view(top: float, top_width: float, bottom: float, bottom_width: float, skew: float) -> np.ndarray:
    """Ground metres -> normalised image: a camera behind the stop line looking up the approach, the far
    end of the road narrower and higher in the picture (a perspective, not an affine map)."""
    image = np.float32([[0.5 + skew - bottom_width / 2, bottom], [0.5 + skew + bottom_width / 2, bottom],
                        [0.5 + top_width / 2, top], [0.5 - top_width / 2, top]])
    return cv2.getPerspectiveTransform(GROUND, image).astype(np.float64)


def project(g: np.ndarray, ground: np.ndarray) -> np.ndarray:
    p = np.c_[ground, np.ones(len(ground))] @ g.T
    return p[:, :2] / p[:, 2:3]


def site_for(g: np.ndarray, min_track_frames: int = 3) -> SiteConfig:
    h = np.linalg.inv(g)
    stop = project(g, np.array([[-7.0, 0.0], [7.0, 0.0]]))
    lane = project(g, np.array([[-0.5, 0.0], [4.0, 0.0], [4.0, 140.0], [-0.5, 140.0]]))
    return parse_site_config({
        "site_id": "s", "counting": {"min_track_frames": min_track_frames},
        "cameras": [{"id": "cam", "source": 0, "vehicles_only": True, "homography": (h / h[2, 2]).tolist()}],
        "lines": [{"id": "stop", "camera": "cam", "points": np.round(stop, 9).tolist(),
                   "directions": ["northbound", "southbound"]}],
        "zones": [{"id": "lane", "camera": "cam", "polygon": np.round(lane, 9).tolist()}],
        "intersections": [{"id": "x", "approaches": [{
            "id": "s", "camera": "cam", "road": "Main St", "compass": "S",
            "inbound": {"line": "stop", "direction": "northbound"}, "lanes": ["lane"]}]}]}, "<test>")


def frames_of(g: np.ndarray, vehicles: list[tuple[int, list[tuple[float, float]]]], rng: np.random.Generator,
              jitter: float, fps: float = 10.0, cls: str = "car") -> list[dict[str, Any]]:
    """vehicles: (track id, ground positions per frame); foot points projected and jittered."""
    n = max(len(p) for _, p in vehicles)
    out = []
    for f in range(n):
        dets = []
        for tid, path in vehicles:
            if f < len(path):
                x, y = project(g, np.array([path[f]]))[0] + rng.normal(0, jitter, 2)
                dets.append({"track_id": tid, "class_name": cls, "foot_x": float(np.clip(x, 0, 1)),
                             "foot_y": float(np.clip(y, 0, 1))})
        out.append({"ts": T0 + int(round(f * 1000 / fps)), "detections": dets})
    return out


views = st.builds(camera_view, top=st.floats(0.02, 0.3), top_width=st.floats(0.08, 0.5),
                  bottom=st.floats(0.85, 0.99), bottom_width=st.floats(0.6, 0.9), skew=st.floats(-0.05, 0.05))


# ---------------------------------------------------------------- geometry


@settings(max_examples=60, deadline=None)
@given(g=views, n=st.integers(1, 6), spacing=st.floats(6.0, 12.0), first=st.floats(0.5, 8.0),
       movers=st.integers(0, 3), seed=st.integers(0, 2**31))
def test_a_queue_of_stopped_vehicles_is_measured_within_a_few_metres(g: np.ndarray, n: int, spacing: float,
                                                                    first: float, movers: int, seed: int) -> None:
    """Covers T5 (congestion), T1: n standing vehicles `spacing` metres apart, the first `first` metres
    behind the stop line, seen through a perspective camera with a little jitter, and vehicles driving
    towards the queue further up the road: the queue is the distance of the last standing vehicle."""
    rng = np.random.default_rng(seed)
    site = site_for(g)
    book = ApproachBook.for_camera(site, "cam")
    assert book is not None
    true_length = first + (n - 1) * spacing
    frames = 30
    vehicles = [(i + 1, [(LANE_X, first + i * spacing)] * frames) for i in range(n)]
    for j in range(movers):  # 30 km/h towards the stop line, never within 20 m of the queue's end
        start = true_length + MAX_QUEUE_GAP_M + 2 + 8 * j + 30 / 3.6 * frames / 10
        vehicles.append((100 + j, [(LANE_X, start - 30 / 3.6 * f / 10) for f in range(frames)]))
    samples = [e for e in book.observe(frames_of(g, vehicles, rng, jitter=0.0004), []) if type(e) is ApproachSample]
    last = samples[-1]
    assert last.present == n + movers
    assert last.queue_m == pytest.approx(true_length, abs=3.0)
    assert set(last.tracks) == {tid for tid, _ in vehicles}


def test_the_queue_is_the_chain_from_the_stop_line() -> None:
    """A standing vehicle more than 20 m behind the last one of the queue is not part of it (parked or
    waiting to turn further up), nor is a queue that starts more than 20 m from the stop line."""
    assert queue_length([2.0, 9.0, 16.0]) == 16.0
    assert queue_length([2.0, 9.0, 16.0, 37.0]) == 16.0
    assert queue_length([25.0, 32.0]) == 0.0
    assert queue_length([]) == 0.0
    assert queue_length([-1.5, 6.0]) == 6.0  # a vehicle a little past the stop line still heads the queue


def test_lane_length_and_distance_come_from_the_homography() -> None:
    g = camera_view(0.1, 0.2, 0.95, 0.9, 0.05)
    site = site_for(g)
    (x, a), = site.approaches_for("cam")
    geo = approach_geometry(site, x, a)
    assert geo.lane_lengths_m == pytest.approx((140.0,), abs=1e-6)
    image = project(g, np.array([[LANE_X, 0.0], [LANE_X, 25.0], [-3.0, 80.0]]))
    from privaflow.streams.geometry import apply_homography

    ground = apply_homography(site.camera("cam").homography, image)
    assert geo.distance_m(ground) == pytest.approx([0, 25, 80], abs=1e-6)


# ---------------------------------------------------------------- speeds and presence


@settings(max_examples=40, deadline=None)
@given(g=views, speed_kmh=st.floats(3.0, 60.0), seed=st.integers(0, 2**31))
def test_a_vehicle_driving_through_the_lanes_has_its_ground_speed(g: np.ndarray, speed_kmh: float, seed: int) -> None:
    """Covers T5 (per-vehicle speed): no speed from the edge, so the book fits one over 2 s of positions."""
    rng = np.random.default_rng(seed)
    book = ApproachBook.for_camera(site_for(g), "cam")
    assert book is not None
    path = [(LANE_X, 100.0 - speed_kmh / 3.6 * f / 10) for f in range(40)]
    samples = [e for e in book.observe(frames_of(g, [(7, path)], rng, jitter=0.0002), [])
               if type(e) is ApproachSample]
    assert all(s.present == 1 for s in samples)
    measured = [s.speed_sum_kmh / s.speeds for s in samples if s.speeds]
    assert measured and len(measured) >= 30  # a speed from half a second of frames on
    assert measured[-1] == pytest.approx(speed_kmh, abs=1.5)


def test_the_edges_speed_wins_and_only_vehicles_in_the_lanes_count() -> None:
    g = camera_view(0.1, 0.3, 0.95, 0.9, 0.0)
    site = site_for(g, min_track_frames=5)
    book = ApproachBook.for_camera(site, "cam")
    assert book is not None
    rng = np.random.default_rng(0)
    frames = frames_of(g, [(1, [(LANE_X, 30.0)] * 8), (2, [(-5.0, 30.0)] * 8)], rng, 0.0)  # 2: the other lane
    for f in frames:
        f["detections"][0]["speed_kmh"] = 12.5
    frames[0]["detections"].append({"track_id": 3, "class_name": "person", "foot_x": frames[0]["detections"][0]
                                    ["foot_x"], "foot_y": frames[0]["detections"][0]["foot_y"]})  # not a vehicle
    samples = [e for e in book.observe(frames, []) if type(e) is ApproachSample]
    assert [s.present for s in samples] == [1] * 8
    assert all(s.speed_sum_kmh == 12.5 and s.speeds == 1 for s in samples)
    # a track counts as a distinct vehicle once it has proven itself (min_track_frames), as for crossings
    assert [s.tracks for s in samples] == [()] * 4 + [(1,)] * 4


def test_fitted_speed_ignores_jitter_around_a_standing_vehicle() -> None:
    rng = np.random.default_rng(1)
    trail = [(t * 100, float(rng.normal(0, 0.8)), float(rng.normal(50, 0.8))) for t in range(21)]
    assert fitted_speed_kmh(trail) < 5.0  # two points a second apart would read up to ~6-10 km/h
    assert fitted_speed_kmh([(0, 0.0, 0.0), (1000, 0.0, 10.0)]) == pytest.approx(36.0)


# ---------------------------------------------------------------- crossings and turning movements


def test_turning_movements_from_simulated_tracks_match_the_truth() -> None:
    """Covers T5 (paths, statistics per direction): the simulator's signalised intersection, one camera
    seeing all four approaches; every vehicle's entry and exit approach is known."""
    sim = simulate_intersection(300.0, noise=NO_NOISE, seed=5)
    st_ = CameraState.new(sim.site, "overhead")
    events = []
    for i in range(0, len(sim.frames), 10):
        events += st_.observe(sim.frames[i:i + 10])
    turns = Counter((e.entry_approach_id, e.exit_approach_id, e.class_name) for e in events
                    if type(e) is TurningMovement)
    truth = Counter((entry, exit_, cls) for _ts, entry, exit_, cls in sim.truth.turns)
    assert sum(truth.values()) > 50 and len({(e, x) for e, x, _ in truth}) >= 10  # straight, left and right
    assert turns == truth
    flows = Counter((e.approach_id, e.flow_direction) for e in events if type(e) is ApproachCrossing)
    assert flows == Counter((a, f) for _ts, a, f, _c, _col in sim.truth.crossings)


def test_turning_movements_with_detector_noise_stay_close_to_the_truth() -> None:
    sim = simulate_intersection(300.0, noise=REALISTIC, seed=6)
    st_ = CameraState.new(sim.site, "overhead")
    for i in range(0, len(sim.frames), 10):
        st_.windows.add(st_.observe(sim.frames[i:i + 10]))
    got: Counter[tuple[Any, ...]] = Counter()
    for c in st_.windows.close(2**62):
        if c.table == "turning_movements":
            got[(c.window_start_ms, *c.dims[1:])] += c.agg["count"]
    truth = Counter(truth_windows(sim.truth, {"congestion": 60, "intersection_volume": 300,
                                              "turning_movements": 900, "vehicle_colours": 900})["turning_movements"])
    wrong = sum(abs(got[k] - truth.get(k, 0)) for k in set(got) | set(truth))
    assert wrong / sum(truth.values()) <= 0.10  # id switches and missed frames cost a few


def test_a_vehicle_is_never_matched_across_cameras() -> None:
    """Covers T6: an entry seen by one camera and an exit by another are two approach crossings, never a
    turning movement, even when the two tracks happen to carry the same id."""
    site = parse_site_config({
        "site_id": "s",
        "cameras": [{"id": c, "source": 0, "vehicles_only": True, "homography": [[20, 0, 0], [0, 50, 0], [0, 0, 1]]}
                    for c in ("a", "b")],
        "lines": [{"id": f"{c}-stop", "camera": c, "points": [[0.1, 0.2], [0.9, 0.2]]} for c in ("a", "b")],
        "zones": [{"id": f"{c}-lane", "camera": c, "polygon": [[0.1, 0.2], [0.9, 0.2], [0.9, 0.9], [0.1, 0.9]]}
                  for c in ("a", "b")],
        "intersections": [{"id": "x", "approaches": [
            {"id": c, "camera": c, "road": "R", "compass": "N", "inbound": {"line": f"{c}-stop", "direction": "out"},
             "outbound": {"line": f"{c}-stop", "direction": "in"}, "lanes": [f"{c}-lane"]} for c in ("a", "b")]}]})
    book_a, book_b = ApproachBook.for_camera(site, "a"), ApproachBook.for_camera(site, "b")
    assert book_a is not None and book_b is not None
    enter = Crossing("s", "a", "a-stop", "out", "car", T0, 42, 30.0, None, None)
    leave = Crossing("s", "b", "b-stop", "in", "car", T0 + 5000, 42, 30.0, None, None)
    out = book_a.observe([], [enter]) + book_b.observe([], [leave])
    assert [type(e).__name__ for e in out] == ["ApproachCrossing", "ApproachCrossing"]
    assert [(e.approach_id, e.flow_direction) for e in out] == [("a", "entering"), ("b", "leaving")]  # type: ignore[union-attr]
    # the same camera seeing both: one movement, once
    same = book_a.observe([], [enter, Crossing("s", "a", "a-stop", "in", "car", T0 + 9000, 42, 30.0, None, None),
                               Crossing("s", "a", "a-stop", "in", "car", T0 + 9500, 42, 30.0, None, None)])
    assert [(e.entry_approach_id, e.exit_approach_id) for e in same if type(e) is TurningMovement] == [("a", "a")]
    # a person or a bicycle crossing a stop line is not a vehicle of the intersection (T2)
    assert book_a.observe([], [Crossing("s", "a", "a-stop", "out", "bicycle", T0, 7, None, None, None)]) == []


def test_state_survives_a_restart_and_entries_of_removed_approaches_are_forgotten() -> None:
    sim = simulate_intersection(120.0, noise=REALISTIC, seed=8)
    a = CameraState.new(sim.site, "overhead")
    half = len(sim.frames) // 2
    a.observe(sim.frames[:half])
    assert a.approaches is not None and len(a.approaches) > 0
    state = json.loads(json.dumps(a.to_state(), allow_nan=False))
    b = CameraState.from_state(sim.site, "overhead", state)
    assert b.observe(sim.frames[half:]) == a.observe(sim.frames[half:])
    # the site lost the east approach: a vehicle that entered there leaves without a turning movement
    data = sim.site.model_dump()
    data["intersections"][0]["approaches"] = [x for x in data["intersections"][0]["approaches"] if x["id"] != "e"]
    smaller = parse_site_config(data)
    restored = ApproachBook.from_state(smaller, "overhead", state["approaches"])
    assert restored is not None
    assert all(v.entry is None or v.entry[1] != "e" for v in restored._vehicles.values())
    assert ApproachBook.from_state(smaller, "overhead", None) is not None  # an older state without approaches
