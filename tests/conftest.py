"""Shared fixtures. The real local stack (Kafka + Apicurio Registry) starts once per session.

Set PRIVAFLOW_BOOTSTRAP and PRIVAFLOW_REGISTRY_URL to run the integration tests against another
cluster instead; then the stack is neither started nor stopped here (and the broker-restart tests skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = bool(os.environ.get("PRIVAFLOW_BOOTSTRAP"))


class StackHandle:
    """What tests get: where the stack listens, and control over the broker for fault tests."""

    def __init__(self, local: object | None, bootstrap: str, registry_url: str) -> None:
        self._local = local
        self.bootstrap = bootstrap
        self.registry_url = registry_url

    def _need_local(self) -> object:
        if self._local is None:
            pytest.skip("needs the project's own local stack (PRIVAFLOW_BOOTSTRAP points elsewhere)")
        return self._local

    def stop_kafka(self, kill: bool = False) -> None:
        self._need_local().stop_kafka(kill=kill)  # type: ignore[attr-defined]

    def start_kafka(self) -> None:
        self._need_local().start_kafka()  # type: ignore[attr-defined]

    def stop_registry(self) -> None:
        self._need_local().stop_registry()  # type: ignore[attr-defined]

    def start_registry(self) -> None:
        self._need_local().start_registry()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def stack() -> Iterator[StackHandle]:
    """The running stack; started (and afterwards stopped) by the suite unless it was already up."""
    if EXTERNAL:
        yield StackHandle(None, os.environ["PRIVAFLOW_BOOTSTRAP"],
                          os.environ.get("PRIVAFLOW_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"))
        return
    from stack.local import LocalStack

    local = LocalStack()
    was_up = local.kafka.pid() is not None and local.registry.pid() is not None
    local.up()
    os.environ["PRIVAFLOW_BOOTSTRAP"] = local.bootstrap
    os.environ["PRIVAFLOW_REGISTRY_URL"] = local.registry_url
    try:
        yield StackHandle(local, local.bootstrap, local.registry_url)
    finally:
        # a stack someone started by hand stays up; the one the suite started goes away
        if not was_up and not os.environ.get("PRIVAFLOW_KEEP_STACK"):
            local.down()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic names, subjects and consumer groups of one test."""
    return uuid.uuid4().hex[:8]


def media_path(name: str) -> Path:
    """A sample video fetched by `make media`; missing media fails under CI and skips elsewhere."""
    p = REPO / ".privaflow" / "media" / name
    if not p.exists():
        msg = f"{p} missing: run `make media`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return p


def _frame_record(n: int = 2) -> dict:
    import time

    det = {"track_id": 1, "class_name": "person", "confidence": 0.9, "x1": 0.1, "y1": 0.2, "x2": 0.3,
           "y2": 0.6, "foot_x": 0.2, "foot_y": 0.6, "world_x_m": None, "world_y_m": None, "speed_kmh": None,
           "heading_deg": None, "colour": None, "age_bracket": None, "gender": None}
    return {"site_id": "s", "camera_id": "c", "ts": int(time.time() * 1000), "frame_seq": 5,
            "frame_width": 640, "frame_height": 480, "detected": True,
            "detections": [dict(det, track_id=i) for i in range(n)]}


@pytest.fixture
def sample_frame():
    """A factory for valid FrameDetections dicts with n detections."""
    return _frame_record
