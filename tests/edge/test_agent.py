"""The agent loop with a stand-in detector (finds coloured blobs): schedule, tracking, attributes,
records, status, /healthz and /metrics; and the `edge run` command."""

from __future__ import annotations

import io
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import fastavro
import numpy as np
import pytest
from click.testing import CliRunner

from privaflow.edge.agent import Agent
from privaflow.edge.attributes import FaceAgeGender
from privaflow.edge.capture import CaptureError
from privaflow.edge.cli import edge
from privaflow.edge.detections import Detections, make_detections
from privaflow.edge.publish import AvroFileSink, SinkStats
from privaflow.schemas.detections import layout_problem, record_frames
from privaflow.schemas.site import Camera

PERSON, CAR = 0, 2
W, H = 640, 360
# normalised image -> metres: 64 m wide (10 px per metre at 640 px), y down = south
HOMOGRAPHY = [[64.0, 0.0, 0.0], [0.0, -36.0, 36.0], [0.0, 0.0, 1.0]]


def scene(k: int) -> np.ndarray:
    """Frame k: a red car driving right 10 px/frame, a white pedestrian walking left 2 px/frame."""
    img = np.zeros((H, W, 3), np.uint8)
    cv2.rectangle(img, (20 + 10 * k, 200), (120 + 10 * k, 260), (30, 30, 200), -1)
    cv2.rectangle(img, (560 - 2 * k, 80), (580 - 2 * k, 140), (235, 235, 235), -1)
    return img


class BlobDetector:
    """Finds bright blobs; red ones are cars, the rest people. Counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, frame: np.ndarray) -> Detections:
        self.calls += 1
        mask = (frame.max(axis=2) > 60).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        boxes, classes = [], []
        for x, y, w, h, area in stats[1:n]:
            if area < 30:
                continue
            patch = frame[y:y + h, x:x + w].reshape(-1, 3).mean(axis=0)
            boxes.append([x, y, x + w, y + h])
            classes.append(CAR if patch[2] > 1.5 * patch[0] else PERSON)
        return make_detections(np.array(boxes, np.float32).reshape(-1, 4), [0.9] * len(boxes), classes)


class ListSink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.closed = False
        self._stats = SinkStats()

    def publish(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._stats.published += 1

    def poll(self) -> None:
        pass

    def close(self, timeout_s: float = 10.0) -> None:
        self.closed = True

    @property
    def depth(self) -> int:
        return 0

    @property
    def stats(self) -> SinkStats:
        return self._stats


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "street.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for k in range(30):
        writer.write(scene(k))
    writer.release()
    return path


def camera(video: Path, **kw: Any) -> Camera:
    base = {"id": "street", "source": str(video), "fps": 10, "max_width": 640, "detect_every": 3,
            "homography": HOMOGRAPHY, "classes": ["person", "car"]}
    return Camera.model_validate({**base, **kw})


def run(cam: Camera, detector: Any = None, **kw: Any) -> tuple[list[dict[str, Any]], Agent]:
    """The agent on `cam` until the end; returns every frame the records carried, and the agent."""
    sink = ListSink()
    agent = Agent("site", cam, detector or BlobDetector(), sink, status_every_s=0, **kw)
    agent.run()
    assert sink.closed
    assert all(layout_problem(r) is None for r in sink.records)
    return [f for r in sink.records for f in record_frames(r)], agent


def by_class(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d for d in record["detections"] if d["class_name"] == name]


def test_one_record_per_frame_with_detect_every_n(video: Path) -> None:
    detector = BlobDetector()
    records, agent = run(camera(video), detector)
    assert [r["frame_seq"] for r in records] == list(range(30))
    assert [r["detected"] for r in records] == [k % 3 == 0 for k in range(30)]
    assert detector.calls == 10 and agent.stats.detected_frames == 10
    assert all((r["frame_width"], r["frame_height"], r["site_id"], r["camera_id"]) == (640, 360, "site", "street")
               for r in records)
    ts = [r["ts"] for r in records]
    assert np.all(np.diff(ts) == 100)


def test_tracks_follow_objects_between_detections(video: Path) -> None:
    records, _ = run(camera(video))
    cars = [by_class(r, "car") for r in records]
    assert all(len(c) == 1 for c in cars)
    assert len({c[0]["track_id"] for c in cars}) == 1, "one car, one pseudonymous id"
    for k in range(9, 30):  # after the tracker has learnt the motion, predicted frames follow the car
        truth = (20 + 10 * k + 50) / W
        assert abs(cars[k][0]["foot_x"] - truth) < 0.02, k
        assert cars[k][0]["foot_y"] == pytest.approx(261 / H, abs=0.02)


def test_ground_motion_colour_and_type(video: Path) -> None:
    records, _ = run(camera(video))
    car = by_class(records[-1], "car")[0]
    person = by_class(records[-1], "person")[0]
    assert car["colour"] == "red" and person["colour"] is None
    assert car["speed_kmh"] == pytest.approx(36.0, rel=0.1), "10 px/frame at 10 fps and 10 px/m is 36 km/h"
    assert car["heading_deg"] == pytest.approx(90, abs=3), "driving east"
    assert person["speed_kmh"] == pytest.approx(7.2, rel=0.15) and person["heading_deg"] == pytest.approx(270, abs=5)
    assert car["world_x_m"] == pytest.approx(car["foot_x"] * 64, abs=0.01)
    assert car["age_bracket"] is None and car["gender"] is None


def test_without_homography_no_ground_fields(video: Path) -> None:
    records, _ = run(camera(video, homography=None))
    d = records[-1]["detections"][0]
    assert d["world_x_m"] is None and d["speed_kmh"] is None and d["heading_deg"] is None


def test_masked_area_yields_no_detections(video: Path) -> None:
    """The car's lane is masked: the detector never sees it (T4: sidewalks/roads not in scope)."""
    lane = [[0.0, 0.5], [1.0, 0.5], [1.0, 0.8], [0.0, 0.8]]
    records, _ = run(camera(video, privacy_masks=[lane]))
    assert all(by_class(r, "car") == [] for r in records)
    assert all(len(by_class(r, "person")) == 1 for r in records)


