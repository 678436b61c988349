"""Notices (G0, T3) and the privacy report (G0, T9, T10), generated from the site config."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from privaflow.governance.cli import notice, privacy
from privaflow.governance.facts import camera_facts, mask_area_fraction
from privaflow.governance.report import REPORT_SCHEMA, privacy_report
from privaflow.schemas.site import parse_site_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path, kit):
    """write(**overrides) -> path of a site YAML (the kit's two-camera site)."""
    def write(**over) -> str:
        p = tmp_path / "site.yaml"
        p.write_text(yaml.safe_dump(kit.site_dict("gov-site", **over), allow_unicode=True), encoding="utf-8")
        return str(p)
    return write


def run(cmd, *args: str):
    return CliRunner().invoke(cmd, list(args), catch_exceptions=False)


@pytest.mark.parametrize("lang", ["en", "ja"])
@pytest.mark.parametrize("fmt", ["md", "html"])
def test_notice_names_operator_contact_purpose_retention_and_partners(config, lang: str, fmt: str) -> None:
    out = run(notice, "--config", config(retention={"detections_days": 3, "partner_days": 400}),
              "--camera", "north", "--lang", lang, "--format", fmt)
    assert out.exit_code == 0, out.output
    text = out.output
    for must in ("Demo Town Traffic Office", "privacy@demo-town.example", "Counting vehicles to plan signal timings.",
                 "City traffic planning"):
        assert must in text
    assert ("3日間" in text and "400日間" in text) if lang == "ja" else ("3 days" in text and "400 days" in text)
    # the north camera feeds traffic volumes (city) and dwell (retailer); it counts vehicles only, so it
    # has no head count of people for the paper's occupancy table (streams/tracks.py)
    assert "Corner shop" in text and "Local paper" not in text
    assert ("counts below 5" in text) if lang == "en" else ("5件未満" in text)


def test_japanese_notice_for_a_traffic_camera_reads_as_a_japanese_sign(config) -> None:
    text = run(notice, "--config", config(), "--camera", "north", "--lang", "ja").output
    assert text.startswith("# 交通流計測カメラ作動中")
    for heading in ("## 利用目的", "## 取得する情報", "## 処理後すぐに消去する情報", "## 保存する情報と保存期間",
                    "## 提供先", "## 問い合わせ先"):
        assert heading in text
    assert "横640ピクセル" in text and "2か所" in text and "約20%" in text  # masks cover 0.1 + 0.1 of the frame
    assert "自動車・バス・トラック・オートバイ" in text
    assert "開示・削除・利用停止" in text  # T9: requests are handled


def test_person_camera_notice_mentions_attribute_crops_and_no_traffic_title(config) -> None:
    text = run(notice, "--config", config(), "--camera", "hall", "--lang", "en").output
    assert text.startswith("# Camera in operation")
    assert "estimated age group and gender" in text and "discarded as soon as the estimate is made" in text
    assert "No areas are blacked out" in text and "480 pixels wide" in text
    assert "City traffic planning" in text  # the door line feeds traffic volumes


def test_a_config_without_operator_fails_naming_the_missing_items(config) -> None:
    out = CliRunner().invoke(notice, ["--config", config(operator=None), "--camera", "north", "--lang", "en"])
    assert out.exit_code == 2
    for item in ("operator.name", "operator.contact", "operator.purpose"):
        assert item in out.output
    blank = CliRunner().invoke(notice, ["--config", config(operator={"name": "X", "contact": " ", "purpose": ""}),
                                        "--camera", "north", "--lang", "ja"])
    assert blank.exit_code == 2 and "operator.contact" in blank.output and "operator.purpose" in blank.output
    assert "operator.name" not in blank.output


def test_unknown_camera_and_bad_config_exit_2(config, tmp_path) -> None:
    out = CliRunner().invoke(notice, ["--config", config(), "--camera", "nope", "--lang", "en"])
    assert out.exit_code == 2 and "nope" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("site_id: [1\n")
    out = CliRunner().invoke(notice, ["--config", str(bad), "--camera", "north", "--lang", "en"])
    assert out.exit_code == 2 and "bad.yaml" in out.output


def test_html_notice_is_self_contained_and_escapes_config_text(config) -> None:
    evil = {"name": "<script>alert(1)</script> & Co", "contact": "\"><img src=x onerror=alert(2)>",
            "purpose": "Count <b>cars</b>"}
    cfg = config(operator=evil, partners=[{"id": "p", "name": "<script>x()</script>", "tables": ["occupancy"]}])
    page = run(notice, "--config", cfg, "--camera", "north", "--lang", "en", "--format", "html").output
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in page and "&quot;&gt;&lt;img" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resources"
    assert '<html lang="en">' in page and "@page" in page
    md = run(notice, "--config", cfg, "--camera", "north", "--lang", "ja").output
    assert "<script" not in md


def test_notice_via_the_privaflow_command(config) -> None:
    """The lead's cli attaches `notice` from this module: the real entry point, as a subprocess."""
    out = subprocess.run([sys.executable, "-m", "privaflow", "notice", "--config", config(), "--camera", "north",
                          "--lang", "ja"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "交通流計測カメラ作動中" in out.stdout


def test_mask_area_is_the_union_of_the_polygons() -> None:
    half = [(0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0)]
    assert mask_area_fraction([]) == 0.0
    assert mask_area_fraction([half]) == pytest.approx(0.5, abs=0.002)
    assert mask_area_fraction([half, half]) == pytest.approx(0.5, abs=0.002)  # overlap counted once
    assert mask_area_fraction([[(0, 0), (1, 0), (0, 1)]]) == pytest.approx(0.5, abs=0.002)


def test_facts_follow_the_config(kit) -> None:
    site = parse_site_config(kit.site_dict("s"))
    north, hall = camera_facts(site, "north"), camera_facts(site, "hall")
    assert north.traffic and not hall.traffic
    # counting vehicles only, north has no head count of people (occupancy) but colours of vehicles
    assert north.tables == ("traffic_volume", "flow_lines", "dwell", "vehicle_colours")
    assert hall.tables == ("traffic_volume", "occupancy", "flow_lines", "dwell", "attributes")
    assert [p.id for p, _ in north.shared] == ["city", "retailer"]
    assert north.colour and not hall.colour and hall.attributes and not north.attributes


def test_json_report_validates_and_covers_every_camera(config) -> None:
    out = run(privacy, "report", "--config", config(), "--format", "json")
    assert out.exit_code == 0
    report = json.loads(out.output)
    jsonschema.Draft202012Validator.check_schema(REPORT_SCHEMA)
    jsonschema.validate(report, REPORT_SCHEMA)
    cams = {c["camera_id"]: c for c in report["cameras"]}
    assert set(cams) == {"north", "hall"}
    assert cams["north"]["masks"]["count"] == 2
    assert cams["north"]["masks"]["area_fraction"] == pytest.approx(0.2, abs=0.005)
    assert cams["hall"]["masks"] == {**cams["hall"]["masks"], "count": 0, "area_fraction": 0.0}
    kept = {k["item"]: k for k in cams["north"]["kept"]}
    assert kept["detection records"]["retention_days"] == 7 and kept["partner aggregates"]["retention_days"] == 365
    # north counts vehicles only: no head count of people (occupancy), so the press gets nothing of it
    assert {s["partner_id"]: s["privacy"]["k"] for s in cams["north"]["shared"]} == {"city": 5, "retailer": 10}
    assert {s["partner_id"]: s["privacy"]["k"] for s in cams["hall"]["shared"]} == {"city": 5, "retailer": 10,
                                                                                   "press": 20}
    # occupancy's head-count statistics follow the policy too (issue 12): under the strictest k, the press's
    occupancy = report["k_anonymity"]["occupancy"]
    assert occupancy["k"] == 20 and "crowding level" in occupancy["rule"]
    assert report["k_anonymity"]["dwell"]["k"] == 10 and report["k_anonymity"]["traffic_volume"]["k"] == 5
    # dead letters (issue 12 finding 6): what they hold, kept as long as the detections
    assert kept["dead letters"]["retention_days"] == kept["detection records"]["retention_days"] == 7
    assert "pseudonymous track ids" in kept["dead letters"]["description"]
    assert "nothing identifying is stored" in report["deletion_on_request"]["statement"]
    assert "T9" in report["deletion_on_request"]["requirements"]
    assert {"G0", "T3", "T4", "T6", "T7", "T8", "T9", "T10"} <= set(report["requirements_cited"])
    assert any(d["item"] == "person crops" and d["requirements"] == ["G1"]
               for d in cams["hall"]["processed_and_discarded"])
    assert report["missing"] == []


def test_markdown_report_has_a_section_per_camera(config) -> None:
    out = run(privacy, "report", "--config", config())
    assert out.exit_code == 0
    md = out.output
    sections = re.findall(r"^## Camera `([^`]+)`$", md, re.M)
    assert sections == ["north", "hall"]
    north = md.split("## Camera `north`")[1].split("## Camera `hall`")[0]
    for must in ("**Captured:**", "**Masks in force:** 2", "**Processed and discarded at once:**", "**Kept:**",
                 "**Shared with:**", "7 days", "365 days", "k = 5", "(T4"):
        assert must in north
    assert "nothing identifying is stored" in md and "(T9" in md


def test_a_dp_partner_is_reported_with_its_mechanism_budget_and_where_spending_is_counted(kit, tmp_path) -> None:
    """Issue 12: `privaflow privacy report` shows each partner's mechanism and the budget; the spending
    lives in the workers' checkpointed state, so the report names the metrics that count it."""
    data = kit.site_dict("s")
    data["partners"].append({"id": "lab", "tables": ["traffic_volume", "occupancy"],
                             "privacy": {"mechanism": "laplace", "epsilon_per_day": 2.88}})
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    report = json.loads(run(privacy, "report", "--config", str(path), "--format", "json").output)
    jsonschema.validate(report, REPORT_SCHEMA)
    lab = next(p for p in report["partners"] if p["id"] == "lab")
    assert lab["privacy"]["mechanism"] == "laplace" and lab["privacy"]["epsilon_per_day"] == 2.88
    assert lab["privacy"]["epsilon_per_window"] == pytest.approx(2.88 / (1440 + 1440))  # default: 60-s windows
    assert lab["privacy"]["spent"]["metrics"] == ["privaflow_dp_epsilon_spent_total",
                                                  "privaflow_dp_windows_withheld_total"]
    assert lab["topics"] == ["privaflow.partner.dp.lab.traffic-volume.v2", "privaflow.partner.dp.lab.occupancy.v1"]
    city = next(p for p in report["partners"] if p["id"] == "city")
    assert city["privacy"] == {"mechanism": "k_anonymity", "k": 5, "shared_topic_k": {"traffic_volume": 5,
                                                                                      "occupancy": 20}}
    md = run(privacy, "report", "--config", str(path)).output
    assert "### Differential privacy" in md and 'privaflow_dp_epsilon_spent_total{partner="lab"}' in md
    assert "differential privacy, ε = 2.88 per camera and day" in md


def test_report_without_operator_still_reports_and_flags_it(config) -> None:
    out = CliRunner().invoke(privacy, ["report", "--config", config(operator=None), "--format", "json"])
    assert out.exit_code == 0
    report = json.loads(out.stdout)
    assert report["operator"] is None and "operator.contact" in report["missing"]
    jsonschema.validate(report, REPORT_SCHEMA)


def test_report_is_the_same_through_the_function(kit) -> None:
    site = parse_site_config(kit.site_dict("s"))
    assert privacy_report(site)["site_id"] == "s"
