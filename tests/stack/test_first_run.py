"""A new user's first `privaflow demo` (issue 13): an empty data directory and an empty registry, two
edge agents and a stream worker registering the same subjects at once, and a summary that shows
traffic-volume numbers. Runs in a home of its own (PRIVAFLOW_HOME, only the fetched jars shared) on
free ports, so its broker and registry start from nothing; the session stack's registry already holds
these subjects and could not show a first run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from privaflow_stack.local import home as default_home
from tests.conftest import free_ports

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_first_demo_on_an_empty_machine_shows_traffic_volumes(tmp_path: Path, stack) -> None:
    for video in ("vtest.avi", "sample.mp4"):
        if not (REPO / ".privaflow" / "media" / video).exists():
            (pytest.fail if os.environ.get("CI") else pytest.skip)(f"{video} missing: run `make media`")
    home = tmp_path / "first-run"
    home.mkdir()
    (home / "stack").symlink_to(default_home() / "stack")  # the jars only: no data, no schemas
    kafka, controller, registry, mgmt, api, worker = free_ports(6)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVAFLOW_")}  # not the session stack's
    env.update(PRIVAFLOW_HOME=str(home), PRIVAFLOW_KAFKA_PORT=str(kafka), PRIVAFLOW_CONTROLLER_PORT=str(controller),
               PRIVAFLOW_REGISTRY_PORT=str(registry), PRIVAFLOW_REGISTRY_MGMT_PORT=str(mgmt))
    try:
        demo = subprocess.run([sys.executable, "-m", "privaflow", "demo", "--duration", "60", "--port", str(api),
                               "--worker-port", str(worker)], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=420)
        subjects = subprocess.run(["curl", "-s", f"http://127.0.0.1:{registry}/apis/ccompat/v7/subjects"],
                                  capture_output=True, text=True, timeout=30).stdout
    finally:
        down = subprocess.run([sys.executable, "-m", "privaflow", "stack", "down"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=180)
    logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                     for p in sorted((home / "demo").glob("*.log")))
    assert demo.returncode == 0, f"{demo.stderr[-3000:]}\n{logs}"
    assert "already exists" not in logs, logs  # Apicurio's 409 on concurrent registration, seen as an error
    out = demo.stdout
    volume = out[out.index("traffic volume"):out.index("occupancy")]
    rows = re.findall(r"^  (\S+) +(\S+) +(\S+) +(\d+)$", volume, re.MULTILINE)
    # the operator's view (issue 12): the counts before any suppression, and what each partner got
    assert rows and all(int(n) >= 1 for *_, n in rows), f"no traffic-volume numbers:\n{out}"
    assert "what partners received" in out, out
    assert {line for line, *_ in rows} <= {"campus-midline", "street-crosswalk"}
    assert "(no closed windows yet)" not in volume
    assert "privaflow.detections.v2-value" in subjects, "the demo registered into its own, new registry"
    assert down.returncode == 0, down.stderr
