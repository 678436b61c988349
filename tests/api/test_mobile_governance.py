"""The sticker on a probe vehicle and the privacy report of a mobile camera (governance/; G0, G4, T3):
`privaflow notice --camera <mobile> --lang ja|en` prints the guidebook's in-vehicle case, and the
report lists the camera with its cell resolution and privacy zones, never where those zones are."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from privaflow.governance.notice import notice_markdown
from privaflow.governance.report import REPORT_SCHEMA, privacy_report, report_markdown
from privaflow.schemas.site import parse_site_config

SITE = {
    "site_id": "taxi-co",
    "operator": {"name": "Demo Taxi Co.", "contact": "privacy@taxi.example",
                 "purpose": "Surveying road furniture and congestion for map updates."},
    "cameras": [{"id": "taxi-7", "kind": "mobile", "source": "/dev/video0",
                 "classes": ["person", "car", "bus", "truck", "traffic light", "stop sign"],
                 "mobile": {"position": {"kind": "nmea_serial", "path": "/dev/ttyUSB0", "align": "utc"},
                            "h3_resolution": 8, "trip_end_radius_m": 400,
                            "privacy_zones": [{"id": "depot", "lat": 35.6581, "lon": 139.7017, "radius_m": 250},
                                              {"id": "driver-home-3", "lat": 35.7012, "lon": 139.6543}]}},
                {"id": "gate", "source": 0, "classes": ["person"]}],
    "partners": [{"id": "mapmaker", "k_anonymity": 4, "tables": ["road_conditions"]}],
}


@pytest.fixture
def site():
    return parse_site_config(SITE)


@pytest.mark.parametrize("lang,title,zone,ends,cell", [
    ("ja", "車載カメラ作動中", "半径250メートル以内", "出発地と到着地から400メートル以内", "一辺約531メートル"),
    ("en", "In-vehicle camera in operation", "Within 250 m of 1 registered place", "Within 400 m of where a trip "
     "starts or ends", "about 531 m across a side (H3 resolution 8)")])
def test_the_sticker_says_what_a_moving_camera_reads_and_where_it_records_nothing(site, lang, title, zone, ends,
                                                                                   cell) -> None:
    text = notice_markdown(site, "taxi-7", lang)
    assert text.startswith(f"# {title}")
    for expected in (zone, ends, cell, "Demo Taxi Co.", "privacy@taxi.example", "mapmaker"):
        assert expected in text
    assert "35.65" not in text and "139.70" not in text  # a driver's home is what a zone protects


def test_a_fixed_camera_of_the_same_site_keeps_its_own_notice(site) -> None:
    assert notice_markdown(site, "gate", "en").startswith("# Camera in operation")


def test_the_report_lists_resolution_and_zones_by_id_and_radius_only(site) -> None:
    report = privacy_report(site, "taxi.yaml")
    jsonschema.validate(report, REPORT_SCHEMA)
    cam = next(c for c in report["cameras"] if c["camera_id"] == "taxi-7")
    assert cam["mobile"]["h3_resolution"] == 8 and cam["mobile"]["cell_edge_m"] == 531
    assert cam["mobile"]["privacy_zones"] == [{"id": "depot", "radius_m": 250.0},
                                              {"id": "driver-home-3", "radius_m": 300.0}]
    assert cam["mobile"]["trip_end_radius_m"] == 400 and "G4" in cam["mobile"]["requirements"]
    assert "mobile" not in next(c for c in report["cameras"] if c["camera_id"] == "gate")
    assert report["k_anonymity"]["road_conditions"]["k"] == 4
    assert "trips" in report["k_anonymity"]["road_conditions"]["rule"]
    md = report_markdown(report)
    assert "H3 resolution 8" in md and "`driver-home-3` (300 m)" in md
    assert "35.7012" not in json.dumps(report) + md


def test_the_command_prints_the_sticker(tmp_path: Path) -> None:
    cfg = tmp_path / "taxi.yaml"
    cfg.write_text(yaml.safe_dump(SITE))
    out = subprocess.run([sys.executable, "-m", "privaflow", "notice", "--config", str(cfg), "--camera", "taxi-7",
                          "--lang", "ja"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("# 車載カメラ作動中")
