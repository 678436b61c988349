"""The detections record (DetectionBatch, `schemas.detections`): frames pack into columns and
unpack to the same frames, a layout that does not fit together is named, and the record can grow
new optional columns without breaking a reader of either version.

Requirement ids: T6 (track and trip ids marked pseudonymous; nothing in it can hold pixels), T9 (a record
the worker cannot use is refused with a reason, never half applied).
"""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privaflow.schemas.codec import load_schema
from privaflow.schemas.detections import (
    DETECTION_COLUMNS,
    OPTIONAL_COLUMNS,
    PROBE_COLUMNS,
    SCHEMA_NAME,
    BatchBuilder,
    batch_records,
    frame_columns,
    layout_problem,
    record_frames,
)

SCHEMA = fastavro.parse_schema(load_schema(SCHEMA_NAME))

floats = st.floats(0, 1, width=32)
detections = st.fixed_dictionaries({
    "track_id": st.integers(0, 2**62), "class_name": st.sampled_from(["person", "car", "traffic light"]),
    "confidence": floats, "x1": floats, "y1": floats, "x2": floats, "y2": floats, "foot_x": floats, "foot_y": floats,
}, optional={
    "speed_kmh": st.none() | st.floats(0, 200, width=32), "world_x_m": st.none() | st.floats(-1e3, 1e3, width=32),
    "world_y_m": st.none() | st.floats(-1e3, 1e3, width=32), "heading_deg": st.none() | st.floats(0, 360, width=32),
    "colour": st.none() | st.sampled_from(["red", "blue"]), "age_bracket": st.none() | st.just("20-29"),
    "gender": st.none() | st.sampled_from(["female", "male"]),
})


# a mobile camera's per-frame probe fields (edge/mobile.py), any of them absent for a frame
probe = st.fixed_dictionaries({}, optional={
    "trip_id": st.none() | st.integers(0, 2**63 - 1), "h3_cell": st.none() | st.sampled_from(["89283082837ffff"]),
    "probe_heading": st.none() | st.sampled_from(["N", "SW"]), "probe_speed_kmh": st.none() | st.integers(0, 130),
    "vehicles_ahead": st.none() | st.integers(0, 9), "ahead_band": st.none() | st.sampled_from(["near", "far"]),
    "people": st.none() | st.integers(0, 20),
    "furniture": st.lists(st.sampled_from(["stop sign", "traffic light"]), max_size=2),
})


@st.composite
def camera_frames(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 12))
    steps = draw(st.lists(st.integers(1, 500), min_size=n, max_size=n))
    return [{"site_id": "s", "camera_id": draw(st.sampled_from(["a", "b"])),
             "ts": 1_767_225_600_000 + sum(steps[:i + 1]), "frame_seq": i, "frame_width": 640,
             "frame_height": 480, "detected": draw(st.booleans()),
             "detections": draw(st.lists(detections, max_size=6)), **draw(probe)} for i in range(n)]


def _avro(record: dict[str, Any], schema: Any = SCHEMA, reader: Any = None) -> dict[str, Any]:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    buf.seek(0)
    out = fastavro.schemaless_reader(buf, schema, reader)
    assert isinstance(out, dict)
    return out


