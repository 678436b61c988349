"""ByteTrack (with Kalman prediction between detections) and ground motion from a homography."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.detections import make_detections
from privaflow.edge.tracking import ByteTrack, GroundMotion, box_iou

PERSON, CAR = 0, 2


def boxes_at(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Two objects: a person walking right 5 px/frame, a car driving left 8 px/frame."""
    person = [40 + 5 * k, 100, 80 + 5 * k, 200]
    car = [500 - 8 * k, 250, 600 - 8 * k, 310]
    return np.array([person, car], np.float32), np.array([PERSON, CAR])


def test_ids_stay_with_their_objects_through_detect_every_n() -> None:
    bt = ByteTrack(fps=10)
    for k in range(30):
        truth, cls = boxes_at(k)
        if k % 3 == 0:
            out = bt.update(make_detections(truth, [0.9, 0.8], cls))
        else:
            out = bt.predict()
        assert len(out) == 2
        order = np.argsort(out.tracker_id)
        assert out.tracker_id[order].tolist() == [1, 2]
        assert out.class_id[order].tolist() == [PERSON, CAR]
        if k >= 6:  # once the velocity is learnt, predictions follow the objects between detections
            assert np.diag(box_iou(out.xyxy[order], truth)).min() > 0.8, k


def test_predictions_move_with_the_learnt_velocity() -> None:
    bt = ByteTrack(fps=10)
    for k in range(10):
        bt.update(make_detections(boxes_at(k)[0][:1], [0.9], [PERSON]))
    predicted = [bt.predict().xyxy[0, 0] for _ in range(3)]
    assert np.allclose(np.diff(predicted), 5, atol=0.6)


def test_low_confidence_boxes_keep_a_track_alive() -> None:
    """ByteTrack's second stage: a blurred, low-scoring box still continues the track."""
    bt = ByteTrack(fps=10)
    for k in range(4):
        bt.update(make_detections(boxes_at(k)[0][:1], [0.9], [PERSON]))
    out = bt.update(make_detections(boxes_at(4)[0][:1], [0.3], [PERSON]))
    assert out.tracker_id.tolist() == [1] and math.isclose(out.confidence[0], 0.3, rel_tol=1e-6)


def test_a_low_confidence_box_alone_starts_nothing() -> None:
    bt = ByteTrack(fps=10)
    for _ in range(3):
        out = bt.update(make_detections([[10, 10, 50, 90]], [0.3], [PERSON]))
    assert len(out) == 0


def test_an_occluded_object_keeps_its_id() -> None:
    bt = ByteTrack(fps=10, lost_s=2.0)
    for k in range(6):
        bt.update(make_detections(boxes_at(k)[0][:1], [0.9], [PERSON]))
    for _ in range(6, 11):  # behind a pillar for half a second
        assert len(bt.update(make_detections(np.zeros((0, 4)), [], []))) == 0
    out = bt.update(make_detections(boxes_at(11)[0][:1], [0.9], [PERSON]))
    assert out.tracker_id.tolist() == [1]


def test_a_lost_track_is_forgotten_after_lost_s() -> None:
    bt = ByteTrack(fps=10, lost_s=1.0)
    bt.update(make_detections([[10, 10, 50, 90]], [0.9], [PERSON]))
    for _ in range(12):
        bt.update(make_detections(np.zeros((0, 4)), [], []))
    assert len(bt.tracks) == 0
    for _ in range(2):
        out = bt.update(make_detections([[10, 10, 50, 90]], [0.9], [PERSON]))
    assert out.tracker_id.tolist() == [2], "a new object, a new id"


def test_a_one_frame_blip_never_gets_an_id() -> None:
    bt = ByteTrack(fps=10)
    bt.update(make_detections([[10, 10, 50, 90]], [0.9], [PERSON]))
    out = bt.update(make_detections([[10, 10, 50, 90], [300, 300, 340, 380]], [0.9, 0.9], [PERSON, PERSON]))
    assert out.tracker_id.tolist() == [1]
    out = bt.update(make_detections([[10, 10, 50, 90]], [0.9], [PERSON]))
    assert out.tracker_id.tolist() == [1] and len(bt.tracks) == 1


