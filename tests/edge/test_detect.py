"""Detector adapters: YOLO layouts decoded exactly from constant ONNX graphs, and the bundled
NanoDet on real pictures from Debian packages (opencv-doc's vtest.avi, darknet's dog.jpg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from privaflow.edge.agent import build_detector
from privaflow.edge.detect import DetectorError, NanoDetDetector, YoloDetector, fit, load_detector, nms
from privaflow.edge.detections import Detections
from privaflow.schemas.site import Camera, DetectorSpec, parse_site_config

VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
DOG = Path("/usr/share/darknet/data/dog.jpg")
PERSON, BICYCLE, CAR, TRUCK, DOG_ID = 0, 1, 2, 7, 16


def fixture_file(path: Path, apt_package: str) -> Path:
    """A picture a Debian package ships; missing fails under CI (it must run there) and skips elsewhere."""
    if not path.exists():
        msg = f"{path} missing: apt-get install -y {apt_package}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def constant_model(tmp_path: Path, output: np.ndarray, input_hw: tuple[int, int] = (640, 640)) -> Path:
    """An ONNX model that ignores its image and always returns `output`.

    The image still feeds the result (times zero) so the graph is valid and its input is kept."""
    h, w = input_hw
    nodes = [
        helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Constant", [], ["fixed"], value=numpy_helper.from_array(output.astype(np.float32))),
        helper.make_node("Add", ["fixed", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        [numpy_helper.from_array(np.array(0, np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return path


def xywh_rows() -> tuple[np.ndarray, np.ndarray]:
    """Five boxes in 640x640 input pixels and their 3-class scores; dyadic values keep float32 exact.

    A: class 0, the best box.             B: A shifted 4 px, class 0, lower score -> suppressed.
    C: A's box, class 2 -> kept (NMS is per class).   D: class 0 below the threshold -> dropped.
    E: class 1, confident but unmapped -> dropped.
    """
    xywh = np.array(
        [
            [200, 280, 80, 120],
            [204, 284, 80, 120],
            [200, 280, 80, 120],
            [400, 300, 60, 60],
            [500, 400, 40, 40],
        ],
        np.float32,
    )
    cls = np.array(
        [[0.875, 0, 0], [0.875, 0, 0], [0, 0, 0.75], [0.25, 0, 0], [0, 0.9375, 0]],
        np.float32,
    )
    return xywh, cls


CLASS_MAP = {0: PERSON, 2: TRUCK}


def padded(rows: np.ndarray, n: int = 64) -> np.ndarray:
    """Zero-score rows up to n: real exports have far more anchors than channels, and the v8
    adapter tells [4+C, N] from [N, 4+C] by which axis is longer."""
    return np.concatenate([rows, np.zeros((n - len(rows), rows.shape[1]), np.float32)])


def assert_detections(d: Detections, xyxy: list[list[float]], confidence: list[float], class_id: list[int]) -> None:
    np.testing.assert_array_equal(d.xyxy, np.array(xyxy, np.float32))
    np.testing.assert_array_equal(d.confidence, np.array(confidence, np.float32))
    np.testing.assert_array_equal(d.class_id, np.array(class_id, np.int32))
    dtypes = (d.xyxy.dtype, np.asarray(d.confidence).dtype, np.asarray(d.class_id).dtype)
    assert dtypes == (np.float32, np.float32, np.int32)
    assert d.tracker_id is None


def test_yolov5_rows_with_objectness(tmp_path: Path) -> None:
    xywh, cls = xywh_rows()
    obj = np.array([[1.0], [0.75], [1.0], [1.0], [1.0]], np.float32)
    path = constant_model(tmp_path, np.concatenate([xywh, obj, cls], axis=1)[None])
    detector = YoloDetector(path, flavour="v5", class_map=CLASS_MAP, conf_threshold=0.35, iou_threshold=0.5)
    # 320x240 frame -> scale 2, centred: 80 px bands above and below.
    d = detector(np.zeros((240, 320, 3), np.uint8))
    assert_detections(d, [[80, 70, 120, 130], [80, 70, 120, 130]], [0.875, 0.75], [PERSON, TRUCK])


def test_yolov8_columns_without_objectness(tmp_path: Path) -> None:
    xywh, cls = xywh_rows()
    cls[1, 0] = 0.625  # B, suppressed by A
    path = constant_model(tmp_path, padded(np.concatenate([xywh, cls], axis=1)).T[None])  # [1, 4+C, N]
    detector = YoloDetector(path, flavour="v8", class_map=CLASS_MAP, conf_threshold=0.35, iou_threshold=0.5)
    # 160x320 (w x h) frame -> scale 2, centred: 160 px bands left and right.
    d = detector(np.zeros((320, 160, 3), np.uint8))
    assert_detections(d, [[0, 110, 40, 170], [0, 110, 40, 170]], [0.875, 0.75], [PERSON, TRUCK])


def test_yolov8_accepts_rows_layout_and_no_class_map(tmp_path: Path) -> None:
    xywh, cls = xywh_rows()
    path = constant_model(tmp_path, padded(np.concatenate([xywh, cls], axis=1))[None])  # [1, N, 4+C]
    d = YoloDetector(path, flavour="v8")(np.zeros((640, 640, 3), np.uint8))
    # Without a map the model's ids are taken as COCO ids, so E (class 1) is kept and wins.
    assert_detections(
        d,
        [[480, 380, 520, 420], [160, 220, 240, 340], [160, 220, 240, 340]],
        [0.9375, 0.875, 0.75],
        [1, 0, 2],
    )


def test_yolox_grid_decoding(tmp_path: Path) -> None:
    # 64x64 input: 8x8 cells at stride 8, then 4x4 at 16, then 2x2 at 32 -> 84 rows.
    raw = np.zeros((84, 5 + 3), np.float32)

    def row(stride_offset: int, cols: int, gx: int, gy: int) -> int:
        return stride_offset + gy * cols + gx

    a, b, c = row(0, 8, 1, 1), row(0, 8, 2, 1), row(64 + 16, 2, 1, 0)
    # (dx, dy, log w, log h, obj, classes): box = ((g + d) * s, exp(log wh) * s)
    raw[a] = [0.5, 0.5, 0, 0, 1.0, 0.875, 0, 0]  # centre (12, 12), 8x8
    raw[b] = [-0.25, 0.5, 0, 0, 1.0, 0.75, 0, 0]  # centre (14, 12): IoU 0.6 with a -> suppressed
    raw[c] = [0.5, 0.5, 0, 0, 0.5, 0, 0, 1.0]  # stride 32 cell (1, 0): centre (48, 16), 32x32
    path = constant_model(tmp_path, raw[None], (64, 64))
    d = YoloDetector(path, flavour="yolox", class_map=CLASS_MAP)(np.zeros((16, 32, 3), np.uint8))
    # 32x16 frame -> scale 2, padded at the bottom only (YOLOX pads bottom-right).
    assert_detections(d, [[4, 4, 8, 8], [16, 0, 32, 16]], [0.875, 0.5], [PERSON, TRUCK])


def test_yolox_already_decoded(tmp_path: Path) -> None:
    xywh, cls = xywh_rows()
    obj = np.ones((5, 1), np.float32)
    path = constant_model(tmp_path, np.concatenate([xywh, obj, cls], axis=1)[None])
    d = YoloDetector(path, flavour="yolox", decoded=True, class_map=CLASS_MAP)(np.zeros((320, 640, 3), np.uint8))
    # 640x320 frame -> scale 1, no offset: YOLOX pads only the bottom.
    assert_detections(d, [[160, 220, 240, 320], [160, 220, 240, 320]], [0.875, 0.75], [PERSON, TRUCK])


def test_yolox_grid_mismatch_says_what_to_do(tmp_path: Path) -> None:
    path = constant_model(tmp_path, np.zeros((1, 5, 8), np.float32), (64, 64))
    with pytest.raises(DetectorError, match=rf"{path}: .*decoded=True"):
        YoloDetector(path, flavour="yolox")  # at start, not on the first frame


def test_nms_is_per_class_and_keeps_best_first() -> None:
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.5, 0.9, 0.8, 0.1], np.float32)
    kept = nms(xyxy, scores, np.array([0, 0, 1, 0]), 0.5)
    np.testing.assert_array_equal(kept, [1, 2, 3])


@given(
    frame_h=st.integers(1, 2000),
    frame_w=st.integers(1, 2000),
    keep_ratio=st.booleans(),
    centre=st.booleans(),
    box=st.tuples(*[st.floats(0, 1)] * 4),
)
def test_fit_inverse_returns_frame_boxes(
    frame_h: int, frame_w: int, keep_ratio: bool, centre: bool, box: tuple[float, ...]
) -> None:
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    image, resize = fit(frame, (64, 96), keep_ratio=keep_ratio, centre=centre)
    assert image.shape == (64, 96, 3)
    x1, x2 = sorted(box[::2])
    y1, y2 = sorted(box[1::2])
    in_frame = np.array([[x1 * frame_w, y1 * frame_h, x2 * frame_w, y2 * frame_h]], np.float32)
    sx, sy = resize.scale
    px, py = resize.pad
    in_net = in_frame * np.array([sx, sy, sx, sy], np.float32) + np.array([px, py, px, py], np.float32)
    assert (in_net >= -1e-3).all() and (in_net[:, ::2] <= 96 + 1e-3).all() and (in_net[:, 1::2] <= 64 + 1e-3).all()
    np.testing.assert_allclose(resize.to_frame(in_net, frame.shape), in_frame, atol=1e-3 * max(frame_h, frame_w))


@pytest.fixture(scope="module")
def nanodet() -> NanoDetDetector:
    return NanoDetDetector()


def test_nanodet_blank_frame_is_empty(nanodet: NanoDetDetector) -> None:
    d = nanodet(np.zeros((480, 640, 3), np.uint8))
    assert len(d) == 0 and d.xyxy.shape == (0, 4) and np.asarray(d.class_id).dtype == np.int32


def test_nanodet_finds_people_in_vtest(nanodet: NanoDetDetector) -> None:
    capture = cv2.VideoCapture(str(fixture_file(VTEST, "opencv-doc")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    capture.release()
    assert ok
    d = nanodet(frame)
    people = d.xyxy[np.array(class_ids(d)) == PERSON]
    assert len(people) >= 3
    h, w = frame.shape[:2]
    assert ((people >= 0) & (people <= [w, h, w, h])).all()
    # Pedestrians are taller than wide.
    assert np.median((people[:, 3] - people[:, 1]) / (people[:, 2] - people[:, 0])) > 1.5


def class_ids(d: Detections) -> list[int]:
    assert d.class_id is not None
    return [int(c) for c in d.class_id]


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def iou(a: np.ndarray, b: Sequence[float]) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def test_nanodet_finds_bicycle_car_and_dog(nanodet: NanoDetDetector) -> None:
    d = nanodet(read_image(fixture_file(DOG, "darknet")))
    found = set(class_ids(d))
    assert {BICYCLE, DOG_ID} <= found and found & {CAR, TRUCK}
    # Hand-measured boxes in the 768x576 picture: each class's best box must land on its object.
    truth = {BICYCLE: [120, 125, 570, 430], DOG_ID: [130, 220, 315, 540], CAR: [465, 75, 690, 170]}
    truth[TRUCK] = truth[CAR]
    ids = np.array(class_ids(d))
    for cid in found & set(truth):
        best = d.xyxy[ids == cid][0]  # detections come best first
        assert iou(best, truth[cid]) > 0.5, (cid, best)


def test_nanodet_class_filter() -> None:
    d = NanoDetDetector(classes={DOG_ID})(read_image(fixture_file(DOG, "darknet")))
    assert class_ids(d) == [DOG_ID]


def test_load_detector_builds_both_kinds(tmp_path: Path) -> None:
    assert isinstance(load_detector({"kind": "nanodet", "conf": 0.5}, classes=[0, 2]), NanoDetDetector)
    xywh, cls = xywh_rows()
    path = constant_model(tmp_path, padded(np.concatenate([xywh, cls], axis=1)).T[None])
    # JSON-style spec: string keys in the class map, a list for the input size.
    spec = {
        "kind": "yolo",
        "path": str(path),
        "flavour": "v8",
        "input_size": [640, 640],
        "class_map": {"0": 0},
    }
    d = load_detector(spec)(np.zeros((640, 640, 3), np.uint8))
    assert class_ids(d) == [PERSON]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"kind": "tflite"}, "kind"),
        ({"kind": "yolo"}, "path"),
        ({"kind": "yolo", "path": "/nonexistent/model.onnx"}, "path"),
        ({"kind": "nanodet", "path": "/nonexistent/model.onnx"}, "path"),
        ({"kind": "yolo", "path": "x.onnx", "flavour": "v7"}, "flavour"),
        ({"input_size": [640]}, "input_size"),
        ({"input_size": 640}, "input_size"),
        ({"conf": 1.5}, "conf"),
        ({"iou": "high"}, "iou"),
        ({"class_map": {"person": 0}}, "class_map"),
        ({"treshold": 0.3}, "treshold"),
    ],
)
def test_load_detector_names_the_bad_field(spec: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"detector\.{field}\b"):
        load_detector(spec)


def test_the_edge_reads_the_site_configs_own_detector_spec() -> None:
    """One DetectorSpec, the site config's: its defaults are the edge's (no input size is invented)."""
    assert load_detector(DetectorSpec(conf=0.5), classes=[0]).__class__ is NanoDetDetector
    with pytest.raises(ValueError, match="threads"):
        load_detector(DetectorSpec(), threads=0)


def test_yolo_input_size_must_match_a_fixed_model(tmp_path: Path) -> None:
    path = constant_model(tmp_path, np.zeros((1, 84, 10), np.float32))
    with pytest.raises(ValueError, match="input_size"):
        YoloDetector(path, input_size=(320, 320))


# ---------------------------------------------------------------- issue 13 finding 5: errors at start, naming the file


def _camera(detector: dict) -> Camera:
    site = parse_site_config({"site_id": "s", "cameras": [{"id": "c", "source": 0, "detector": detector}]})
    return site.camera("c")


def test_a_fixed_320_export_loads_without_an_input_size_the_user_never_set(tmp_path: Path) -> None:
    """The site config used to pass its default (640, 640) on, and the 320 model was refused."""
    xywh, cls = xywh_rows()
    path = constant_model(tmp_path, padded(np.concatenate([xywh, cls], axis=1)).T[None], (320, 320))
    detector = build_detector(_camera({"kind": "yolo", "path": str(path), "flavour": "v8"}))
    assert isinstance(detector, YoloDetector) and len(detector(np.zeros((240, 320, 3), np.uint8))) > 0
    with pytest.raises(DetectorError, match=rf"{path}: detector.input_size \[640, 640\] differs from the "
                                            r"model's fixed input \[320, 320\]"):
        build_detector(_camera({"kind": "yolo", "path": str(path), "input_size": [640, 640]}))


def _rank2_input_model(tmp_path: Path) -> Path:
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
             helper.make_node("Mul", ["total", "zero"], ["nothing"]),
             helper.make_node("Constant", [], ["fixed"],
                              value=numpy_helper.from_array(np.zeros((1, 84, 100), np.float32))),
             helper.make_node("Add", ["fixed", "nothing"], ["output0"])]
    graph = helper.make_graph(nodes, "features", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, 100])],
                              [numpy_helper.from_array(np.array(0, np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "features.onnx"
    onnx.save(model, path)
    return path


def test_a_model_without_an_image_input_is_refused_naming_the_file(tmp_path: Path) -> None:
    """It used to be an IndexError."""
    path = _rank2_input_model(tmp_path)
    for kind in ("yolo", "nanodet"):
        with pytest.raises(DetectorError, match=rf"{path}: the model's inputs are x \[1, 512\]; expected one "
                                                r"image input of shape \[1, 3, height, width\]"):
            load_detector({"kind": kind, "path": str(path)})


def test_a_file_that_is_not_onnx_is_refused_naming_the_file(tmp_path: Path) -> None:
    """It used to be onnxruntime's raw InvalidProtobuf traceback."""
    path = tmp_path / "model.onnx"
    path.write_bytes(b"PK\x03\x04 a zip, or a .pt checkpoint, or anything else")
    with pytest.raises(DetectorError, match=rf"{path}: not a model onnxruntime can load \(InvalidProtobuf"):
        load_detector({"kind": "yolo", "path": str(path)})


