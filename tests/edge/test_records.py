"""Tracked detections -> a frame's columns -> DetectionBatch records that fit the Avro contract,
flushed after N frames or T ms; vehicle colour names."""

from __future__ import annotations

import io

import fastavro
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.edge.attributes import COLOURS, ColourVotes, colour_name, person_attributes, vehicle_colours
from privaflow.edge.detections import Detections, make_detections
from privaflow.edge.records import COCO_CLASSES, RecordBatcher, class_ids, frame_record
from privaflow.schemas.codec import parsed_schema
from privaflow.schemas.detections import SCHEMA_NAME, layout_problem, record_frames

SCHEMA = parsed_schema(SCHEMA_NAME)


def roundtrip(record: dict) -> dict:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, SCHEMA, record)
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, SCHEMA)
    assert isinstance(out, dict) and layout_problem(out) is None
    return out


def tracked(xyxy: list, conf: list, cls: list, tids: list) -> Detections:
    d = make_detections(xyxy, conf, cls)
    d.tracker_id = np.asarray(tids)
    return d


def one_record(*frames: dict) -> dict:
    """The frames as one record, through the Avro schema and back."""
    batcher = RecordBatcher("site", "cam", max_frames=len(frames))
    (record,) = [r for f in frames for r in batcher.add(f)]
    return roundtrip(record)


def test_record_normalises_boxes_and_foot_points() -> None:
    d = tracked([[64, 48, 192, 240], [600, 400, 700, 500]], [0.9, 0.5], [0, 2], [1, 2])
    r = one_record(frame_record(42, 1_700_000_000_123, (640, 480), False, d, [111, 222]))
    (f,) = record_frames(r)
    a, b = f["detections"]
    assert (f["frame_width"], f["frame_height"], f["frame_seq"], f["detected"]) == (640, 480, 42, False)
    assert (a["class_name"], b["class_name"]) == ("person", "car")
    assert (a["x1"], a["y1"], a["x2"], a["y2"]) == pytest.approx((0.1, 0.1, 0.3, 0.5))
    assert (a["foot_x"], a["foot_y"]) == pytest.approx((0.2, 0.5))
    assert (b["x2"], b["y2"]) == (1.0, 1.0), "boxes running off the frame are clipped"
    assert a["track_id"] == 111 and b["track_id"] == 222
    assert all(r[k] is None for k in ("world_x_m", "speed_kmh", "heading_deg", "colour", "age_bracket", "gender")), \
        "a camera without them pays nothing for the optional columns"


def test_record_round_trips_through_the_avro_schema() -> None:
    d = tracked([[10, 20, 30, 40]], [0.75], [2], [9])
    r = one_record(frame_record(1, 1_700_000_000_000, (100, 100), True, d, [2**47 + 5], world_xy=[[12.5, -3.0]],
                                speed_kmh=[31.0], heading_deg=[np.nan], colours=["red"], ages=[None],
                                genders=[None]))
    det = record_frames(r)[0]["detections"][0]
    assert det["track_id"] == 2**47 + 5 and det["colour"] == "red"
    assert det["world_x_m"] == pytest.approx(12.5) and det["speed_kmh"] == pytest.approx(31.0)
    assert det["heading_deg"] is None and r["heading_deg"] is None, "NaN (unknown) everywhere: no column"
    assert r["ts"] == [1_700_000_000_000]


def test_an_optional_column_is_kept_for_the_batch_when_one_frame_has_it() -> None:
    d = tracked([[10, 20, 30, 40]], [0.75], [2], [9])
    plain = frame_record(1, 1_000, (100, 100), True, d, [9])
    coloured = frame_record(2, 1_100, (100, 100), True, d, [9], colours=["blue"], speed_kmh=[12.0])
    r = one_record(plain, coloured, frame_record(3, 1_200, (100, 100), True, d, [9]))
    assert r["colour"] == [None, "blue", None]
    assert [None if v != v else v for v in r["speed_kmh"]] == [None, pytest.approx(12.0), None]


def test_empty_frame_is_still_a_frame_of_the_record() -> None:
    empty = frame_record(3, 0, (640, 360), True, make_detections(np.zeros((0, 4)), [], []), [])
    r = one_record(empty, empty)
    assert r["detection_counts"] == [0, 0] and r["frame_seq"] == [3, 3] and r["track_id"] == []


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 700), st.floats(-50, 500), st.floats(1, 300), st.floats(1, 300),
                          st.integers(0, 79), st.floats(0, 1)), max_size=20))
def test_any_tracked_boxes_make_a_valid_record(objs: list) -> None:
    xyxy = [[x, y, x + w, y + h] for x, y, w, h, _, _ in objs]
    d = tracked(xyxy or np.zeros((0, 4)), [c for *_, c in objs], [k for *_, k, _ in objs], list(range(len(objs))))
    r = one_record(frame_record(1, 1, (640, 480), True, d, list(range(len(objs)))))
    for det in record_frames(r)[0]["detections"]:
        assert 0 <= det["x1"] <= det["x2"] <= 1 and 0 <= det["y1"] <= det["y2"] <= 1
        assert det["foot_y"] == det["y2"] and det["class_name"] in COCO_CLASSES