def test_a_car_never_continues_a_persons_track() -> None:
    bt = ByteTrack(fps=10)
    bt.update(make_detections([[10, 10, 50, 90]], [0.9], [PERSON]))
    bt.update(make_detections([[10, 10, 50, 90]], [0.9], [CAR]))
    out = bt.update(make_detections([[10, 10, 50, 90]], [0.9], [CAR]))
    assert out.class_id.tolist() == [CAR] and out.tracker_id.tolist() == [2]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 11)), min_size=1, max_size=12, unique=True),
       st.integers(2, 5))
def test_separate_objects_get_distinct_stable_ids(cells: list[tuple[int, int]], steps: int) -> None:
    """Objects on a grid (never overlapping) keep one id each, whatever their number."""
    xyxy = np.array([[40 * i, 40 * j, 40 * i + 30, 40 * j + 30] for i, j in cells], np.float32)
    bt = ByteTrack(fps=10)
    first = bt.update(make_detections(xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy))))
    assert sorted(first.tracker_id.tolist()) == list(range(1, len(cells) + 1))
    for _ in range(steps):
        out = bt.update(make_detections(xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy))))
        assert sorted(out.tracker_id.tolist()) == sorted(first.tracker_id.tolist())
        order = np.argsort(out.tracker_id)
        assert np.allclose(out.xyxy[order], xyxy[np.argsort(first.tracker_id)], atol=1)


# ---------------------------------------------------------------- ground motion

# Normalised image -> metres: x right = east, 50 m across; y down = south, 40 m deep; origin top-left.
H = [[50.0, 0.0, 0.0], [0.0, -40.0, 40.0], [0.0, 0.0, 1.0]]


def test_ground_position_from_the_homography() -> None:
    world = GroundMotion(H).to_ground([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]])
    assert np.allclose(world, [[0, 0], [25, 20], [50, 40]])


@settings(max_examples=50, deadline=None)
@given(heading=st.floats(0, 359.9), speed_kmh=st.floats(3, 80))
def test_speed_and_heading_of_a_straight_walk(heading: float, speed_kmh: float) -> None:
    m = GroundMotion(H, window_s=1.0)
    v = speed_kmh / 3.6  # m/s
    rad = math.radians(heading)
    for i in range(15):  # 10 fps, 1.5 s
        t = i * 0.1
        east, north = 25 + v * t * math.sin(rad), 20 + v * t * math.cos(rad)
        foot = [[east / 50, (40 - north) / 40]]
        world, speed, head = m.update([7], foot, 1_000_000 + round(t * 1000))
    assert np.allclose(world[0], [east, north], atol=1e-6)
    assert math.isclose(speed[0], speed_kmh, rel_tol=0.01)
    assert min(abs(head[0] - heading), 360 - abs(head[0] - heading)) < 0.5


def test_no_speed_before_enough_history_and_no_heading_when_still() -> None:
    m = GroundMotion(H, min_span_s=0.3)
    _, speed, head = m.update([1], [[0.5, 0.5]], 0)
    assert np.isnan(speed[0]) and np.isnan(head[0])
    for t in (100, 200, 300, 400):
        _, speed, head = m.update([1], [[0.5, 0.5]], t)
    assert speed[0] == 0 and np.isnan(head[0]), "a parked car has a speed (zero) but no heading"


def test_history_of_vanished_tracks_is_forgotten() -> None:
    m = GroundMotion(H, forget_s=5)
    m.update([1, 2], [[0.1, 0.1], [0.2, 0.2]], 0)
    m.update([2], [[0.2, 0.2]], 6000)
    assert set(m._history) == {2}
