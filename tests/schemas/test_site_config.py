"""Site config: the example loads; errors name the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from privaflow.schemas.site import ConfigError, load_site_config, parse_site_config

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"


def test_example_config_loads() -> None:
    cfg = load_site_config(EXAMPLE)
    assert cfg.camera("campus").max_width == 640
    assert {line.id for line in cfg.lines_for("campus")} == {"campus-midline"}
    assert all(p.k_anonymity >= 5 for p in cfg.partners)


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("mutate,field,expected", [
    (lambda d: d["cameras"][0].update(max_width="wide"), "cameras.0.max_width", "integer"),
    (lambda d: d["lines"][0].update(points=[[0.1, 0.2], [1.5, 0.2]]), "lines.0.points.1.0", "less than or equal to 1"),
    (lambda d: d["zones"][0].update(camera="nope"), "", "names camera 'nope'"),
    (lambda d: d["partners"][0].update(tables=["faces"]), "partners.0.tables.0", "traffic_volume"),
    (lambda d: d["cameras"][0].update(mask=[]), "cameras.0.mask", "Extra inputs are not permitted"),
    (lambda d: d.pop("cameras"), "cameras", "Field required"),
])
def test_bad_config_names_file_field_and_expectation(tmp_path: Path, mutate, field: str, expected: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        load_site_config(path)
    msg = str(e.value)
    assert str(path) in msg and field in msg and expected in msg


def test_missing_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_site_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_site_config(bad)
    bad.write_text("- a list")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_site_config(bad)


def _dup(kind: str):
    return lambda d: d[kind].append(dict(d[kind][0]))


# Issue 13 finding 3: each of these loaded, and then crashed a worker, overflowed when publishing, set a
# topic's retention to 0 or published nonsense. Each is refused at load, naming the field.
@pytest.mark.parametrize("mutate,field,expected", [
    (lambda d: d["lines"][0].update(points=[[0.5, 0.5], [0.5, 0.5]]), "lines.0.points", "two distinct points"),
    (lambda d: d["windows"].update(occupancy=1e17), "windows.occupancy", "less than or equal to 604800"),
    (lambda d: d["retention"].update(detections_days=float("inf")), "retention.detections_days", "finite"),
    (lambda d: d["retention"].update(detections_days=1e-9), "retention.detections_days", "(one hour)"),
    (lambda d: d["counting"].update(dwell_bins_s=[30, -5, float("nan"), 30]), "counting.dwell_bins_s.2", "finite"),
    (lambda d: d["counting"].update(dwell_bins_s=[30, -5, 30]), "counting.dwell_bins_s", "strictly increasing"),
    (lambda d: d["zones"][0].update(polygon=[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]),
     "zones.0.polygon", "not a simple polygon (Self-intersection"),
    (lambda d: d["zones"][0].update(polygon=[[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]]), "zones.0.polygon", "no area"),
    (lambda d: d["cameras"][0].update(privacy_masks=[[[0.1, 0.1], [0.2, 0.2], [0.3, 0.3]]]),
     "cameras.0.privacy_masks", "mask 0 has no area"),
    (lambda d: d["lines"][0].update(directions=["in", "in"]), "lines.0.directions", "two different names"),
    (_dup("cameras"), "cameras.3.id", "'campus' is already used by cameras.0"),
    (_dup("lines"), "lines.4.id", "'campus-midline' is already used by lines.0"),
    (_dup("zones"), "zones.4.id", "'campus-west' is already used by zones.0"),
    (_dup("partners"), "partners.3.id", "'city' is already used by partners.0"),
    (lambda d: d["partners"][1].update(token_env="PRIVAFLOW_TOKEN_CITY"), "partners.1.token_env", "already used"),
    (lambda d: d["partners"][0].update(token_env="HOME"), "partners.0.token_env", "PRIVAFLOW_TOKEN_"),
    (lambda d: d["lines"][0].update(id="mid|line"), "lines.0.id", "no spaces, '|', ','"),
    (lambda d: d["zones"][0].update(id="west,side"), "zones.0.id", "no spaces, '|', ','"),
    (lambda d: d["lines"][0].update(directions=["east\nbound", "west"]), "lines.0.directions.0", "line breaks"),
    (lambda d: d["zones"][0].update(id="campus-midline"), "lines.0.id", "is also a zone id"),
    (lambda d: d["cameras"][0].update(classes=["person", "pedestrian"]), "cameras.0.classes", "'pedestrian'"),
    (lambda d: d["cameras"][0].update(homography=[[1, 0, 0], [2, 0, 0], [0, 0, 1]]), "cameras.0.homography",
     "singular"),
])
def test_configs_that_used_to_load_and_then_fail_are_refused(tmp_path: Path, mutate, field: str,
                                                              expected: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.dump(data))  # yaml.dump writes .inf and .nan as YAML does
    with pytest.raises(ConfigError) as e:
        load_site_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: invalid site config") and f"  {field}: " in msg and expected in msg, msg


def test_ids_may_use_other_scripts_than_latin() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["lines"][0].update(id="改札-北", directions=["入場", "出場"])
    assert parse_site_config(data).lines[0].directions == ("入場", "出場")


# ---------------------------------------------------------------- issue 13 finding 4: `privaflow config check`


def _check(*args: str):
    from click.testing import CliRunner

    from privaflow.cli import main

    return CliRunner().invoke(main, ["config", "check", *args])


def test_config_check_prints_a_one_screen_summary_of_a_valid_site() -> None:
    r = _check("--config", str(EXAMPLE))
    assert r.exit_code == 0, r.output
    out = r.output.splitlines()
    assert out[0] == f"{EXAMPLE}: valid site config for site 'demo-town'"
    assert len(out) <= 24, "one screen"
    for words in ("camera campus:", "line campus-midline: westbound / eastbound", "zone campus-west",
                  "windows: traffic_volume 60 s", "partner city: k=5", "HTTP token in $PRIVAFLOW_TOKEN_CITY"):
        assert any(words in line for line in out), words
    assert out[-1].startswith("ok: the edge agent accepts every camera and its detector model; the stream worker")


def test_config_check_warns_about_a_line_under_a_privacy_mask(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["cameras"][0]["privacy_masks"].append([[0.4, 0.0], [0.6, 0.0], [0.6, 1.0], [0.4, 1.0]])
    path = _write(tmp_path, data)
    r = _check("--config", str(path), "--no-models")
    assert r.exit_code == 0
    assert "warning: lines.0: line 'campus-midline' lies entirely under camera 'campus''s privacy masks" in r.output


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d["lines"][0].update(points=[[0.5, 0.5], [0.5, 0.5]]), "  lines.0.points: the two points are 0 apart"),
    (lambda d: d["partners"][0].update(token_env="HOME"), "  partners.0.token_env: expected the name of a variable"),
    (lambda d: d["cameras"][1].update(detector={"kind": "yolo", "path": "/nonexistent/yolo.onnx"}),
     "cameras.1.detector (street): detector.path: model file not found: /nonexistent/yolo.onnx"),
])
def test_config_check_refuses_naming_file_field_and_expectation(tmp_path: Path, mutate, expected: str) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    mutate(data)
    path = _write(tmp_path, data)
    r = _check("--config", str(path))
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output  # no traceback
    assert r.output.startswith(f"error: {path}") and expected in r.output, r.output


def test_config_check_refuses_a_model_that_is_not_onnx(tmp_path: Path) -> None:
    model = tmp_path / "yolo.onnx"
    model.write_text("not a model")
    data = yaml.safe_load(EXAMPLE.read_text())
    data["cameras"][0]["detector"] = {"kind": "yolo", "path": str(model)}
    r = _check("--config", str(_write(tmp_path, data)))
    assert r.exit_code == 2 and f"cameras.0.detector (campus): {model}: not a model onnxruntime can load" in r.output


@pytest.mark.parametrize("content,expected", [
    (b"cameras: [unclosed", "not valid YAML"), (b"- a list", "expected a mapping"),
    (b"\xff\xfe\x00binary", "cannot read site config"), (None, "site config not found"),
])
def test_config_check_on_files_that_are_no_config(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "site.yaml"
    if content is not None:
        path.write_bytes(content)
    r = _check("--config", str(path))
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit) and expected in r.output, r.output


# Issue 16: the `mobile` camera kind, refused at load where it cannot work, each message naming its field
def _mobile(**kw: object) -> dict:
    cam = {"id": "taxi", "source": "d.mp4", "kind": "mobile",
           "mobile": {"position": {"kind": "gpx", "path": "d.gpx"}}}
    cam.update(kw)
    return cam


@pytest.mark.parametrize("cameras,extra,field,expected", [
    ([_mobile(mobile=None)], {}, "cameras.0.mobile", "needs mobile settings"),
    ([_mobile(homography=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])], {}, "cameras.0.homography", "ground plane moves"),
    ([_mobile(attributes=True)], {}, "cameras.0.attributes", "only as a count (G4)"),
    ([{"id": "c", "source": 0, "mobile": {"position": {"kind": "gpx", "path": "d.gpx"}}}], {}, "cameras.0.mobile",
     "only a camera of kind 'mobile'"),
    ([_mobile()], {"lines": [{"id": "l", "camera": "taxi", "points": [[0.1, 0.5], [0.9, 0.5]]}]}, "lines.0.camera",
     "which is mobile"),
    ([_mobile(), _mobile(id="taxi-2", mobile={"position": {"kind": "gpx", "path": "d.gpx"}, "h3_resolution": 8})],
     {}, "cameras.1.mobile.h3_resolution", "must share one"),
    ([_mobile(mobile={"position": {"kind": "nmea_serial", "path": "/dev/ttyUSB0"}})], {},
     "cameras.0.mobile.position.align", "expected 'utc'"),
    ([_mobile(mobile={"position": {"kind": "gpx", "path": "d.gpx"}, "h3_resolution": 13})], {},
     "cameras.0.mobile.h3_resolution", "less than or equal to 10"),
])
def test_mobile_cameras_are_refused_where_they_cannot_work(cameras, extra, field, expected) -> None:
    with pytest.raises(ConfigError) as e:
        parse_site_config({"site_id": "s", "cameras": cameras, **extra}, "taxi.yaml")
    msg = str(e.value)
    assert f"{field}: " in msg and expected in msg, msg


def test_the_mobile_example_loads_and_its_track_is_checked(tmp_path: Path) -> None:
    import subprocess
    import sys

    site = load_site_config(REPO / "examples" / "mobile.yaml")
    assert [c.id for c in site.mobile_cameras()] == ["taxi-1", "taxi-2"] and site.h3_resolution() == 9
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "examples" / "mobile.yaml").read_text().replace("examples/tracks/drive.gpx",
                                                                            str(tmp_path / "none.gpx")))
    out = subprocess.run([sys.executable, "-m", "privaflow", "config", "check", "--config", str(bad), "--no-models"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2 and "cameras.0.mobile.position (taxi-1)" in out.stderr and "not found" in out.stderr
