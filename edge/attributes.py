"""Per-object attributes computed from the in-memory frame: vehicle colour names, and the hook
for age bracket / gender on entrance cameras. Crops are views into the frame, used and dropped
inside one call; nothing here keeps pixels, faces or feature vectors.

    >>> import numpy as np
    >>> red = np.zeros((40, 60, 3), np.uint8); red[:] = (30, 30, 200)       # BGR
    >>> colour_name(red)
    'red'
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from edge.detections import Detections

COLOURS = ("black", "white", "grey", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
Labels = tuple[str | None, str | None]  # (age bracket, gender)
VEHICLE_CLASSES = frozenset({1, 2, 3, 5, 7})  # COCO bicycle, car, motorcycle, bus, truck

# OpenCV hue runs 0..179; upper bounds of each hue band for saturated, bright-enough pixels.
_HUE_BANDS = ((8, "red"), (20, "orange"), (34, "yellow"), (85, "green"), (130, "blue"), (150, "purple"),
              (170, "pink"), (180, "red"))
_HUE_LUT = np.empty(180, object)
_lo = 0
for _hi, _name in _HUE_BANDS:
    _HUE_LUT[_lo:_hi] = _name
    _lo = _hi
_INDEX = {name: i for i, name in enumerate(COLOURS)}
_HUE_INDEX = np.array([_INDEX[n] for n in _HUE_LUT], np.intp)


def colour_histogram(crop_bgr: np.ndarray) -> npt.NDArray[np.float64]:
    """Share of the crop's pixels per named colour (in `COLOURS` order).

    Dark pixels are black, unsaturated ones white or grey by brightness, the rest named by hue;
    dark oranges and reds are brown. The crop is shrunk to at most 32x32 first: colour names need
    no detail, and it bounds the cost per box."""
    h, w = crop_bgr.shape[:2]
    if h == 0 or w == 0:
        return np.zeros(len(COLOURS))
    scale = min(1.0, 32 / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(crop_bgr, size, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
    hue, sat, val = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    idx = _HUE_INDEX[np.clip(hue, 0, 179)]
    warm = (idx == _INDEX["orange"]) | (idx == _INDEX["red"])
    idx = np.where(warm & (val < 150) & (sat >= 60), _INDEX["brown"], idx)
    grey = np.where(val >= 190, _INDEX["white"], _INDEX["grey"])
    idx = np.where(sat < 50, grey, idx)
    idx = np.where(val < 50, _INDEX["black"], idx)
    counts = np.bincount(idx, minlength=len(COLOURS)).astype(np.float64)
    total: np.float64 = counts.sum()
    return counts / total


def colour_name(crop_bgr: np.ndarray, min_chromatic_share: float = 0.25) -> str | None:
    """The dominant colour name of a crop, or None for an empty one.

    Windows, tyres and shadows make every car partly black and grey, so a chromatic colour wins
    when it covers at least `min_chromatic_share` of the crop; otherwise the commonest of
    black/white/grey does."""
    hist = colour_histogram(crop_bgr)
    if not hist.any():
        return None
    chromatic = hist[3:]
    if chromatic.max() >= min_chromatic_share:
        return COLOURS[3 + int(chromatic.argmax())]
    return COLOURS[int(hist[:3].argmax())]


def _centre_crop(frame: np.ndarray, box: npt.ArrayLike, margin: float) -> np.ndarray:
    """The box shrunk by `margin` on each side (less road and background), as a view."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = frame.shape[:2]
    xa, xb = int(np.clip(x1 + dx, 0, w)), int(np.clip(x2 - dx, 0, w))
    ya, yb = int(np.clip(y1 + dy, 0, h)), int(np.clip(y2 - dy, 0, h))
    return frame[ya:yb, xa:xb]


def vehicle_colours(frame: np.ndarray, detections: Detections, margin: float = 0.15) -> list[str | None]:
    """Colour name per detection: vehicles only, None for everything else."""
    out: list[str | None] = []
    class_ids = detections.class_id if detections.class_id is not None else np.full(len(detections), -1)
    for box, cls in zip(detections.xyxy, class_ids, strict=True):
        out.append(colour_name(_centre_crop(frame, box, margin)) if int(cls) in VEHICLE_CLASSES else None)
    return out


class ColourVotes:
    """A track's colour as the most frequent name over its last `keep` detections, so one
    shadowed frame does not repaint a car."""

    def __init__(self, keep: int = 9) -> None:
        self.keep = keep
        self._votes: dict[int, list[str]] = {}

    def vote(self, track_ids: npt.ArrayLike, names: list[str | None]) -> None:
        for tid, name in zip(np.asarray(track_ids).tolist(), names, strict=True):
            if name is not None:
                v = self._votes.setdefault(int(tid), [])
                v.append(name)
                del v[: -self.keep]

    def names(self, track_ids: npt.ArrayLike) -> list[str | None]:
        out: list[str | None] = []
        for tid in np.asarray(track_ids).tolist():
            v = self._votes.get(int(tid))
            out.append(max(set(v), key=v.count) if v else None)
        return out

    def forget_except(self, live_ids: set[int]) -> None:
        for tid in [t for t in self._votes if t not in live_ids]:
            del self._votes[tid]


class AttributeEstimator(Protocol):
    """Estimates (age bracket such as "20-29", gender "female"/"male") for one person box.

    Implementations get the in-memory frame and the person's pixel box, may look at the face
    region inside it, and must return only the two labels: no crop, landmark or embedding may
    outlive the call (G1). Either label may be None when unsure.
    """

    def __call__(self, frame_bgr: np.ndarray, box_xyxy: npt.NDArray[np.float32]) -> Labels:
        ...


class NoAttributes:
    """The default estimator: privaflow bundles no age/gender model yet, so both fields stay null."""

    def __call__(self, frame_bgr: np.ndarray, box_xyxy: npt.NDArray[np.float32]) -> Labels:
        return None, None


def person_attributes(frame: np.ndarray, detections: Detections,
                      estimator: AttributeEstimator) -> tuple[list[str | None], list[str | None]]:
    """(age brackets, genders) per detection; people only, None elsewhere."""
    ages: list[str | None] = []
    genders: list[str | None] = []
    class_ids = detections.class_id if detections.class_id is not None else np.full(len(detections), -1)
    for box, cls in zip(detections.xyxy, class_ids, strict=True):
        age, gender = estimator(frame, box) if int(cls) == 0 else (None, None)
        ages.append(age)
        genders.append(gender)
    return ages, genders
