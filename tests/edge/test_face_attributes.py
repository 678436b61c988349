"""Age bracket and gender from faces (`FaceAgeGender`, the bundled CenterFace and dlib networks) on
real pictures that Debian packages ship: opencv-doc's sample data and tutorial pictures, darknet's
person.jpg and dog.jpg. Boxes are the person (or car) boxes the bundled NanoDet finds in them."""

from __future__ import annotations

import gc
import hashlib
import socket
import weakref
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from privaflow.edge.attributes import AGE_BRACKETS, GENDERS, MODELS, FaceAgeGender, age_bracket, person_attributes
from privaflow.edge.detect import NanoDetDetector
from tests.edge.test_detect import VTEST, fixture_file

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")
DARKNET = Path("/usr/share/darknet/data")
ADULT = {"20-29", "30-39", "40-49"}


def picture(path: Path) -> np.ndarray:
    image = cv2.imread(str(fixture_file(path, "darknet" if path.is_relative_to(DARKNET) else "opencv-doc")))
    assert image is not None, path
    return image


def box(*xyxy: float) -> np.ndarray:
    return np.array(xyxy, np.float32)


@pytest.fixture(scope="module")
def estimate() -> FaceAgeGender:
    return FaceAgeGender()


@pytest.mark.parametrize(("path", "person", "gender"), [
    (HTML / "face_swapped.jpg", box(1, 18, 320, 317), "male"),  # portrait, face 100 px wide
    (HTML / "Cascade_Classifier_Tutorial_Result_Haar.jpg", box(4, 61, 488, 499), "female"),  # webcam, circles drawn on
    (DATA / "messi5.jpg", box(59, 72, 456, 337), "male"),  # footballer mid-kick, face 30 px wide, tilted
])
def test_a_clear_face_gives_an_adult_bracket_and_the_gender(estimate: FaceAgeGender, path: Path, person: np.ndarray,
                                                            gender: str) -> None:
    age, got = estimate(picture(path), person)
    assert age in ADULT and got == gender


@pytest.mark.parametrize(("path", "thing"), [
    (DARKNET / "person.jpg", box(188, 101, 275, 375)),  # a walker seen from behind
    (DATA / "left06.jpg", box(155, 42, 407, 472)),  # a face turned three-quarters away
    (DATA / "basketball2.png", box(425, 26, 640, 480)),  # a player in profile, motion-blurred
    (DARKNET / "dog.jpg", box(471, 79, 702, 170)),  # a car
    (DARKNET / "dog.jpg", box(131, 191, 353, 543)),  # a dog
])
def test_no_clear_face_no_guess(estimate: FaceAgeGender, path: Path, thing: np.ndarray) -> None:
    assert estimate(picture(path), thing) == (None, None)


@pytest.mark.parametrize("image", [np.full((480, 640, 3), 128, np.uint8), np.zeros((480, 640, 3), np.uint8)])
@pytest.mark.parametrize("person", [box(100, 50, 300, 450), box(630, 470, 700, 560), box(-50, -50, 10, 10)])
def test_blank_frames_and_boxes_off_the_frame_give_nothing(estimate: FaceAgeGender, image: np.ndarray,
                                                           person: np.ndarray) -> None:
    assert estimate(image, person) == (None, None)


def test_far_away_faces_give_no_guess(estimate: FaceAgeGender) -> None:
    """vtest.avi's pedestrians, seen from a first floor: faces of a few pixels are not read at all."""
    capture = cv2.VideoCapture(str(fixture_file(VTEST, "opencv-doc")))
    capture.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, frame = capture.read()
    capture.release()
    assert ok
    people = NanoDetDetector(classes=[0])(frame)
    assert len(people) >= 3
    ages, genders = person_attributes(frame, people, estimate)
    assert ages == genders == [None] * len(people)


def test_end_to_end_on_nanodet_detections(estimate: FaceAgeGender) -> None:
    """The agent's path: NanoDet's detections in, one label pair per row, people only."""
    frame = picture(DATA / "messi5.jpg")
    found = NanoDetDetector()(frame)
    assert found.class_id is not None and 0 in found.class_id
    ages, genders = person_attributes(frame, found, estimate)
    for cls, age, gender in zip(found.class_id.tolist(), ages, genders, strict=True):
        if cls == 0:
            assert age in AGE_BRACKETS and gender in GENDERS
        else:
            assert age is None and gender is None
    assert "male" in genders


def test_the_estimator_keeps_no_pixels(estimate: FaceAgeGender) -> None:
    """G1: the frame, the face crop and its landmarks die with the call; the estimator's state is
    the same before and after, and holds no array."""
    before = dict(vars(estimate))
    frame = picture(HTML / "face_swapped.jpg")
    alive = weakref.ref(frame)
    labels = estimate(frame, box(1, 18, 320, 317))
    assert labels[0] in AGE_BRACKETS and labels[1] in GENDERS
    assert all(isinstance(v, str) for v in labels), "only the two labels come back"
    del frame
    gc.collect()
    assert alive() is None, "nothing holds the frame (or a view into it) after the call"
    assert vars(estimate) == before
    assert not any(isinstance(v, np.ndarray) for v in vars(estimate).values())


def test_models_load_from_the_package_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network use: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    estimate = FaceAgeGender()
    assert estimate(picture(HTML / "face_swapped.jpg"), box(1, 18, 320, 317))[1] == "male"


def test_bundled_models_are_the_documented_files() -> None:
    """The sha256 sums edge/models/README.md gives, so a swapped model file cannot go unnoticed."""
    readme = (MODELS / "README.md").read_text()
    for name in ("centerface.onnx", "dlib-age-v1.onnx", "dlib-gender-v1.onnx"):
        data = (MODELS / name).read_bytes()
        assert len(data) < 30 << 20, name
        assert hashlib.sha256(data).hexdigest() in readme, name


def test_a_missing_model_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="centerface.onnx"):
        FaceAgeGender(models_dir=tmp_path)


@given(st.floats(0, 80))
def test_every_estimated_age_falls_in_its_bracket(age: float) -> None:
    bracket = age_bracket(age)
    assert bracket in AGE_BRACKETS
    low, _, high = bracket.partition("-")
    assert int(low.rstrip("+")) <= age < (int(high) + 1 if high else float("inf"))


def test_bracket_edges() -> None:
    assert [age_bracket(a) for a in (0.25, 9.99, 10, 19.5, 69.99, 70, 80)] == [
        "0-9", "0-9", "10-19", "10-19", "60-69", "70+", "70+"]