def test_a_record_leaves_after_n_frames_or_t_ms_whichever_first() -> None:
    d = tracked([[10, 20, 30, 40]], [0.75], [2], [9])
    batcher = RecordBatcher("s", "c", max_frames=3, max_wait_ms=500)
    frames = [frame_record(i, 1000 + 100 * i, (100, 100), True, d, [9]) for i in range(8)]
    assert batcher.add(frames[0], now=10.0) == [] and batcher.add(frames[1], now=10.1) == []
    (full,) = batcher.add(frames[2], now=10.2)
    assert full["frame_seq"] == [0, 1, 2] and not batcher.due(now=99.0), "an empty batch is never due"
    batcher.add(frames[3], now=11.0)
    assert not batcher.due(now=11.49) and batcher.due(now=11.5), "T ms after its first frame"
    assert batcher.take()["frame_seq"] == [3]  # type: ignore[index]
    other = frame_record(4, 1400, (200, 100), True, d, [9])
    batcher.add(frames[4], now=12.0)
    (before,) = batcher.add(other, now=12.1)
    assert before["frame_seq"] == [4] and before["frame_width"] == 100, "a new frame size starts a new record"
    assert batcher.take()["frame_width"] == 200 and batcher.take() is None  # type: ignore[index]
    with pytest.raises(ValueError, match="at least 1 frame"):
        RecordBatcher("s", "c", max_frames=0)


def test_class_ids_names_unknown_classes() -> None:
    assert class_ids(["person", "bicycle", "car", "motorcycle", "bus", "truck"]) == [0, 1, 2, 3, 5, 7]
    with pytest.raises(ValueError, match="tram"):
        class_ids(["car", "tram"])


def test_the_record_schema_cannot_carry_pixels() -> None:
    """Nothing in DetectionBatch can hold an image, a crop or a feature vector (G1-G5, T6)."""
    def kinds(node: object) -> set[str]:
        if isinstance(node, str):
            return {node}
        if isinstance(node, list):
            return set().union(*(kinds(n) for n in node))
        if isinstance(node, dict):
            out = {str(node.get("type"))} if isinstance(node.get("type"), str) else set()
            for key in ("type", "items", "values"):
                if isinstance(node.get(key), dict | list):
                    out |= kinds(node[key])
            for f in node.get("fields", []):
                out |= kinds(f["type"])
            return out
        return set()

    from privaflow.schemas.codec import load_schema

    found = kinds(load_schema(SCHEMA_NAME))
    assert not found & {"bytes", "fixed", "map", "record"} - {"record"}
    assert "array" in found and found <= {"record", "array", "null", "string", "int", "long", "float", "boolean"}, \
        "arrays of numbers and strings, one per field: no nested record, bytes or map"


# ---------------------------------------------------------------- colours and attributes

def patch(bgr: tuple[int, int, int], h: int = 40, w: int = 60) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:] = bgr
    return img


@pytest.mark.parametrize(("bgr", "name"), [
    ((30, 30, 200), "red"), ((200, 80, 20), "blue"), ((40, 170, 40), "green"), ((0, 215, 235), "yellow"),
    ((245, 245, 245), "white"), ((15, 15, 15), "black"), ((150, 150, 150), "grey"), ((20, 60, 110), "brown"),
    ((0, 140, 255), "orange"), ((140, 30, 120), "purple"),
])
def test_colour_names_of_plain_patches(bgr: tuple[int, int, int], name: str) -> None:
    assert colour_name(patch(bgr)) == name


def test_a_red_car_with_dark_windows_and_tyres_is_red() -> None:
    car = patch((30, 30, 190), 60, 100)
    car[5:25, 20:80] = (20, 20, 20)  # windows
    car[48:, :] = (10, 10, 10)  # tyres and shadow
    assert colour_name(car) == "red"


def test_a_white_van_stays_white_despite_a_small_logo() -> None:
    van = patch((240, 240, 240), 60, 100)
    van[20:30, 40:55] = (200, 60, 20)
    assert colour_name(van) == "white"


def test_vehicle_colours_only_for_vehicles_from_the_box_centre() -> None:
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[50:150, 50:150] = (200, 80, 20)  # a blue car
    frame[60:140, 200:240] = (30, 30, 200)  # a person in red
    d = make_detections([[40, 40, 160, 160], [195, 55, 245, 145]], [0.9, 0.9], [2, 0])
    assert vehicle_colours(frame, d) == ["blue", None]
    assert colour_name(frame[0:0, 0:0]) is None


def test_colour_votes_smooth_a_shadowed_frame() -> None:
    votes = ColourVotes(keep=5)
    for name in ["red", "red", "black", "red"]:
        votes.vote([7], [name])
    assert votes.names([7, 8]) == ["red", None]
    votes.forget_except({8})
    assert votes.names([7]) == [None]
    assert set(COLOURS) >= {"red", "black"}


def test_person_attributes_hook_sees_people_only() -> None:
    seen = []

    def estimator(frame: np.ndarray, box: np.ndarray) -> tuple[str | None, str | None]:
        seen.append(tuple(box))
        return "30-39", "female"

    d = make_detections([[0, 0, 10, 20], [20, 0, 60, 20]], [0.9, 0.9], [0, 2])
    ages, genders = person_attributes(np.zeros((30, 70, 3), np.uint8), d, estimator)
    assert ages == ["30-39", None] and genders == ["female", None] and len(seen) == 1

