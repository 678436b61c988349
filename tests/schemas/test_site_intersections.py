"""Intersections in the site config (issue 17): approaches refer to their own camera's lines and zones,
need a homography, and `privaflow config check` shows them. Vehicles-only cameras (T2) and their
masks (T4). Every refusal names the file, the field and what was expected (issue 13's rule)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from privaflow.schemas.site import ConfigError, load_site_config, parse_site_config
from privaflow.schemas.site_check import site_warnings
from privaflow.schemas.vocabulary import VEHICLE_CLASSES

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "site.yaml"
H = [[40, 0, 0], [0, 60, 0], [0, 0, 1]]


def junction(**over: Any) -> dict[str, Any]:
    """One vehicles-only camera watching two approaches of one intersection."""
    data: dict[str, Any] = {
        "site_id": "j",
        "cameras": [{"id": "cam", "source": 0, "vehicles_only": True, "homography": H,
                     "privacy_masks": [[[0, 0], [0.2, 0], [0.2, 1], [0, 1]]]}],
        "lines": [{"id": "n-stop", "camera": "cam", "points": [[0.3, 0.5], [0.7, 0.5]],
                   "directions": ["southbound", "northbound"]},
                  {"id": "e-stop", "camera": "cam", "points": [[0.75, 0.55], [0.75, 0.9]],
                   "directions": ["westbound", "eastbound"]}],
        "zones": [{"id": "n-lane", "camera": "cam", "polygon": [[0.5, 0.1], [0.7, 0.1], [0.7, 0.5], [0.5, 0.5]]},
                  {"id": "e-lane", "camera": "cam", "polygon": [[0.75, 0.6], [0.98, 0.6], [0.98, 0.8], [0.75, 0.8]]}],
        "intersections": [{"id": "x", "name": "Main St / Side St", "approaches": [
            {"id": "north", "camera": "cam", "road": "Main St", "compass": "N",
             "inbound": {"line": "n-stop", "direction": "southbound"},
             "outbound": {"line": "n-stop", "direction": "northbound"}, "lanes": ["n-lane"]},
            {"id": "east", "camera": "cam", "road": "Side St", "compass": "E",
             "inbound": {"line": "e-stop", "direction": "westbound"}, "lanes": ["e-lane"], "free_flow_kmh": 30}]}],
    }
    data.update(over)
    return data


def test_an_intersection_loads_with_its_approaches() -> None:
    site = parse_site_config(junction())
    (x,) = site.intersections
    assert [a.id for a in x.approaches] == ["north", "east"]
    assert [a.id for _x, a in site.approaches_for("cam")] == ["north", "east"]
    north, east = x.approaches
    assert (north.inbound.line, north.inbound.direction, north.outbound.direction) == ("n-stop", "southbound",
                                                                                       "northbound")
    assert east.outbound is None and east.free_flow_kmh == 30 and north.free_flow_kmh == 50


def test_a_vehicles_only_camera_counts_exactly_the_vehicles() -> None:
    """T2: only vehicles on the connected roads, bicycles excluded."""
    site = parse_site_config(junction())
    assert tuple(site.camera("cam").classes) == VEHICLE_CLASSES
    assert "bicycle" not in VEHICLE_CLASSES and "person" not in VEHICLE_CLASSES


def _problem(data: dict[str, Any], tmp_path: Path) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as e:
        load_site_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: invalid site config"), msg
    return msg


def _mutate(fn: Any) -> dict[str, Any]:
    data = copy.deepcopy(junction())
    fn(data)
    return data


def _approach(d: dict[str, Any], i: int = 0) -> dict[str, Any]:
    return d["intersections"][0]["approaches"][i]  # type: ignore[no-any-return]


@pytest.mark.parametrize("mutate,field,expected", [
    (lambda d: _approach(d)["inbound"].update(line="nope"), "intersections.0.approaches.0.inbound.line",
     "'nope' is not a line of camera 'cam' (have: e-stop, n-stop)"),
    (lambda d: _approach(d)["inbound"].update(direction="eastbound"), "intersections.0.approaches.0.inbound.direction",
     "line 'n-stop' counts 'southbound' and 'northbound', not 'eastbound'"),
    (lambda d: _approach(d).update(lanes=["n-lane", "gone"]), "intersections.0.approaches.0.lanes.1",
     "'gone' is not a zone of camera 'cam' (have: e-lane, n-lane)"),
    (lambda d: _approach(d).update(camera="other"), "intersections.0.approaches.0.camera",
     "names camera 'other', which is not in cameras"),
    (lambda d: d["cameras"][0].pop("homography"), "intersections.0.approaches.0.camera",
     "camera 'cam', which has no homography; expected cameras.<i>.homography"),
    (lambda d: _approach(d, 1).update(lanes=["n-lane"]), "intersections.0.approaches.1.lanes.0",
     "zone 'n-lane' is already intersections.0.approaches.0.lanes.0"),
    (lambda d: _approach(d, 1).update(inbound={"line": "n-stop", "direction": "southbound"}),
     "intersections.0.approaches.1.inbound", "line 'n-stop' direction 'southbound' is already"),
    (lambda d: _approach(d, 1).update(id="north"), "intersections.0.approaches.1.id", "'north' is already used"),
    (lambda d: _approach(d).update(compass="north"), "intersections.0.approaches.0.compass", "'N'"),
    (lambda d: _approach(d).update(lanes=[]), "intersections.0.approaches.0.lanes", "at least 1 item"),
    (lambda d: _approach(d).update(stop_line="e-stop2"), "intersections.0.approaches.0.stop_line",
     "'e-stop2' is not a line of camera 'cam'"),
    (lambda d: _approach(d).update(free_flow_kmh=0), "intersections.0.approaches.0.free_flow_kmh",
     "greater than or equal to 5"),
    (lambda d: d["cameras"][0].update(classes=["car", "person"]), "cameras.0",
     "may only be car, motorcycle, bus, truck; got person as well"),
    # a homography whose horizon cuts through a lane maps part of it to no place on the ground
    (lambda d: d["cameras"][0].update(homography=[[40, 0, 0], [0, 60, 0], [0, 4, -1]]),
     "intersections.0.approaches.0.lanes.0", "is at or beyond the horizon of the camera's homography"),
])
def test_a_broken_intersection_is_refused_naming_file_field_and_expectation(tmp_path: Path, mutate: Any, field: str,
                                                                            expected: str) -> None:
    msg = _problem(_mutate(mutate), tmp_path)
    assert f"  {field}" in msg and expected in msg, msg


def test_every_problem_of_an_intersection_is_reported_at_once(tmp_path: Path) -> None:
    def both(d: dict[str, Any]) -> None:
        d["cameras"][0].pop("homography")
        _approach(d, 1)["lanes"] = ["missing"]

    msg = _problem(_mutate(both), tmp_path)
    assert "approaches.0.camera" in msg and "approaches.1.camera" in msg and "approaches.1.lanes.0" in msg


def test_warnings_name_what_does_not_fit_the_standard() -> None:
    """T4: a vehicles-only camera masks its sidewalks; T2: an approach camera counts vehicles only."""
    data = junction()
    data["cameras"][0].update(privacy_masks=[], vehicles_only=False, classes=["person", "car"])
    data["partners"] = [{"id": "city", "tables": ["turning_movements", "congestion"]}]
    site = parse_site_config(data)
    warnings = "\n".join(site_warnings(site))
    assert "intersections.0.approaches.0.camera: camera 'cam' also counts person" in warnings
    assert "set vehicles_only: true" in warnings
    masked = junction(partners=[{"id": "city", "tables": ["turning_movements"]}])
    masked["cameras"][0]["privacy_masks"] = []
    assert any("cameras.0.privacy_masks" in w and "T4" in w for w in site_warnings(parse_site_config(masked)))
    # two approaches on one camera: turning movements can be counted, so no warning about them
    assert not any("turning_movements" in w for w in site_warnings(parse_site_config(junction(
        partners=[{"id": "city", "tables": ["turning_movements"]}]))))
    lone = junction(partners=[{"id": "city", "tables": ["turning_movements", "congestion"]}])
    lone["intersections"][0]["approaches"].pop()
    assert any("never matched across cameras" in w for w in site_warnings(parse_site_config(lone)))
    bare = {"site_id": "s", "cameras": [{"id": "c", "source": 0}], "partners": [{"id": "p", "tables": ["congestion"]}]}
    assert any("receives congestion, but the site has no intersections" in w
               for w in site_warnings(parse_site_config(bare)))


def test_config_check_shows_the_intersection_and_its_lanes_on_the_ground(tmp_path: Path) -> None:
    from privaflow.cli import main as cli

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(junction()))
    out = CliRunner().invoke(cli, ["config", "check", "--config", str(path), "--no-models"])
    assert out.exit_code == 0, out.output
    text = out.output
    assert "counts vehicles only (car, motorcycle, bus, truck); ground homography" in text
    assert "intersection x (Main St / Side St): 2 approaches on camera cam" in text
    assert ("approach north: Main St from N, camera cam; enters crossing n-stop southbound, leaves crossing n-stop "
            "northbound; lanes n-lane; queue from n-stop; free flow 50 km/h") in text
    assert "approach east: Side St from E, camera cam; enters crossing e-stop westbound, no outbound line" in text
    # the north lane zone runs from y 0.1 to 0.5 of the frame: 0.4 x 60 m upstream of its stop line
    assert "on the ground: lane zone 24 m upstream of the stop line" in text
    assert "congestion 60 s, intersection_volume 300 s, turning_movements 900 s, vehicle_colours 900 s" in text


def test_config_check_refuses_a_broken_approach_without_a_traceback(tmp_path: Path) -> None:
    from privaflow.cli import main as cli

    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(_mutate(lambda d: d["cameras"][0].pop("homography"))))
    out = CliRunner().invoke(cli, ["config", "check", "--config", str(path), "--no-models"])
    assert out.exit_code == 2, out.output
    assert str(path) in out.output and "has no homography" in out.output and "Traceback" not in out.output


def test_a_lane_zone_too_short_to_hold_a_queue_is_flagged(tmp_path: Path) -> None:
    """A lane zone a metre deep (drawn as a sliver, or a homography not in metres) cannot be a lane."""
    from privaflow.cli import main as cli

    data = junction()
    data["zones"][0]["polygon"] = [[0.5, 0.52], [0.7, 0.52], [0.7, 0.54], [0.5, 0.54]]
    data["lines"][0]["points"] = [[0.3, 0.1], [0.7, 0.1]]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    out = CliRunner().invoke(cli, ["config", "check", "--config", str(path), "--no-models"])
    assert out.exit_code == 0, out.output
    assert "intersections.0.approaches.0.lanes.0: lane zone 'n-lane' measures" in out.output


def test_the_example_site_has_the_demo_intersection() -> None:
    site = load_site_config(EXAMPLE)
    (x,) = site.intersections
    assert {a.camera for a in x.approaches} == {"street", "street-2"}
    street = site.camera("street")
    assert street.vehicles_only and street.privacy_masks and street.homography  # T2, T4
    assert not site_warnings(site) or all("retailer" in w for w in site_warnings(site))
