"""The demo's street camera as the intersection standard wants it (issue 17): it counts motor vehicles
only (T2: no people, no bicycles) and its privacy masks black out the sidewalks before detection (T4).
Runs the example config's camera on frames of the 1906 street film full of pedestrians."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from privaflow.edge.agent import build_detector
from privaflow.edge.privacy import PrivacyFilter
from privaflow.edge.records import COCO_CLASSES
from privaflow.schemas.site import load_site_config
from privaflow.schemas.vocabulary import VEHICLE_CLASSES
from tests.conftest import media_path

REPO = Path(__file__).resolve().parents[2]
FRAMES = (300, 450, 900, 1350)  # pedestrians crossing everywhere; a bus, a car


def _frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(media_path("sample.mp4")))
    out = []
    for n in FRAMES:
        cap.set(cv2.CAP_PROP_POS_FRAMES, n)
        ok, frame = cap.read()
        assert ok, n
        out.append(frame)
    cap.release()
    return out


def test_the_street_camera_sees_vehicles_only_and_never_its_sidewalks() -> None:
    site = load_site_config(REPO / "examples" / "site.yaml")
    street = site.camera("street")
    assert street.vehicles_only and tuple(street.classes) == VEHICLE_CLASSES
    privacy = PrivacyFilter(street.max_width, street.privacy_masks)
    everything = street.model_copy(update={"classes": ["person", "bicycle", *VEHICLE_CLASSES],
                                           "vehicles_only": False})
    vehicles, anything = build_detector(street), build_detector(everything)
    seen_vehicles: set[str] = set()
    seen_any: set[str] = set()
    for raw in _frames():
        analysed = privacy.apply(raw)
        h, w = analysed.shape[:2]
        for mask in street.privacy_masks:  # T4: the sidewalks are black before anything looks at them
            inside = np.zeros((h, w), np.uint8)
            cv2.fillPoly(inside, [np.round(np.asarray(mask) * [w - 1, h - 1]).astype(np.int32)], 1)
            eroded = cv2.erode(inside, np.ones((3, 3), np.uint8))  # the polygon's edge pixels may blend
            assert analysed[eroded.astype(bool)].max() == 0
        seen_vehicles |= {COCO_CLASSES[c] for c in vehicles(analysed).class_id.tolist()}
        seen_any |= {COCO_CLASSES[c] for c in anything(analysed).class_id.tolist()}
    assert "person" in seen_any  # the film is full of people ...
    assert seen_vehicles and seen_vehicles <= set(VEHICLE_CLASSES)  # ... and the camera reports none of them
