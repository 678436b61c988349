"""Per-object attributes computed from the in-memory frame: vehicle colour names, and age bracket /
gender on entrance cameras. Crops are views into the frame or arrays local to one call, dropped
when it returns; nothing here keeps pixels, faces, landmarks or feature vectors.

    >>> import numpy as np
    >>> red = np.zeros((40, 60, 3), np.uint8); red[:] = (30, 30, 200)       # BGR
    >>> colour_name(red)
    'red'
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt

from privaflow.edge.detect import onnx_session
from privaflow.edge.detections import Detections

# the closed vocabularies (GENDERS in the gender network's output order, COLOURS in the histogram's)
from privaflow.schemas.vocabulary import AGE_BRACKETS, COLOURS, GENDERS

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
    """An estimator that never estimates: both fields stay null."""

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


def age_bracket(age: float) -> str:
    """The bracket an estimated age in years falls in: "0-9", "10-19", ... "60-69", "70+"."""
    return AGE_BRACKETS[min(max(int(age // 10), 0), len(AGE_BRACKETS) - 1)]


MODELS = Path(__file__).parent / "models"
# CenterFace's five landmarks (eye centres, nose tip, mouth corners; the image-left one first) placed on
# dlib's mean face, the frame dlib's face chips, and so the age and gender networks, are aligned to: the
# means of its points 36-41 and 42-47, point 30, points 48 and 54 (mean_face_shape in dlib's
# image_transforms/interpolation.h). Unit square; `_CHIP_PADDING` adds a border as dlib does.
_FACE_TEMPLATE = np.array([[0.22549, 0.21599], [0.75476, 0.21599], [0.490127, 0.515625],
                           [0.254149, 0.780233], [0.726104, 0.780233]])
_CHIP_PADDING = 0.2  # dlib's default, the one the networks' chips were cut with
_WARP_PX = 128  # warp once at this size, then shrink (area-averaged) to each network's input
_DLIB_MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)
_AGE_YEARS = np.r_[0.25, np.arange(1, 81)].astype(np.float32)  # the age network's 81 classes


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 rotation + uniform scale + shift that best maps `src` points onto `dst` (least squares)."""
    s, d = src - src.mean(0), dst - dst.mean(0)
    norm = float((s**2).sum()) or 1.0
    a = float((s * d).sum()) / norm
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dst.mean(0) - rot @ src.mean(0))[:, None]])


def _network_input(chip_rgb: np.ndarray, size: int) -> np.ndarray:
    small = cv2.resize(chip_rgb, (size, size), interpolation=cv2.INTER_AREA)
    return ((small.astype(np.float32) - _DLIB_MEAN_RGB) / 256).transpose(2, 0, 1)[None]


