"""The icon scene read from DetectionBatch records (partner/scenes.py; G4, G5: people as icons): the
scene is the record's last frame, its boxes and classes only, and for a mobile camera that frame's
probe values; a record whose columns do not fit together is ignored, the last good scene stays."""

from __future__ import annotations

from typing import Any

from privaflow.partner.scenes import LatestFrames, scene_of
from privaflow.schemas.detections import batch_records
from privaflow.schemas.site import parse_site_config

CELL = "89283082837ffff"


def _det(cls: str, x1: float) -> dict[str, Any]:
    return {"track_id": 99, "class_name": cls, "confidence": 0.9, "x1": x1, "y1": 0.2, "x2": x1 + 0.1, "y2": 0.4,
            "foot_x": x1 + 0.05, "foot_y": 0.4}


def _frame(i: int, dets: list[dict[str, Any]], **probe: Any) -> dict[str, Any]:
    return {"site_id": "s", "camera_id": "taxi", "ts": 1_000 + i * 200, "frame_seq": i, "frame_width": 640,
            "frame_height": 480, "detected": True, "detections": dets, **probe}


def test_the_scene_is_the_last_frame_of_a_record_with_its_probe_values() -> None:
    frames = [_frame(0, [_det("car", 0.1), _det("bus", 0.5)], trip_id=7, h3_cell=CELL, probe_heading="N",
                     probe_speed_kmh=40.0, vehicles_ahead=2, ahead_band="near", people=0),
              _frame(1, [_det("person", 0.3)], trip_id=7, h3_cell=CELL, probe_heading="NE", probe_speed_kmh=None,
                     vehicles_ahead=0, ahead_band=None, people=1)]
    (record,) = batch_records(frames, 5)
    scene = scene_of(record, "mobile")
    assert scene["ts"] == 1_200 and scene["objects"] == [{"class_name": "person", "box": [0.3, 0.2, 0.4, 0.4]}]
    assert scene["probe"] == {"h3_cell": CELL, "probe_heading": "NE", "probe_speed_kmh": None, "vehicles_ahead": 0,
                              "ahead_band": None, "people": 1}
    assert "track_id" not in str(scene) and "trip_id" not in str(scene)  # nothing that links frames
    assert scene_of(record, "fixed")["probe"] is None


def test_a_record_whose_columns_do_not_fit_leaves_the_last_good_scene() -> None:
    site = parse_site_config({"site_id": "s", "cameras": [{"id": "taxi", "source": 0, "classes": ["car"]}]})
    frames = LatestFrames(site)
    (good,) = batch_records([_frame(0, [_det("car", 0.1)])], 5)
    frames.apply(good)
    broken = {**good, "ts": [5_000], "detection_counts": [3]}  # a newer frame with more objects than rows
    frames.apply(broken)
    scene = frames.scene("taxi")
    assert scene is not None and scene["ts"] == 1_000
