"""Capture: every source kind, the bounded hand-off queue, subsampling, pacing and failure modes."""

from __future__ import annotations

import functools
import http.server
import logging
import shutil
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from privaflow.edge import capture
from privaflow.edge.capture import Capture, CaptureError, source_kind
from privaflow.edge.cli import edge
from tests.conftest import media_path
from tests.edge.test_agent import site_yaml


def write_video(path: Path, n: int = 30, fps: float = 25.0, size: tuple[int, int] = (160, 120)) -> Path:
    """A small MJPG video whose frame i is uniformly grey level 4*i (so frames can be told apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 4 * i, np.uint8))
    writer.release()
    return path


def level(image: np.ndarray) -> int:
    """Which frame of `write_video` this is."""
    return round(float(image.mean()) / 4)


def drain(cap: Capture, delay_s: float = 0.0) -> list:
    out = []
    with cap:
        for f in cap.frames(timeout_s=20):
            out.append((f.seq, f.ts_ms, level(f.image)))
            time.sleep(delay_s)
    return out


def test_source_kinds(tmp_path: Path) -> None:
    assert source_kind(0) == "device" and source_kind("2") == "device"
    assert source_kind("rtsp://cam/1") == "stream" and source_kind("HTTP://cam/mjpg") == "stream"
    assert source_kind(str(tmp_path)) == "images"
    assert source_kind(str(tmp_path / "x.mp4")) == "file"


def test_file_at_full_rate_gives_every_frame_in_order(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=30, fps=25)
    frames = drain(Capture(str(video), fps=25))
    assert [seq for seq, _, _ in frames] == list(range(30))
    assert [lv for _, _, lv in frames] == list(range(30))
    steps = np.diff([ts for _, ts, _ in frames])
    assert np.all(np.abs(steps - 40) <= 1), "event time follows the file's own clock"
    assert abs(frames[0][1] - time.time() * 1000) < 60_000, "event time starts at wall-clock start"


def test_file_is_subsampled_to_the_camera_fps(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=50, fps=25)  # 2 s of video
    frames = drain(Capture(str(video), fps=10))
    assert len(frames) == 20
    steps = np.diff([ts for _, ts, _ in frames])
    assert steps.min() >= 80 and steps.max() <= 120 and abs(steps.mean() - 100) < 5
    assert [seq for seq, _, _ in frames] == list(range(20)), "subsampling is not dropping: no seq gaps"


def test_slow_analysis_never_drops_without_realtime(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=15, fps=25)
    cap = Capture(str(video), fps=25, realtime=False)
    frames = drain(cap, delay_s=0.03)
    assert len(frames) == 15 and cap.stats.dropped == 0


def test_realtime_drops_oldest_when_analysis_falls_behind(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=60, fps=25)
    cap = Capture(str(video), fps=25, realtime=True, queue_size=2)
    frames = drain(cap, delay_s=0.03)
    assert cap.stats.dropped > 0
    assert len(frames) + cap.stats.dropped == 60
    seqs = [seq for seq, _, _ in frames]
    assert seqs == sorted(seqs) and seqs[-1] == 59, "the newest frame is kept, gaps mark the drops"
    assert len(seqs) < 60


def test_pace_replays_a_file_at_its_own_speed(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=10, fps=25)  # a frame every 40 ms
    frames = drain(Capture(str(video), fps=25, pace=True))
    stamps = [ts for _, ts, _ in frames]
    assert len(frames) == 10
    assert all(b - a >= 36 for a, b in zip(stamps, stamps[1:], strict=False)), "each frame waits for its time"


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("zero.mp4", b"", "zero-byte"),
    ("text.mp4", b"this is not a video at all\n" * 50, "cannot be opened as a video"),
    ("missing.mp4", None, "no such file"),
])
def test_permanent_errors_raise_at_start_naming_the_path(tmp_path: Path, name: str, content: bytes | None,
                                                         expected: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    cap = Capture(str(path), fps=10)
    with pytest.raises(CaptureError, match=expected) as err:
        cap.start()
    assert str(path) in str(err.value)
    assert cap.stats.reconnects == 0, "a permanent error is not retried"


def test_truncated_file_ends_cleanly(tmp_path: Path) -> None:
    original = media_path("vtest.avi")
    data = original.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 3])
    cap = Capture(str(truncated), fps=10)
    frames = drain(cap)
    assert 0 < len(frames) < 795, "a truncated video yields what it holds, then ends"
    assert cap.stats.reconnects == 0, "the end of a file is the end, not a source to reconnect"


def test_truncated_header_is_a_capture_error(tmp_path: Path) -> None:
    data = media_path("sample.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 3])  # mp4 keeps its index (moov) at the end: nothing decodable
    with pytest.raises(CaptureError, match=str(cut)):
        Capture(str(cut), fps=10).start()


def test_image_folder_sorted_with_corrupt_images_skipped(tmp_path: Path) -> None:
    for i in (3, 1, 2):
        cv2.imwrite(str(tmp_path / f"img{i:02d}.png"), np.full((40, 60, 3), 4 * i, np.uint8))
    (tmp_path / "img01b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    cap = Capture(str(tmp_path), fps=5)
    frames = drain(cap)
    assert [lv for _, _, lv in frames] == [1, 2, 3]
    assert cap.stats.corrupt == 1
    ts = [t for _, t, _ in frames]
    assert [t - ts[0] for t in ts] == [0, 400, 600], "each file keeps its slot in event time, even a corrupt one"


def test_empty_image_folder_is_a_capture_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(CaptureError, match=str(tmp_path)):
        Capture(str(tmp_path), fps=5).start()


def test_folder_of_only_unreadable_images_is_a_capture_error(tmp_path: Path) -> None:
    """Issue 13 finding 5: such a folder used to end in "done, 0 frames", as if it had been analysed."""
    for i in range(3):
        (tmp_path / f"img{i}.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "img9.png").write_bytes(b"")
    with pytest.raises(CaptureError, match=rf"{tmp_path}: none of its 4 image files can be decoded"):
        Capture(str(tmp_path), fps=5).start()


def test_unreadable_images_before_the_first_good_one_are_counted(tmp_path: Path) -> None:
    (tmp_path / "img0.jpg").write_bytes(b"broken")
    cv2.imwrite(str(tmp_path / "img1.png"), np.full((40, 60, 3), 8, np.uint8))
    cap = Capture(str(tmp_path), fps=5)
    frames = drain(cap)
    assert [lv for _, _, lv in frames] == [2] and cap.stats.corrupt == 1


def test_unreachable_stream_retries_with_backoff_and_stops_promptly() -> None:
    cap = Capture("rtsp://127.0.0.1:9/nothing", fps=10, max_backoff_s=0.2)
    cap.start()
    deadline = time.monotonic() + 20
    while cap.stats.reconnects < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cap.stats.reconnects >= 3 and not cap.stats.connected
    cap.stop()
    assert cap._thread is not None and not cap._thread.is_alive(), "stop() returns once the thread has ended"


def test_lost_http_stream_reconnects_and_frames_keep_coming(tmp_path: Path) -> None:
    """An HTTP source that ends (the server closes) is a lost stream: capture reconnects and reads on."""
    write_video(tmp_path / "live.avi", n=10, fps=25)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cap = Capture(f"http://127.0.0.1:{server.server_address[1]}/live.avi", fps=100, max_backoff_s=0.1)
        assert cap.realtime, "live sources drop rather than queue by default"
        seen = 0
        with cap:
            for _ in cap.frames(timeout_s=20):
                seen += 1
                if cap.stats.reconnects >= 1 and seen > 12:
                    break
        assert cap.stats.reconnects >= 1 and seen > 12
    finally:
        server.shutdown()
        server.server_close()


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="device nodes are checked on Linux")


@linux_only
@pytest.mark.parametrize("source", [57, "57"])
def test_a_camera_device_that_does_not_exist_is_a_capture_error(source: int | str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/dev/video57").exists():
        pytest.skip("this machine has a /dev/video57")
    opened = []
    monkeypatch.setattr(capture.cv2, "VideoCapture", lambda *a: opened.append(a))
    cap = Capture(source, fps=10)
    with pytest.raises(CaptureError, match="^camera device 57 not found: /dev/video57 does not exist$"):
        cap.start()
    assert opened == [] and cap.stats.reconnects == 0, "no open attempt, no retries"


@linux_only
def test_cli_names_a_missing_camera_device_in_one_line(tmp_path: Path) -> None:
    if Path("/dev/video57").exists():
        pytest.skip("this machine has a /dev/video57")
    site = site_yaml(tmp_path, write_video(tmp_path / "v.avi"))
    result = CliRunner().invoke(edge, ["run", "--config", str(site), "--camera", "street", "--source", "57",
                                       "--sink", f"file:{tmp_path / 'out.avro'}"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: camera street: camera device 57 not found: /dev/video57 does not exist"], result.output
    assert "Traceback" not in result.output
    assert "done street" not in result.output, "no frame summary for a source that never opened"


class FakeCamera:
    """Stands in for `cv2.VideoCapture(index, backend)` on a USB camera. Each open takes the next
    entry of `sessions`: how many frames that connection delivers before it fails (0: the open fails)."""

    def __init__(self, sessions: list[int]) -> None:
        self.sessions = iter(sessions)
        self.opens: list[tuple[int, int]] = []

    def __call__(self, index: int, backend: int) -> FakeConnection:
        self.opens.append((index, backend))
        return FakeConnection(next(self.sessions, 1_000_000))


class FakeConnection:
    """One open of a `FakeCamera`, delivering 50 frames a second."""

    def __init__(self, frames: int) -> None:
        self.left = frames

    def isOpened(self) -> bool:
        return self.left > 0

    def grab(self) -> bool:
        time.sleep(0.02)
        self.left -= 1
        return self.left >= 0

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.full((48, 64, 3), 100, np.uint8)

    def release(self) -> None:
        pass


def test_a_camera_that_fails_after_opening_reconnects(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """Unplugged after 5 frames, its device node gone: not permanent, it is reopened with backoff."""
    camera = FakeCamera([5, 0, 0])  # 5 frames, then two failed opens, then it is back
    monkeypatch.setattr(capture.cv2, "VideoCapture", camera)
    present = iter([None])  # /dev/video0 exists when capture starts and is gone afterwards
    monkeypatch.setattr(capture, "missing_device", lambda index: next(present, f"/dev/video{index} does not exist"))
    caplog.set_level(logging.WARNING, logger="privaflow.edge.capture")
    t0 = time.time() * 1000
    cap = Capture(0, fps=100, max_backoff_s=0.05)
    assert cap.kind == "device" and cap.realtime
    frames = []
    with cap:
        for f in cap.frames(timeout_s=10):
            frames.append(f)
            if len(frames) == 8:
                break
    assert len(frames) == 8, "frames keep coming after the failure"
    assert cap.stats.reconnects == 3 and len(camera.opens) == 4
    assert {index for index, _ in camera.opens} == {0}
    if sys.platform.startswith("linux"):
        assert {backend for _, backend in camera.opens} == {cv2.CAP_V4L2}
    lost = [r.getMessage() for r in caplog.records if "camera source lost" in r.getMessage()]
    assert [m.split("(")[1].split(")")[0] for m in lost] == ["read failed", "cannot open", "cannot open"]
    ts = [f.ts_ms for f in frames]
    assert t0 <= ts[0] and ts[-1] <= time.time() * 1000 and ts == sorted(ts), "wall-clock event time"
    assert ts[5] - ts[4] >= 3 * 50, "three backoff waits: after the lost read and after each failed reopen"
    assert [f.seq for f in frames] == list(range(8))


def test_stop_unblocks_a_waiting_capture_thread(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", n=30)
    cap = Capture(str(video), fps=25, realtime=False).start()
    next(cap.frames())
    while cap.stats.decoded < 3:  # one frame taken, two queued: the capture thread now waits on the full queue
        time.sleep(0.01)
    cap.stop()
    assert cap._thread is not None and not cap._thread.is_alive()


def test_capture_is_independent_of_the_media_folder(tmp_path: Path) -> None:
    """A copied real video reads the same as the original (guards the fixture videos themselves)."""
    copy = tmp_path / "vtest.avi"
    shutil.copy(media_path("vtest.avi"), copy)
    cap = Capture(str(copy), fps=10)
    with cap:
        first = next(cap.frames())
    assert first.image.shape == (576, 768, 3) and first.seq == 0