def test_classes_outside_the_camera_config_are_not_reported(video: Path) -> None:
    records, _ = run(camera(video, classes=["car"]))
    assert all(d["class_name"] == "car" for r in records for d in r["detections"])


def test_person_attributes_only_on_attribute_cameras(video: Path) -> None:
    calls: list[tuple[int, ...]] = []

    def estimator(frame: np.ndarray, box: np.ndarray) -> tuple[str | None, str | None]:
        calls.append(frame.shape)
        return "20-29", "female"

    records, _ = run(camera(video, attributes=True), attributes=estimator)
    person = by_class(records[4], "person")[0]  # a predicted frame carries the track's estimate
    assert (person["age_bracket"], person["gender"]) == ("20-29", "female")
    assert by_class(records[4], "car")[0]["age_bracket"] is None
    assert len(calls) == 10, "estimated on detection frames only"
    records, _ = run(camera(video, attributes=False), attributes=estimator)
    assert all(d["age_bracket"] is None for r in records for d in r["detections"])


def test_attribute_cameras_use_the_bundled_face_models(video: Path) -> None:
    """Blobs have no faces: the bundled estimator runs and leaves the fields null."""
    records, agent = run(camera(video, attributes=True))
    assert isinstance(agent.attributes, FaceAgeGender)
    assert all(d["age_bracket"] is None and d["gender"] is None for r in records for d in r["detections"])
    _, agent = run(camera(video, attributes=False))
    assert agent.attributes is None


def test_max_frames_stops_early(video: Path) -> None:
    records, _ = run(camera(video), max_frames=7)
    assert len(records) == 7


def test_a_missing_source_is_a_capture_error_and_the_sink_is_closed(tmp_path: Path) -> None:
    sink = ListSink()
    agent = Agent("site", camera(tmp_path / "nope.mp4"), BlobDetector(), sink, status_every_s=0)
    with pytest.raises(CaptureError, match="nope.mp4"):
        agent.run()
    assert sink.closed


def test_status_line_on_the_given_stream(video: Path) -> None:
    out = io.StringIO()
    agent = Agent("site", camera(video), BlobDetector(), ListSink(), status_every_s=0.001, status_out=out)
    agent.run()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(len(line) < 140 for line in lines)
    assert lines[-1].startswith("done street: 30 frames") and "dropped 0" in lines[-1] and "spool 0" in lines[-1]


