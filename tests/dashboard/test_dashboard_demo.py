"""`privaflow demo --duration S`: the main job end to end on the real footage and the local stack —
edge agents on vtest.avi and sample.mp4, a stream worker, the partner API and the dashboard — then a
summary of the tables. While it runs, the dashboard is loaded in headless Chromium and every number it
shows is checked against the API. Covers G3, G5, T5 (counts by place, direction, class; crowding)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard.reading import SCREENSHOTS, api_reading, assert_page_matches, expected_values, snapshot

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


def _page_matches_api(page: Any, base: str, site_id: str, token: str) -> None:
    """The numbers on the live page equal the API's for the same period. Windows keep closing while
    the demo runs, so a snapshot taken just before a window closed is retried after the next refresh."""
    for attempt in range(4):
        shown = snapshot(page)
        reading = api_reading(base, site_id, shown, token)
        api = reading["tables"]
        try:
            assert api["occupancy"], "the page's period holds no closed window of this run yet"
            assert_page_matches(shown["values"], expected_values(api, reading["site"], reading["map_rows"]))
            return
        except AssertionError:
            if attempt == 3:
                raise
            page.wait_for_function(f"Number(document.body.dataset.refreshes) > {shown['refreshes']}",
                                   timeout=20000)


early: list[str] = []  # what the demo printed on stderr before the token line


def _token_from(proc: subprocess.Popen[str]) -> str:
    """Read the demo's stderr up to the dashboard line and return the token in its #token= link."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        early.append(line)
        if "/dashboard/#token=" in line:
            return line.strip().split("#token=", 1)[1]
    pytest.fail("the demo printed no dashboard link with the operator's token:\n" + "".join(early)[-3000:])


def test_demo_runs_the_whole_pipeline_and_prints_the_tables(stack, page: Any) -> None:
    require_media("vtest.avi", "sample.mp4")
    port, worker_port = _free_port(), _free_port()
    # only this run's windows count (the stack may hold earlier demos' tables)
    started = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    launched = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "privaflow", "demo", "--duration", "100", "--port", str(port),
                             "--worker-port", str(worker_port)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # the demo prints the dashboard's address with the operator's token, as a new user gets it
        token = _token_from(proc)
        # while it runs: the dashboard is served and the operator API fills with closed windows
        deadline = time.monotonic() + 80
        rows: list[dict] = []
        html = ""
        while time.monotonic() < deadline and not rows:
            try:
                html = httpx.get(f"http://127.0.0.1:{port}/dashboard/", timeout=3).text
                r = httpx.get(f"http://127.0.0.1:{port}/api/v1/operator/tables/occupancy",
                              params={"from": started}, timeout=3, headers={"Authorization": f"Bearer {token}"})
                if r.status_code == 200:
                    rows = r.json()["rows"]
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert "privaflow" in html.lower()
        assert rows, "no occupancy window closed while the demo ran"
        assert {row["zone_id"] for row in rows} <= {"campus-west", "campus-east"}

        # the live page, in a real browser, shows the API's numbers
        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/dashboard/?refresh=3#token={token}")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30000)
        _page_matches_api(page, base, "demo-town", token)
        # counts at once: the operator view is not held back by k
        assert page.locator("[data-value='suppressed']").count() == 0
        # the intersection (T1, T5): congestion windows of both approaches (60 s in the demo, so the
        # first closes within about 80 s of the start), and the map showing one
        approaches: set[str] = set()
        while time.monotonic() < launched + 95 and approaches != {"market-sw", "market-ne"}:
            cg = httpx.get(f"{base}/api/v1/operator/tables/congestion", params={"from": started}, timeout=10,
                           headers={"Authorization": f"Bearer {token}"}).json()
            approaches = {r["approach_id"] for r in cg["rows"]}
            time.sleep(2)
        assert approaches == {"market-sw", "market-ne"}, "no congestion window closed while the demo ran"
        page.wait_for_function("document.getElementById('cg-window').dataset.value !== ''", timeout=20000)
        assert page.locator(".cg-map").count() == 1
        assert not page.errors, page.errors
        assert not page.outside_requests, page.outside_requests
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "dashboard-demo.png"), full_page=True)

        out, rest = proc.communicate(timeout=240)
        err = "".join(early) + rest
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # like Ctrl-C: the demo stops everything it started
            proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-3000:]
    assert f"dashboard   http://127.0.0.1:{port}/dashboard/#token=" in err
    assert "operator view: counts before suppression" in out and "what partners received" in out
    assert "traffic volume" in out and "occupancy" in out
    assert "campus-west" in out and "campus-east" in out
    assert "level " in out
    assert "congestion (latest closed window per approach):" in out and "market-ferry/market-sw" in out
