"""Object detectors: the bundled NanoDet and an adapter for users' own YOLO ONNX exports.

Every detector is a callable `frame_bgr -> Detections` whose boxes are in the frame's pixels
and whose class ids are COCO's 80-class ids (0 person, 1 bicycle, 2 car, ...). Decoding and
NMS are vectorised numpy; nothing is downloaded: the default model ships in edge/models/.

>>> import numpy as np
>>> detector = load_detector({"kind": "nanodet", "classes": [0]})
>>> len(detector(np.zeros((480, 640, 3), np.uint8)))
0
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from pydantic import ValidationError

from privaflow.edge.detections import Detections, box_iou, make_detections
from privaflow.schemas.site import DetectorSpec

BUNDLED_NANODET = Path(__file__).parent / "models" / "nanodet-g-416.onnx"
Flavour = Literal["v5", "v8", "yolox"]
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.intp]

# Bounds the (n, n) IoU matrix in NMS; an untrained or badly thresholded model cannot blow memory.
MAX_CANDIDATES = 2000


class Detector(Protocol):
    def __call__(self, frame_bgr: np.ndarray) -> Detections: ...


class DetectorError(ValueError):
    """A model that cannot serve as the configured detector; says which file and what was expected.
    Raised when the detector is built, never on the first frame."""


@dataclass(frozen=True)
class Resize:
    """The affine map from frame pixels to network-input pixels: `x_in = x * scale + pad`."""

    scale: tuple[float, float]  # (x, y)
    pad: tuple[float, float]  # (x, y)

    def to_frame(self, xyxy: Floats, frame_shape: tuple[int, ...]) -> Floats:
        """Map network-input boxes back to the frame, clipped to its borders."""
        sx, sy = self.scale
        px, py = self.pad
        out = (xyxy - np.array([px, py, px, py], np.float32)) / np.array([sx, sy, sx, sy], np.float32)
        h, w = frame_shape[:2]
        return np.clip(out, 0, np.array([w, h, w, h], np.float32)).astype(np.float32)


def fit(
    frame: np.ndarray, size: tuple[int, int], *, keep_ratio: bool, centre: bool, pad_value: int = 114
) -> tuple[np.ndarray, Resize]:
    """Resize `frame` to `size` (height, width): stretched, or letterboxed (aspect kept, padded
    centred or at the bottom-right as YOLOX trains) when `keep_ratio`."""
    h, w = frame.shape[:2]
    out_h, out_w = size
    if not keep_ratio:
        resized = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        return resized, Resize((out_w / w, out_h / h), (0.0, 0.0))
    r = min(out_h / h, out_w / w)
    new_w, new_h = max(1, round(w * r)), max(1, round(h * r))
    left, top = ((out_w - new_w) // 2, (out_h - new_h) // 2) if centre else (0, 0)
    canvas = np.full((out_h, out_w, 3), pad_value, np.uint8)
    canvas[top : top + new_h, left : left + new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    # The exact per-axis scale, not r: rounding new_w/new_h must not shift the inverse map.
    return canvas, Resize((new_w / w, new_h / h), (float(left), float(top)))


def nms(xyxy: Floats, scores: Floats, class_id: npt.NDArray[np.integer], iou_threshold: float) -> Ints:
    """Indices kept by greedy class-aware NMS, best score first. Boxes of different classes never
    suppress each other; a box is dropped when its IoU with a kept better box exceeds the threshold."""
    order = np.argsort(-scores, kind="stable")
    b = xyxy[order]
    iou = box_iou(b, b)
    cls = class_id[order]
    suppresses = (iou > iou_threshold) & (cls[:, None] == cls[None, :])
    keep = np.ones(len(order), bool)
    for i in range(len(order)):  # greedy NMS is order-dependent; this is the one per-box loop
        if keep[i]:
            keep[i + 1 :] &= ~suppresses[i, i + 1 :]
    return order[keep]


def select(
    xyxy: Floats,
    scores: Floats,
    class_id: npt.NDArray[np.integer],
    *,
    conf_threshold: float,
    iou_threshold: float,
    resize: Resize,
    frame_shape: tuple[int, ...],
    classes: frozenset[int] | None = None,
) -> Detections:
    """Threshold, keep only `classes` (COCO ids) if given, NMS, and map boxes to frame pixels."""
    wanted = scores >= conf_threshold
    if classes is not None:
        wanted &= np.isin(class_id, list(classes))
    keep = np.flatnonzero(wanted)
    if len(keep) > MAX_CANDIDATES:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_CANDIDATES]]
    xyxy, scores, class_id = xyxy[keep], scores[keep], class_id[keep]
    kept = nms(xyxy, scores, class_id, iou_threshold)
    return make_detections(resize.to_frame(xyxy[kept], frame_shape), scores[kept], class_id[kept])


def onnx_session(model_path: str | Path, threads: int) -> ort.InferenceSession:
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    options = ort.SessionOptions()
    # One frame at a time on a small edge box: parallelism inside ops, none between them.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own classes (InvalidProtobuf, Fail, InvalidGraph, ...)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DetectorError(f"{path}: not a model onnxruntime can load ({type(e).__name__}: {reason[:300]}); "
                            "expected an ONNX export of the detector") from None
    inputs = session.get_inputs()
    shape = list(inputs[0].shape) if inputs else []
    channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))  # 3, or dynamic
    if len(inputs) != 1 or not channels_ok:
        got = ", ".join(f"{i.name} {list(i.shape)}" for i in inputs) or "none"
        raise DetectorError(f"{path}: the model's inputs are {got}; expected one image input of shape "
                            "[1, 3, height, width]")
    return session


def _static_hw(session: ort.InferenceSession) -> tuple[int, int] | None:
    shape = session.get_inputs()[0].shape  # rank 4, checked by onnx_session
    h, w = shape[2], shape[3]
    return (h, w) if isinstance(h, int) and isinstance(w, int) else None


def _blank(size: tuple[int, int]) -> np.ndarray:
    return np.zeros((size[0], size[1], 3), np.uint8)


class NanoDetDetector:
    """COCO detector on the bundled NanoDet, 416x416 (NanoDet-g weights; see edge/models/README.md).

    Each grid cell votes for its best class; boxes are GFL distance distributions (4 sides x 11
    bins) whose expectation times the stride is the distance from the cell centre to each side.
    `classes` keeps only those COCO ids (e.g. {0, 1, 2, 3, 5, 7} for people and vehicles).
    """

    STRIDES = (8, 16, 32)
    BINS = 11  # reg_max 10 -> 11 bins per side
    OUTPUTS = ("cls_s8", "cls_s16", "cls_s32", "reg_s8", "reg_s16", "reg_s32")
    # NanoDet's training normalisation, in RGB order. Measured against the RGB/255 that the TF.js
    # package's own pipeline feeds: higher scores on the true classes of darknet's sample pictures
    # and more people and vehicles found in vtest.avi (edge/models/README.md has the figures).
    MEAN_RGB = np.array([123.675, 116.28, 103.53], np.float32)
    STD_RGB = np.array([58.395, 57.12, 57.375], np.float32)

    def __init__(
        self,
        model_path: str | Path | None = None,
        conf_threshold: float = 0.35,
        iou_threshold: float = 0.5,
        classes: Iterable[int] | None = None,
        threads: int = 2,
    ) -> None:
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.classes = frozenset(classes) if classes is not None else None
        self._session = onnx_session(model_path or BUNDLED_NANODET, threads)
        self._input = self._session.get_inputs()[0].name
        self._size = _static_hw(self._session) or (416, 416)
        h, w = self._size
        centres, strides = [], []
        for s in self.STRIDES:
            ys, xs = np.mgrid[0 : h // s, 0 : w // s]
            # Old NanoDet (pre "Plus") puts priors at cell centres, hence the half cell.
            centres.append((np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * s)
            strides.append(np.full(xs.size, s))
        self._centres = np.concatenate(centres).astype(np.float32)
        self._strides = np.concatenate(strides).astype(np.float32)
        self._bins = np.arange(self.BINS, dtype=np.float32)
        self._path = Path(model_path or BUNDLED_NANODET)
        self._check_outputs()

    def _check_outputs(self) -> None:
        """The model must give NanoDet's six head outputs; found now, not on the first frame."""
        names = [o.name for o in self._session.get_outputs()]
        missing = [n for n in self.OUTPUTS if n not in names]
        expected = f"NanoDet's outputs {', '.join(self.OUTPUTS)} (cls [1, cells, 80], reg [1, cells, 44])"
        if missing:
            raise DetectorError(f"{self._path}: outputs are {names}; expected {expected}")
        h, w = self._size
        x = np.zeros((1, 3, h, w), np.float32)
        outs = self._session.run(list(self.OUTPUTS), {self._input: x})
        for s, cls, reg in zip(self.STRIDES, outs[:3], outs[3:], strict=True):
            cells = (h // s) * (w // s)
            if cls.shape != (1, cells, 80) or reg.shape != (1, cells, 4 * self.BINS):
                raise DetectorError(f"{self._path}: stride {s} outputs have shapes {list(cls.shape)} and "
                                    f"{list(reg.shape)}; expected {expected} with {cells} cells at "
                                    f"{h}x{w}")

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        # Letterbox with black borders as NanoDet's own keep-ratio transform does: on vtest.avi
        # and dog.jpg it gave tighter boxes and fewer false people than a plain stretch.
        image, resize = fit(frame_bgr, self._size, keep_ratio=True, centre=True, pad_value=0)
        x = (image[:, :, ::-1].astype(np.float32) - self.MEAN_RGB) / self.STD_RGB
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        outs = self._session.run(list(self.OUTPUTS), {self._input: x})
        cls = np.concatenate(outs[:3], axis=1)[0]
        reg = np.concatenate(outs[3:], axis=1)[0]
        class_id = cls.argmax(1)
        scores = cls[np.arange(len(cls)), class_id]
        live = scores >= self.conf_threshold
        # Decode only cells that can survive; the softmax over all ~3.5k cells is the costly part.
        logits = reg[live].reshape(-1, 4, self.BINS)
        p = np.exp(logits - logits.max(axis=2, keepdims=True))
        dist = (p @ self._bins) / p.sum(axis=2) * self._strides[live, None]
        c = self._centres[live]
        xyxy = np.concatenate([c - dist[:, :2], c + dist[:, 2:]], axis=1).astype(np.float32)
        return select(
            xyxy,
            scores[live],
            class_id[live],
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            resize=resize,
            frame_shape=frame_bgr.shape,
            classes=self.classes,
        )


class YoloDetector:
    """Adapter for a user's own YOLO ONNX export; returns COCO ids through `class_map`.

    Output layouts by `flavour`:
    - "v5": [1, N, 5+C] rows of (cx, cy, w, h, objectness, C class scores), input pixels.
    - "v8" (also YOLO11): [1, 4+C, N] columns of (cx, cy, w, h, C class scores), no objectness;
      the transposed [1, N, 4+C] is accepted too.
    - "yolox": [1, N, 5+C] like v5 but raw grid offsets (strides 8/16/32, log w/h) unless the
      export decoded them (`decoded=True`).
    Preprocessing follows each family's training: v5/v8 letterbox centred, RGB/255; YOLOX
    letterbox top-left, BGR 0..255. Pad value 114 for all.
    `class_map` maps the model's class ids to COCO ids; classes it leaves out are dropped.
    Without it the model is taken to speak COCO ids already.
    """

    def __init__(
        self,
        model_path: str | Path,
        input_size: tuple[int, int] | None = None,
        class_map: Mapping[int, int] | None = None,
        conf_threshold: float = 0.35,
        iou_threshold: float = 0.5,
        flavour: Flavour = "v8",
        classes: Iterable[int] | None = None,
        threads: int = 2,
        decoded: bool = False,
    ) -> None:
        if flavour not in get_args(Flavour):
            raise ValueError(f"flavour must be one of {get_args(Flavour)}, got {flavour!r}")
        self.conf_threshold = conf_threshold
        self.iou_threshold = iou_threshold
        self.flavour = flavour
        self.decoded = decoded
        self._session = onnx_session(model_path, threads)
        inp = self._session.get_inputs()[0]
        self._input = inp.name
        self._dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self._path = Path(model_path)
        static = _static_hw(self._session)
        if input_size is not None and static is not None and tuple(input_size) != static:
            raise DetectorError(f"{self._path}: detector.input_size {list(input_size)} differs from the model's "
                                f"fixed input {list(static)} (height, width); leave input_size out, the model "
                                "fixes it")
        self._size = static or ((int(input_size[0]), int(input_size[1])) if input_size else (640, 640))
        self._class_map = dict(class_map) if class_map is not None else None
        self.classes = frozenset(classes) if classes is not None else None
        if flavour == "yolox" and not decoded:
            self._grid, self._grid_stride = _yolox_grid(self._size)
        self._check_output()

    def _check_output(self) -> None:
        """One inference on a blank picture: a wrong output layout is an error now, not on the first frame."""
        layout = {"v8": "[1, 4+classes, anchors] or [1, anchors, 4+classes]",
                  "v5": "[1, anchors, 5+classes]", "yolox": "[1, anchors, 5+classes]"}[self.flavour]
        try:
            out = np.asarray(self._run(_blank(self._size)))
        except Exception as e:  # the model itself failed on an input of the size it declares
            raise DetectorError(f"{self._path}: inference on a blank {self._size[0]}x{self._size[1]} picture "
                                f"failed ({type(e).__name__}: {str(e).strip()[:300]})") from None
        # v8: the shorter axis holds 4 box values and the class scores; v5/yolox: rows of 5 + classes
        ok = out.ndim == 3 and out.shape[0] == 1 and (
            min(out.shape[1:]) >= 5 if self.flavour == "v8" else out.shape[2] >= 6)
        if not ok:
            raise DetectorError(f"{self._path}: first output has shape {list(out.shape)}; a YOLO {self.flavour} "
                                f"export gives {layout}")
        try:
            self._decode(out[0].astype(np.float32))
        except ValueError as e:
            raise DetectorError(f"{self._path}: {e}") from None

    def _run(self, image: np.ndarray) -> Any:
        if self.flavour == "yolox":
            x = image.transpose(2, 0, 1)[None].astype(self._dtype)
        else:
            x = (image[:, :, ::-1].transpose(2, 0, 1)[None] / 255.0).astype(self._dtype)
        return self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        image, resize = fit(frame_bgr, self._size, keep_ratio=True, centre=self.flavour != "yolox")
        out = np.asarray(self._run(image)[0], np.float32)
        xywh, scores, model_class = self._decode(out)
        class_id = self._to_coco(model_class)
        keep = class_id >= 0
        xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        return select(
            xyxy[keep],
            scores[keep],
            class_id[keep],
            conf_threshold=self.conf_threshold,
            iou_threshold=self.iou_threshold,
            resize=resize,
            frame_shape=frame_bgr.shape,
            classes=self.classes,
        )

    def _decode(self, out: Floats) -> tuple[Floats, Floats, Ints]:
        """(cx, cy, w, h) in input pixels, best-class score and model class id per row."""
        if self.flavour == "v8":
            # N anchors (thousands) always outnumber 4+C channels, so the long axis is N.
            rows = out.T if out.shape[0] < out.shape[1] else out
            xywh, cls, obj = rows[:, :4], rows[:, 4:], None
        else:
            xywh, obj, cls = out[:, :4], out[:, 4], out[:, 5:]
        if self.flavour == "yolox" and not self.decoded:
            if len(out) != len(self._grid):
                raise ValueError(
                    f"YOLOX output has {len(out)} rows but a {self._size} input has {len(self._grid)} "
                    "grid cells; if the export decodes boxes itself, set detector.decoded=True"
                )
            s = self._grid_stride[:, None]
            xywh = np.concatenate([(xywh[:, :2] + self._grid) * s, np.exp(xywh[:, 2:]) * s], axis=1)
        model_class = cls.argmax(1)
        scores = cls[np.arange(len(cls)), model_class]
        if obj is not None:
            scores = scores * obj
        return xywh.astype(np.float32), scores.astype(np.float32), model_class

    def _to_coco(self, model_class: Ints) -> Ints:
        """COCO id per row, -1 where the class map leaves the model's class out."""
        if self._class_map is None:
            return model_class.astype(np.intp)
        table = np.full(max([*self._class_map, int(model_class.max(initial=0))]) + 1, -1, np.intp)
        table[list(self._class_map)] = list(self._class_map.values())
        return table[model_class]


def _yolox_grid(size: tuple[int, int], strides: tuple[int, ...] = (8, 16, 32)) -> tuple[Floats, Floats]:
    """Per-row (x, y) cell index and stride, in YOLOX's row order: stride-major, then row-major."""
    h, w = size
    cells, cell_strides = [], []
    for s in strides:
        ys, xs = np.mgrid[0 : h // s, 0 : w // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        cell_strides.append(np.full(xs.size, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(cell_strides).astype(np.float32)


def load_detector(spec: DetectorSpec | Mapping[str, Any], classes: Iterable[int] | None = None,
                  threads: int = 2) -> Detector:
    """Build the detector a site config's `detector` section describes (or a mapping of it), keeping
    only the COCO class ids in `classes`. ValueError naming the `detector.` field if it is wrong,
    DetectorError naming the model file if the model is."""
    if not isinstance(spec, DetectorSpec):
        try:
            spec = DetectorSpec.model_validate(dict(spec))
        except ValidationError as e:
            first = e.errors()[0]
            field, msg = ".".join(str(p) for p in first["loc"]), first["msg"].removeprefix("Value error, ")
            if not field and ":" in msg:  # a check of the whole section names its field in its message
                field, msg = (s.strip() for s in msg.split(":", 1))
            raise ValueError(f"detector.{field}: {msg} (got {first.get('input')!r})") from None
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected a positive integer, got {threads!r}")
    keep = None if classes is None else frozenset(int(c) for c in classes)
    if spec.path is not None and not Path(spec.path).is_file():
        raise ValueError(f"detector.path: model file not found: {spec.path}")
    if spec.kind == "nanodet":  # NanoDet's input size is fixed by the model
        return NanoDetDetector(spec.path, spec.conf, spec.iou, keep, threads)
    assert spec.path is not None  # the site config refuses kind yolo without a path
    return YoloDetector(spec.path, spec.input_size, spec.class_map, spec.conf, spec.iou, spec.flavour, keep, threads,
                        spec.decoded)