def test_healthz_and_metrics(video: Path) -> None:
    agent = Agent("site", camera(video), BlobDetector(), ListSink(), status_every_s=0, pace=True,
                  metrics_port=0, metrics_host="127.0.0.1")
    assert agent._server is not None
    port = agent._server.port
    thread = threading.Thread(target=agent.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while agent.stats.frames < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            health = json.loads(r.read())
            assert r.status == 200
        assert health["status"] == "ok" and health["camera"] == "street" and health["frames"] >= 5
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
        for name in ("privaflow_edge_fps", "privaflow_edge_frames_dropped_total", "privaflow_edge_spool_depth",
                     "privaflow_edge_inference_seconds_bucket"):
            assert name in text, name
        assert 'camera="street"' in text
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nothing", timeout=5)
    finally:
        agent.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_stop_from_another_thread_ends_the_run(video: Path) -> None:
    fifth = threading.Event()

    class Signalling(ListSink):
        def publish(self, record: dict) -> None:
            super().publish(record)
            if len(self.records) == 5:
                fifth.set()

    sink = Signalling()
    agent = Agent("site", camera(video), BlobDetector(), sink, status_every_s=0, pace=True, batch_frames=1)
    stopper = threading.Thread(target=lambda: fifth.wait(30) and agent.stop())
    stopper.start()
    agent.run()  # returns only because of the stop: a paced video of this length runs far longer
    stopper.join()
    assert fifth.is_set() and 5 <= len(sink.records) < 30 and sink.closed


# ---------------------------------------------------------------- the command line

def site_yaml(tmp_path: Path, video: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(f"""
site_id: test-site
cameras:
  - id: street
    source: {video}
    fps: 10
    detect_every: 2
    classes: [person, car]
""")
    return path


def test_cli_run_to_an_avro_file(tmp_path: Path, video: Path) -> None:
    out = tmp_path / "out" / "records.avro"
    result = CliRunner().invoke(edge, ["run", "--config", str(site_yaml(tmp_path, video)), "--camera", "street",
                                       "--sink", f"file:{out}", "--max-frames", "6"])
    assert result.exit_code == 0, result.output
    with open(out, "rb") as f:
        records = list(fastavro.reader(f))
    assert [len(r["ts"]) for r in records] == [5, 1], "5 frames per record by default, the rest at the end"
    assert [s for r in records for s in r["frame_seq"]] == list(range(6))
    assert [d for r in records for d in r["detected"]] == [True, False] * 3
    assert "done street: 6 frames" in result.output


def test_cli_batching_options(tmp_path: Path, video: Path) -> None:
    out = tmp_path / "records.avro"
    result = CliRunner().invoke(edge, ["run", "--config", str(site_yaml(tmp_path, video)), "--camera", "street",
                                       "--sink", f"file:{out}", "--max-frames", "7", "--batch-frames", "3"])
    assert result.exit_code == 0, result.output
    with open(out, "rb") as f:
        assert [r["frame_seq"] for r in fastavro.reader(f)] == [[0, 1, 2], [3, 4, 5], [6]]
    bad = CliRunner().invoke(edge, ["run", "--config", str(site_yaml(tmp_path, video)), "--camera", "street",
                                    "--batch-frames", "0"])
    assert bad.exit_code != 0 and "--batch-frames" in bad.output and "Traceback" not in bad.output


def test_a_slow_source_still_sends_a_record_within_batch_ms(video: Path) -> None:
    """Frames at 10 fps and records of up to 50 frames: the record leaves after ~300 ms anyway."""
    sink = ListSink()
    agent = Agent("site", camera(video), BlobDetector(), sink, status_every_s=0, pace=True, batch_frames=50,
                  batch_ms=300)
    agent.run()
    sizes = [len(r["ts"]) for r in sink.records]
    assert sum(sizes) == 30 and max(sizes) <= 5, f"records of {sizes} frames at 10 fps with a 300 ms bound"


@pytest.mark.parametrize(("args", "message"), [
    (["--camera", "nope"], "camera 'nope' is not in the site config"),
    (["--camera", "street", "--source", "/no/such/video.mp4"], "/no/such/video.mp4: no such file"),
    (["--camera", "street", "--sink", "s3://bucket"], "expected 'kafka' or 'file:PATH'"),
])
def test_cli_errors_are_one_clear_line(tmp_path: Path, video: Path, args: list[str], message: str) -> None:
    out = tmp_path / "x.avro"
    result = CliRunner().invoke(edge, ["run", "--config", str(site_yaml(tmp_path, video)), *args,
                                       *([] if "--sink" in args else ["--sink", f"file:{out}"])])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_help_explains_the_options() -> None:
    result = CliRunner().invoke(edge, ["run", "--help"])
    assert result.exit_code == 0
    for word in ("--config", "--camera", "--source", "--sink", "--max-frames", "--spool-dir", "--metrics-port",
                 "--batch-frames", "--batch-ms", "rtsp://"):
        assert word in result.output


def test_avro_file_sink_writes_a_container_file(tmp_path: Path, sample_record: Any) -> None:
    sink = AvroFileSink(tmp_path / "a.avro")
    for i in range(3):
        sink.publish(sample_record(1, seq=i))
    sink.close()
    with open(tmp_path / "a.avro", "rb") as f:
        assert [r["frame_seq"] for r in fastavro.reader(f)] == [[0], [1], [2]]
