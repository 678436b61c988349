"""The partner consumer printed in the README ("## For partners"; docs/partners.md until the README
has that section) runs as written against the real broker and registry and prints our record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from privaflow.schemas.topics import partner_topic_name

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HEADING = "## For partners"


def partner_section() -> tuple[Path, str]:
    """The "For partners" section of the README, or of docs/partners.md while the README lacks one."""
    for path in (REPO / "README.md", REPO / "docs" / "partners.md"):
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        lines = text.splitlines()
        if HEADING in lines:
            start = lines.index(HEADING) + 1
            end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
            return path, "\n".join(lines[start:end])
    raise AssertionError(f"neither README.md nor docs/partners.md has a {HEADING!r} section")


def snippet() -> str:
    path, section = partner_section()
    blocks = re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) == 1, f"expected exactly one python block in {path} {HEADING!r}, found {len(blocks)}"
    return blocks[0]


def test_the_section_has_the_consumer_and_a_curl_example() -> None:
    code = snippet()
    compile(code, "partner snippet", "exec")
    for name in ("SchemaRegistryClient", "AvroDeserializer", "StringDeserializer", "PRIVAFLOW_BOOTSTRAP",
                 "PRIVAFLOW_REGISTRY_URL", partner_topic_name("traffic_volume")):
        assert name in code
    assert not re.search(r"^\s*(from|import)\s+(privaflow|schemas|streams|edge|stack)\b", code, re.M), \
        "the snippet must use confluent-kafka only, not privaflow's own code"
    _, section = partner_section()
    assert re.search(r"curl -H \"Authorization: Bearer \$\w+\"", section)
    assert "/api/v1/tables/traffic_volume" in section


# A snippet that hangs prints every thread's stack and exits well before the test's own timeout, so
# a failure says where it waited (CI once saw it silent for 180 s, never reproduced here).
WATCHDOG = "import faulthandler\nfaulthandler.dump_traceback_later(120, exit=True)\n"


def _run(stack, group: str, **env: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-c", WATCHDOG + snippet()], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PRIVAFLOW_BOOTSTRAP": stack.bootstrap, "PYTHONUNBUFFERED": "1",
                              "PRIVAFLOW_REGISTRY_URL": stack.registry_url, "PRIVAFLOW_GROUP": group, **env})
    assert out.returncode == 0, f"exit {out.returncode}; stdout ends {out.stdout[-1500:]!r}\nstderr:\n{out.stderr}"
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_the_partner_consumer_prints_our_record(stack, kit, produce_partner) -> None:
    site_id = f"test-snippet-{uuid.uuid4().hex[:8]}"
    rec = kit.traffic(site_id, 0, "stop-line", "northbound", "car", 17, 42.5)
    key = kit.key("traffic_volume", rec, ("stop-line", "northbound", "car"))
    produce_partner([("traffic_volume", key, rec)])

    # quiet for 10 s after the last message: the whole table has been printed
    rows = _run(stack, f"partner-test-{uuid.uuid4().hex[:8]}", PRIVAFLOW_IDLE_TIMEOUT_S="10")
    ours = [r for r in rows if r.get("site_id") == site_id]
    assert ours == [{"key": key, "site_id": site_id, "line_id": "stop-line", "direction": "northbound",
                     "class_name": "car", "window_start": "2024-05-01T08:00:00+00:00",
                     "window_end": "2024-05-01T08:01:00+00:00", "count": 17, "suppressed": False,
                     "mean_speed_kmh": 42.5, "p85_speed_kmh": 47.5, "window_length_s": 60}]


def test_the_max_messages_knob_stops_the_consumer(stack, kit, produce_partner) -> None:
    site_id = f"test-snippet-{uuid.uuid4().hex[:8]}"
    rec = kit.traffic(site_id, 0, "stop-line", "southbound", "bus", None)
    produce_partner([("traffic_volume", kit.key("traffic_volume", rec, ("stop-line", "southbound", "bus")), rec)])
    rows = _run(stack, f"partner-test-{uuid.uuid4().hex[:8]}", PRIVAFLOW_MAX_MESSAGES="1",
                PRIVAFLOW_IDLE_TIMEOUT_S="60")
    assert len(rows) == 1 and "key" in rows[0]