def _normal(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames as `record_frames` gives them back: every optional field there, absent ones None."""
    return [{**f, "detections": [{**dict.fromkeys(OPTIONAL_COLUMNS), **d} for d in f["detections"]]} for f in frames]


@settings(max_examples=150, deadline=None)
@given(frames=camera_frames(), per_record=st.integers(1, 5))
def test_frames_pack_into_records_and_unpack_to_the_same_frames(frames: list[dict[str, Any]], per_record: int) -> None:
    records = [_avro(r) for r in batch_records(frames, per_record)]
    assert all(layout_problem(r) is None for r in records)
    assert all(len(r["ts"]) <= per_record and len({r["camera_id"]}) == 1 for r in records)
    by_camera: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_camera.setdefault(r["camera_id"], []).extend(record_frames(r))
    for cam in by_camera:
        want = _normal([f for f in frames if f["camera_id"] == cam])
        got = by_camera[cam]
        assert [f["ts"] for f in got] == [f["ts"] for f in want]
        for g, w in zip(got, want, strict=True):
            # a frame without furniture reads back as none passed ([]) when its record has the column
            assert {c: g.get(c) or None if c == "furniture" else g.get(c) for c in PROBE_COLUMNS} == \
                {c: w.get(c) or None if c == "furniture" else w.get(c) for c in PROBE_COLUMNS}
            for gd, wd in zip(g["detections"], w["detections"], strict=True):
                for k, v in wd.items():
                    assert gd[k] == (pytest.approx(v, nan_ok=True) if isinstance(v, float) else v), k


def test_a_camera_without_optional_values_pays_nothing_for_their_columns() -> None:
    b = BatchBuilder("s", "c")
    b.add(1, 1, True, (640, 480), frame_columns([{c: 0.5 if c != "class_name" else "car" for c in DETECTION_COLUMNS}]))
    record = b.take()
    assert record is not None and all(record[c] is None for c in OPTIONAL_COLUMNS)
    assert b.take() is None and len(b) == 0
    with pytest.raises(ValueError, match="column x1 has 2 entries for 1 detections"):
        b.add(1, 1, True, (640, 480), {**frame_columns([{c: 0.5 for c in DETECTION_COLUMNS}]), "x1": [0.1, 0.2]})
    b.add(1, 1, True, (640, 480), frame_columns([]))
    with pytest.raises(ValueError, match="take"):
        b.add(2, 2, True, (320, 240), frame_columns([]))


def test_the_track_and_trip_id_columns_are_marked_pseudonymous_and_nothing_can_hold_pixels() -> None:
    fields = {f["name"]: f for f in load_schema(SCHEMA_NAME)["fields"]}
    assert fields["track_id"]["privacy"] == "pseudonymous" and fields["trip_id"]["privacy"] == "pseudonymous"
    assert "bytes" not in json.dumps(load_schema(SCHEMA_NAME)) and "fixed" not in json.dumps(load_schema(SCHEMA_NAME))


def _before_probe_columns() -> dict[str, Any]:
    """The record as it was before mobile cameras (issue 16) added their per-frame probe columns."""
    old = copy.deepcopy(load_schema(SCHEMA_NAME))
    old["fields"] = [f for f in old["fields"] if f["name"] not in PROBE_COLUMNS]
    return old


def test_new_optional_columns_are_read_by_old_and_new_readers() -> None:
    """BACKWARD (a new reader reads old records, the new columns null) and FORWARD (an old reader
    reads new records, skipping what it does not know): the registry's BACKWARD rule holds for the
    probe columns mobile cameras added."""
    frames = [{"site_id": "s", "camera_id": "c", "ts": 1_000 + i, "frame_seq": i, "frame_width": 640,
               "frame_height": 480, "detected": True, "detections": [], "trip_id": 7,
               "h3_cell": "89283082837ffff", "probe_speed_kmh": 40.0 + i} for i in range(3)]
    new = batch_records(frames, 5)[0]
    old_schema = fastavro.parse_schema(_before_probe_columns())
    old = {k: v for k, v in new.items() if k not in PROBE_COLUMNS}
    read_new = _avro(old, old_schema, SCHEMA)
    assert all(read_new[c] is None for c in PROBE_COLUMNS) and layout_problem(read_new) is None
    read_old = _avro(new, SCHEMA, old_schema)
    assert "h3_cell" not in read_old and read_old["ts"] == new["ts"] and layout_problem(read_old) is None
    assert _avro(new)["trip_id"] == [7, 7, 7] and _avro(new)["probe_speed_kmh"] == [40.0, 41.0, 42.0]


@pytest.mark.parametrize(("change", "words"), [
    ({"frame_seq": [1]}, "column frame_seq has 1 entries for 2 frames"),
    ({"detected": [True, True, True]}, "column detected has 3 entries for 2 frames"),
    ({"detection_counts": [1, 1]}, "(the sum of detection_counts)"),
    ({"detection_counts": [-1, 2]}, "negative detection count"),
    ({"ts": [2, 1]}, "not in capture order"),
    ({"colour": ["red", "blue"]}, "column colour has 2 entries for 1 detections"),
    ({"h3_cell": ["89283082837ffff"]}, "column h3_cell has 1 entries for 2 frames"),
])
def test_a_layout_that_does_not_fit_is_named(change: dict[str, Any], words: str) -> None:
    b = BatchBuilder("s", "c")
    det = {c: 0.5 if c != "class_name" else "car" for c in DETECTION_COLUMNS}
    b.add(1, 1, True, (640, 480), frame_columns([det]))
    b.add(2, 2, True, (640, 480), frame_columns([]))
    record = b.take()
    assert record is not None and layout_problem(record) is None
    record.update(change)
    problem = layout_problem(record)
    assert problem is not None and words in problem
