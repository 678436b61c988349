"""RTSP capture from a real RTSP server (mediamtx) that ffmpeg publishes vtest.avi to: the agent
reads the stream and finds people in it; a camera that dies and comes back is reconnected to.

Needs Go (to build mediamtx once into .privaflow/bin/, about 2 minutes; `make rtsp-server`) and
ffmpeg. Without them these tests skip on a developer's machine and fail under CI.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fastavro
import pytest
from click.testing import CliRunner

from privaflow.edge.capture import Capture
from privaflow.edge.cli import edge
from privaflow.schemas.detections import record_frames
from privaflow_stack import rtsp
from privaflow_stack.rtsp import RtspCamera
from tests.conftest import media_path
from tests.edge.test_agent import site_yaml

pytestmark = pytest.mark.slow  # the first run builds a Go program; each stream takes ~3 s to open


def _missing(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module")
def mediamtx() -> Path:
    if shutil.which("ffmpeg") is None:
        _missing("ffmpeg not found: `apt-get install ffmpeg` (it publishes the test stream)")
    if not rtsp.mediamtx_built() and rtsp.find_go() is None:
        _missing(f"Go not found (on PATH or at {rtsp.GO_FALLBACK}): install Go 1.25+; it builds the RTSP "
                 "server (`make rtsp-server`)")
    return rtsp.build_mediamtx()


@pytest.fixture
def camera(mediamtx: Path) -> Iterator[RtspCamera]:
    with RtspCamera(media_path("vtest.avi")) as cam:
        yield cam


def test_agent_reads_an_rtsp_stream_and_finds_people(tmp_path: Path, camera: RtspCamera) -> None:
    out = tmp_path / "records.avro"
    t0 = datetime.now(UTC)
    result = CliRunner().invoke(edge, ["run", "--config", str(site_yaml(tmp_path, media_path("vtest.avi"))),
                                       "--camera", "street", "--source", camera.url, "--sink", f"file:{out}",
                                       "--max-frames", "30"])
    assert result.exit_code == 0, result.output
    assert "done street: 30 frames" in result.output
    with open(out, "rb") as f:
        records = [frame for r in fastavro.reader(f) for frame in record_frames(r)]  # type: ignore[arg-type]
    assert len(records) == 30
    assert (records[0]["frame_width"], records[0]["frame_height"]) == (640, 480), "768x576 downscaled"
    seqs, ts = [r["frame_seq"] for r in records], [datetime.fromtimestamp(r["ts"] / 1000, UTC) for r in records]
    assert seqs == sorted(set(seqs)), "gaps only where a live frame was dropped"
    assert t0 <= ts[0] and ts == sorted(ts) and ts[-1] <= datetime.now(UTC), "wall-clock event time"
    people = [sum(d["class_name"] == "person" for d in r["detections"]) for r in records]
    assert sum(n > 0 for n in people) >= 20 and max(people) >= 3, f"vtest.avi is full of pedestrians: {people}"


def test_a_lost_rtsp_stream_is_reconnected(camera: RtspCamera, caplog: pytest.LogCaptureFixture) -> None:
    """The publisher is killed: capture reports the loss, retries while the path is empty, and reads
    on once the camera publishes again."""
    caplog.set_level(logging.WARNING, logger="privaflow.edge.capture")
    cap = Capture(camera.url, fps=10, max_backoff_s=0.5)
    with cap:
        frames = cap.frames(timeout_s=30)
        before = [next(frames) for _ in range(5)]
        assert cap.stats.connected and cap.stats.reconnects == 0

        camera.stop_publishing()
        deadline = time.monotonic() + 20
        while cap.stats.reconnects < 2 and time.monotonic() < deadline:  # lost, then a reopen refused
            time.sleep(0.05)
        assert cap.stats.reconnects >= 2 and not cap.stats.connected

        camera.publish()
        back = time.time() * 1000
        after = []
        for f in frames:
            if f.ts_ms > back:  # older frames may still be queued
                after.append(f)
                if len(after) == 5:
                    break
    assert len(after) == 5, "frames keep coming after the camera is back"
    assert after[0].seq > before[-1].seq
    lost = [r.getMessage() for r in caplog.records if "camera source lost" in r.getMessage()]
    assert lost[:2] == ["camera source lost (read failed); reconnecting in 0.5 s",
                        "camera source lost (cannot open); reconnecting in 0.5 s"]
