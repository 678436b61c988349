"""`privaflow demo --duration S`: the main job end to end on the real footage and the local stack —
edge agents on vtest.avi and sample.mp4, a stream worker, the partner API and the dashboard — then a
summary of the tables. While it runs, the dashboard page is served and the operator API
fills with closed windows. Covers G3, G5, T5 (counts by place, direction, class; crowding)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def require_media(*names: str) -> None:
    """The footage `make media` fetches; missing footage fails under CI and skips elsewhere."""
    missing = [n for n in names if not (REPO / ".privaflow" / "media" / n).exists()]
    if missing:
        msg = f"{', '.join(missing)} missing: run `make media`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_demo_runs_the_whole_pipeline_and_prints_the_tables(stack) -> None:
    require_media("vtest.avi", "sample.mp4")
    port, worker_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "privaflow", "demo", "--duration", "100", "--port", str(port),
                             "--worker-port", str(worker_port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # while it runs: the dashboard is served and the operator API fills with closed windows
        deadline = time.monotonic() + 80
        rows: list[dict] = []
        html = ""
        while time.monotonic() < deadline and not rows:
            try:
                html = httpx.get(f"http://127.0.0.1:{port}/dashboard/", timeout=3).text
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/operator/tables/occupancy", timeout=3)
                if r.status_code == 200:
                    rows = r.json()["rows"]
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert "privaflow" in html.lower()
        assert rows, "no occupancy window closed while the demo ran"
        assert {row["zone_id"] for row in rows} <= {"campus-west", "campus-east"}

        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # like Ctrl-C: the demo stops everything it started
            proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    assert "dashboard   http://127.0.0.1:" in err
    assert "traffic volume" in out and "occupancy" in out
    assert "campus-west" in out and "campus-east" in out
    assert "level " in out