@pytest.mark.parametrize(("flavour", "output", "expected"), [
    ("v8", np.zeros((6, 100), np.float32),
     r"shape \[6, 100\]; a YOLO v8 export gives \[1, 4\+classes, anchors\]"),
    ("v5", np.zeros((1, 100, 4), np.float32),
     r"shape \[1, 100, 4\]; a YOLO v5 export gives \[1, anchors, 5\+classes\]"),
    ("v8", np.zeros((1, 2, 3, 4), np.float32), r"shape \[1, 2, 3, 4\]"),
])
def test_a_wrong_output_layout_is_an_error_at_start_not_on_the_first_frame(
        tmp_path: Path, flavour: str, output: np.ndarray, expected: str) -> None:
    path = constant_model(tmp_path, output, (64, 64))
    with pytest.raises(DetectorError, match=rf"{path}: first output has {expected}"):
        YoloDetector(path, flavour=flavour)  # type: ignore[arg-type]


def test_edge_run_with_a_broken_model_is_one_clear_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml

    model = tmp_path / "yolo.onnx"
    model.write_bytes(b"not a model")
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"site_id": "s", "cameras": [
        {"id": "c", "source": str(tmp_path), "detector": {"kind": "yolo", "path": str(model)}}]}))
    r = subprocess.run([sys.executable, "-m", "privaflow", "edge", "run", "--config", str(cfg), "--camera", "c",
                        "--sink", f"file:{tmp_path / 'out.avro'}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"camera c: detector: {model}: not a model onnxruntime can load" in r.stderr