class FaceAgeGender:
    """Age bracket and gender of the person in a box, read from their face; (None, None) when no
    clear face is found.

    CenterFace looks for a face in the top of the person box (the square top part, at least its
    upper half, plus a small margin), the strongest one is aligned on its five landmarks and dlib's
    age and gender networks read it. A face scoring under `min_face_score`, narrower than
    `min_face_px` frame pixels or turned away gives nothing: people seen from behind, in profile or
    far away get no guess. The models ship in edge/models (see its README); nothing is downloaded.
    Every crop, chip and landmark is a local of one call; the instance holds only the three ONNX
    sessions and its settings.

        >>> estimate = FaceAgeGender()
        >>> estimate(np.full((240, 120, 3), 128, np.uint8), np.array([0, 0, 120, 240], np.float32))
        (None, None)
    """

    def __init__(self, *, min_face_score: float = 0.5, min_face_px: float = 24, search_px: int = 192,
                 threads: int = 1, models_dir: str | Path = MODELS) -> None:
        self.min_face_score, self.min_face_px, self.search_px = min_face_score, min_face_px, search_px
        models = Path(models_dir)
        self._faces = onnx_session(models / "centerface.onnx", threads)
        self._age = onnx_session(models / "dlib-age-v1.onnx", threads)
        self._gender = onnx_session(models / "dlib-gender-v1.onnx", threads)

    def __call__(self, frame_bgr: np.ndarray, box_xyxy: npt.NDArray[np.float32]) -> Labels:
        h, w = frame_bgr.shape[:2]
        x1, y1, x2, y2 = np.asarray(box_xyxy, np.float64)
        margin = 0.1 * (x2 - x1)
        xa, xb = int(np.clip(x1 - margin, 0, w)), int(np.clip(x2 + margin, 0, w))
        ya = int(np.clip(y1 - margin, 0, h))
        yb = int(np.clip(y1 + min(y2 - y1, max((y2 - y1) / 2, x2 - x1)), 0, h))
        if xb - xa < self.min_face_px or yb - ya < self.min_face_px:
            return None, None
        found = self._find_face(frame_bgr[ya:yb, xa:xb])
        if found is None:
            return None, None
        on_chip = (_FACE_TEMPLATE + _CHIP_PADDING) / (1 + 2 * _CHIP_PADDING) * _WARP_PX
        to_chip = _similarity(found + (xa, ya), on_chip)
        chip = cv2.warpAffine(frame_bgr, to_chip, (_WARP_PX, _WARP_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        chip = cv2.cvtColor(chip, cv2.COLOR_BGR2RGB)
        (ages,) = self._age.run(None, {"images": _network_input(chip, 64)})
        (genders,) = self._gender.run(None, {"images": _network_input(chip, 32)})
        return age_bracket(float(ages[0] @ _AGE_YEARS)), GENDERS[int(genders[0].argmax())]

    def _find_face(self, region_bgr: np.ndarray) -> np.ndarray | None:
        """Landmarks (5x2, region pixels) of the region's strongest face, if clear, large and frontal.

        The region is scaled so its longer side is `search_px` and padded to multiples of 32, as
        CenterFace needs; only the heatmap's peak is decoded (one person, one face)."""
        h, w = region_bgr.shape[:2]
        scale = self.search_px / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        image = np.zeros((1, 3, -(-nh // 32) * 32, -(-nw // 32) * 32), np.float32)
        resized = cv2.resize(region_bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        image[0, :, :nh, :nw] = resized[:, :, ::-1].transpose(2, 0, 1)  # RGB
        heatmap, sizes, offsets, landmarks = self._faces.run(None, {"image": image})
        row, col = np.unravel_index(int(heatmap[0, 0].argmax()), heatmap.shape[2:])
        face_h, face_w = np.exp(sizes[0, :, row, col]) * 4
        if heatmap[0, 0, row, col] < self.min_face_score or face_w / scale < self.min_face_px:
            return None
        dy, dx = offsets[0, :, row, col]
        # CenterFace's own decoding: the box's corner clipped to the image, landmarks relative to it
        top = max(0.0, (row + dy + 0.5) * 4 - face_h / 2)
        left = max(0.0, (col + dx + 0.5) * 4 - face_w / 2)
        points = landmarks[0, :, row, col].reshape(5, 2)[:, ::-1] * (face_w, face_h) + (left, top)
        return np.asarray(points / scale, np.float64) if _frontal(points) else None


def _frontal(points: np.ndarray) -> bool:
    """Whether CenterFace's five landmarks show a face turned towards the camera.

    The networks read a profile as anyone (basketball2.png's player in profile: "20-29, female"). Turned away,
    the eyes close up against the eyes-to-mouth distance (at least 0.8 of it on frontal faces in our
    pictures, under 0.3 in profile) and the nose tip leaves the middle of the eye line (within 0.3
    eye gaps frontally)."""
    eyes = points[1] - points[0]
    eye_gap = float(np.hypot(*eyes))
    middle = points[:2].mean(0)
    eyes_to_mouth = float(np.hypot(*(points[3:].mean(0) - middle)))
    if eye_gap < 0.5 * eyes_to_mouth or eye_gap == 0:
        return False
    return abs(float((points[2] - middle) @ eyes)) / eye_gap**2 <= 0.4
